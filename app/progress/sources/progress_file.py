"""MAINT_PROGRESS_FILE: follow a JSON progress file ``{"step": N, "total": M}`` written by the trainer.

Read whole when it changed (it is small: at most ``MAX_PROGRESS_FILE`` bytes). It may name its node itself
(``"node": "gpu-2"``). Its own ``updated_at`` (wall clock) only says how long ago it was written.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from stat import S_ISREG
from typing import Any

from ...files import kind, read_regular
from ...nodes import is_node_name
from ..tracker import EXACT, MAX_COUNT, ProgressUpdate
from ._base import Context, Follower, OnProgress, _WarnOnce, logger

MAX_PROGRESS_FILE = 64 * 1024
# A file changed this recently may change again within the same mtime tick without changing size.
_RACY_SECONDS = 2.0


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
    if value > MAX_COUNT:
        raise ProgressFileError(name, f"{name} must be <= {MAX_COUNT:.0e}: {value!r}")
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


class ProgressFileFollower(Follower):
    """Follow a JSON progress file ``{"step": N, "total": M}`` written by the trainer."""

    name = "progress_file"
    tag = "file"
    priority = EXACT

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

    @classmethod
    def from_settings(cls, path: Path, node: str | None, context: Context) -> ProgressFileFollower:
        return cls(path, context.on_progress, history_seconds=context.history_seconds, node=node)

    def _poll(self) -> None:
        # Only what the very first poll finds can be an old run; a file that appears later is new.
        first, self._first = self._first, False
        now = time.time()  # wall clock: compared with the file's mtime and its updated_at only
        monotonic = time.monotonic()
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._signature = None
            self._warn("missing", "progress file does not exist (yet)")
            return
        except OSError as error:
            self._warn("stat", "cannot stat the progress file: %s", error)
            return
        if not S_ISREG(stat.st_mode):
            self._signature = None
            self._warn("not-regular", "is %s, not a regular file; ignored", kind(stat.st_mode))
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
            data = read_regular(self.path, MAX_PROGRESS_FILE)
            self.bytes_read += len(data)
        except FileNotFoundError:
            # Replaced between stat and open; the next poll sees the new file.
            self._signature = None
            return
        except OSError as error:  # a FIFO, a device, a directory: never opened for a blocking read
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
        # On the monotonic clock: as long ago as the file says it was written (never in the future).
        self._emit(ProgressUpdate(monotonic - (now - t), progress.step, progress.total, self.tag, progress.phase,
                                  node=node, priority=self.priority))

    def _is_history(self, progress: FileProgress, written: float, now: float) -> bool:
        if progress.total is not None and progress.step >= progress.total:
            return True
        return self.history_seconds is not None and now - written > self.history_seconds


SOURCE = ProgressFileFollower
