"""The public ASGI app: reserved paths go to FastAPI, everything else gets its 503 without reading the body."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, NamedTuple

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..uvicorn_ext.wire import HEAD_LINES, STATUS_LINE_KEY, HeadLines, head_lines
from .cache import BoundedCache
from .negotiate import Asked, Choice, RequestFacts, asked_length
from .responder import COMMON_HEADERS, Reply, Responder

if TYPE_CHECKING:
    from ..progress.tracker import Snapshot
    from ..traffic import CountKey, Observe, Tally, Traffic

RESERVED_PREFIX = "/_maintenance"
# (listener port, HEAD?, Origin, what negotiation read): all a request's 503 depends on (its caches follow
# the one policy of cache.py)
AnswerKey = tuple[int | None, bool, bytes | None, Asked]


class Answer(NamedTuple):
    """What the catch-all sends for one kind of request (made from its cache's Snapshot)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes  # empty for HEAD
    counted: CountKey  # what Traffic counts it as
    tally: Tally  # Traffic's cell for `counted` (a cell of its own, never read, with MAINT_METRICS off)
    lines: HeadLines | None  # the headers checked and encoded for the wire (wire.py), when they can be
    status_line: bytes | None  # the reply's own status line (reason.py), None for uvicorn's
    # The fast path's messages, made once and sent as they are (servers only read them): the start with
    # its HeadLines (None without them), and the body.
    start_message: Message | None
    body_message: Message

    def start(self) -> Message:
        """The `http.response.start` off the fast path: a fresh headers list, the status line beside it."""
        message: Message = {"type": "http.response.start", "status": self.status, "headers": list(self.headers)}
        if self.status_line is not None:
            message[STATUS_LINE_KEY] = self.status_line
        return message


HEALTH_BODY = json.dumps({"status": "ok", "maintenance": True}).encode()
# While answers cannot be rendered (they go out as a plain fallback 503): health checks should take notice.
UNHEALTHY_BODY = json.dumps(
    {"status": "error", "maintenance": True, "detail": "answers cannot be rendered; see the shim's log"}
).encode()
HEALTH_REPLY = Reply(
    200,
    [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(HEALTH_BODY)).encode()),
        *COMMON_HEADERS,
    ],
    HEALTH_BODY,
)
UNHEALTHY_REPLY = Reply(
    503,
    [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(UNHEALTHY_BODY)).encode()),
        *COMMON_HEADERS,
    ],
    UNHEALTHY_BODY,
)
WS_TRY_AGAIN_LATER = 1013
# The reserved paths a public listener serves; the rest of /_maintenance/ (the progress push, metrics, the
# API docs) answers only on the admin listener, and 404 elsewhere.
PUBLIC_RESERVED = frozenset({f"{RESERVED_PREFIX}/health", f"{RESERVED_PREFIX}/status"})
NOT_FOUND_BODY = json.dumps({"detail": "Not Found"}).encode()
NOT_FOUND_REPLY = Reply(
    404,
    [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(NOT_FOUND_BODY)).encode()),
        *COMMON_HEADERS,
    ],
    NOT_FOUND_BODY,
)


async def send_reply(reply: Reply, send: Send, head: bool) -> None:
    """Send a prepared reply; the headers list is copied because middleware may append to it."""
    await send({"type": "http.response.start", "status": reply.status, "headers": list(reply.headers)})
    await send({"type": "http.response.body", "body": b"" if head else reply.body})


class DeferredApp:
    """An ASGI app built in a worker thread once serving has begun.

    The catch-all answers its first 503 before FastAPI (a quarter of a second of imports) is loaded;
    requests to the reserved paths wait for the build.
    """

    def __init__(self, factory: Callable[[], ASGIApp]) -> None:
        self._factory = factory
        self._future: asyncio.Future[ASGIApp] | None = None

    def start(self) -> asyncio.Future[ASGIApp]:
        """Begin building (idempotent); call from the event loop."""
        if self._future is None:
            self._future = asyncio.get_running_loop().run_in_executor(None, self._build)
        return self._future

    def _build(self) -> ASGIApp:
        app = self._factory()
        gc.freeze()  # the admin app lives as long as the process: keep it out of the collector's scans
        return app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = await self.start()
        await app(scope, receive, send)


class MaintenanceApp:
    """Routes by path prefix only; the catch-all never touches FastAPI's routing or the request body."""

    def __init__(
        self,
        *,
        admin: ASGIApp,
        responder: Responder,
        health_paths: Iterable[str],
        lifespan: Callable[[], AbstractAsyncContextManager[None]],
        cors_origins: list[str],
        admin_port: int | None = None,
        admin_socket: bool = False,
        traffic: Traffic | None = None,
        observe: Observe | None = None,
    ) -> None:
        """`admin_port` is the admin listener's TCP port; `admin_socket` says it is a Unix socket (whose
        connections have no server address). Without either, no listener serves the admin paths.
        `traffic` counts every answered request (None: MAINT_METRICS off); `observe` is also called for each
        (the access log)."""
        self.responder = responder
        self.admin_port = admin_port
        self.admin_socket = admin_socket
        self.health_paths = frozenset(health_paths)
        self.lifespan = lifespan
        self.traffic = traffic
        self._known = traffic.known if traffic is not None else None  # emptied in place, never replaced
        self.observe = observe
        self.cors = cors_middleware(_send_stashed_reply, cors_origins) if cors_origins else None
        self.admin = CorsGate(admin, cors_origins) if cors_origins else admin
        # (service, kind, choice, origin) -> (the plain reply, the same reply as CORSMiddleware decorated it)
        self._cors_replies: BoundedCache[tuple[str, str, Choice, bytes], tuple[Reply, Reply]] = BoundedCache()
        self._admin_listener = admin_port is not None or admin_socket
        self._tracker = responder.tracker
        self._asked = responder.negotiator.asked  # the one negotiation step, for both paths
        # the fast path's: everything a request sends, for the snapshot it holds
        self._answers: BoundedCache[AnswerKey, Answer] = BoundedCache()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await self._refuse_websocket(scope, receive, send)
            elif scope["type"] == "lifespan":
                await self._run_lifespan(receive, send)
            return
        path: str = scope["path"]
        if (
            path.startswith(RESERVED_PREFIX)
            or path in self.health_paths
            or (self._admin_listener and self.on_admin_listener(scope))
        ):
            await self._route(scope, receive, send)
            return
        # The catch-all's common case, in one lookup: every request but OPTIONS (a preflight, maybe), keyed by
        # what negotiation reads of it.
        facts = RequestFacts.from_scope_headers(scope["headers"])
        method: str = scope["method"]
        if method == "OPTIONS":
            await self._answer_in_full(scope, receive, send, facts)
            return
        asked = self._asked(path, scope["query_string"], facts)
        server = scope.get("server")
        origin = facts.origin
        key: AnswerKey = (server[1] if server else None, method == "HEAD", origin, asked)
        snapshot = self._tracker.snapshot()
        answers = self._answers
        if answers.snapshot is not snapshot:
            answers.renew(snapshot)
        answer = answers.get(key)
        if answer is None:
            answer = await self._prepare(scope, facts, asked, snapshot, encoded=True)
            if answers.snapshot is snapshot:  # not renewed meanwhile by a newer snapshot
                answers.put(key, answer, asked_length(asked) + (len(origin) if origin is not None else 0))
        self._tally(answer, scope)
        start = answer.start_message  # the head written from its encoding (protocol.WholeAnswerCycle)
        await send(start if start is not None else answer.start())
        await send(answer.body_message)

    def answer_now(self, scope: Scope) -> tuple[int, HeadLines, bytes] | None:
        """The catch-all's answer to an HTTP request when it is made already and has its HeadLines: (status,
        lines, body), counted (and logged) here, for the protocol to write at once, with no task and no ASGI
        message (protocol.ShimHttpProtocol, `answer_now`); None for everything else (reserved, health and admin
        paths, OPTIONS, an answer not made yet for this snapshot), which the app answers as usual. The same
        answer `__call__` sends for the same request."""
        path: str = scope["path"]
        if (
            path.startswith(RESERVED_PREFIX)
            or path in self.health_paths
            or (self._admin_listener and self.on_admin_listener(scope))
        ):
            return None
        method: str = scope["method"]
        if method == "OPTIONS":
            return None
        facts = RequestFacts.from_scope_headers(scope["headers"])
        server = scope.get("server")
        key: AnswerKey = (
            server[1] if server else None, method == "HEAD", facts.origin,
            self._asked(path, scope["query_string"], facts),
        )  # fmt: skip
        answers = self._answers
        if answers.snapshot is not self._tracker.snapshot():
            return None  # renewed on the way through the app
        answer = answers.get(key)
        if answer is None or answer.lines is None:
            return None
        self._tally(answer, scope)
        return answer.status, answer.lines, answer.body

    def _tally(self, answer: Answer, scope: Scope) -> None:
        """Count (and log) a catch-all answer."""
        known = self._known
        if known is not None:
            # Traffic.hit inlined for a connection it already knows (see Traffic.known): the tally alone.
            peer = scope.get("client")
            if peer is not None and known.get(id(peer)) is peer:
                answer.tally[0] += 1
            else:
                self._count(answer.counted, scope, log=False)
        if self.observe is not None:
            self.observe(answer.counted, scope)

    def _count(self, key: CountKey, scope: Scope, log: bool = True) -> None:
        """Count (and log) an answer off the fast path."""
        if self.traffic is not None:
            self.traffic.hit(key, scope)
        if log and self.observe is not None:
            self.observe(key, scope)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Reserved paths, the admin listener and health paths; anything else gets the 503 in full."""
        path: str = scope["path"]
        on_admin = self.on_admin_listener(scope)
        reserved = len(RESERVED_PREFIX)
        if path.startswith(RESERVED_PREFIX) and (len(path) == reserved or path[reserved] == "/"):
            if on_admin or path in PUBLIC_RESERVED:
                await self.admin(scope, receive, send)
            else:
                await send_reply(NOT_FOUND_REPLY, send, scope["method"] == "HEAD")
            return
        if on_admin:  # the admin listener stands in for no service
            await send_reply(NOT_FOUND_REPLY, send, scope["method"] == "HEAD")
            return
        method: str = scope["method"]
        if path in self.health_paths and method in ("GET", "HEAD"):
            self._count((self.responder.service_for(scope.get("server")).name, "health", "", 200), scope)
            reply = UNHEALTHY_REPLY if self.responder.render_failing else HEALTH_REPLY
            await send_reply(reply, send, method == "HEAD")
            return
        await self._answer_in_full(scope, receive, send, RequestFacts.from_scope_headers(scope["headers"]))

    def on_admin_listener(self, scope: Scope) -> bool:
        """Whether the connection came in on the admin listener (its port, or the Unix socket)."""
        if not self._admin_listener:
            return False
        server = scope.get("server")
        if server is None:
            return self.admin_socket
        return bool(server[1] == self.admin_port)

    async def _answer_in_full(self, scope: Scope, receive: Receive, send: Send, facts: RequestFacts) -> None:
        """The 503 worked out step by step (or a preflight from an allowed origin, which Starlette answers)."""
        if self.cors is not None and is_preflight(scope) and self._allowed(facts.origin):
            await NoStore(self.cors)(scope, receive, send)  # rare, and never cached
            return
        asked = self._asked(scope["path"], scope["query_string"], facts)
        answer = await self._prepare(scope, facts, asked, self._tracker.snapshot())
        self._count(answer.counted, scope)
        await send(answer.start())
        await send({"type": "http.response.body", "body": answer.body})

    def _allowed(self, origin: bytes | None) -> bool:
        """Is `origin` one CORS answers for (MAINT_CORS_ORIGINS)?"""
        return self.cors is not None and origin is not None and self.cors.is_allowed_origin(origin.decode("latin-1"))

    async def _prepare(
        self, scope: Scope, facts: RequestFacts, asked: Asked, snapshot: Snapshot, encoded: bool = False
    ) -> Answer:
        """The 503 for this request, made from `snapshot`; for an allowed origin, with the headers Starlette's
        CORSMiddleware adds.

        The middleware's output depends only on the reply and the Origin, so it runs once per reply and
        origin and its result is kept, instead of wrapping `send` on every request. `encoded` (the fast path,
        whose answers are sent many times) adds the headers' lines for the wire (wire.py).
        """
        service, choice, reply = self.responder.answer(scope.get("server"), asked, snapshot)
        cors = self.cors
        if cors is not None and self._allowed(facts.origin):
            assert facts.origin is not None
            # With `*` the decorated reply is the same for every Origin: one entry, not one per Origin sent.
            key = (service.name, service.kind, choice, b"*" if cors.allow_all_origins else facts.origin)
            cached = self._cors_replies.get(key)
            if cached is None or cached[0] is not reply:
                cached = self._cors_replies.put(key, (reply, await _decorate(cors, scope, reply)))
            reply = cached[1]
        body = b"" if scope["method"] == "HEAD" else reply.body
        counted = (service.name, choice.format, choice.locale, 503)
        tally = self.traffic.tally(counted) if self.traffic is not None else [0]
        # the fast path's alone: sent many times
        lines = head_lines(reply.headers, reply.status_line) if encoded else None
        start: Message | None = None
        if lines is not None:
            start = {"type": "http.response.start", "status": reply.status, "headers": lines.headers, HEAD_LINES: lines}
        body_message: Message = {"type": "http.response.body", "body": body}
        return Answer(reply.status, reply.headers, body, counted, tally, lines, reply.status_line, start, body_message)

    async def _run_lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        context = self.lifespan()
        try:
            await context.__aenter__()
        except Exception as error:
            await send({"type": "lifespan.startup.failed", "message": str(error)})
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        await context.__aexit__(None, None, None)
        if message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})

    async def _refuse_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message: Message = await receive()
        if message["type"] != "websocket.connect":
            return
        if "websocket.http.response" in scope.get("extensions", {}):
            facts = RequestFacts.from_scope_headers(scope["headers"])
            asked = self._asked(scope["path"], scope["query_string"], facts)
            reply = self.responder.answer(scope.get("server"), asked, self._tracker.snapshot())[2]
            await send({"type": "websocket.http.response.start", "status": 503, "headers": list(reply.headers)})
            await send({"type": "websocket.http.response.body", "body": reply.body})
            return
        # Without the extension a close before accept becomes a 403; accept and close with "try again later".
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": WS_TRY_AGAIN_LATER, "reason": "maintenance"})


def is_preflight(scope: Scope) -> bool:
    """A CORS preflight as Starlette's CORSMiddleware tells one: OPTIONS with Access-Control-Request-Method.

    Any other OPTIONS from an allowed origin is an actual request: it gets the 503 with the CORS headers
    (CORSMiddleware would otherwise pass it on to the app as a "simple" request).
    """
    if scope["method"] != "OPTIONS":
        return False
    return any(name == b"access-control-request-method" for name, _ in scope["headers"])


async def _decorate(cors: CORSMiddleware, scope: Scope, reply: Reply) -> Reply:
    """`reply` with the headers CORSMiddleware adds for this request's Origin."""
    captured: list[Message] = []

    async def capture(message: Message) -> None:
        captured.append(message)

    await cors({**scope, "maintenance_shim.reply": reply}, _never_receive, capture)
    return Reply(reply.status, list(captured[0]["headers"]), reply.body, reply.status_line)


async def _send_stashed_reply(scope: Scope, receive: Receive, send: Send) -> None:
    await send_reply(scope["maintenance_shim.reply"], send, head=False)


async def _never_receive() -> Message:
    raise RuntimeError("the catch-all never reads the request body")


class NoStore:
    """Adds `Cache-Control: no-store` to every reserved-path answer that has none (errors included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_no_store)


def cors_middleware(app: ASGIApp, origins: list[str]) -> CORSMiddleware:
    """Starlette's CORSMiddleware with the shim's policy: any method and header, Retry-After exposed."""
    return CORSMiddleware(
        app,
        allow_origins=origins,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["Retry-After", "Content-Language", "X-Should-Retry"],
        max_age=600,
    )


class CorsGate:
    """Hands requests from allowed origins to Starlette's CORSMiddleware; the rest go straight through.

    A preflight from an origin that is not allowed gets the ordinary answer, not CORSMiddleware's 400.
    """

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = cors_middleware(app, origins)
        self.preflight = NoStore(self.cors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            origin = RequestFacts.from_scope_headers(scope["headers"]).origin
            if origin is not None and self.cors.is_allowed_origin(origin.decode("latin-1")):
                handler = self.preflight if is_preflight(scope) else self.cors
                await handler(scope, receive, send)
                return
        await self.app(scope, receive, send)
