"""An answer's header lines, checked and encoded once for the many times it is sent.

uvicorn checks every header of every response against two regular expressions, lowercases its name and
joins it into the head, in a Python loop: for the catch-all's 503 (14 to 17 headers, a Content-Security-
Policy among them) that loop was about a third of the server's instructions per request, its regular
expressions alone a tenth (measured with callgrind, bench/instructions.py). The catch-all's answers are
the same bytes request after request, so the loop's work is done here once per answer, with uvicorn's own
expressions and rules, and `protocol.WholeAnswerCycle` writes the result in uvicorn's place when the
`http.response.start` carries it.

Headers that change the connection's state (Connection, Transfer-Encoding), a missing or repeated
Content-Length, or a header uvicorn would refuse give no `HeadLines`: such an answer goes through
uvicorn's loop as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

try:  # uvicorn's own expressions: what its loop refuses, this refuses (contract.py names them)
    from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE

    _CHECKS: tuple[re.Pattern[bytes], re.Pattern[bytes]] | None = (HEADER_RE, HEADER_VALUE_RE)
except ImportError:  # a uvicorn without them: no answer gets lines, every head goes through uvicorn's loop
    _CHECKS = None

# The http.response.start key that carries an answer's HeadLines (servers ignore keys they do not know).
HEAD_LINES = "maintenance_shim.head_lines"
# ... and the one that carries its own status line (reason.py) on an answer without HeadLines.
STATUS_LINE_KEY = "maintenance_shim.status_line"

RawHeaders = tuple[tuple[bytes, bytes], ...]


class HeadLines(NamedTuple):
    """`headers` as uvicorn writes them (b"name: value\\r\\n" each, names lowercased), and the length
    their Content-Length declares, and the answer's own status line (None: uvicorn's). Sent only with this
    very tuple as the message's headers: anything that replaced them on the way gets uvicorn's loop."""

    headers: RawHeaders
    block: bytes
    content_length: int
    status_line: bytes | None = None


def head_lines(headers: Iterable[tuple[bytes, bytes]], status_line: bytes | None = None) -> HeadLines | None:
    """The lines uvicorn's loop would write for `headers`, or None where that loop must see them."""
    kept = tuple(headers)
    lines = encode(kept)
    if lines is None:
        return None
    block, length = lines
    return None if length is None else HeadLines(kept, block, length, status_line)


def encode(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes, int | None] | None:
    """`headers` encoded as uvicorn's loop encodes them, with their Content-Length (None if they have
    none); None for a header uvicorn would refuse, or one that changes the connection's state."""
    if _CHECKS is None:
        return None
    header_re, value_re = _CHECKS
    parts: list[bytes] = []
    length: int | None = None
    for name, value in headers:
        if header_re.search(name) or value_re.search(value):
            return None
        name = name.lower()
        if name == b"content-length":
            if length is not None:
                return None
            try:
                length = int(value.decode())  # as uvicorn reads it
            except (UnicodeDecodeError, ValueError):
                return None
            if length < 0:
                return None
        elif name in (b"connection", b"transfer-encoding"):
            return None
        parts.append(b"%s: %s\r\n" % (name, value))
    return b"".join(parts), length
