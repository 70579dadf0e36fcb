"""Response bodies for one (service, locale, format, Snapshot): the localized texts and the `maintenance`
object, handed to the format's renderer (formats/), and the HTML page's templates."""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
from babel import Locale
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from ..files import read_regular_text
from ..i18n import Catalogs, bcp47, native_name, relative_time
from ..progress.tracker import NodeSnapshot, Progress, Snapshot
from ..settings.shim import ServiceKind
from . import formats
from .branding import MAX_TEMPLATE_BYTES, Brand, BrandError, accent_css
from .formats.json import json_bytes
from .negotiate import Format, default_format
from .texts import Texts, build_node_texts, build_texts, plain_spaces, plain_texts

TEMPLATES_DIR = Path(__file__).with_name("templates")
STATUS_PATH = "/_maintenance/status"
# MAINT_TEMPLATE_DIR's pages must all render within this at start-up (seconds).
CHECK_SECONDS = 10.0


@dataclass(frozen=True)
class Service:
    """A replaced service: the name users see and the format its clients get by default."""

    name: str
    kind: ServiceKind

    @cached_property
    def default_format(self) -> Format:
        """The format of its `*/*` answers: the one registered as its kind's default."""
        return default_format(self.kind)


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


# First Strong Isolate ... Pop Directional Isolate: the page's texts mark each value put into a sentence
# with them, and the template turns each pair into a <bdi> element (an isolate in HTML's own terms).
_FSI, _PDI = "\u2068", "\u2069"


def _mark(value: str) -> str:
    return _FSI + value.replace(_FSI, "").replace(_PDI, "") + _PDI


_MARKED = re.compile(f"({_FSI}[^{_FSI}{_PDI}]*{_PDI})")


def _bdi(text: str) -> Markup:
    """Escaped text with each FSI ... PDI span as <bdi>: a name or number keeps its own direction."""
    return Markup("").join(
        Markup("<bdi>%s</bdi>") % piece[1:-1] if piece.startswith(_FSI) else escape(piece)
        for piece in _MARKED.split(text)
    )


def text_direction(locale: str) -> str:
    """`rtl` for Arabic (and any right-to-left locale), else `ltr`: CLDR's character order."""
    return "rtl" if Locale.parse(locale).character_order == "right-to-left" else "ltr"


def page_refresh_seconds(retry_after: int) -> int:
    """How often the page reloads itself without JavaScript: the Retry-After, kept between 15 s and 2 min."""
    return max(15, min(120, retry_after))


class Renderer:
    """Renders bodies; holds one Jinja2 environment per locale (catalogs bound once, at start-up)."""

    def __init__(
        self,
        catalogs: Catalogs,
        locales: Sequence[str],
        operator_messages: dict[str, str | None],
        cookie_name: str,
        templates: Path = TEMPLATES_DIR,
        brand: Brand | None = None,
    ) -> None:
        self._catalogs = catalogs
        self._locales = list(locales)
        self._operator = operator_messages
        self._cookie_name = cookie_name
        self.brand = brand or Brand()
        # The operator's MAINT_TEMPLATE_DIR first: each of page.html, page.css, page.js found there replaces
        # the built-in one (and page.html may {% extends "base/page.html" %}, the built-in one).
        override = self.brand.template_dir

        def pick(name: str) -> Path:
            return override / name if override is not None and (override / name).is_file() else templates / name

        try:
            self._style = read_regular_text(pick("page.css"), MAX_TEMPLATE_BYTES) + accent_css(self.brand)
            self._script = read_regular_text(pick("page.js"), MAX_TEMPLATE_BYTES)
        except (OSError, UnicodeDecodeError) as error:
            raise BrandError(f"MAINT_TEMPLATE_DIR: {error}") from None
        built_in = jinja2.FileSystemLoader(templates)
        loader: jinja2.BaseLoader = built_in
        if override is not None:
            base = jinja2.PrefixLoader({"base": built_in})
            loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(override), base, built_in])
        self.page_csp = (
            "default-src 'none'; "
            f"style-src {_csp_hash(self._style)}; "
            f"script-src {_csp_hash(self._script)}; "
            "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'"
        )
        self._languages = [
            {"locale": locale, "tag": bcp47(locale), "name": native_name(locale), "dir": text_direction(locale)}
            for locale in self._locales
        ]
        self._steps_left_forms = {locale: _steps_left_forms(catalogs, locale) for locale in self._locales}
        self._envs: dict[str, jinja2.Environment] = {}
        for locale in self._locales:
            # Sandboxed: a template of MAINT_TEMPLATE_DIR reaches no Python beyond the values it is given.
            env = SandboxedEnvironment(
                loader=loader,
                autoescape=True,
                extensions=["jinja2.ext.i18n"],
                undefined=jinja2.StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
            )
            env.install_gettext_translations(catalogs[locale], newstyle=True)  # type: ignore[attr-defined]
            env.filters["bdi"] = _bdi
            # UTF-8 as it is, not \uXXXX: six bytes a letter would cost a Thai or Arabic page 2 KB of its
            # 30 KB. Still HTML-safe: tojson escapes <, >, & and ' whatever this says.
            env.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False, "separators": (",", ":")}
            self._envs[locale] = env

    def texts(self, snapshot: Snapshot, service: Service, locale: str) -> Texts:
        """The localized sentences for this snapshot, with plain spaces (SDKs print them verbatim)."""
        return plain_texts(build_texts(
            snapshot, self._catalogs[locale], locale, self.display_name(service, locale), self._operator.get(locale),
            zone=self.brand.timezone, display=lambda tag: self.brand.display_name(tag, locale),
        ))

    def display_name(self, service: formats.ServiceInfo, locale: str) -> str:
        """The service's name for people: MAINT_SERVICE_<tag>_DISPLAY_NAME[_<LANG>], else the tag."""
        return self.brand.display_name(service.name, locale) if service.name else ""

    def check(self, snapshot: Snapshot, services: Sequence[Service], time_limit: float = CHECK_SECONDS) -> None:
        """Render every page once at start-up, so a broken template stops start-up (BrandError naming the
        file and line) instead of failing requests. With MAINT_TEMPLATE_DIR the renders run in a daemon thread
        and must end within `time_limit` seconds: an endless template stops start-up too."""
        if self.brand.template_dir is None:
            self._check(snapshot, services)
            return
        outcome: list[BaseException | None] = []

        def work() -> None:
            try:
                self._check(snapshot, services)
                outcome.append(None)
            except BaseException as error:  # handed to the caller's thread
                outcome.append(error)

        thread = threading.Thread(target=work, name="template check", daemon=True)
        thread.start()
        thread.join(time_limit)
        if not outcome:
            raise BrandError(
                f"MAINT_TEMPLATE_DIR: page.html does not render within {time_limit:.0f} s (an endless loop?)"
            )
        if outcome[0] is not None:
            raise outcome[0]

    def _check(self, snapshot: Snapshot, services: Sequence[Service]) -> None:
        for service in services:
            for locale in self._locales:
                try:
                    self.body(snapshot, service, locale, "html")
                except jinja2.TemplateSyntaxError as error:
                    raise BrandError(
                        f"MAINT_TEMPLATE_DIR: {error.filename or error.name}:{error.lineno}: {error.message}"
                    ) from None
                except jinja2.TemplateError as error:
                    raise BrandError(f"MAINT_TEMPLATE_DIR: page.html does not render ({locale}): {error}") from None
                except RecursionError:
                    raise BrandError(f"MAINT_TEMPLATE_DIR: page.html recurses without end ({locale})") from None
                except Exception as error:
                    raise BrandError(
                        f"MAINT_TEMPLATE_DIR: page.html does not render ({locale}): {type(error).__name__}: {error}"
                    ) from None

    def fallback_text(self, locale: str) -> str:
        """The plain answer when a body cannot be built: two sentences from the catalog, no numbers."""
        try:
            translations = self._catalogs[locale]
            service = translations.gettext("This service")
            message = translations.gettext("%(service)s is paused for maintenance.") % {"service": service}
            return f"{message} {translations.gettext('There is no estimate yet; please try again later.')}\n"
        except Exception:  # the catalog itself: English, as written in the code
            return "This service is paused for maintenance. There is no estimate yet; please try again later.\n"

    def maintenance(self, snapshot: Snapshot, service: Service, locale: str, texts: Texts) -> dict[str, Any]:
        """The `maintenance` object of DESIGN.md; `nodes` only once progress named a node."""
        maintenance: dict[str, Any] = {
            "service": service.name or None,
            "state": snapshot.state,
            "message": texts.message,
            "eta": {
                "known": snapshot.eta_seconds is not None,
                "seconds": snapshot.eta_seconds,
                "at": _iso(snapshot.eta_at),
                "text": texts.eta_relative,
                "basis": snapshot.basis,
            },
            "retry_after": snapshot.retry_after,
            "progress": _progress_json(snapshot.progress),
            "after_training": None
            if snapshot.after is None
            else {
                "phase": snapshot.after,
                "trainer_status": snapshot.trainer_status,
                "services": list(snapshot.services),
            },
            "locale": bcp47(locale),
        }
        if snapshot.nodes:
            maintenance["nodes"] = [_node_json(node, locale) for node in snapshot.nodes]
        if snapshot.notice is not None:
            maintenance["notice"] = snapshot.notice
        return maintenance

    def body(self, snapshot: Snapshot, service: Service, locale: str, fmt: Format) -> bytes:
        """The 503 body in `fmt`, by its format's renderer."""
        texts = self.texts(snapshot, service, locale)
        maintenance = self.maintenance(snapshot, service, locale, texts)
        return formats.get(fmt).render(self, snapshot, service, locale, texts, maintenance)

    def status_body(self, snapshot: Snapshot, service: Service, locale: str) -> bytes:
        """The /_maintenance/status body: the same `maintenance` object the 503 carries."""
        texts = self.texts(snapshot, service, locale)
        return json_bytes(self.maintenance(snapshot, service, locale, texts))

    def page(
        self,
        snapshot: Snapshot,
        service: formats.ServiceInfo,
        locale: str,
        texts: Texts,
        maintenance: dict[str, Any],
    ) -> str:
        """The HTML page for people: server-rendered text that works without scripts, plus the script's data."""
        template = self._envs[locale].get_template("page.html")
        # The same sentences with their values marked for <bdi>; `texts` stays plain for attributes.
        shown = build_texts(
            snapshot, self._catalogs[locale], locale, self.display_name(service, locale), self._operator.get(locale),
            isolate=_mark, zone=self.brand.timezone, display=lambda tag: self.brand.display_name(tag, locale),
        )
        progress = snapshot.progress
        translations = self._catalogs[locale]
        nodes = [
            {
                "node": node,
                "percent": _percent(node.progress),
                "texts": build_node_texts(node, translations, locale, zone=self.brand.timezone),
                "shown": build_node_texts(node, translations, locale, isolate=_mark, zone=self.brand.timezone),
            }
            for node in snapshot.nodes
        ]
        return template.render(
            lang=bcp47(locale),
            dir=text_direction(locale),
            locale=locale,
            service=service.name,
            state=snapshot.state,
            texts=texts,
            shown=shown,
            progress=progress,
            percent=_percent(progress),
            nodes=nodes,
            maintenance=maintenance,
            languages=self._languages,
            cookie_name=self._cookie_name,
            status_path=STATUS_PATH,
            refresh_seconds=page_refresh_seconds(snapshot.retry_after),
            steps_left_forms=self._steps_left_forms[locale],
            style=self._style,
            script=self._script,
            logo=self.brand.logo_data_uri,
            logo_alt=self.brand.logo_alt,
            names={
                tag: self.brand.display_name(tag, locale)
                for tag in {service.name, *snapshot.services, *self.brand.display_names}
                if tag
            },
        )


def _steps_left_forms(catalogs: Catalogs, locale: str) -> dict[str, str]:
    """"N steps to go" once per CLDR plural category, for the page's script (Intl.PluralRules picks one).

    The catalog is asked with sample counts until each category of the locale has its wording.
    """
    category = Locale.parse(locale).plural_form
    ngettext = catalogs[locale].ngettext
    forms: dict[str, str] = {}
    for count in (*range(112), 1000, 1_000_000):
        forms.setdefault(category(count), ngettext("%(num)s step to go", "%(num)s steps to go", count))
    return forms


def _iso(when: datetime | None) -> str | None:
    return when.isoformat().replace("+00:00", "Z") if when else None


def _progress_json(progress: Progress | None) -> dict[str, Any] | None:
    if progress is None:
        return None
    return {
        "step": progress.step,
        "total": progress.total,
        "fraction": progress.fraction,
        "rate_per_second": progress.rate,
        "updated_at": _iso(progress.updated_at),
        "phase": progress.phase,
        "scope": progress.scope,
        "epoch": progress.epoch,
        "epochs": progress.epochs,
    }


def _node_json(node: NodeSnapshot, locale: str) -> dict[str, Any]:
    """One entry of `nodes`: the node's own state, ETA (`eta_text` localized as `eta.text` is) and progress."""
    return {
        "node": node.node,
        "state": node.state,
        "eta_seconds": node.eta_seconds,
        "eta_at": _iso(node.eta_at),
        "eta_text": plain_spaces(relative_time(node.eta_seconds, locale)) if node.eta_seconds is not None else None,
        "progress": _progress_json(node.progress),
    }


def _percent(progress: Progress | None) -> float | None:
    """The bar's fill in percent (one decimal), None without a fraction."""
    if progress is None or progress.fraction is None:
        return None
    return round(min(1.0, max(0.0, progress.fraction)) * 100, 1)

