"""MAINT_TRAINER_LOG_JSONL: follow LLaMA-Factory's ``trainer_log.jsonl``, one JSON object a line.

LLaMA-Factory's ``LogCallback.on_log`` (src/llamafactory/train/callbacks.py, ``_write_log`` and
``on_log``) appends ``json.dumps(logs) + "\\n"`` to ``<output_dir>/trainer_log.jsonl`` every
``logging_steps``, after each evaluation and at the end: ``current_steps`` (the Trainer's global step),
``total_steps`` (``state.max_steps``), ``percentage``, ``elapsed_time``, ``remaining_time`` and, as logged,
``loss``, ``lr``, ``epoch``, ``eval_loss``. Its v1 trainer (``v1/utils/callbacks/logging_callback.py``)
writes ``step`` and ``total_steps`` instead. ``overwrite_output_dir`` removes the file at start (a new
file); a resumed run appends, its steps starting again at the checkpoint's.

Only appended bytes are read (``AppendFollower``); a line that is not such a record (half a line, not
JSON, no step, a step past the total) is skipped with one warning; a line longer than ``MAX_RECORD``
bytes is skipped unexamined. The last good record of a poll is reported, with the exact total.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from ..logparse import LogProgress
from ..tracker import EXACT, MAX_COUNT, ProgressUpdate
from ._base import TAIL_BYTES, AppendFollower, Context, OnProgress

# A record is a few hundred bytes (v1 writes every logged metric); longer lines are skipped unexamined.
MAX_RECORD = 16 * 1024


class RecordError(ValueError):
    """A line that is not a progress record; ``kind`` names the problem without its changing details."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(name, f"{name} is not an integer: {value!r}")
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise RecordError(name, f"{name} is not an integer: {value!r}")
    if not 0 <= value <= MAX_COUNT:
        raise RecordError(name, f"{name} is not within 0..{MAX_COUNT:.0e}: {value!r}")
    return int(value)


def parse_record(line: bytes) -> LogProgress:
    """One line of trainer_log.jsonl as progress; RecordError saying what is wrong otherwise."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise RecordError("json", f"not JSON (half-written?): {error}") from None
    if not isinstance(record, dict):
        raise RecordError("object", "not a JSON object")
    key = "current_steps" if "current_steps" in record else "step"
    if key not in record:
        raise RecordError("step", "no 'current_steps' (nor 'step')")
    step = _count(record[key], key)
    total = _count(record.get("total_steps"), "total_steps") if record.get("total_steps") is not None else None
    total = total or None  # LLaMA-Factory writes 0 before it knows max_steps
    if total is not None and step > total:
        raise RecordError("step-past-total", f"{key} {step} > total_steps {total}")
    return LogProgress(step, total, None, "trainer_log.jsonl", form="line")


class TrainerLogParser:
    """Whole lines of trainer_log.jsonl in, progress out; bad lines counted and skipped (pure, no I/O)."""

    def __init__(self, max_record: int = MAX_RECORD) -> None:
        self.max_record = max_record
        self.reset()

    def reset(self) -> None:
        self._partial = b""
        self._skipping = False  # inside a line longer than max_record
        self.errors: list[RecordError] = []
        self.long_lines = 0

    def feed(self, data: bytes | str) -> list[LogProgress]:
        """The records completed by ``data``, in order; a trailing partial line waits for its newline."""
        chunk = data.encode("utf-8") if isinstance(data, str) else data
        out: list[LogProgress] = []
        *lines, rest = chunk.split(b"\n")
        for piece in lines:
            line, self._partial = self._partial + piece, b""
            if self._skipping:
                self._skipping = False
                continue
            if len(line) > self.max_record:
                self.long_lines += 1
                continue
            if not line.strip():
                continue
            try:
                out.append(parse_record(line))
            except RecordError as error:
                self.errors.append(error)
        if self._skipping:
            return out
        self._partial += rest
        if len(self._partial) > self.max_record:
            self.long_lines += 1
            self._partial, self._skipping = b"", True
        return out


class TrainerLogFollower(AppendFollower):
    """Follow LLaMA-Factory's trainer_log.jsonl: read only appended lines, survive truncation and replacement."""

    name = "trainer_log_jsonl"
    tag = "jsonl"
    priority = EXACT  # the Trainer's own global step and max_steps

    def __init__(
        self,
        path: str | os.PathLike[str],
        on_progress: OnProgress,
        poll_interval: float = 0.5,
        *,
        tail_bytes: int = TAIL_BYTES,
        history_seconds: float | None = None,
        node: str | None = None,
    ) -> None:
        self.on_progress = on_progress
        self.poll_interval = poll_interval
        self.history_seconds = history_seconds
        self.node = node
        self.parser = TrainerLogParser()
        self._init_append(path, tail_bytes)

    _what = "trainer_log.jsonl"

    @classmethod
    def from_settings(cls, path: Path, node: str | None, context: Context) -> TrainerLogFollower:
        return cls(path, context.on_progress, history_seconds=context.history_seconds, node=node)

    def _restart(self) -> None:
        self.parser.reset()
        self._warn.forget("bad-line")
        self._warn.forget("long-line")

    def _consume(self, data: bytes) -> None:
        errors, long_lines = len(self.parser.errors), self.parser.long_lines
        records = self.parser.feed(data)
        if len(self.parser.errors) > errors:
            self._warn("bad-line", "a line that is not a progress record was skipped (%s); the next good line "
                       "counts", self.parser.errors[-1])
        if self.parser.long_lines > long_lines:
            self._warn("long-line", "has lines longer than %d bytes; they are skipped", self.parser.max_record)
        if not records:
            return
        last = records[-1]
        update = ProgressUpdate(time.monotonic(), last.step, last.total, self.tag, node=self.node,
                                priority=self.priority)
        if self._is_history(update):
            return
        self._emit(update)


SOURCE = TrainerLogFollower
