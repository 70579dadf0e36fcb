"""Content negotiation, pure: request path, query and headers -> (locale, format).

The formats and what asks for each (media types, `?format=` values, the JSON paths, a service kind's
default) come from the registry in `formats/`; this module knows no format by name. `Negotiator` is the
request path's one negotiation step, for the fast path and the full path alike: `asked` picks out all
that negotiation reads of a request (and is the only place that looks for `?format=`, `?lang=` and the
language cookie), `choose` turns it into a `Choice`, cached.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import parse_qsl

from babel import Locale
from babel.core import get_global

from .cache import BoundedCache
from .formats import table

Format = str  # a registered format's name (formats/)
FORMATS: tuple[Format, ...] = table().names
_MAX_ITEMS = 32  # an Accept or Accept-Language header longer than this is abuse; the rest is ignored


@dataclass(frozen=True)
class Choice:
    """What a request gets: its locale, its format, and whether `?lang=` asked to remember the locale."""

    locale: str
    format: Format
    remember_locale: bool


def parse_qvalues(header: str) -> list[tuple[str, float]]:
    """`a;q=0.5, b` -> [("b", 1.0), ("a", 0.5)]: stable by position, malformed items dropped."""
    items: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:_MAX_ITEMS]):
        value, *params = (piece.strip() for piece in part.split(";"))
        if not value:
            continue
        q = 1.0
        for param in params:
            name, _, raw = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(raw.strip())
                except ValueError:
                    q = -1.0
                if not 0.0 <= q <= 1.0:  # also rejects NaN
                    q = -1.0
        if q >= 0.0:
            items.append((q, index, value.lower()))
    items.sort(key=lambda item: (-item[0], item[1]))
    return [(value, q) for q, _, value in items]


def choose_format(accept: str | None, default: Format) -> Format:
    """The best format for an Accept header; `*/*` or no header -> `default`; nothing acceptable -> the
    last resort (text)."""
    formats = table()
    if not accept or not accept.strip():
        return default
    best: tuple[float, int, int] | None = None
    chosen: Format = formats.last_resort
    media_of = formats.media
    for position, (media, q) in enumerate(parse_qvalues(accept)):
        if q <= 0:
            continue
        major, _, minor = media.partition("/")
        for fmt in formats.names:
            for index, candidate in enumerate(media_of[fmt]):
                c_major = candidate.partition("/")[0]
                if media == candidate:
                    specificity = 2
                elif minor == "*" and major == c_major and index == 0:
                    specificity = 1
                elif media == "*/*":
                    specificity = 0
                else:
                    continue
                pick = default if specificity < 2 and _accepts(default, media) else fmt
                rank = (q, specificity, -position)
                if best is None or rank > best:
                    best, chosen = rank, pick
    return chosen


def _accepts(fmt: Format, media: str) -> bool:
    return media == "*/*" or table().media[fmt][0].partition("/")[0] == media.partition("/")[0]


def default_format(kind: str) -> Format:
    """The format a service of `kind` answers `*/*` with (its format's `default_for_kinds`)."""
    formats = table()
    return formats.by_kind.get(kind, formats.json_paths)


class LocaleMatcher:
    """Maps BCP 47 / POSIX tags to one of the offered locales through CLDR likely subtags.

    Request tags never reach Babel's locale loading: `babel.localedata.exists` caches every name it is
    asked about, without bound. Tags are split here, and only CLDR's static alias and likely-subtag
    tables (plain dicts) are consulted, for tags whose language is one of the offered locales'.
    """

    def __init__(self, offered: Sequence[str], default: str) -> None:
        self.default = default
        self._offered = [_Offered.of(tag) for tag in offered]
        self._languages = frozenset(item.language for item in self._offered)
        self._cache: BoundedCache[str, str | None] = BoundedCache()

    @property
    def offered(self) -> list[str]:
        return [item.name for item in self._offered]

    def match(self, tag: str) -> str | None:
        """One language tag -> an offered locale, or None."""
        key = tag.strip()[:64]
        if key in self._cache:
            return self._cache[key]
        return self._cache.put(key, self._match(key))

    def _match(self, tag: str) -> str | None:
        parsed = split_tag(tag)
        if parsed is None:
            return None
        language, script, territory = parsed
        if language not in self._languages:
            return None
        likely_script, likely_territory = _likely(language, script, territory)
        script = script or likely_script
        territory = territory or likely_territory
        parent = _parent_territory(language, script, territory)
        found: str | None = None
        best = -1
        for offered in self._offered:
            if offered.language != language or (offered.script and script and offered.script != script):
                continue  # zh-TW is Hant: a Hans catalog is no answer, whatever else matches
            # The region decides only between catalogs of one language and script: the exact region, then
            # CLDR's parent region (es-MX -> es_419, pt-AO -> pt_PT), then a catalog without a region,
            # then any other region (pt-PT -> pt_BR when that is the only Portuguese).
            if offered.territory == territory:
                rank = 3
            elif offered.territory is not None and offered.territory == parent:
                rank = 2
            elif offered.territory is None:
                rank = 1
            else:
                rank = 0
            if rank > best:
                found, best = offered.name, rank
        return found

    def best(self, header: str | None) -> str | None:
        """The best offered locale for an Accept-Language header, or None."""
        if not header:
            return None
        for tag, q in parse_qvalues(header):
            found = self.match(tag) if q > 0 else None
            if found:
                return found
        return None


def split_tag(tag: str) -> tuple[str, str | None, str | None] | None:
    """`zh-Hans-CN` / `zh_Hans_CN` -> ("zh", "Hans", "CN"), CLDR aliases applied; None when malformed.

    BCP 47 order: language (2-3 letters; an extended language subtag replaces it), then an optional
    script (4 letters), then an optional region (2 letters or 3 digits); variants and extensions after
    them are ignored.
    """
    parts = tag.replace("_", "-").split("-")
    if not all(part.isascii() and part.isalnum() for part in parts):
        return None  # also empty, "*", and anything with other characters
    language = parts[0].lower()
    if not (2 <= len(language) <= 3 and language.isalpha()):
        return None
    script: str | None = None
    territory: str | None = None
    rest = parts[1:]
    if rest and len(rest[0]) == 3 and rest[0].isalpha():  # an extended language subtag: zh-yue is yue
        language = rest.pop(0).lower()
    if rest and len(rest[0]) == 4 and rest[0].isalpha():
        script = rest.pop(0).title()
    if rest and ((len(rest[0]) == 2 and rest[0].isalpha()) or (len(rest[0]) == 3 and rest[0].isdigit())):
        territory = rest.pop(0).upper()
    alias = get_global("language_aliases").get(language)
    if isinstance(alias, str):  # e.g. iw -> he, cmn -> zh, sh -> sr_Latn
        language, *implied = alias.split("_")
        for part in implied:
            if len(part) == 4 and script is None:
                script = part
            elif len(part) in (2, 3) and territory is None:
                territory = part
    if territory is not None:
        territory = get_global("territory_aliases").get(territory, (territory,))[0]
    if script is not None:
        script = get_global("script_aliases").get(script, script)
    return language, script, territory


@dataclass(frozen=True)
class _Offered:
    """An offered locale as the matcher compares it: its script filled in from CLDR likely subtags."""

    name: str
    language: str
    script: str | None
    territory: str | None

    @classmethod
    def of(cls, name: str) -> _Offered:
        locale = Locale.parse(name)
        script = locale.script or _likely(locale.language, None, locale.territory)[0]
        return cls(name, locale.language, script, locale.territory)


def _likely(language: str, script: str | None, territory: str | None) -> tuple[str | None, str | None]:
    """CLDR's likely (script, region), looked up in CLDR's order: zh-TW -> Hant, zh-Hant -> TW, pt -> BR."""
    likely = get_global("likely_subtags")
    keys = [
        f"{language}_{script}_{territory}" if script and territory else None,
        f"{language}_{territory}" if territory else None,
        f"{language}_{script}" if script else None,
        language,
    ]
    full = next((likely[key] for key in keys if key and isinstance(likely.get(key), str)), None)
    if full is None:
        return None, None
    parts = full.split("_")[1:]
    return (
        next((part for part in parts if len(part) == 4), None),
        next((part for part in parts if len(part) in (2, 3)), None),
    )


def _parent_territory(language: str, script: str | None, territory: str | None) -> str | None:
    """The region of CLDR's parent locale for a regional variant (es_MX -> 419, pt_AO -> PT), if any."""
    if territory is None:
        return None
    parents = get_global("parent_exceptions")
    parent = parents.get(f"{language}_{script}_{territory}") or parents.get(f"{language}_{territory}")
    if not isinstance(parent, str):
        return None
    last = parent.split("_")[-1]
    return last if len(last) in (2, 3) else None


def cookie_value(header: str | None, name: str) -> str | None:
    """The value of cookie `name` in a Cookie header; malformed pairs are skipped, never raised on."""
    if not header:
        return None
    for pair in header.split(";")[:64]:
        key, sep, value = pair.partition("=")
        if sep and key.strip() == name:
            return value.strip().strip('"')
    return None


def query_params(query: bytes) -> dict[str, str]:
    """The first value of each query parameter; undecodable bytes are replaced."""
    if not query:
        return {}
    params: dict[str, str] = {}
    text = query.decode("latin-1")
    for key, value in parse_qsl(text, keep_blank_values=True, max_num_fields=64, errors="replace")[:64]:
        params.setdefault(key, value)
    return params


def negotiate(
    *,
    json_path: bool,
    params: dict[str, str],
    accept: str | None,
    accept_language: str | None,
    cookie: str | None,
    matcher: LocaleMatcher,
    cookie_name: str,
    default_format: Format,
) -> Choice:
    """The negotiation order of DESIGN.md: ?format, a JSON path, Accept; ?lang, cookie, Accept-Language."""
    formats = table()
    fmt = formats.query.get(params.get("format", "").strip().lower())
    if fmt is None:
        fmt = formats.json_paths if json_path else None
    if fmt is None:
        fmt = choose_format(accept, default_format)
    remember = False
    locale = None
    if "lang" in params:
        locale = matcher.match(params["lang"])
        remember = locale is not None
    if locale is None:
        from_cookie = cookie_value(cookie, cookie_name)
        locale = matcher.match(from_cookie) if from_cookie else None
    if locale is None:
        locale = matcher.best(accept_language)
    return Choice(locale or matcher.default, fmt, remember)


class RequestFacts(NamedTuple):
    """The few request headers negotiation and CORS read, picked out in one pass, as sent (bytes).

    One dict lookup per header: measured under callgrind with bench/run.py's requests (14 and 12 headers),
    11,700 and 11,000 instructions a scan against 14,600 and 14,000 for comparing each name with the four
    in turn; and cheaper than `dict(headers)`, which builds a dict of every header."""

    accept: bytes | None
    accept_language: bytes | None
    cookie: bytes | None
    origin: bytes | None

    @classmethod
    def from_scope_headers(cls, raw: Iterable[tuple[bytes, bytes]]) -> RequestFacts:
        found: list[bytes | None] = [None, None, None, None]
        slot_of = _FACT_SLOTS.get
        for name, value in raw:
            slot = slot_of(name)
            if slot is not None:
                # Trailing whitespace (llhttp keeps it) is stripped here too: the protocol answers the
                # catch-all's requests from this reading without stripping every field (uvicorn_ext).
                value = value.rstrip(b" \t")
                if slot == 2 and found[2] is not None:  # several Cookie headers are one list
                    value = found[2] + b"; " + value
                found[slot] = value
        return tuple.__new__(cls, found)  # the NamedTuple's __new__, one call less


_FACT_SLOTS = {b"accept": 0, b"accept-language": 1, b"cookie": 2, b"origin": 3}  # RequestFacts' fields


# All that negotiation reads of a request: (a path under MAINT_JSON_PATHS?, ?format=, ?lang=, the language
# cookie, Accept, Accept-Language). Plain tuples: made on every request, compared and hashed as cache keys.
Asked = tuple[bool, str | None, str | None, str | None, bytes | None, bytes | None]


class Negotiator:
    """The request path's one negotiation step (see the module's docstring)."""

    def __init__(self, matcher: LocaleMatcher, cookie_name: str, json_paths: Sequence[str]) -> None:
        self.matcher = matcher
        self.cookie_name = cookie_name
        self.json_paths = tuple(json_paths)
        self._needle = f"{cookie_name}=".encode()  # a Cookie header without it has no language cookie
        self.choices: BoundedCache[tuple[Format, Asked], Choice] = BoundedCache()

    def asked(self, path: str, query: bytes, facts: RequestFacts) -> Asked:
        """What negotiation reads of this request: only the `format` and `lang` query parameters (when the
        query names them) and the language cookie's value (when the Cookie header holds it), so that requests
        differing in anything else share their cache entries."""
        format_param = lang_param = lang_cookie = None
        if query and (b"format=" in query or b"lang=" in query):
            params = query_params(query)
            format_param, lang_param = params.get("format"), params.get("lang")
        cookie = facts.cookie
        if cookie is not None and self._needle in cookie:
            lang_cookie = cookie_value(cookie.decode("latin-1"), self.cookie_name)
        return (
            path.startswith(self.json_paths), format_param, lang_param, lang_cookie, facts.accept,
            facts.accept_language,
        )

    def choose(self, asked: Asked, default: Format) -> Choice:
        """The Choice for what a request asked, with `default` (its service's) for `*/*`; never raises."""
        key = (default, asked)
        choice = self.choices.get(key)
        if choice is None:
            choice = self.choices.put(key, self._negotiate(asked, default), asked_length(asked))
        return choice

    def _negotiate(self, asked: Asked, default: Format) -> Choice:
        json_path, format_param, lang_param, lang_cookie, accept, language = asked
        params = {name: value for name, value in (("format", format_param), ("lang", lang_param)) if value is not None}
        return negotiate(
            json_path=json_path,
            params=params,
            accept=accept.decode("latin-1") if accept is not None else None,
            accept_language=language.decode("latin-1") if language is not None else None,
            cookie=f"{self.cookie_name}={lang_cookie}" if lang_cookie is not None else None,
            matcher=self.matcher,
            cookie_name=self.cookie_name,
            default_format=default,
        )


def asked_length(asked: Asked) -> int:
    """The length of the request's values in `asked` (the cache policy's MAX_KEY_LENGTH applies to it)."""
    return sum(len(part) for part in asked[1:] if part)
