"""Trainer-side progress reporter for maintenance-shim: standard library only, copy it next to train.py.

    from reporter import Reporter

    with Reporter("/run/maintenance/progress.json", total=num_steps) as report:
        for step in range(1, num_steps + 1):
            train_one_step()
            report.update(step)

The file is replaced atomically (temporary file in the same directory, fsync, ``os.replace``), so a
reader never sees half a file. ``Reporter`` never lets a failed write stop the training: it logs once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

logger = logging.getLogger("maintenance_shim.reporter")


def _check(step: int, total: int | None) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an integer >= 0, not {step!r}")
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 1):
        raise ValueError(f"total must be an integer >= 1 or None, not {total!r}")
    if total is not None and step > total:
        raise ValueError(f"step {step} is past total {total}")


def write_progress_file(
    path: str | os.PathLike[str],
    step: int,
    total: int | None = None,
    *,
    phase: str | None = None,
    message: str | None = None,
    updated_at: float | None = None,
    node: str | None = None,
) -> None:
    """Atomically replace ``path`` with ``{"step", "total", "updated_at", ...}``; ValueError on bad input.

    ``node`` names the GPU node this progress is from, in a fleet (``"gpu-2"``; docs/progress.md)."""
    _check(step, total)
    stamp = time.time() if updated_at is None else updated_at
    if not math.isfinite(stamp):
        raise ValueError(f"updated_at must be finite, not {stamp!r}")
    document: dict[str, Any] = {"step": step, "total": total, "updated_at": round(stamp, 3)}
    if phase is not None:
        document["phase"] = phase
    if message is not None:
        document["message"] = message
    if node is not None:
        document["node"] = node
    data = (json.dumps(document, ensure_ascii=False) + "\n").encode("utf-8")
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            # mkstemp makes the file private; the shim may run as another user.
            os.fchmod(file.fileno(), 0o644)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


class Reporter:
    """Write progress for maintenance-shim at most every ``min_interval`` seconds, the last step always."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        total: int | None = None,
        min_interval: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        node: str | None = None,
    ) -> None:
        self.path = path
        self.node = node
        self.total = total
        self.min_interval = min_interval
        self.writes = 0
        self._clock = clock
        self._last_write: float | None = None
        self._pending: tuple[int, int | None, str | None, str | None] | None = None
        self._written: tuple[int, int | None, str | None, str | None] | None = None
        self._failed = False

    def update(self, step: int, total: int | None = None, phase: str | None = None, message: str | None = None) -> bool:
        """Record ``step``; write it unless the last write is under ``min_interval`` old. True if written."""
        if total is not None:
            self.total = total
        _check(step, self.total)
        pending = self._pending = (step, self.total, phase, message)
        now = self._clock()
        final = self.total is not None and step >= self.total
        due = self._last_write is None or now - self._last_write >= self.min_interval
        if not (due or final or (phase is not None and phase != self._phase_written())):
            return False
        return self._flush(now, pending)

    def close(self) -> None:
        """Write the latest update if it is not on disk yet."""
        if self._pending is not None and self._pending != self._written:
            self._flush(self._clock(), self._pending)

    def __enter__(self) -> Reporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _phase_written(self) -> str | None:
        return None if self._written is None else self._written[2]

    def _flush(self, now: float, pending: tuple[int, int | None, str | None, str | None]) -> bool:
        step, total, phase, message = pending
        try:
            write_progress_file(self.path, step, total, phase=phase, message=message, node=self.node)
        except OSError as error:
            # A full disk or a vanished directory must not stop hours of training.
            if not self._failed:
                logger.warning("cannot write progress file %s: %s", self.path, error)
                self._failed = True
            return False
        self._last_write = now
        self._written = pending
        self.writes += 1
        return True
