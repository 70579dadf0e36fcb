"""Raw HTTP/1.x byte streams for fuzzing the shim (tests/uvicorn_ext/test_fuzz.py, bench/fuzz_raw.py): Hypothesis builds
one to three requests from plausible and random parts (methods, targets, versions, header fields with
the framing ones among them, bodies, chunked bodies with wrong sizes, bare LF or CR line ends), joins
them on one connection, then mutates the bytes as radamsa would (flip, insert, delete or repeat a slice).
`exchange` sends them to a listener on loopback and reads what comes back; `bad_statuses` names the
answers the shim must never give, directly or through a proxy: any 5xx but 503.
"""

from __future__ import annotations

import re
import select
import socket
from contextlib import suppress

from hypothesis import strategies as st

METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE", b"PRI",
           b"get", b"PROPFIND"]
TARGETS = [b"/", b"*", b"/gallery?page=2", b"/api/v1/txt2img", b"/_maintenance/status", b"/_maintenance/health",
           b"/_maintenance/progress", b"/_maintenance/metrics", b"/_maintenance/docs", b"/healthz",
           b"/?format=json&lang=ja", b"/?format=html&lang=%00", b"http://studio.example.com/x", b"//..%2f..",
           b"/%ff%fe", b"/" + b"a" * 2000]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.2",
            b"HTTP/11", b"http/1.1", b""]
NAMES = [b"Host", b"Connection", b"Upgrade", b"Expect", b"Accept",
         b"Accept-Language", b"Cookie", b"Origin", b"Access-Control-Request-Method",
         b"Access-Control-Request-Headers", b"Sec-WebSocket-Key", b"Sec-WebSocket-Version", b"Authorization",
         b"Range", b"If-None-Match", b"X-Forwarded-For", b"Content-Type", b"Content-Encoding", b"TE"]
VALUES = [b"studio.example.com", b"video-api.example.com", b"chunked", b"gzip, chunked", b"chunked, identity",
          b"close", b"keep-alive", b"Upgrade", b"websocket", b"h2c", b"100-continue", b"0", b"-1", b"5",
          b"18446744073709551616", b" 7", b"ja;q=0.9,*;q=0.1", b"zh-Hant-TW", b"x" * 300, b"lang=ja; x=1",
          b"https://studio.example.com", b"null", b"dGhlIHNhbXBsZSBub25jZQ==", b"13", b"Bearer wrong-token",
          b"bytes=0-1", b"text/html,application/json;q=0.9", b"application/json", b"*/*"]

_BYTES = st.binary(max_size=48)
_TEXT = st.text(max_size=32).map(lambda text: text.encode("utf-8", "surrogatepass"))
_VISIBLE = st.binary(max_size=48).map(lambda b: bytes(c for c in b if 0x21 <= c < 0x7F or c >= 0x80))
_ASCII = st.binary(max_size=48).map(lambda b: bytes(c for c in b if 0x21 <= c < 0x7F))
_ODD_EOL = st.sampled_from([b"\n", b"\r", b"\r\r\n"])


def _mostly(draw: st.DrawFn, plausible: st.SearchStrategy[bytes], wild: st.SearchStrategy[bytes],
            odds: int = 20) -> bytes:
    """The plausible part, or one time in `odds` the wild one: most requests get past the parser."""
    # Hypothesis favours the smallest values (0, the first of a list): the wild side is the rare one.
    return draw(wild) if draw(st.integers(0, odds - 1)) == odds - 1 else draw(plausible)


@st.composite
def _chunked(draw: st.DrawFn) -> bytes:
    parts = []
    for data in draw(st.lists(st.binary(max_size=40), max_size=3)):
        size = draw(st.sampled_from([len(data)] * 4 + [len(data) + 1, max(len(data) - 1, 0), 0x7FFFFFFF]))
        extension = draw(st.sampled_from([b""] * 4 + [b";a=b", b" ", b";" + b"x" * 100]))
        parts.append(b"%x%s\r\n%s\r\n" % (size, extension, data))
    trailer = draw(st.sampled_from([b""] * 4 + [b"X-Trailer: 1\r\n", b"Content-Length: 5\r\n"]))
    return b"".join(parts) + draw(st.sampled_from([b"0\r\n" + trailer + b"\r\n"] * 4 + [b"", b"0\r\n"]))


@st.composite
def request(draw: st.DrawFn) -> bytes:
    """One request: mostly well-formed with odd values, now and then wild in one part or another."""
    eol = _mostly(draw, st.just(b"\r\n"), _ODD_EOL)
    method = _mostly(draw, st.sampled_from(METHODS), _BYTES)
    target = _mostly(draw, st.sampled_from(TARGETS) | _ASCII.map(lambda b: b"/" + b), _TEXT.map(lambda b: b"/" + b))
    version = _mostly(draw, st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0"]), st.sampled_from(VERSIONS))
    fields = []
    host = draw(st.sampled_from([b"studio.example.com", b"video-api.example.com"]))
    fields.append((b"Host", _mostly(draw, st.just(host), _VISIBLE | _TEXT, odds=10)))
    for _ in range(draw(st.integers(0, 8))):
        framing_names = st.sampled_from([b"Content-Length", b"Transfer-Encoding"])
        name = _mostly(draw, st.sampled_from(NAMES), _BYTES | framing_names, odds=60)
        value = _mostly(draw, st.sampled_from(VALUES) | _VISIBLE, _BYTES | _TEXT, odds=60)
        fields.append((name, value))
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    framing = _mostly(draw, st.just(framing.encode()), st.sampled_from([b"both", b"wrong-length"]), odds=10).decode()
    body = b""
    if framing in ("length", "wrong-length"):
        body = draw(st.sampled_from([b'{"step": 1}', b'{"step": 5, "total": 3}']) | st.binary(max_size=200))
        off = draw(st.integers(-3, 3)) if framing != "length" else 0
        fields.append((b"Content-Length", b"%d" % (len(body) + off)))
    elif framing in ("chunked", "both"):
        body = draw(_chunked())
        fields.append((b"Transfer-Encoding", b"chunked"))
        if framing == "both":
            fields.append((b"Content-Length", b"%d" % len(body)))
    head = b" ".join(part for part in (method, target, version) if part) + eol
    separator = _mostly(draw, st.just(b": "), st.sampled_from([b":", b" : ", b":\t", b"::"]), odds=10)
    head += b"".join(name + separator + value + eol for name, value in fields)
    return head + eol + body


@st.composite
def connection_bytes(draw: st.DrawFn) -> bytes:
    """One to three requests on one connection, then, four times in nine, up to three radamsa-like mutations
    of the bytes (flip a bit, insert, delete or repeat a slice)."""
    data = bytearray(b"".join(draw(st.lists(request(), min_size=1, max_size=3))))
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 0, 1, 1, 2, 3]))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        span = draw(st.integers(1, 16))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "repeat"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from([b"\r\n", b"\x00", b"\xff", b" ", b":", b"\r\n\r\n"]) | _BYTES)
        elif kind == "delete":
            del data[at:at + span]
        else:
            data[at:at] = data[at:at + span] * draw(st.integers(2, 64))
    return bytes(data)


def exchange(port: int, data: bytes, first_wait: float = 0.05, quiet: float = 0.02, close_wait: float = 3.0) -> bytes:
    """Send `data` on a fresh connection and return what comes back: the answers that come within
    `first_wait` and while more keep coming, then (the peer still waiting for more) our FIN and whatever
    the peer sends before it closes. Bounded in time whatever the peer does."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=close_wait) as sock:
        with suppress(OSError):  # answered and closed before everything was sent
            sock.sendall(data)
        wait = first_wait
        closed = False
        while not closed and select.select([sock], [], [], wait)[0]:
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            closed = not chunk
            received += chunk
            wait = quiet
        if not closed:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            with suppress(OSError):
                while chunk := sock.recv(65536):
                    received += chunk
    return bytes(received)


_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def statuses(response: bytes) -> list[int]:
    """Every status line in what came back (bodies are the shim's pages and JSON: no status lines)."""
    return [int(code) for code in _STATUS.findall(response)]


def bad_statuses(response: bytes, proxy: bytes | None = None) -> list[int]:
    """The answers the shim must never give: any 5xx but 503. Through a proxy (`proxy`: its Server header
    value, e.g. b"nginx"), the proxy's own answers are its business (505 for HTTP/2.0 on a cleartext
    port, 501 for a transfer coding it does not know) except those that say the shim failed it: 502, 504."""
    bad = []
    matches = list(_STATUS.finditer(response))
    ends = [match.start() for match in matches[1:]] + [len(response)]
    for match, end in zip(matches, ends, strict=False):  # no answer at all: no ends to pair
        answer = response[match.start():end]
        code = int(match.group(1))
        head = answer.split(b"\r\n\r\n", 1)[0].lower()
        own = proxy is not None and b"\r\nserver: " + proxy.lower() in head
        if code >= 500 and code != 503 and (not own or code in (502, 504)):
            bad.append(code)
    return bad
