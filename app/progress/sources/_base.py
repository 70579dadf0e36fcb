"""What every follower shares: polling in a thread, warning once, and following a file that only grows.

A follower polls ``os.stat`` every ``poll_interval`` seconds and reads only when the file changed. Each
distinct problem is logged once, until a good read clears it; the last good progress stays in force
meanwhile. It may be tagged with a GPU node (``node=``, from ``NODE=PATH`` in the settings); its updates
then carry the node, and the Tracker keeps that node's progress apart.

A run that was already over when the shim started is history, not the current run: what the first read
finds is ignored when it is at its total, or when the file was last written more than
``history_seconds`` (the stall time) ago; the follower then waits for new progress.

Nothing here can hold up an answer. Each poll runs in a daemon thread of its own while the event loop
serves; a poll still running after ``STUCK_SECONDS`` (a stalled network mount) is warned about once and
waited for, never stacked. Only regular files are opened (``files.open_regular``): a FIFO, a device or a
socket at the path is a warning, not a hang. A growing file (``AppendFollower``) is read only in its
appended bytes, at most ``MAX_CATCH_UP`` a poll, and survives truncation and replacement (rotation).
Steps and totals are bounded where they enter (``MAX_COUNT``, the push API's cap).

Times are the monotonic clock (``time.monotonic``): a wall-clock step (NTP, a resumed VM) moves no interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import ClassVar

from ...files import kind, open_regular
from ...nodes import NodeLimitError
from ..tracker import ProgressUpdate

logger = logging.getLogger("maintenance_shim.sources")

OnProgress = Callable[[ProgressUpdate], None]
# Called with a sentence for the operator (None clears it): a log whose trainer's progress is invisible.
OnNotice = Callable[[str | None], None]

TAIL_BYTES = 64 * 1024
# More new bytes than this in one poll means we fell behind: skip to the tail, the progress is at the end.
# Also the most a follower examines per poll.
MAX_CATCH_UP = 1024 * 1024
# A poll running longer than this (a stalled mount) is warned about once; the next waits for it.
STUCK_SECONDS = 5.0
# Bytes before the read offset kept to notice a file truncated and regrown past our offset between polls.
_GUARD_BYTES = 64


@dataclass(frozen=True)
class Context:
    """What a follower reports to, and the settings every follower shares."""

    on_progress: OnProgress
    on_notice: OnNotice | None = None
    history_seconds: float | None = None  # MAINT_STALL_SECONDS


class _WarnOnce:
    """Log each distinct problem once, until ``clear()`` after a good read."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: set[str] = set()

    def __call__(self, key: str, message: str, *args: object) -> None:
        if key not in self.seen:
            self.seen.add(key)
            logger.warning("%s: " + message, self.name, *args)

    def forget(self, key: str) -> None:
        self.seen.discard(key)

    def clear(self) -> None:
        self.seen.clear()


def _finish(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Follower:
    """A progress source: polls one file every `poll_interval` seconds; a failure is logged once, never raised.

    A source's module in this package defines ``SOURCE``, its Follower subclass, with ``name`` (the
    module's name, and its settings module's in app/settings/sources/), ``tag`` (the updates' source, as
    status shows it) and ``priority`` (which source wins when several report: higher first; ``EXACT`` for
    a source that knows the exact step and total, ``PARSED`` for one that reads them from text).
    """

    name: ClassVar[str]
    tag: ClassVar[str]
    priority: ClassVar[int]

    poll_interval: float
    on_progress: OnProgress
    _warn: _WarnOnce
    _what = "source"

    @classmethod
    def from_settings(cls, path: Path, node: str | None, context: Context) -> Follower:
        """The follower of one configured entry (``NODE=PATH`` or a plain ``PATH``)."""
        raise NotImplementedError

    async def run(self) -> None:
        """Poll until cancelled, each poll in a daemon thread: a file that blocks (a stalled mount) holds up
        only its own follower, never the event loop, and never the process's exit."""
        loop = asyncio.get_running_loop()
        while True:
            done = loop.create_future()
            threading.Thread(target=self._poll_in_thread, args=(loop, done), daemon=True,
                             name=f"follow {self._what}").start()
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the result when the poll ends just
                # as the task is cancelled, swallowing the cancellation (the follower then never stopped).
                async with asyncio.timeout(STUCK_SECONDS):
                    await asyncio.shield(done)
            except TimeoutError:
                self._warn("stuck", "reading the %s has taken over %.0f s (a stalled mount?); answers go on with "
                           "the last good progress", self._what, STUCK_SECONDS)
                await done
            await asyncio.sleep(self.poll_interval)

    def _poll_in_thread(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
        try:
            self.poll_once()
        finally:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (the shim stopped)
                loop.call_soon_threadsafe(_finish, done)

    def poll_once(self) -> None:
        """One poll: read what changed and report progress; problems are logged, never raised."""
        try:
            self._poll()
        except Exception as error:
            self._warn("unexpected", f"cannot follow the {self._what}: %r", error)

    def _poll(self) -> None:
        raise NotImplementedError

    def _emit(self, update: ProgressUpdate) -> None:
        try:
            self.on_progress(update)
        except NodeLimitError as error:
            self._warn("node-limit", "progress ignored: %s", error)


class AppendFollower(Follower):
    """Follow a file that only grows (a log, a JSON-lines file): read only its appended bytes, from its
    start when small, else from its last ``tail_bytes``; survive truncation and replacement (rotation).

    Subclasses take the bytes in ``_consume`` (whole lines are theirs to find: a read may end mid-line) and
    reset their own state in ``_restart``.
    """

    path: Path
    tail_bytes: int
    history_seconds: float | None

    def _init_append(self, path: str | os.PathLike[str], tail_bytes: int) -> None:
        self.path = Path(path)
        self.tail_bytes = tail_bytes
        self._first = True
        self._initial = False
        self._mtime = 0.0
        self.offset = 0
        self.bytes_read = 0
        self._identity: tuple[int, int] | None = None
        self._guard = b""
        self._skip_to_line = False
        self._warn = _WarnOnce(str(self.path))

    def _restart(self) -> None:
        """The file is read afresh (new, replaced, truncated, or we fell behind): forget what was parsed."""

    def _consume(self, data: bytes) -> None:
        raise NotImplementedError

    def _before_poll(self) -> None:
        """Called at the start of every poll, whether or not the file changed."""

    def _start(self, size: int) -> None:
        """Begin a file afresh: from its start when small, else from its last ``tail_bytes``."""
        self._restart()
        self._guard = b""
        self.offset = max(0, size - self.tail_bytes)
        # Starting mid-file lands mid-line; that fragment could look like progress of a wrong kind.
        self._skip_to_line = self.offset > 0

    def _poll(self) -> None:
        self._initial, self._first = self._first, False
        self._before_poll()
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._warn("missing", "%s does not exist (yet)", self._what)
            return
        except OSError as error:
            self._warn("stat", "cannot stat the %s: %s", self._what, error)
            return
        self._warn.forget("missing")
        if not S_ISREG(stat.st_mode):
            self._warn("not-regular", "is %s, not a regular file; ignored", kind(stat.st_mode))
            return
        identity = (stat.st_dev, stat.st_ino)
        size = stat.st_size
        self._mtime = stat.st_mtime
        if identity != self._identity:
            if self._identity is not None:
                logger.info("%s: %s was replaced (rotated); reading the new file", self.path, self._what)
            self._identity = identity
            self._start(size)
        elif size < self.offset:
            logger.info("%s: %s was truncated; reading from its start", self.path, self._what)
            self._start(size)
        if size == self.offset:
            return
        if size - self.offset > MAX_CATCH_UP:
            self._warn(
                "behind",
                "%s grew by %d bytes since the last poll; reading only its last %d",
                self._what,
                size - self.offset,
                self.tail_bytes,
            )
            self._start(size)
        self._read(size)

    def _read(self, size: int) -> None:
        guard_start = self.offset - len(self._guard)
        fd, _ = open_regular(self.path)  # a FIFO or a device is refused here, never read
        try:
            data = os.pread(fd, size - guard_start, guard_start)
        finally:
            os.close(fd)
        self.bytes_read += len(data)
        if data[: len(self._guard)] != self._guard:
            # Truncated and regrown past our offset between two polls (copytruncate with a fast writer).
            logger.info("%s: %s was rewritten; reading from its start", self.path, self._what)
            self._start(size)
            self._read(size)
            return
        data = data[len(self._guard) :]
        self.offset += len(data)
        self._guard = (self._guard + data)[-_GUARD_BYTES:]
        if self._skip_to_line:
            first = min((i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0), default=-1)
            if first < 0:
                return
            data = data[first + 1 :]
            self._skip_to_line = False
        self._consume(data)

    def _is_history(self, update: ProgressUpdate) -> bool:
        """On the first poll: the file holds a run that had ended before the shim started (at its total, or
        last written more than ``history_seconds`` ago)."""
        if not self._initial:
            return False
        if (update.total is not None and update.step >= update.total) or (
            self.history_seconds is not None and time.time() - self._mtime > self.history_seconds
        ):
            logger.info("%s: holds a run that had ended before the shim started; waiting for a new one", self.path)
            return True
        return False
