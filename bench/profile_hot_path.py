"""Where the shim's per-request time goes: its ASGI app called in-process with fake scope/receive/send.

Usage: python bench/profile_hot_path.py [--requests 20000] [--cprofile]

No sockets and no uvicorn: this times only the application's own work per request (negotiation, the
reply cache, CORS, the ASGI messages), step by step, with the same request headers as bench/run.py.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

from run import API, BROWSER, SHIM_ENV, Request  # noqa: E402


def scope_for(request: Request, port: int = 8080) -> dict[str, Any]:
    path, _, query = request.path.partition("?")
    headers = [(b"host", f"127.0.0.1:{port}".encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in request.headers]
    if request.body:
        headers.append((b"content-length", str(len(request.body)).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "server": ("127.0.0.1", port),
        "client": ("127.0.0.1", 50000),
        "state": {},
        "extensions": {"http.response.trailers": {}},
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: MutableMapping[str, Any]) -> None:
    return None


def per_call_us(fn: Callable[[], Any], n: int) -> float:
    for _ in range(min(n, 2000)):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


async def per_request_us(app: Callable[..., Awaitable[None]], scope: dict[str, Any], n: int) -> float:
    for _ in range(min(n, 2000)):
        await app(dict(scope), receive, send)
    start = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--cprofile", action="store_true", help="also print cProfile's top functions")
    args = parser.parse_args()
    for key in [k for k in os.environ if k.startswith("MAINT_")]:
        del os.environ[key]
    os.environ.update(SHIM_ENV)

    from maintenance_shim.main import create_app
    from maintenance_shim.settings.shim import load_settings
    from maintenance_shim.web.catchall import MaintenanceApp
    from maintenance_shim.web.negotiate import RequestFacts, query_params

    settings = load_settings(None, environ=SHIM_ENV, overrides={"listen": ["127.0.0.1:8080=studio"]})
    app = create_app(settings)
    if not isinstance(app, MaintenanceApp):
        raise SystemExit(f"unexpected app shape: {type(app)}")
    responder = app.responder
    n = args.requests

    async def measure() -> None:
        for request in (BROWSER, API):
            await measure_one(request)

    async def measure_one(request: Request) -> None:
        scope = scope_for(request)
        raw = scope["headers"]
        facts = RequestFacts.from_scope_headers(raw)
        service = responder.service_for(scope["server"])
        negotiator = responder.negotiator
        asked = negotiator.asked(scope["path"], scope["query_string"], facts)
        choice = negotiator.choose(asked, service.default_format)
        print(f"\n{request.name}: {request.method} {request.path} -> {choice}")
        rows = [
            ("whole app (bench settings, CORS on)", await per_request_us(app, scope, n)),
            ("  RequestFacts.from_scope_headers", per_call_us(lambda: RequestFacts.from_scope_headers(raw), n)),
            ("  query_params", per_call_us(lambda: query_params(scope["query_string"]), n)),
            (
                "  Negotiator.asked (the negotiation step)",
                per_call_us(lambda: negotiator.asked(scope["path"], scope["query_string"], facts), n),
            ),
            (
                "  Negotiator.choose (cache hit)",
                per_call_us(lambda: negotiator.choose(asked, service.default_format), n),
            ),
            (
                "  Responder.maintenance_reply (cache hit)",
                per_call_us(lambda: responder.maintenance_reply(service, choice), n),
            ),
            ("  Tracker.snapshot", per_call_us(responder.tracker.snapshot, n)),
        ]
        for label, us in rows:
            print(f"  {label:45} {us:7.2f} us")
        if args.cprofile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(n):
                await app(dict(scope), receive, send)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(14)

    asyncio.run(measure())


if __name__ == "__main__":
    main()
