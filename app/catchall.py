"""The public ASGI app: reserved paths go to FastAPI, everything else gets its 503 without reading the body."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.responder import COMMON_HEADERS, Reply, RequestFacts, Responder

RESERVED_PREFIX = "/_maintenance"
HEALTH_BODY = json.dumps({"status": "ok", "maintenance": True}).encode()
HEALTH_REPLY = Reply(
    200,
    [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(HEALTH_BODY)).encode()),
        *COMMON_HEADERS,
    ],
    HEALTH_BODY,
)
WS_TRY_AGAIN_LATER = 1013


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
            self._future = asyncio.get_running_loop().run_in_executor(None, self._factory)
        return self._future

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
    ) -> None:
        self.admin = admin
        self.responder = responder
        self.health_paths = frozenset(health_paths)
        self.lifespan = lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if path.startswith(RESERVED_PREFIX) and (
                len(path) == len(RESERVED_PREFIX) or path[len(RESERVED_PREFIX)] == "/"
            ):
                await self.admin(scope, receive, send)
                return
            method: str = scope["method"]
            if path in self.health_paths and method in ("GET", "HEAD"):
                await send_reply(HEALTH_REPLY, send, method == "HEAD")
                return
            responder = self.responder
            service = responder.service_for(scope.get("server"))
            facts = RequestFacts.from_scope_headers(scope["headers"])
            choice = responder.choose(path, scope["query_string"], facts, service)
            await send_reply(responder.maintenance_reply(service, choice), send, method == "HEAD")
        elif kind == "websocket":
            await self._refuse_websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._run_lifespan(receive, send)

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
            service = self.responder.service_for(scope.get("server"))
            facts = RequestFacts.from_scope_headers(scope["headers"])
            choice = self.responder.choose(scope["path"], scope["query_string"], facts, service)
            reply = self.responder.maintenance_reply(service, choice)
            await send({"type": "websocket.http.response.start", "status": 503, "headers": list(reply.headers)})
            await send({"type": "websocket.http.response.body", "body": reply.body})
            return
        # Without the extension a close before accept becomes a 403; accept and close with "try again later".
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": WS_TRY_AGAIN_LATER, "reason": "maintenance"})


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


class CorsGate:
    """Hands requests from allowed origins to Starlette's CORSMiddleware; the rest go straight through.

    A preflight from an origin that is not allowed gets the ordinary 503, not CORSMiddleware's 400.
    """

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Retry-After", "Content-Language"],
            max_age=600,
        )
        self.preflight = NoStore(self.cors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"origin":
                    if self.cors.is_allowed_origin(value.decode("latin-1")):
                        handler = self.preflight if scope["method"] == "OPTIONS" else self.cors
                        await handler(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)
