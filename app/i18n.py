"""Gettext catalogs (compiled in memory at start-up) and CLDR formatting, always with an explicit locale."""

from __future__ import annotations

import gettext
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta, tzinfo
from io import BytesIO
from pathlib import Path

from babel import Locale
from babel.dates import format_time, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

logger = logging.getLogger("maintenance_shim")

LOCALES_DIR = Path(__file__).with_name("locales")
DOMAIN = "messages"


def load_translations(locale: str, directory: Path = LOCALES_DIR) -> gettext.NullTranslations:
    """The catalog for `locale`, compiled from its .po; NullTranslations (English) with a warning if absent."""
    path = directory / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    try:
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=locale, domain=DOMAIN)
    except (OSError, ValueError) as error:
        logger.warning("no usable catalog for %s (%s); its messages will be English", locale, error)
        return NullTranslations()
    buffer = BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(fp=buffer, domain=DOMAIN)


def available_catalogs(directory: Path = LOCALES_DIR) -> set[str]:
    """Locales that ship a .po catalog."""
    return {path.parent.parent.name for path in directory.glob(f"*/LC_MESSAGES/{DOMAIN}.po")}


class Catalogs:
    """One translations object per offered locale, loaded once."""

    def __init__(self, locales: Iterable[str], directory: Path = LOCALES_DIR) -> None:
        self._translations = {locale: load_translations(locale, directory) for locale in locales}

    def __getitem__(self, locale: str) -> gettext.NullTranslations:
        return self._translations[locale]


def bcp47(locale: str) -> str:
    """`zh_Hans` -> `zh-Hans`, the form HTTP's Content-Language and HTML's lang use."""
    return locale.replace("_", "-")


# Where CLDR's own name is not what people look for in a language switcher: CLDR calls zh_Hans
# "中文 (简体)" and Indonesian "Indonesia" (the country's name too).
_SWITCHER_NAMES = {"zh_Hans": "简体中文", "zh_Hant": "繁體中文", "id": "Bahasa Indonesia"}


def native_name(locale: str) -> str:
    """The language's own name for itself (English, 日本語, 简体中文, العربية)."""
    parsed = Locale.parse(locale)
    if str(parsed) in _SWITCHER_NAMES:
        return _SWITCHER_NAMES[str(parsed)]
    name = parsed.get_display_name(parsed) or locale
    return name[:1].upper() + name[1:]


def relative_time(seconds: float, locale: str) -> str:
    """`in 22 minutes` / `22 分後` / `22分钟后`, rounded the CLDR way."""
    return format_timedelta(
        timedelta(seconds=max(seconds, 1)), add_direction=True, threshold=1.5, locale=locale
    )


def clock_time(when: datetime, locale: str, zone: tzinfo | None = None) -> str:
    """The short wall-clock time in `zone` (MAINT_TIMEZONE; default the system's), with the zone's
    abbreviation: `3:30 PM CET`, `23:30 JST`. The page's script shows the viewer's own zone."""
    local = when.astimezone(zone) if zone is not None else when.astimezone()
    return f"{format_time(local, 'short', tzinfo=local.tzinfo, locale=locale)} {local.tzname() or ''}".rstrip()
