"""The replies: a request's negotiated Choice in, ready-made status line, headers and body out, once per
(service, kind, locale, format, Snapshot).

Rendering can never fail a request: when a body cannot be built (an operator's template that raises on
some progress, a bug), the answer is a plain localized 503 with the policy's Retry-After, the error is
logged once, and the health endpoints say so (``render_failing``) until the bodies render again (or, for
an answer nobody asks for again, for ``FAILING_SECONDS``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..i18n import bcp47
from ..progress.tracker import Snapshot, Tracker
from . import formats
from .cache import BoundedCache
from .formats import PLAIN_CSP
from .negotiate import Asked, Choice, Format, LocaleMatcher, Negotiator, RequestFacts
from .reason import phrase, plain_name, status_line
from .render import Renderer, Service

logger = logging.getLogger("maintenance_shim")

Headers = list[tuple[bytes, bytes]]
# Health reports a render failure for this long after it was last seen (seconds).
FAILING_SECONDS = 60.0

FALLBACK_CONTENT_TYPE = b"text/plain; charset=utf-8"  # the plain fallback 503's, whatever was asked for
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


__all__ = ["COMMON_HEADERS", "VARY", "Headers", "Reply", "RequestFacts", "Responder"]


class Responder:
    """Answers: the 503 reply for a listener and what its request asked, rendered once per (service, kind,
    locale, format, Snapshot), from the negotiation step (negotiate.Negotiator) it holds."""

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
        self.negotiator = Negotiator(matcher, cookie_name, json_paths)
        self._choices = self.negotiator.choices
        # (service, kind, locale, format, remember) of the snapshot it holds: two listeners of one service
        # may differ in kind
        self._cache: BoundedCache[tuple[str, str, str, Format, bool], Reply] = BoundedCache()
        # (service, locale, format) -> when its body last failed to render (monotonic seconds).
        self._failing: dict[tuple[str, str, str], float] = {}
        self._logged: set[str] = set()  # errors logged already (by type and text)

    @property
    def render_failing(self) -> bool:
        """True while an answer could not be rendered lately and went out as the plain fallback (health says
        so): until it renders again, or for FAILING_SECONDS after its last failure."""
        if not self._failing:
            return False
        recent = time.monotonic() - FAILING_SECONDS
        for key, when in list(self._failing.items()):
            if when < recent:
                self._failing.pop(key, None)
        return bool(self._failing)

    def service_for(self, server: tuple[str, int] | None) -> Service:
        """The service whose listener accepted this connection (by local port)."""
        if server is None:
            return self.default_service
        return self._services.get(server[1], self.default_service)

    def choose(self, path: str, query: bytes, facts: RequestFacts, service: Service) -> Choice:
        """Locale and format for one request (the negotiation step, cached); never raises on malformed input."""
        negotiator = self.negotiator
        return negotiator.choose(negotiator.asked(path, query, facts), service.default_format)

    def answer(self, server: tuple[str, int] | None, asked: Asked, snapshot: Snapshot) -> tuple[Service, Choice, Reply]:
        """The service of the listener, its choice for what the request asked, and its 503 for `snapshot`."""
        service = self.service_for(server)
        choice = self.negotiator.choose(asked, service.default_format)
        return service, choice, self.maintenance_reply(service, choice, snapshot)

    def maintenance_reply(self, service: Service, choice: Choice, snapshot: Snapshot | None = None) -> Reply:
        """The 503 for this service and choice, made from `snapshot` (the tracker's current one if None), from
        the cache while the snapshot holds."""
        if snapshot is None:
            snapshot = self.tracker.snapshot()
        cache = self._cache
        cache.renew(snapshot)
        remember = choice.remember_locale and formats.get(choice.format).remembers_locale
        key = (service.name, service.kind, choice.locale, choice.format, remember)
        reply = cache.get(key)
        if reply is None:
            reply = self._build_or_fallback(snapshot, service, choice.locale, choice.format, remember)
            cache.put(key, reply)  # the fallback too: retried with the next Snapshot, not per request
        return reply

    def _build_or_fallback(
        self, snapshot: Snapshot, service: Service, locale: str, fmt: Format, remember: bool
    ) -> Reply:
        failing = (service.name, locale, fmt)
        try:
            reply = self._build(snapshot, service, locale, fmt, remember)
        except Exception as error:
            self._render_failed(failing, error)
            return self.fallback_reply(locale, snapshot.retry_after)
        self._failing.pop(failing, None)
        return reply

    def _render_failed(self, failing: tuple[str, str, str], error: Exception) -> None:
        self._failing[failing] = time.monotonic()
        key = f"{type(error).__name__}: {error}"[:500]
        if key not in self._logged and len(self._logged) < 100:
            self._logged.add(key)
            logger.error("cannot render the answer (%s, %s, %s); a plain 503 goes out instead",
                         failing[0] or "(unnamed)", failing[1], failing[2], exc_info=error)

    def fallback_reply(self, locale: str, retry_after: int) -> Reply:
        """The plain-text 503 sent when a body cannot be built: localized, with a sane Retry-After."""
        body = self.renderer.fallback_text(locale).encode("utf-8")
        headers: Headers = [
            (b"content-type", FALLBACK_CONTENT_TYPE),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(max(1, retry_after)).encode()),
            (b"content-language", bcp47(locale).encode()),
            VARY,
            *COMMON_HEADERS,
            (b"x-should-retry", b"false"),
            (b"x-robots-tag", b"noindex"),
            (b"content-security-policy", PLAIN_CSP),
        ]
        return Reply(503, headers, body)

    def _build(self, snapshot: Snapshot, service: Service, locale: str, fmt: Format, remember: bool) -> Reply:
        body = self.renderer.body(snapshot, service, locale, fmt)
        kind = formats.get(fmt)
        # openai-python and the SDKs generated like it obey `x-should-retry` over their own rules: retry
        # (after Retry-After) while the service is back soon, else fail at once and show the message. An
        # unknown ETA is not "soon".
        eta = snapshot.eta_seconds
        should_retry = eta is not None and eta <= self._sdk_retry_max_seconds
        headers: Headers = [
            (b"content-type", kind.content_type),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(snapshot.retry_after).encode()),
            (b"content-language", bcp47(locale).encode()),
            VARY,
            *COMMON_HEADERS,
            (b"x-should-retry", b"true" if should_retry else b"false"),
            (b"x-robots-tag", b"noindex"),
            (b"content-security-policy", kind.csp(self.renderer)),
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
        failing = (service.name, locale, "status")
        try:
            body = self.renderer.status_body(snapshot, service, locale)
        except Exception as error:
            self._render_failed(failing, error)
            return self.fallback_reply(locale, snapshot.retry_after)
        self._failing.pop(failing, None)
        headers: Headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"content-language", bcp47(locale).encode()),
            VARY,
            *COMMON_HEADERS,
        ]
        return Reply(200, headers, body)
