"""MAINT_TRAIN_LOG: follow a trainer's console output (tqdm and Rich bars, step lines) through LogParser.

Only appended bytes are read (``AppendFollower``); a line longer than ``MAX_LINE`` characters is skipped
unexamined, so a megabyte of progress characters costs the parser nothing. A log in which training was
announced but no progress shows for ``INVISIBLE_AFTER`` seconds (Rich into a pipe) is said so, with the fix.
"""

from __future__ import annotations

import codecs
import os
import time
from pathlib import Path

from ..logparse import LogParser
from ..tracker import PARSED, ProgressUpdate
from ._base import TAIL_BYTES, AppendFollower, Context, OnNotice, OnProgress, logger

# Log lines longer than this (characters) are skipped unexamined: progress lines are a few hundred.
MAX_LINE = 2048
# Training announced this long ago (seconds) with no progress in the log since: the progress is invisible.
INVISIBLE_AFTER = 120.0
INVISIBLE_NOTICE = (
    "training started but its log shows no progress: a Rich progress bar writing into a pipe or file draws "
    "nothing until the end; run the trainer under with_maintenance.sh (it gives Rich a wide terminal: "
    "TTY_COMPATIBLE=1, TTY_INTERACTIVE=1, COLUMNS=200) or use the trainer's plain-text switch "
    "(LTX trainers: --disable-progress-bars)"
)


class LogFollower(AppendFollower):
    """Follow a trainer log: read only appended bytes, survive truncation and rotation."""

    name = "train_log"
    tag = "log"
    priority = PARSED  # a step and total read from text lose to a source that knows them

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
        self.on_progress = on_progress
        self.on_notice = on_notice
        self.notice: str | None = None
        self._announced_at: float | None = None
        self.invisible_after = invisible_after
        self.poll_interval = poll_interval
        self.history_seconds = history_seconds
        self.node = node
        self.parser = LogParser(max_partial=MAX_LINE)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._init_append(path, tail_bytes)

    _what = "log"

    @classmethod
    def from_settings(cls, path: Path, node: str | None, context: Context) -> LogFollower:
        return cls(path, context.on_progress, history_seconds=context.history_seconds, node=node,
                   on_notice=context.on_notice)

    def _restart(self) -> None:
        self.parser.reset()
        self._announced_at = None
        self._set_notice(None)
        self._decoder.reset()

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

    def _before_poll(self) -> None:
        self._check_visible(time.time())

    def _consume(self, data: bytes) -> None:
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
        update = ProgressUpdate(
            time.monotonic(), last.step, last.total, self.tag,
            scope=last.scope, epoch=last.epoch, epochs=last.epochs,
            epoch_step=last.epoch_step, epoch_total=last.epoch_total, node=self.node, pending=last.pending,
            save_every=last.save_every, priority=self.priority,
        )
        if self._is_history(update):
            return
        self._emit(update)


SOURCE = LogFollower
