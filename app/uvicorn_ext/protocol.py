"""uvicorn's httptools protocol with the limits a server facing the internet needs.

httptools has no limit of its own on the request head, uvicorn none on the time it takes to arrive or on
the number of connections, and a body the app never reads is parsed for as long as the client sends it.
`ShimHttpProtocol` adds, for a few attribute updates and one Python call per request:

- a byte budget for the request line and header fields (431, or 414 for a URL that takes most of it)
  and a cap on their number (431): bytes are counted as they arrive, before httptools buffers them;
- a deadline for each request's head, counted from its first byte (from the connection's start for the
  first request), and for a body the app waits for: 408 if part of a head arrived, a silent close if
  nothing did; `ConnectionGuard.sweep` checks them every 0.2 s against a clock of that grain, so they
  hold to within a few tenths of a second;
- a per-process connection limit: past it idle connections are closed to make room (lingering ones, then
  those in the middle of a head, then those that sent nothing, then kept-alive ones between requests, the
  oldest first within each: `eviction_rank`), and only if none is idle is the new one refused; logged;
- `Connection: close` on the answer to a request whose body is still on its way (chunked, declared
  larger than SMALL_BODY_BYTES, or behind `Expect: 100-continue`), then a lingering close: FIN, at most
  LINGER_SECONDS and LINGER_BYTES of discarded input, close; so the client reads the 503 instead of a
  reset, and an endless upload cannot hold the connection. A body the app reads is capped at
  MAX_BODY_BYTES (413);
- a WebSocket upgrade only for a handshake uvicorn's WebSocket protocol will accept; anything else
  (another method, a body, `Connection: close`, a bad key) is an ordinary request: the app's 503;
- an answer's head and body in one write (`WholeAnswerCycle`; handed to the transport together, one
  `writev` under uvloop, without copying the body behind the head): a serving process killed mid-answer has
  sent all of it or none of it, and none is what a proxy retries (nginx's `proxy_next_upstream`); a
  head alone would reach the client as a cut-short answer (measured under load: 15 in 80 kill -9
  without this, 0 in 200 with it);
- the head of a catch-all answer written from its header lines, checked and encoded once (wire.py), where
  uvicorn would check, lowercase and join every header of every answer in a Python loop: a third fewer
  instructions per request (bench/instructions.py), 1.3x to 1.4x the requests per second side by side;
- a request that arrived whole in one read (a small body included), whose answer the app has made already
  (`answer_now`, the catch-all's cache), answered as soon as it is parsed: head and body in one write, with
  no request-response cycle, no task and no ASGI message (the app counts it as it would its own); requests
  pipelined in one read each in turn. Anything else (a body still on its way or over SMALL_BODY_BYTES, a
  request queued behind one the app is answering, the app's other paths, a cache miss, a client not
  reading its answers) gets the cycle uvicorn would have made, and the app, as usual.

Refusals are logged by kind, the first at once, then at most every REPORT_EVERY seconds with a count.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, cast

import httptools
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from .limits import Limits
from .wire import HEAD_LINES, STATUS_LINE_KEY, HeadLines, encode

if TYPE_CHECKING:
    from uvicorn._types import ASGISendEvent

logger = logging.getLogger("maintenance_shim")

LINGER_SECONDS = 0.5  # after a response to an unfinished upload: FIN, discard input this long, then close
LINGER_BYTES = 1024 * 1024  # ... but read no more than this meanwhile (then let TCP flow control hold it)
# A declared body up to this size that is still on its way when the answer starts is read and dropped on a
# kept-alive connection (http.client and urllib3 send headers and body in separate writes); anything
# larger, or chunked, gets `Connection: close`.
SMALL_BODY_BYTES = 65536
MAX_BODY_BYTES = 1024 * 1024  # a body the app reads (only /_maintenance/progress does) is never larger
REPORT_EVERY = 10.0  # seconds between log lines about refused requests and connections

# The app's answer to a request's scope when it has one ready (status, its HeadLines, the body: empty for
# HEAD), counted by the app; None for "run the app". MaintenanceApp.answer_now.
AnswerNow = Callable[[Any], "tuple[int, HeadLines, bytes] | None"]

_STATUS_TEXT = {
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}


def _plain_response(status: int) -> bytes:
    body = _STATUS_TEXT[status] + b"\n"
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, _STATUS_TEXT[status]),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"cache-control: no-store\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


_RESPONSES = {status: _plain_response(status) for status in _STATUS_TEXT}
_TRAILING_SPACE = (b" ", b"\t")


class _Refuse(Exception):
    """Raised inside a parser callback to stop parsing; the request gets `status`."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class ConnectionGuard:
    """Shared by every connection of one process: the limits, the deadline sweep and the log lines.

    Each kind of refusal is logged at once the first time, then at most every REPORT_EVERY seconds with
    the count since, so that a flood cannot flood the log.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.now = 0.0  # the loop's time at the last sweep or connection: deadlines need no finer clock
        self._pending: Counter[str] = Counter()
        self._logged: dict[str, float] = {}
        conns = f"connection limit reached (MAINT_MAX_CONNECTIONS, {limits.max_connections} in this process)"
        head = f"MAINT_HEADER_TIMEOUT ({limits.header_timeout:g} s)"
        self._messages = {
            "evicted": (logging.WARNING, f"{conns}: idle connections closed to make room, the oldest first"),
            "refused": (logging.WARNING, f"{conns} with no connection idle: new connections refused"),
            "408": (logging.WARNING, f"requests answered 408, their head took longer than {head}"),
            "413": (logging.WARNING, f"requests answered 413, a body over {MAX_BODY_BYTES} bytes"),
            "414": (
                logging.WARNING,
                f"requests answered 414, a URL near MAINT_MAX_HEADER_BYTES ({limits.max_header_bytes})",
            ),
            "431": (
                logging.WARNING,
                f"requests answered 431, more than MAINT_MAX_HEADER_BYTES ({limits.max_header_bytes}) bytes "
                f"or MAINT_MAX_HEADERS ({limits.max_headers}) fields of head",
            ),
            "400": (logging.WARNING, "requests answered 400, not valid HTTP/1.1"),
            "idle": (logging.INFO, f"connections closed, nothing sent within {head}"),
            "slow-body": (logging.WARNING, f"connections closed, a request body took longer than {head}"),
        }

    def note(self, kind: str, now: float, count: int = 1) -> None:
        """Count one refusal of `kind`; log it now unless that kind was logged less than REPORT_EVERY ago."""
        self._pending[kind] += count
        last = self._logged.get(kind)
        if last is None or now - last >= REPORT_EVERY:
            self._flush(kind, now)

    def flush_all(self, now: float) -> None:
        """Log every count still waiting (at shutdown)."""
        for kind in list(self._pending):
            self._flush(kind, now)

    def _flush(self, kind: str, now: float) -> None:
        count = self._pending.pop(kind, 0)
        if not count:
            return
        last = self._logged.get(kind)
        self._logged[kind] = now
        level, message = self._messages[kind]
        since = f" in the last {now - last:.0f} s" if last is not None and now - last < 2 * REPORT_EVERY else ""
        logger.log(level, "%s: %d%s", message, count, since)

    def describe(self) -> str:
        limits = self.limits
        return (
            f"{limits.max_connections} connections, {limits.max_header_bytes} header bytes, "
            f"{limits.max_headers} header fields, {limits.header_timeout:g} s header timeout"
        )

    def sweep(self, connections: Iterable[Any], now: float) -> None:
        """Act on every connection whose request deadline has passed."""
        self.now = now
        expired = [
            conn
            for conn in connections
            if isinstance(conn, ShimHttpProtocol) and conn.deadline is not None and conn.deadline <= now
        ]
        for conn in expired:
            conn.deadline_passed()
        for kind in [kind for kind in self._pending if now - self._logged.get(kind, now) >= REPORT_EVERY]:
            self._flush(kind, now)

    def make_room(self, newcomer: ShimHttpProtocol, connections: Iterable[Any]) -> None:
        """Past the connection limit: close the oldest idle connections, or refuse the newcomer."""
        conns = [conn for conn in connections if not conn.transport.is_closing()]
        excess = len(conns) - self.limits.max_connections
        if excess <= 0:
            return
        idle = sorted(
            (conn for conn in conns if isinstance(conn, ShimHttpProtocol) and conn is not newcomer and conn.idle),
            key=lambda conn: conn.eviction_rank,
        )
        # Close a batch at once, so that a flood of connections does not rescan the set for each one.
        victims = idle[: max(excess, self.limits.max_connections // 64)]
        for conn in victims:
            conn.transport.close()
        now = newcomer.loop.time()
        if victims:
            self.note("evicted", now, len(victims))
        if len(victims) < excess:
            newcomer.transport.close()
            self.note("refused", now)


class _LingeringCloser:
    """Stands in for the transport in a request's RequestResponseCycle: its close() lingers.

    It holds its protocol weakly: the protocol holds the cycle and the cycle holds this, and a strong
    reference back would leave every such connection for the cyclic collector to find, long after it closed.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: ShimHttpProtocol) -> None:
        self._protocol = weakref.ref(protocol)

    def write(self, data: bytes) -> None:
        protocol = self._protocol()
        if protocol is not None:
            protocol.transport.write(data)

    def writelines(self, data: tuple[bytes, ...]) -> None:
        protocol = self._protocol()
        if protocol is not None:
            protocol.transport.writelines(data)

    def is_closing(self) -> bool:
        protocol = self._protocol()
        return protocol is None or protocol.transport.is_closing()

    def close(self) -> None:
        protocol = self._protocol()
        if protocol is not None:
            protocol.linger()


class _HeadFirst:
    """Stands in for a cycle's transport while it sends an answer: holds what uvicorn writes for the
    `http.response.start` (the head) and puts it in front of the first body write, so both leave in one
    write, before uvicorn's close or the next answer on the connection."""

    __slots__ = ("head", "holding", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.head = b""
        self.holding = True

    def write(self, data: bytes) -> None:
        if self.holding:
            self.head += data
            return
        head = self.head
        if head:
            self.head = b""
            # One call with both: the transport buffers them together (uvloop writes them with one writev),
            # without copying a page-sized body behind its head first.
            self.transport.writelines((head, data))
            return
        self.transport.write(data)

    def flush(self) -> None:
        if self.head:
            self.transport.write(self.head)
            self.head = b""

    def close(self) -> None:
        self.flush()
        self.transport.close()


def _own_status_line(start: Mapping[str, object]) -> bytes | None:
    """The status line an answer carries (its HeadLines', or beside its headers), None for uvicorn's."""
    lines = start.get(HEAD_LINES)
    line = lines.status_line if isinstance(lines, HeadLines) else start.get(STATUS_LINE_KEY)
    return line if isinstance(line, bytes) else None


def _restatus(head: _HeadFirst, start: Mapping[str, object]) -> None:
    """Put the answer's own status line in place of the stock one uvicorn's loop just wrote into `head`."""
    line = _own_status_line(start)
    status = start.get("status")
    stock = STATUS_LINE.get(status) if isinstance(status, int) else None
    if line is not None and stock is not None and head.head.startswith(stock):
        head.head = line + head.head[len(stock):]


class WholeAnswerCycle(RequestResponseCycle):
    """uvicorn's request cycle, holding an answer's head until its first body part: uvicorn writes the
    two separately, and a process killed between those writes leaves the client half an answer.

    The held `http.response.start` is uvicorn's to check and write, only later: an app that raises or
    returns before its body gets uvicorn's 500 instead of a head with nothing after it. A HEAD request's
    answer is its head alone, one write already.

    A start that carries its headers' `HeadLines` (wire.py: checked and encoded once, for the catch-all's
    answers) has its head written from them, with the connection state uvicorn's loop would set; the body
    is uvicorn's to send either way. A start that carries its own status line (the 503's reason phrase,
    reason.py) has it written in place of uvicorn's `STATUS_LINE[status]`, from its HeadLines or after
    uvicorn's loop wrote the head (HEAD's too), which is one write that begins with that line.
    """

    _held: ASGISendEvent | None = None
    # uvicorn's default headers (Date; Server when on) change once a second: their encoding, kept for
    # the list they came from (None: they need uvicorn's loop).
    _defaults_for: ClassVar[object] = None
    _defaults_block: ClassVar[bytes | None] = None

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            if self.scope["method"] != "HEAD":
                self._held = message
                return
            if _own_status_line(message) is not None:  # a HEAD's answer: its head alone, in one write
                await self._send_head(message)
                return
        start = self._held
        if start is None:
            await super().send(message)
            return
        self._held = None
        transport = self.transport
        head = _HeadFirst(transport)
        self.transport = cast(asyncio.Transport, head)
        try:
            written = self._write_known_head(start, head)
            if not written:
                await super().send(start)
                _restatus(head, start)
            head.holding = False
            await super().send(message)
        finally:
            self.transport = transport
            head.flush()  # a head no body followed (the body message was wrong): as uvicorn would send it

    async def _send_head(self, start: ASGISendEvent) -> None:
        """uvicorn writes the head of `start`, which carries its own status line: put in place of uvicorn's."""
        transport = self.transport
        head = _HeadFirst(transport)
        self.transport = cast(asyncio.Transport, head)
        try:
            await super().send(start)
            _restatus(head, start)
        finally:
            self.transport = transport
            head.flush()

    @staticmethod
    def defaults_block(defaults: object) -> bytes | None:
        """uvicorn's default headers encoded (None where its loop must write them), once per list."""
        if defaults is not WholeAnswerCycle._defaults_for:
            encoded = encode(cast("list[tuple[bytes, bytes]]", defaults))
            WholeAnswerCycle._defaults_block = encoded[0] if encoded is not None and encoded[1] is None else None
            WholeAnswerCycle._defaults_for = defaults
        return WholeAnswerCycle._defaults_block

    def _write_known_head(self, start: Mapping[str, object], head: _HeadFirst) -> bool:
        """Write `start`'s head from its HeadLines, setting what uvicorn's loop sets; False (nothing done)
        where uvicorn's loop must run."""
        lines = start.get(HEAD_LINES)
        if (
            not isinstance(lines, HeadLines)
            or start.get("headers") is not lines.headers
            or self.disconnected
            or self.access_log
        ):
            return False
        status = start.get("status")
        status_line = lines.status_line or (STATUS_LINE.get(status) if isinstance(status, int) else None)
        block = self.defaults_block(self.default_headers)
        if status_line is None or block is None:
            return False
        self.response_started = True
        self.waiting_for_100_continue = False
        self.expected_content_length = lines.content_length
        self.chunked_encoding = False
        close = b"" if self.keep_alive else b"connection: close\r\n"
        head.write(b"".join((status_line, block, lines.block, close, b"\r\n")))
        return True


class ShimHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with header, time, body and connection limits (see the module docstring).

    `data_received`, `on_headers_complete` and `on_message_complete` replace uvicorn's (calling the parser,
    making the cycle and setting its state as uvicorn does, the cycle only when the app runs: `_resolve`);
    `_start_asgi_task` makes every cycle a `WholeAnswerCycle`; everything else runs only for uploads,
    upgrades and refusals.
    """

    # Slots, not the instance dict: uvicorn's protocol already has about as many attributes as CPython's
    # shared-key instance dicts hold (30), and past that every attribute access in the hot path slows down.
    __slots__ = (
        "_body_bytes",
        "_body_cycle",
        "_count_fields",
        "_done",
        "_early",
        "_head_bytes",
        "_head_room",
        "_ignore_input",
        "_in_head",
        "_keep_alive",
        "_linger_budget",
        "_lingering",
        "_refuse_after",
        "_upgrade_ok",
        "_upgrade_scope",
        "_waiting",
        "deadline",
    )
    guard: ConnectionGuard = ConnectionGuard(Limits())
    _max_head = Limits.max_header_bytes
    _max_headers = Limits.max_headers
    _timeout = Limits.header_timeout
    answer_now: AnswerNow | None = None  # the app's (protocol_class), as a staticmethod

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_room = self._max_head  # bytes the current request's head may still take
        self._head_bytes = 0  # bytes of the current request's URL and complete fields (parser callbacks)
        self._in_head = True  # from the end of one request until the next one's head is complete
        self._ignore_input = False  # refused, upgrade refused or lingering: input is discarded
        self._lingering = False
        self._linger_budget = LINGER_BYTES
        self._refuse_after: int | None = None  # a refusal waiting for the answers to earlier requests
        self._upgrade_ok = False
        self._upgrade_scope: object = None  # the request `_upgrade_ok` was worked out for
        self._body_bytes = 0
        self._body_cycle: object = None  # the request `_body_bytes` counts
        # From the end of a request to the next read: the fields parsed meanwhile (a head that began in the
        # read that ended the request before) are counted by on_header, the reads after by their length.
        self._count_fields = False
        # A request whose head this read completed, with no cycle made and no app started yet (`_waiting`),
        # and whether its message is complete (`_done`): answered at once (answer_now) once the read is
        # parsed, or given its cycle and app as uvicorn would have (`_resolve`), before anything else happens
        # on the connection (a body part, the next request, an error, the end of the read).
        self._waiting = False
        self._done = False
        self._keep_alive = True  # the waiting request's, read at its head as uvicorn reads it
        self._early = b""  # the waiting request's body so far (at most SMALL_BODY_BYTES), for its app if it runs
        self.deadline: float | None = None  # loop time by which the current request must have arrived

    # Connection state seen by the guard

    @property
    def idle(self) -> bool:
        """No request in progress: waiting for one (keep-alive or still sending its head) or lingering."""
        cycle = self.cycle
        return cycle is None or cycle.response_complete

    @property
    def eviction_rank(self) -> tuple[int, float]:
        """Which idle connection is closed first to make room (the lowest): lingering ones (their answer is
        out), then those in the middle of a head (a slowloris trickle), then those that sent nothing yet,
        then kept-alive ones between requests, the longest waiting first within each. A client that
        completed a request is the likeliest to send another, and it would find its connection closed;
        one that has taken longest over its head, the least likely to finish it."""
        if self._lingering:
            return (0, 0.0)
        if self.deadline is not None:
            return (1 if self._head_room < self._max_head else 2, self.deadline - self._timeout)
        task = self.timeout_keep_alive_task
        return (3, task.when() - self.timeout_keep_alive) if task is not None else (0, 0.0)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.now = now = self.loop.time()
        self.deadline = now + self._timeout
        if len(self.connections) > self.guard.limits.max_connections:
            self.guard.make_room(self, self.connections)

    def deadline_passed(self) -> None:
        """The request did not arrive in time: 408 for part of a head, a close otherwise."""
        self.deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        now = self.loop.time()
        if self._refuse_after is not None:  # the answers owed before a refusal did not come in time
            self.transport.close()
            return
        if self._in_head:
            if self._head_room < self._max_head:
                self._refuse(408)
            else:
                self.guard.note("idle", now)
                self.transport.close()
        elif cycle is not None and (not cycle.response_started or cycle.response_complete):
            # The body did not arrive in time: the app waiting for it sees a disconnect; a body nobody
            # reads (the rest of a small one after its 503) is not waited for either.
            self.guard.note("slow-body", now)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # uvicorn cancels the keep-alive timer only on a clean close; after a reset (a client that closes
        # with our answer unread) the timer would keep the protocol, ~6.5 KB, alive for the whole
        # keep-alive timeout, so a flood of resets would hold rate x timeout of them.
        self._unset_keepalive_if_required()

    # Input

    def data_received(self, data: bytes) -> None:
        if self._ignore_input:
            if self._lingering:
                self._linger_budget -= len(data)
                if self._linger_budget < 0:
                    self.transport.pause_reading()
            return
        if self.timeout_keep_alive_task is not None:
            self._unset_keepalive_if_required()
        previous = self.cycle
        if self._in_head:
            if self.deadline is None:  # the first bytes of the next request on a kept-alive connection
                self.deadline = self.guard.now + self._timeout
            if self._count_fields:  # a new read: what the head took in the read before is charged to it
                self._count_fields = False
                self._head_room = self._max_head - self._head_bytes
            room = self._head_room
            if len(data) > room:
                self._data_past_room(data, room)
                return
            self._head_room = room - len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:  # also HttpParserCallbackError
            if self._waiting:
                self._resolve(last=True)  # its answer before whatever this error brings
            self._parse_failed(error)
            return
        except httptools.HttpParserUpgrade:
            if self._waiting:
                self._resolve(last=True)
            self._upgrade(previous)
            return
        if self._waiting:
            self._resolve(last=True)
        cycle = self.cycle
        if cycle is not previous and cycle is not None and cycle.more_body:
            # A new request's head arrived in this read and its body is still on its way: rare, and
            # handled off this path.
            self._new_request_checks(cycle)

    def _data_past_room(self, data: bytes, room: int) -> None:
        """More bytes than the head may still take: its end must come within them."""
        self.data_received(data[:room])  # exactly the room left: parsed as usual, leaving no room
        if self._ignore_input or self.transport.is_closing():
            return
        if self._in_head and self._head_room == 0:  # no request ended in there (that resets the room)
            self._refuse(414 if len(self.url) * 2 > self._max_head else 431)
            return
        self.data_received(data[room:])

    def _new_request_checks(self, cycle: RequestResponseCycle) -> None:
        """The head of a request arrived and its body did not."""
        self._in_head = False
        # With Expect: 100-continue the body only comes after a 100, which the catch-all never sends.
        if not cycle.response_started and (self.expect_100_continue or not self._small_body()):
            # The answer will not wait for the body: it says `Connection: close`, and closing lingers.
            cycle.keep_alive = False
            # Made here, for this request only: a closer kept on the protocol would make every connection
            # a reference cycle, freed only by a full collection (measured: ~6.5 KB kept per closed one).
            cycle.transport = cast(asyncio.Transport, _LingeringCloser(self))

    def _small_body(self) -> bool:
        """Is the body still arriving declared (Content-Length) and at most SMALL_BODY_BYTES?"""
        length = None
        for name, value in self.headers:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == b"transfer-encoding":
                return False
        return length is not None and length <= SMALL_BODY_BYTES

    def _parse_failed(self, error: httptools.HttpParserError) -> None:
        refusal = error.__context__ if isinstance(error, httptools.HttpParserCallbackError) else None
        if isinstance(refusal, _Refuse):
            self._refuse_current(self.cycle, refusal.status)
            return
        self.guard.note("400", self.loop.time())
        self._ignore_input = True
        self.send_400_response("Invalid HTTP request received.")

    def _upgrade(self, previous: object) -> None:
        """The parser stopped at an upgrade: hand over to WebSocket, or answer as HTTP and close."""
        if self._upgrade_ok and self._upgrade_scope is self.scope:
            self.handle_websocket_upgrade()
            return
        self._ignore_input = True  # what follows is not HTTP
        cycle = self.cycle
        if cycle is not previous and cycle is not None and not cycle.response_started:
            cycle.keep_alive = False

    # Parser callbacks

    def on_message_begin(self) -> None:
        if self._waiting:  # the request before, in the same read (a pipeline): answered first
            self._resolve(last=False)
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        # uvicorn's on_headers_complete, without making the cycle where the app may answer at once: a
        # request read in one piece gets no cycle, no task and no ASGI message (`_resolve`).
        cycle = self.cycle
        parser = self.parser
        if (
            self.answer_now is None
            or self._waiting
            or (cycle is not None and not cycle.response_complete)  # queued behind another: uvicorn's
            or self.limit_concurrency is not None  # uvicorn's own 503 past its limit (ours is the guard's)
            or parser.should_upgrade()
        ):
            super().on_headers_complete()
            return
        http_version = parser.get_http_version()
        scope = self.scope
        scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        parsed_url = httptools.parse_url(self.url)
        raw_path = parsed_url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        scope["query_string"] = parsed_url.query or b""
        self._keep_alive = http_version != "1.0" and parser.should_keep_alive()
        self._waiting = True
        self._done = False
        self._early = b""
        self._body_cycle = scope
        self._body_bytes = 0

    def on_url(self, url: bytes) -> None:
        # uvicorn's on_url, counting the request's head bytes (see on_header).
        self.url += url
        size = self._head_bytes + len(url)
        self._head_bytes = size
        if size > self._max_head:
            raise _Refuse(414 if len(self.url) * 2 > self._max_head else 431)

    def on_header(self, name: bytes, value: bytes) -> None:
        # uvicorn's on_header, with the head limits: the number of fields for every request; the bytes
        # counted as they arrive (data_received) cover a head that began a read, and a head that began in
        # the same read as the end of the request before (a pipeline) has its bytes counted here.
        headers = self.headers
        if len(headers) >= self._max_headers:
            raise _Refuse(431)
        if self._count_fields:
            size = self._head_bytes + len(name) + len(value) + 4
            self._head_bytes = size
            if size > self._max_head:
                raise _Refuse(414 if len(self.url) * 2 > self._max_head else 431)
        name = name.lower()
        if name == b"expect" and value.lower().rstrip(b" \t") == b"100-continue":
            self.expect_100_continue = True
        # llhttp keeps a value's trailing whitespace, which RFC 9110 excludes: stripped where the app is
        # started (_start_asgi_task), and by the catch-all's own reading of its few fields (RequestFacts).
        headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        # uvicorn's on_body, with a cap on what is buffered for the app, and nothing buffered once the app
        # has started its answer: it did not wait for the body, and the catch-all never reads one (a body
        # kept for nobody held up to 64 KiB a connection, for as long as the connection lingered).
        if self._waiting:
            size = self._body_bytes + len(body)
            if size <= SMALL_BODY_BYTES:  # kept for the app, if it runs; dropped if answered at once
                self._body_bytes = size
                self._early += body
                return
            self._resolve(last=False)  # a larger body: the app runs, as uvicorn would have started it
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_started:
            return
        if self._body_cycle is not cycle:
            self._body_cycle = cycle
            self._body_bytes = 0
        self._body_bytes += len(body)
        if self._body_bytes > MAX_BODY_BYTES:
            raise _Refuse(413)
        cycle.body += body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        # uvicorn's on_message_complete, then where the next request's head begins: if in this read (a
        # pipeline), its fields are counted as they are parsed (on_header) until the next read.
        self._in_head = True
        self._head_room = self._max_head
        self._head_bytes = 0
        self._count_fields = True
        self.deadline = None
        if self._waiting:
            self._done = True
            return
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        cycle.more_body = False
        cycle.message_event.set()

    # WebSocket

    def _should_upgrade(self) -> bool:
        """Only a handshake uvicorn's WebSocket protocol will accept (101) is handed to it."""
        if self._upgrade_scope is not self.scope:
            self._upgrade_scope = self.scope
            self._upgrade_ok = self._websocket_handshake_ok()
        return self._upgrade_ok

    def _websocket_handshake_ok(self) -> bool:
        """Would uvicorn's WebSocket protocol accept this handshake? Checked on the same bytes."""
        if self.ws_protocol_class is None or self.parser.get_method() != b"GET":
            return False
        tokens: set[bytes] = set()
        for name, value in self.headers:
            if name == b"connection":
                tokens.update(token.strip().lower() for token in value.split(b","))
            elif name in (b"content-length", b"transfer-encoding"):
                return False
        if b"upgrade" not in tokens or b"close" in tokens:
            return False
        from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
        from websockets.http11 import Request
        from websockets.server import ServerProtocol

        raw = [b"GET ", self.url, b" HTTP/1.1\r\n"]
        for name, value in self.headers:
            raw += [name, b": ", value, b"\r\n"]
        raw.append(b"\r\n")
        extensions = []
        if self.config.ws_per_message_deflate:  # as uvicorn's WebSocket protocol negotiates them
            extensions = [
                ServerPerMessageDeflateFactory(
                    server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5}
                )
            ]
        conn = ServerProtocol(
            extensions=extensions, max_size=self.config.ws_max_size, logger=logging.getLogger("maintenance_shim.ws")
        )
        conn.receive_data(b"".join(raw))
        events = conn.events_received()
        if conn.parser_exc is not None or not events or not isinstance(events[0], Request):
            return False
        return conn.accept(events[0]).status_code == 101

    def _unsupported_upgrade_warning(self) -> None:
        pass  # an upgrade we do not do is an ordinary request, answered by the app

    # Output

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # Every cycle, pipelined ones too, starts here; its `send` is looked up when the task first runs.
        cycle.__class__ = WholeAnswerCycle
        headers = cast("list[tuple[bytes, bytes]]", cycle.scope["headers"])  # uvicorn's list (on_message_begin)
        for index, (name, value) in enumerate(headers):
            if value[-1:] in _TRAILING_SPACE:  # llhttp keeps it; RFC 9110 excludes it (see on_header)
                headers[index] = (name, value.rstrip(b" \t"))
        super()._start_asgi_task(cycle, app)

    def _resolve(self, last: bool) -> None:
        """The waiting request: answered now if its message is complete and the app has its answer ready,
        else given the cycle uvicorn's on_headers_complete would have made, and its app started. `last`: at
        the end of the read (else in its middle, where the keep-alive timer must not start)."""
        self._waiting = False
        if self._done and self._answered_now(last):
            return
        scope = self.scope
        cycle = RequestResponseCycle(
            scope=cast(Any, scope),
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=self._keep_alive,
            on_response=self.on_response_complete,
        )
        if self._early:  # what on_body would have buffered for it
            cycle.body += self._early
            self._early = b""
        self._body_cycle = cycle  # the body bytes counted so far are its
        if self._done:  # what on_message_complete does for a cycle
            cycle.more_body = False
            cycle.message_event.set()
        self.cycle = cycle
        self._start_asgi_task(cycle, self.app)

    def _answered_now(self, last: bool) -> bool:
        """Write the app's ready answer to the waiting request (head and body in one write) and count it as
        uvicorn's cycle would count an answer; False, with nothing done, wherever the app must run."""
        answer_now = self.answer_now
        if (
            answer_now is None
            or self.access_log
            or self.flow.write_paused  # a client not reading its answers: the app waits for it (drain)
            or self._lingering
            or self.transport.is_closing()
        ):
            return False
        block = WholeAnswerCycle.defaults_block(self.server_state.default_headers)
        if block is None:
            return False
        scope = self.scope
        head_only = scope["method"] == "HEAD"
        found = answer_now(scope)
        if found is None:
            return False
        status, lines, body = found
        status_line = lines.status_line or STATUS_LINE.get(status)
        if status_line is None or (not head_only and len(body) != lines.content_length):
            return False  # not expected of answer_now; uvicorn's checks, through the app
        keep_alive = self._keep_alive
        head = b"".join((status_line, block, lines.block, b"" if keep_alive else b"connection: close\r\n", b"\r\n"))
        transport = self.transport
        if body and not head_only:
            transport.writelines((head, body))
        else:
            transport.write(head)
        if not keep_alive:
            transport.close()
        self._early = b""
        self.on_response_complete()
        if not last:  # more of this read to parse: the next request is not kept waiting by the timer
            self._unset_keepalive_if_required()
        return True

    def linger(self) -> None:
        """Close after a response whose request is unfinished: FIN now, discard input, close soon."""
        transport = self.transport
        if transport.is_closing() or self._lingering:
            return
        self._lingering = True
        self._ignore_input = True
        self.deadline = None
        # The answer said `Connection: close`: requests pipelined behind it are not answered (they would be
        # written after the FIN), nor is a refusal that waited for it (on_response_complete).
        self.pipeline.clear()
        self._refuse_after = None
        self._release_body()
        self.flow.resume_reading()
        try:
            transport.write_eof()
        except (NotImplementedError, RuntimeError, OSError):
            transport.close()
            return
        self.loop.call_later(LINGER_SECONDS, self._linger_done)

    def on_response_complete(self) -> None:
        # uvicorn's on_response_complete (each answer's cycle calls it once the answer is written), then:
        # nothing more on a lingering connection, and a refusal that waited for the answers owed before it
        # goes out after the last of them.
        self.server_state.total_requests += 1
        if self.transport.is_closing() or self._lingering:
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._release_body()
        status = self._refuse_after
        if status is not None:
            self._refuse_after = None
            self.transport.write(_RESPONSES[status])
            self.linger()
            return
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def _release_body(self) -> None:
        """A body part buffered before the app answered without reading it: not kept with the connection."""
        cycle = self.cycle
        if cycle is not None and cycle.body and cycle.response_started:
            cycle.body = bytearray()

    def _linger_done(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _refuse_current(self, cycle: RequestResponseCycle | None, status: int) -> None:
        """Refuse the request being parsed: its app (if started) sees a disconnect, its answer is dropped;
        one still queued behind earlier requests is dropped from the queue, and refused after their answers."""
        if cycle is not None and not cycle.response_started and cycle.scope is self.scope:
            self._ignore_input = True
            cycle.disconnected = True
            cycle.message_event.set()
            queued = [entry for entry in self.pipeline if entry[0] is cycle]
            for entry in queued:
                self.pipeline.remove(entry)
            if self.transport.is_closing() or self._lingering:
                return
            self.guard.note(str(status), self.loop.time())
            if queued:  # an earlier request's answer is still owed
                self._refuse_after = status
                return
            self.transport.write(_RESPONSES[status])
            self.linger()
            return
        self._refuse(status)

    def _refuse(self, status: int) -> None:
        """Answer `status` with `Connection: close`, then linger; after the answers still owed (the
        requests before it, pipelined or in progress: on_response_complete)."""
        self._ignore_input = True
        if self.transport.is_closing() or self._lingering:
            return
        self.guard.note(str(status), self.loop.time())
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started and cycle.scope is self.scope:
                self.transport.close()  # too late for an answer of our own
                return
            self._refuse_after = status
            return
        self.transport.write(_RESPONSES[status])
        self.linger()


def protocol_class(limits: Limits, answer_now: AnswerNow | None = None) -> type[ShimHttpProtocol]:
    """A ShimHttpProtocol subclass bound to `limits` (one per serving process), for uvicorn.Config(http=...);
    `answer_now` is the app's (MaintenanceApp.answer_now), None to run the app for every request."""
    namespace = {
        "__slots__": (),
        "guard": ConnectionGuard(limits),
        "_max_head": limits.max_header_bytes,
        "_max_headers": limits.max_headers,
        "_timeout": limits.header_timeout,
        "answer_now": staticmethod(answer_now) if answer_now is not None else None,
    }
    return type("BoundShimHttpProtocol", (ShimHttpProtocol,), namespace)
