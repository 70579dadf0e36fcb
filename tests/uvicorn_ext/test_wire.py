"""The catch-all's answers have their head written from lines encoded once (app/uvicorn_ext/wire.py) instead of
uvicorn's per-header loop: the bytes on the wire must be exactly what that loop writes, on a real uvicorn."""

from __future__ import annotations

import re
import socket
import sys
import textwrap
from collections.abc import Iterator

import pytest
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE

from maintenance_shim.uvicorn_ext.wire import HeadLines, encode, head_lines
from tests.support import start_server

HEADERS = [
    (b"Content-Type", b"application/json"),
    (b"content-length", b"17"),
    (b"Retry-After", b"120"),
    (b"Vary", b"Accept, Accept-Language, Cookie, Origin"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
]
BODY = b'{"detail":"wait"}'
OWN = b"HTTP/1.1 503 Service Unavailable: video back in about 45 minutes (15:30 UTC)\r\n"


def uvicorns_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    """What uvicorn's loop (httptools_impl.RequestResponseCycle.send) writes for these headers."""
    parts = []
    for name, value in headers:
        assert not HEADER_RE.search(name) and not HEADER_VALUE_RE.search(value)
        parts += [name.lower(), b": ", value, b"\r\n"]
    return b"".join(parts)


def test_lines_are_uvicorns_encoding_with_the_declared_length() -> None:
    lines = head_lines(HEADERS)
    assert isinstance(lines, HeadLines)
    assert lines.block == uvicorns_lines(HEADERS)
    assert lines.content_length == 17
    assert lines.headers == tuple(HEADERS)


@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-type", b"text/plain")],  # no Content-Length: uvicorn picks chunked or not
        [(b"content-length", b"1"), (b"Content-Length", b"1")],  # repeated
        [(b"content-length", b"x")],
        [(b"content-length", b"-1")],
        [(b"content-length", b"1"), (b"Connection", b"close")],  # changes the connection's state
        [(b"content-length", b"1"), (b"transfer-encoding", b"chunked")],
        [(b"content-length", b"1"), (b"bad name", b"v")],  # uvicorn would refuse these two
        [(b"content-length", b"1"), (b"x-ok", b"line\r\nbreak")],
    ],
    ids=["no-length", "two-lengths", "bad-length", "negative", "connection", "chunked", "bad-name", "bad-value"],
)
def test_headers_uvicorns_loop_must_see_get_no_lines(headers: list[tuple[bytes, bytes]]) -> None:
    assert head_lines(headers) is None


def test_default_headers_encode_without_a_length() -> None:
    assert encode([(b"date", b"Tue, 01 Dec 2026 10:00:00 GMT")]) == (b"date: Tue, 01 Dec 2026 10:00:00 GMT\r\n", None)


APP = """
import sys
import uvicorn
from maintenance_shim.uvicorn_ext.protocol import Limits, WholeAnswerCycle, protocol_class
from maintenance_shim.uvicorn_ext.wire import HEAD_LINES, STATUS_LINE_KEY, head_lines

HEADERS = {headers!r}
BODY = {body!r}
LINES = head_lines(HEADERS)
OWN = {own!r}
OWN_LINES = head_lines(HEADERS, OWN)
WRITTEN = [0]  # heads the cycle wrote from their lines, for /written
_write = WholeAnswerCycle._write_known_head

def counted(self, start, head):
    done = _write(self, start, head)
    WRITTEN[0] += done
    return done

WholeAnswerCycle._write_known_head = counted

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/written":
        body = str(WRITTEN[0]).encode()
        length = [(b"content-length", b"%d" % len(body))]
        await send({{"type": "http.response.start", "status": 200, "headers": length}})
        await send({{"type": "http.response.body", "body": body}})
        return
    if scope["path"] == "/known":  # as the catch-all's fast path sends it
        start = {{"type": "http.response.start", "status": 503, "headers": LINES.headers, HEAD_LINES: LINES}}
    elif scope["path"] == "/known-own":  # the fast path with the answer's own status line
        start = {{"type": "http.response.start", "status": 503, "headers": OWN_LINES.headers, HEAD_LINES: OWN_LINES}}
    elif scope["path"] == "/plain-own":  # uvicorn's loop, the status line beside the headers
        start = {{"type": "http.response.start", "status": 503, "headers": list(HEADERS), STATUS_LINE_KEY: OWN}}
    elif scope["path"] == "/replaced":  # the lines, but headers something else put in their place
        start = {{"type": "http.response.start", "status": 503, "headers": list(HEADERS) + [(b"x-extra", b"1")],
                  HEAD_LINES: LINES}}
    else:  # uvicorn's loop
        start = {{"type": "http.response.start", "status": 503, "headers": list(HEADERS)}}
    await send(start)
    await send({{"type": "http.response.body", "body": BODY}})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http=protocol_class(Limits()), lifespan="off",
            access_log=False, server_header=False, log_level="warning")
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    script = tmp_path_factory.mktemp("wire") / "app.py"
    script.write_text(textwrap.dedent(APP.format(headers=HEADERS, body=BODY, own=OWN)))
    server = start_server(lambda ports: [sys.executable, str(script), str(ports[0])], script.with_suffix(".log"),
                          what="the wire test's uvicorn")
    try:
        yield server.port
    finally:
        server.stop()


def written(port: int) -> int:
    """How many heads the test server's cycles wrote from their lines."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /written HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return int(received.rpartition(b"\r\n\r\n")[2])


def exchange(port: int, data: bytes, answers: int) -> tuple[bytes, bool]:
    """Send `data`, read `answers` whole answers (Date masked) and whether the server then closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        while received.count(BODY) < answers:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        sock.settimeout(0.5)
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
    return re.sub(rb"date: [^\r]+", b"date: -", received), closed


@pytest.mark.parametrize(
    ("request_head", "answers"),
    [
        (b"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n", 1),
        (b"GET {path} HTTP/1.1\r\nHost: x\r\n\r\nPOST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}", 2),
        (b"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 1),
        (b"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n", 1),
        (b"GET {path} HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", 1),
    ],
    ids=["keep-alive", "pipelined", "connection-close", "http-1.0", "http-1.0-keep-alive"],
)
def test_the_written_head_is_byte_for_byte_uvicorns(server: int, request_head: bytes, answers: int) -> None:
    before = written(server)
    known = exchange(server, request_head.replace(b"{path}", b"/known").replace(b"{{}}", b"{}"), answers)
    assert written(server) == before + answers  # the lines were used
    loop = exchange(server, request_head.replace(b"{path}", b"/plain").replace(b"{{}}", b"{}"), answers)
    assert written(server) == before + answers
    assert known == loop  # the bytes, and whether the connection was closed after them
    answer, closed = known
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\ndate: -\r\n" + uvicorns_lines(HEADERS))
    assert (b"\r\nconnection: close\r\n\r\n" in answer) == closed


def test_headers_replaced_on_the_way_get_uvicorns_loop(server: int) -> None:
    before = written(server)
    answer, _ = exchange(server, b"GET /replaced HTTP/1.1\r\nHost: x\r\n\r\n", 1)
    assert b"\r\nx-extra: 1\r\n" in answer
    assert written(server) == before


def test_head_requests_keep_uvicorns_answer(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
        sock.sendall(b"HEAD /known HTTP/1.1\r\nHost: x\r\n\r\nGET /known HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while BODY not in received:
            chunk = sock.recv(65536)
            assert chunk
            received += chunk
    heads = re.findall(rb"HTTP/1\.1 503 [^\r]*\r\n(?:[^\r]+\r\n)*\r\n", received)
    assert len(heads) == 2 and heads[0] == heads[1]  # the HEAD answer: the same head, no body
    assert received.endswith(heads[1] + BODY)




@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_an_answers_own_status_line_replaces_uvicorns_and_nothing_else(server: int, method: str) -> None:
    """The reason phrase (reason.py), on the fast path and through uvicorn's loop, for GET and for HEAD."""
    stock = b"HTTP/1.1 503 Service Unavailable\r\n"
    request_head = f"{method} {{path}} HTTP/1.1\r\nHost: x\r\n\r\n{method} /plain HTTP/1.1\r\nHost: x\r\n\r\n"
    heads = []
    for path in ("/known-own", "/plain-own"):
        with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
            sock.sendall(request_head.format(path=path).encode())
            received = b""
            while len(re.findall(rb"\r\n\r\n", received)) < 2 or (method == "GET" and received.count(BODY) < 2):
                chunk = sock.recv(65536)
                assert chunk, received
                received += chunk
        received = re.sub(rb"date: [^\r]+", b"date: -", received)
        own, plain = re.findall(rb"HTTP/1\.1 503 [^\r]*\r\n(?:[^\r]+\r\n)*\r\n", received)
        assert own.startswith(OWN) and plain.startswith(stock)
        assert own[len(OWN):] == plain[len(stock):]  # the same headers, byte for byte
        heads.append(own)
    assert heads[0] == heads[1]
