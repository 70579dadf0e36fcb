"""Per-request choices and cached responses: negotiation in, ready-made status line, headers and body out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.i18n import bcp47
from app.negotiate import Choice, Format, LocaleMatcher, negotiate, query_params
from app.render import Renderer, Service
from app.status import Snapshot, Tracker

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
    """A complete response: status, headers (including Content-Length) and the GET body."""

    status: int
    headers: Headers
    body: bytes


@dataclass(frozen=True)
class RequestFacts:
    """The few request headers negotiation reads, picked out in one pass."""

    accept: str | None = None
    accept_language: str | None = None
    cookie: str | None = None

    @classmethod
    def from_scope_headers(cls, raw: Sequence[tuple[bytes, bytes]]) -> RequestFacts:
        accept = language = cookie = None
        for name, value in raw:
            if name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"accept-language":
                language = value.decode("latin-1")
            elif name == b"cookie":
                cookie = value.decode("latin-1") if cookie is None else f"{cookie}; {value.decode('latin-1')}"
        return cls(accept, language, cookie)


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
    ) -> None:
        self.tracker = tracker
        self.renderer = renderer
        self.matcher = matcher
        self._services = dict(services)
        self.default_service = default_service
        self._cookie_name = cookie_name
        self._json_paths = tuple(json_paths)
        self._snapshot: Snapshot | None = None
        self._cache: dict[tuple[str, str, Format, bool], Reply] = {}

    def service_for(self, server: tuple[str, int] | None) -> Service:
        """The service whose listener accepted this connection (by local port)."""
        if server is None:
            return self.default_service
        return self._services.get(server[1], self.default_service)

    def choose(self, path: str, query: bytes, facts: RequestFacts, service: Service) -> Choice:
        """Locale and format for one request; never raises on malformed input."""
        return negotiate(
            path=path,
            params=query_params(query),
            accept=facts.accept,
            accept_language=facts.accept_language,
            cookie=facts.cookie,
            matcher=self.matcher,
            cookie_name=self._cookie_name,
            json_paths=self._json_paths,
            default_format=service.default_format,
        )

    def maintenance_reply(self, service: Service, choice: Choice) -> Reply:
        """The 503 for this service and choice, from the cache while the Snapshot holds."""
        snapshot = self.tracker.snapshot()
        if snapshot is not self._snapshot:
            self._cache = {}
            self._snapshot = snapshot
        remember = choice.remember_locale and choice.format == "html"
        key = (service.name, choice.locale, choice.format, remember)
        reply = self._cache.get(key)
        if reply is None:
            reply = self._build(snapshot, service, choice.locale, choice.format, remember)
            self._cache[key] = reply
        return reply

    def _build(self, snapshot: Snapshot, service: Service, locale: str, fmt: Format, remember: bool) -> Reply:
        body = self.renderer.body(snapshot, service, locale, fmt)
        headers: Headers = [
            (b"content-type", CONTENT_TYPES[fmt]),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(snapshot.retry_after).encode()),
            (b"content-language", bcp47(locale).encode()),
            VARY,
            *COMMON_HEADERS,
            (
                b"content-security-policy",
                self.renderer.page_csp.encode() if fmt == "html" else _PLAIN_CSP,
            ),
        ]
        if remember:
            cookie = f"{self._cookie_name}={locale}; Path=/; Max-Age={LANG_COOKIE_MAX_AGE}; SameSite=Lax"
            headers.append((b"set-cookie", cookie.encode()))
        return Reply(503, headers, body)

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
