"""Per-request choices and cached responses: negotiation in, ready-made status line, headers and body out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..i18n import bcp47
from ..progress.tracker import Snapshot, Tracker
from .negotiate import Choice, Format, LocaleMatcher, cookie_value, negotiate, query_params
from .reason import phrase, plain_name, status_line
from .render import Renderer, Service

Headers = list[tuple[bytes, bytes]]

CONTENT_TYPES: dict[Format, bytes] = {
    "html": b"text/html; charset=utf-8",
    "json": b"application/json",
    "problem": b"application/problem+json",
    "text": b"text/plain; charset=utf-8",
}
_PLAIN_CSP = b"default-src 'none'; frame-ancestors 'none'"
COMMON_HEADERS: Headers = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
VARY = (b"vary", b"Accept, Accept-Language, Cookie")
LANG_COOKIE_MAX_AGE = 365 * 24 * 3600


@dataclass(frozen=True)
class Reply:
    """A complete response: status, headers (including Content-Length) and the GET body; `status_line`
    replaces the stock one (uvicorn's) when set: the 503's reason phrase saying when (reason.py)."""

    status: int
    headers: Headers
    body: bytes
    status_line: bytes | None = None


class RequestFacts(NamedTuple):
    """The few request headers negotiation and CORS read, picked out in one pass, as sent (bytes).

    A plain loop of comparisons: measured in the server, cheaper than `dict(headers)` (which hashes every
    fresh header name) by about 2 % of the catch-all's CPU per request."""

    accept: bytes | None
    accept_language: bytes | None
    cookie: bytes | None
    origin: bytes | None

    @classmethod
    def from_scope_headers(cls, raw: Iterable[tuple[bytes, bytes]]) -> RequestFacts:
        accept = language = cookie = origin = None
        for name, value in raw:
            if name == b"accept":
                accept = value
            elif name == b"accept-language":
                language = value
            elif name == b"cookie":
                cookie = value if cookie is None else cookie + b"; " + value
            elif name == b"origin":
                origin = value
        return cls(accept, language, cookie, origin)


ChoiceKey = tuple[Format, bool, str | None, str | None, str | None, bytes | None, bytes | None]
_CACHED_KEY_LENGTH = 1024  # longer header values are negotiated every time, never cached


class Responder:
    """Negotiates each request and serves 503 replies rendered once per (service, locale, format, Snapshot)."""

    def __init__(
        self,
        *,
        tracker: Tracker,
        renderer: Renderer,
        matcher: LocaleMatcher,
        services: Mapping[int, Service],
        default_service: Service,
        cookie_name: str,
        json_paths: Sequence[str],
        sdk_retry_max_seconds: int = 120,
        reason_phrase: bool = True,
    ) -> None:
        self.tracker = tracker
        self._sdk_retry_max_seconds = sdk_retry_max_seconds
        self._reason_phrase = reason_phrase
        self.renderer = renderer
        self.matcher = matcher
        self._services = dict(services)
        self.default_service = default_service
        self._cookie_name = cookie_name
        self.json_paths = tuple(json_paths)
        self.cookie_needle = f"{cookie_name}=".encode()  # a Cookie header without it has no language cookie
        self._choices: dict[ChoiceKey, Choice] = {}
        self._snapshot: Snapshot | None = None
        # (service, kind, locale, format, remember): two listeners of one service may differ in kind
        self._cache: dict[tuple[str, str, str, Format, bool], Reply] = {}

    def service_for(self, server: tuple[str, int] | None) -> Service:
        """The service whose listener accepted this connection (by local port)."""
        if server is None:
            return self.default_service
        return self._services.get(server[1], self.default_service)

    def choose(self, path: str, query: bytes, facts: RequestFacts, service: Service) -> Choice:
        """Locale and format for one request; never raises on malformed input.

        Only what negotiation reads goes into the cache key (the `lang` cookie, not the whole Cookie
        header; `format` and `lang` from the query, not the whole query), so real traffic hits the cache.
        """
        format_param = lang_param = None
        if query and (b"format=" in query or b"lang=" in query):
            params = query_params(query)
            format_param, lang_param = params.get("format"), params.get("lang")
        lang_cookie = None
        if facts.cookie is not None and self.cookie_needle in facts.cookie:
            lang_cookie = cookie_value(facts.cookie.decode("latin-1"), self._cookie_name)
        key: ChoiceKey = (
            service.default_format,
            path.startswith(self.json_paths),
            format_param,
            lang_param,
            lang_cookie,
            facts.accept,
            facts.accept_language,
        )
        choice = self._choices.get(key)
        if choice is None:
            choice = self._negotiate(key)
            if sum(len(part) for part in key[2:] if part) <= _CACHED_KEY_LENGTH:
                if len(self._choices) >= 4096:
                    self._choices.clear()
                self._choices[key] = choice
        return choice

    def _negotiate(self, key: ChoiceKey) -> Choice:
        default_format, json_path, format_param, lang_param, lang_cookie, accept, language = key
        params = {name: value for name, value in (("format", format_param), ("lang", lang_param)) if value is not None}
        return negotiate(
            json_path=json_path,
            params=params,
            accept=accept.decode("latin-1") if accept is not None else None,
            accept_language=language.decode("latin-1") if language is not None else None,
            cookie=f"{self._cookie_name}={lang_cookie}" if lang_cookie is not None else None,
            matcher=self.matcher,
            cookie_name=self._cookie_name,
            default_format=default_format,
        )

    def maintenance_reply(self, service: Service, choice: Choice) -> Reply:
        """The 503 for this service and choice, from the cache while the Snapshot holds."""
        snapshot = self.tracker.snapshot()
        if snapshot is not self._snapshot:
            self._cache = {}
            self._snapshot = snapshot
        remember = choice.remember_locale and choice.format == "html"
        key = (service.name, service.kind, choice.locale, choice.format, remember)
        reply = self._cache.get(key)
        if reply is None:
            reply = self._build(snapshot, service, choice.locale, choice.format, remember)
            self._cache[key] = reply
        return reply

    def _build(self, snapshot: Snapshot, service: Service, locale: str, fmt: Format, remember: bool) -> Reply:
        body = self.renderer.body(snapshot, service, locale, fmt)
        # openai-python and the SDKs generated like it obey `x-should-retry` over their own rules: retry
        # (after Retry-After) while the service is back soon, else fail at once and show the message. An
        # unknown ETA is not "soon".
        eta = snapshot.eta_seconds
        should_retry = eta is not None and eta <= self._sdk_retry_max_seconds
        headers: Headers = [
            (b"content-type", CONTENT_TYPES[fmt]),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(snapshot.retry_after).encode()),
            (b"content-language", bcp47(locale).encode()),
            VARY,
            *COMMON_HEADERS,
            (b"x-should-retry", b"true" if should_retry else b"false"),
            (b"x-robots-tag", b"noindex"),
            (
                b"content-security-policy",
                self.renderer.page_csp.encode() if fmt == "html" else _PLAIN_CSP,
            ),
        ]
        if remember:
            cookie = f"{self._cookie_name}={locale}; Path=/; Max-Age={LANG_COOKIE_MAX_AGE}; SameSite=Lax"
            headers.append((b"set-cookie", cookie.encode()))
        line = None
        if self._reason_phrase:
            # The English display name (`Video`) where it is plain ASCII, else the service's tag.
            name = self.renderer.display_name(service, "en")
            name = name if plain_name(name) == name else service.name
            line = status_line(503, phrase(snapshot, name, self.renderer.brand.timezone))
        return Reply(503, headers, body, line)

    def status_reply(self, service: Service, locale: str) -> Reply:
        """The 200 /_maintenance/status reply in `locale` (never cached by clients)."""
        snapshot = self.tracker.snapshot()
        body = self.renderer.status_body(snapshot, service, locale)
        headers: Headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"content-language", bcp47(locale).encode()),
            VARY,
            *COMMON_HEADERS,
        ]
        return Reply(200, headers, body)
