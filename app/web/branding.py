"""The operator's brand, checked once at start-up: display names, a logo, an accent colour, a template
override directory and the time zone of server-rendered times. Anything wrong stops start-up with one
line naming the setting (exit 2), never a 500 at request time.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from ..settings.shim import Settings

MAX_LOGO_BYTES = 6 * 1024  # 8 KiB as base64: the largest page (Thai, 21 KB) stays under 30 KB with it
TEMPLATE_FILES = ("page.html", "page.css", "page.js")
# The page's own card backgrounds (app/web/templates/page.css, --card): the accent colours text there (the
# state badge, the language links) and on a chip mixed from the accent and the card.
LIGHT_BACKGROUND = "#ffffff"
DARK_BACKGROUND = "#181c23"
CHIP_SHARE = 0.12  # --chip: color-mix(in srgb, var(--accent) 12%, var(--card))
MIN_CONTRAST = 4.5  # WCAG 1.4.3 for normal text
_HEX_RE = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class BrandError(ValueError):
    """A brand setting that cannot be used; the message starts with the setting's name."""


@dataclass(frozen=True)
class Brand:
    """What the page and the messages use of the operator's brand."""

    display_names: dict[str, dict[str, str]] = field(default_factory=dict)  # service tag -> locale ('' any) -> name
    logo_data_uri: str | None = None
    logo_alt: str = ""
    accent: str | None = None  # #rrggbb on light backgrounds
    accent_dark: str | None = None  # #rrggbb on dark backgrounds
    template_dir: Path | None = None
    timezone: tzinfo | None = None  # None: the system's local zone

    def display_name(self, service: str, locale: str) -> str:
        """The service's name for people in `locale`: its variant, else its plain display name, else the tag."""
        names = self.display_names.get(service, {})
        found = names.get(locale.lower()) or names.get(locale.split("_")[0].lower()) or names.get("")
        if found:
            return found
        # A tag like `studio` reads as a name: `Studio will be back soon`, not `studio will be ...`.
        return service[:1].upper() + service[1:] if service[:1].isascii() and service[:1].islower() else service


def parse_colour(value: str, setting: str) -> str:
    """`#abc` or `#aabbcc` -> `#aabbcc`; raises BrandError naming `setting`."""
    text = value.strip()
    if not _HEX_RE.match(text):
        raise BrandError(f"{setting}: {value!r} is not a colour like #0a66c2")
    if len(text) == 4:
        text = "#" + "".join(c * 2 for c in text[1:])
    return text.lower()


def _luminance(colour: str) -> float:
    def channel(hex_pair: str) -> float:
        c = int(hex_pair, 16) / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(colour[i : i + 2]) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours (1 to 21)."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def mix(colour: str, background: str, share: float) -> str:
    """CSS `color-mix(in srgb, colour share, background)` as #rrggbb."""
    parts = [
        round(int(colour[i : i + 2], 16) * share + int(background[i : i + 2], 16) * (1 - share)) for i in (1, 3, 5)
    ]
    return "#" + "".join(f"{part:02x}" for part in parts)


def check_contrast(colour: str, background: str, setting: str) -> None:
    """The accent as text on the card and on its own chip: at least 4.5:1 on both (axe's colour-contrast)."""
    shade = "a darker" if background == LIGHT_BACKGROUND else "a lighter"
    for against in (background, mix(colour, background, CHIP_SHARE)):
        ratio = contrast_ratio(colour, against)
        if ratio < MIN_CONTRAST:
            raise BrandError(
                f"{setting}: {colour} has a contrast of {ratio:.1f}:1 on {against}, where the page shows it as "
                f"text; at least {MIN_CONTRAST}:1 is needed (pick {shade} shade)"
            )


def load_logo(path: Path, setting: str = "MAINT_LOGO") -> str:
    """An SVG or PNG file as a data: URI (an <img>, so an SVG's scripts never run); size-limited."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BrandError(f"{setting}: cannot read {path}: {error.strerror}") from None
    if len(data) > MAX_LOGO_BYTES:
        raise BrandError(
            f"{setting}: {path} is {len(data):,} bytes; at most {MAX_LOGO_BYTES:,} keep the page small "
            "(optimize the SVG, or use a smaller PNG)"
        )
    if data.startswith(_PNG_MAGIC):
        kind = "image/png"
    elif path.suffix.lower() == ".svg" and b"<svg" in data[:4096]:
        kind = "image/svg+xml"
    else:
        raise BrandError(f"{setting}: {path} is neither an SVG (.svg with an <svg> element) nor a PNG file")
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def load_timezone(name: str, setting: str = "MAINT_TIMEZONE") -> tzinfo:
    """An IANA zone (`Europe/Berlin`, `Asia/Tokyo`, `UTC`)."""
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise BrandError(f"{setting}: {name!r} is not a time zone like Europe/Berlin or Asia/Tokyo") from None


def check_template_dir(path: Path, setting: str = "MAINT_TEMPLATE_DIR") -> Path:
    """A directory holding at least one of page.html, page.css, page.js (each replaces the built-in one)."""
    if not path.is_dir():
        raise BrandError(f"{setting}: {path} is not a directory")
    found = [name for name in TEMPLATE_FILES if (path / name).is_file()]
    if not found:
        raise BrandError(f"{setting}: {path} holds none of {', '.join(TEMPLATE_FILES)}")
    return path


def load_brand(settings: Settings) -> Brand:
    """The brand the settings describe, every file read and every value checked; raises BrandError."""
    accent = accent_dark = None
    if settings.accent_color:
        accent = parse_colour(settings.accent_color, "MAINT_ACCENT_COLOR")
        check_contrast(accent, LIGHT_BACKGROUND, "MAINT_ACCENT_COLOR")
    if settings.accent_color_dark:
        accent_dark = parse_colour(settings.accent_color_dark, "MAINT_ACCENT_COLOR_DARK")
        check_contrast(accent_dark, DARK_BACKGROUND, "MAINT_ACCENT_COLOR_DARK")
    logo = load_logo(settings.logo) if settings.logo else None
    if logo and not settings.logo_alt.strip():
        raise BrandError("MAINT_LOGO_ALT: a logo needs its text for people who cannot see it (e.g. the company name)")
    return Brand(
        display_names=settings.display_names,
        logo_data_uri=logo,
        logo_alt=settings.logo_alt.strip(),
        accent=accent,
        accent_dark=accent_dark,
        template_dir=check_template_dir(settings.template_dir) if settings.template_dir else None,
        timezone=load_timezone(settings.timezone) if settings.timezone else None,
    )


def accent_css(brand: Brand) -> str:
    """CSS that puts the operator's accent colours on the page (empty without them)."""
    rules = []
    if brand.accent:
        rules.append(f":root{{--accent:{brand.accent};--chip:color-mix(in srgb,var(--accent) 12%,var(--card))}}")
    if brand.accent_dark:
        rules.append(
            "@media (prefers-color-scheme:dark){:root{"
            f"--accent:{brand.accent_dark};--chip:color-mix(in srgb,var(--accent) 12%,var(--card))}}}}"
        )
    return "".join(rules)
