"""The Python floor: a raw ASGI app replaying captured replies byte for byte under the shim's uvicorn settings.

Usage: python bench/raw_floor.py --port PORT --replies FILE

FILE is JSON written by bench/run.py: {"routes": [[path_prefix, reply], ...]} where reply is
{"status": int, "headers": [[name, value], ...] (latin-1), "body_b64": str}. The first route whose prefix
starts the request path wins, so the floor does one prefix test per request and nothing else.
"""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Start = dict[str, Any]
Route = tuple[str, Start, dict[str, Any]]


def load_routes(path: Path) -> list[Route]:
    """Prefix -> ready-made http.response.start and http.response.body messages."""
    data = json.loads(path.read_text())
    routes: list[Route] = []
    for prefix, reply in data["routes"]:
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in reply["headers"]]
        start = {"type": "http.response.start", "status": int(reply["status"]), "headers": headers}
        body = {"type": "http.response.body", "body": base64.b64decode(reply["body_b64"])}
        routes.append((prefix, start, body))
    return routes


class Replay:
    """Answers every HTTP request with the captured reply of the first matching prefix; the body is never read."""

    def __init__(self, routes: list[Route]) -> None:
        if not routes:
            raise ValueError("no routes to replay")
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        route = next((item for item in self.routes if path.startswith(item[0])), self.routes[-1])
        # uvicorn does not mutate the messages it is sent, so the same dicts serve every request.
        await send(route[1])
        await send(route[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--replies", type=Path, required=True)
    args = parser.parse_args()
    uvicorn.run(
        Replay(load_routes(args.replies)),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        proxy_headers=False,  # as the shim: no ProxyHeadersMiddleware in front of the app
        lifespan="off",
        workers=1,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
