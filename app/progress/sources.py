"""Followers that turn a progress file or a trainer log into ``on_progress`` calls; cheap, never raise.

Both poll ``os.stat`` every ``poll_interval`` seconds and read only when the file changed: the progress
file whole (it is small), the log only its appended bytes. Each distinct problem is logged once, until a
good read clears it; the last good progress stays in force meanwhile.

Either may be tagged with a GPU node (``node=``, from ``NODE=PATH`` in the settings); a progress file may
also name its node itself (``"node": "gpu-2"``). Updates then carry the node, and the Tracker keeps that
node's progress apart.

A run that was already over when the shim started is history, not the current run: what the first read
finds is ignored when it is at its total, or when the file was last written more than
``history_seconds`` (the stall time) ago; the follower then waits for new progress.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..nodes import NodeLimitError, is_node_name
from .logparse import LogParser
from .tracker import ProgressUpdate

logger = logging.getLogger("maintenance_shim.sources")

OnProgress = Callable[[ProgressUpdate], None]
# Called with a sentence for the operator (None clears it): a log whose trainer's progress is invisible.
OnNotice = Callable[[str | None], None]

MAX_PROGRESS_FILE = 64 * 1024
TAIL_BYTES = 64 * 1024
# More new log than this in one poll means we fell behind: skip to its tail, the progress is at the end.
MAX_CATCH_UP = 1024 * 1024
# A file changed this recently may change again within the same mtime tick without changing size.
_RACY_SECONDS = 2.0
# Bytes before the read offset kept to notice a log truncated and regrown past our offset between polls.
_GUARD_BYTES = 64
# Training announced this long ago (seconds) with no progress in the log since: the progress is invisible.
INVISIBLE_AFTER = 120.0
INVISIBLE_NOTICE = (
    "training started but its log shows no progress: a Rich progress bar writing into a pipe or file draws "
    "nothing until the end; run the trainer under with_maintenance.sh (it gives Rich a wide terminal: "
    "TTY_COMPATIBLE=1, TTY_INTERACTIVE=1, COLUMNS=200) or use the trainer's plain-text switch "
    "(LTX trainers: --disable-progress-bars)"
)


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


class ProgressFileError(ValueError):
    """A progress file that cannot be used; ``kind`` names the problem without its changing details."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class FileProgress:
    """One valid progress file: step, total, its ``updated_at`` (Unix seconds) and free-form fields."""

    step: int
    total: int | None
    updated_at: float | None
    phase: str | None
    message: str | None
    node: str | None = None


def _integer(value: Any, name: str, *, minimum: int) -> int:
    """``value`` as an int >= minimum, else ProgressFileError naming ``name``; integral floats are accepted."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProgressFileError(name, f"{name} is not an integer: {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ProgressFileError(name, f"{name} is not an integer: {value!r}")
        value = int(value)
    if value < minimum:
        raise ProgressFileError(name, f"{name} must be >= {minimum}: {value!r}")
    return int(value)


def _timestamp(value: Any) -> float:
    """Unix seconds from a number or an ISO-8601 string (naive means local time), else ProgressFileError."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = datetime.fromisoformat(value.strip()).timestamp()
        except (ValueError, OverflowError, OSError) as error:
            raise ProgressFileError("updated_at", f"updated_at is not an ISO-8601 time: {error}") from None
    else:
        raise ProgressFileError("updated_at", f"updated_at is neither a number nor an ISO-8601 time: {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ProgressFileError("updated_at", f"updated_at is not a valid time: {value!r}")
    return seconds


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_progress_file(data: bytes) -> FileProgress:
    """The progress a progress file's bytes hold; ProgressFileError saying what is wrong otherwise."""
    if not data.strip():
        raise ProgressFileError("empty", "file is empty")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ProgressFileError("json", f"not JSON (half-written?): {error}") from None
    if not isinstance(document, dict):
        raise ProgressFileError("object", "not a JSON object")
    if "step" not in document:
        raise ProgressFileError("step", "no 'step'")
    step = _integer(document["step"], "step", minimum=0)
    total = None if document.get("total") is None else _integer(document["total"], "total", minimum=1)
    if total is not None and step > total:
        raise ProgressFileError("step-past-total", f"step {step} > total {total}")
    updated_at = None if document.get("updated_at") is None else _timestamp(document["updated_at"])
    node = document.get("node")
    if node is not None and not is_node_name(node):
        raise ProgressFileError(
            "node", f"node is not 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit: {node!r}"
        )
    return FileProgress(
        step, total, updated_at, _text(document.get("phase")), _text(document.get("message")), node
    )


class _Follower:
    """Polls one source every `poll_interval` seconds; a failure is logged once, never raised."""

    poll_interval: float
    on_progress: OnProgress
    _warn: _WarnOnce
    _what = "source"

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            self.poll_once()
            await asyncio.sleep(self.poll_interval)

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


class ProgressFileFollower(_Follower):
    """Follow a JSON progress file ``{"step": N, "total": M}`` written by the trainer."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        on_progress: OnProgress,
        poll_interval: float = 0.5,
        *,
        history_seconds: float | None = None,
        node: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.on_progress = on_progress
        self.poll_interval = poll_interval
        self.history_seconds = history_seconds
        self.node = node
        self._first = True
        self.last: FileProgress | None = None
        self.bytes_read = 0
        self._signature: tuple[int, int, int, int] | None = None
        self._warn = _WarnOnce(str(self.path))

    _what = "progress file"

    def _poll(self) -> None:
        # Only what the very first poll finds can be an old run; a file that appears later is new.
        first, self._first = self._first, False
        now = time.time()
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._signature = None
            self._warn("missing", "progress file does not exist (yet)")
            return
        except OSError as error:
            self._warn("stat", "cannot stat the progress file: %s", error)
            return
        signature = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        racy = now - stat.st_mtime_ns / 1e9 < _RACY_SECONDS
        if signature == self._signature and not racy:
            return
        self._signature = signature
        if stat.st_size > MAX_PROGRESS_FILE:
            self._warn("too-large", "progress file is %d bytes, more than %d; ignored", stat.st_size, MAX_PROGRESS_FILE)
            return
        try:
            with open(self.path, "rb") as file:
                data = file.read(MAX_PROGRESS_FILE + 1)
            self.bytes_read += len(data)
        except FileNotFoundError:
            # Replaced between stat and open; the next poll sees the new file.
            self._signature = None
            return
        except OSError as error:
            self._warn("read", "cannot read the progress file: %s", error)
            return
        try:
            progress = parse_progress_file(data)
        except ProgressFileError as error:
            self._warn(error.kind, "ignored, keeping the last good progress: %s", error)
            return
        self._warn.clear()
        if progress == self.last:
            return
        self.last = progress
        t = now if progress.updated_at is None else min(progress.updated_at, now)
        if first and self._is_history(progress, min(t, stat.st_mtime), now):
            logger.info("%s: holds a run that had ended before the shim started; waiting for a new one", self.path)
            return
        node = self.node or progress.node
        if self.node is not None and progress.node not in (None, self.node):
            self._warn("node-mismatch", "names node %r but is tagged %r in the settings; counted as %r",
                       progress.node, self.node, self.node)
        self._emit(ProgressUpdate(t, progress.step, progress.total, "file", progress.phase, node=node))

    def _is_history(self, progress: FileProgress, written: float, now: float) -> bool:
        if progress.total is not None and progress.step >= progress.total:
            return True
        return self.history_seconds is not None and now - written > self.history_seconds


class LogFollower(_Follower):
    """Follow a trainer log: read only appended bytes, survive truncation and rotation."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        on_progress: OnProgress,
        poll_interval: float = 0.5,
        *,
        tail_bytes: int = TAIL_BYTES,
        history_seconds: float | None = None,
        node: str | None = None,
        on_notice: OnNotice | None = None,
        invisible_after: float = INVISIBLE_AFTER,
    ) -> None:
        self.path = Path(path)
        self.on_progress = on_progress
        self.on_notice = on_notice
        self.notice: str | None = None
        self._announced_at: float | None = None
        self.invisible_after = invisible_after
        self.poll_interval = poll_interval
        self.tail_bytes = tail_bytes
        self.history_seconds = history_seconds
        self.node = node
        self._first = True
        self._initial = False
        self._mtime = 0.0
        self.parser = LogParser()
        self.offset = 0
        self.bytes_read = 0
        self._identity: tuple[int, int] | None = None
        self._guard = b""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._skip_to_line = False
        self._warn = _WarnOnce(str(self.path))

    _what = "log"

    def _start(self, size: int) -> None:
        """Begin a file afresh: from its start when small, else from its last ``tail_bytes``."""
        self.parser.reset()
        self._announced_at = None
        self._set_notice(None)
        self._decoder.reset()
        self._guard = b""
        self.offset = max(0, size - self.tail_bytes)
        # Starting mid-file lands mid-line; that fragment could look like a bar with a wrong label.
        self._skip_to_line = self.offset > 0

    def _set_notice(self, notice: str | None) -> None:
        if notice == self.notice:
            return
        self.notice = notice
        if notice is not None:
            logger.warning("%s: %s", self.path, notice)
        if self.on_notice is not None:
            self.on_notice(notice)

    def _check_visible(self, now: float) -> None:
        """Training announced (LTX's 'Starting training...', a 'Running training' banner) and no progress
        for ``INVISIBLE_AFTER`` seconds since: say that the progress is invisible, and how to fix it."""
        if self.parser.progress_found:
            self._announced_at = None
            self._set_notice(None)
        elif self.parser.training_announced:
            if self._announced_at is None:
                self._announced_at = now
            elif now - self._announced_at >= self.invisible_after:
                self._set_notice(INVISIBLE_NOTICE)

    def _poll(self) -> None:
        self._initial, self._first = self._first, False
        self._check_visible(time.time())
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._warn("missing", "log does not exist (yet)")
            return
        except OSError as error:
            self._warn("stat", "cannot stat the log: %s", error)
            return
        self._warn.forget("missing")
        identity = (stat.st_dev, stat.st_ino)
        size = stat.st_size
        self._mtime = stat.st_mtime
        if identity != self._identity:
            if self._identity is not None:
                logger.info("%s: log was replaced (rotated); reading the new file", self.path)
            self._identity = identity
            self._start(size)
        elif size < self.offset:
            logger.info("%s: log was truncated; reading from its start", self.path)
            self._start(size)
        if size == self.offset:
            return
        if size - self.offset > MAX_CATCH_UP:
            self._warn(
                "behind",
                "log grew by %d bytes since the last poll; reading only its last %d",
                size - self.offset,
                self.tail_bytes,
            )
            self._start(size)
        self._read(size)

    def _read(self, size: int) -> None:
        guard_start = self.offset - len(self._guard)
        with open(self.path, "rb") as file:
            file.seek(guard_start)
            data = file.read(size - guard_start)
        self.bytes_read += len(data)
        if data[: len(self._guard)] != self._guard:
            # Truncated and regrown past our offset between two polls (copytruncate with a fast writer).
            logger.info("%s: log was rewritten; reading from its start", self.path)
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
        text = self._decoder.decode(data)
        if "\x00" in text or "\ufffd" in text:
            self._warn("binary", "log contains binary data; only its text is read")
        dropped = self.parser.dropped_lines
        updates = self.parser.feed(text)
        self._check_visible(time.time())
        if self.parser.dropped_lines > dropped:
            self._warn("long-line", "log has lines longer than %d bytes; they are skipped", self.parser.max_partial)
        if not updates:
            return
        last = updates[-1]
        now = time.time()
        if self._initial and (
            (last.total is not None and last.step >= last.total)
            or (self.history_seconds is not None and now - self._mtime > self.history_seconds)
        ):
            logger.info("%s: holds a run that had ended before the shim started; waiting for a new one", self.path)
            return
        self._emit(
            ProgressUpdate(
                now, last.step, last.total, "log",
                scope=last.scope, epoch=last.epoch, epochs=last.epochs,
                epoch_step=last.epoch_step, epoch_total=last.epoch_total, node=self.node, pending=last.pending,
            )
        )
