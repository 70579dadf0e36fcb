"""A request that arrived whole in one read, whose answer the app has ready (`answer_now`), is answered by the
protocol right after the read is parsed, with no task (app/uvicorn_ext/protocol.py): on a real uvicorn, the
bytes must be the ones the app itself sends, and everything else must still run the app."""

from __future__ import annotations

import re
import socket
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from tests.support import start_server

BODY = b'{"detail":"back in 5 minutes"}'
APP = """
import sys
import uvicorn
from maintenance_shim.uvicorn_ext.protocol import Limits, protocol_class
from maintenance_shim.uvicorn_ext.wire import HEAD_LINES, head_lines

BODY = {body!r}
OWN = b"HTTP/1.1 503 Service Unavailable: back in 5 minutes\\r\\n"
LINES = head_lines([(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY)),
                    (b"retry-after", b"300"), (b"cache-control", b"no-store")], OWN)
COUNTS = {{"now": 0, "app": 0}}


def answer_now(scope):
    if scope["path"] != "/ready":  # /app, /count: the app's
        return None
    COUNTS["now"] += 1
    return 503, LINES, b"" if scope["method"] == "HEAD" else BODY


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/count":
        body = b"%d %d" % (COUNTS["now"], COUNTS["app"])
        length = [(b"content-length", b"%d" % len(body))]
        await send({{"type": "http.response.start", "status": 200, "headers": length}})
        await send({{"type": "http.response.body", "body": body}})
        return
    COUNTS["app"] += 1
    await send({{"type": "http.response.start", "status": 503, "headers": LINES.headers, HEAD_LINES: LINES}})
    await send({{"type": "http.response.body", "body": BODY}})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http=protocol_class(Limits(), answer_now),
            lifespan="off", access_log=False, server_header=False, log_level="warning")
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    script = tmp_path_factory.mktemp("answer_now") / "app.py"
    script.write_text(textwrap.dedent(APP.format(body=BODY)))
    server = start_server(lambda ports: [sys.executable, str(script), str(ports[0])], script.with_suffix(".log"),
                          what="the answer_now test's uvicorn")
    try:
        yield server.port
    finally:
        server.stop()


def counts(port: int) -> tuple[int, int]:
    """(answered by answer_now, answered by the app) so far."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /count HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    now, app = received.rpartition(b"\r\n\r\n")[2].split()
    return int(now), int(app)


def exchange(port: int, parts: list[bytes], heads: int, bodies: int) -> tuple[bytes, bool]:
    """Send `parts` (a pause between them), read `heads` heads and `bodies` bodies (Date masked), and
    whether the server closed the connection after them."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for number, part in enumerate(parts):
            if number:
                time.sleep(0.2)  # sleep-ok: the next part in a read of its own; asserted: the bytes and counts
            sock.sendall(part)
        received = b""
        while received.count(b"\r\n\r\n") < heads or received.count(BODY) < bodies:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        sock.settimeout(0.5)
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
    return re.sub(rb"date: [^\r]+", b"date: -", received), closed


REQUESTS = {
    "keep-alive": ([b"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"], 1, 1, (1, 0)),
    "connection-close": ([b"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"], 1, 1, (1, 0)),
    "http-1.0": ([b"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n"], 1, 1, (1, 0)),
    "head": ([b"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n"], 1, 0, (1, 0)),
    "post-with-its-body": ([b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"], 1, 1, (1, 0)),
    # the body in a read of its own: the app runs (it may read it)
    "post-body-after": ([b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n", b"{}"], 1, 1, (0, 1)),
    # three in one read: each answered at once, in order
    "pipelined": ([b"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n" * 3], 3, 3, (3, 0)),
}


@pytest.mark.parametrize("name", list(REQUESTS))
def test_answered_at_once_or_by_the_app_the_bytes_are_the_apps(server: int, name: str) -> None:
    parts, heads, bodies, (by_now, by_app) = REQUESTS[name]
    before = counts(server)
    ready = exchange(server, [part.replace(b"{path}", b"/ready") for part in parts], heads, bodies)
    after = counts(server)
    assert (after[0] - before[0], after[1] - before[1]) == (by_now, by_app)
    own = exchange(server, [part.replace(b"{path}", b"/app") for part in parts], heads, bodies)
    assert counts(server)[0] == after[0]  # the app's own path never answered at once
    assert ready == own  # the bytes, and whether the connection was closed after them
    answer, closed = ready
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable: back in 5 minutes\r\ndate: -\r\n")
    assert closed == (name in ("connection-close", "http-1.0")), answer
