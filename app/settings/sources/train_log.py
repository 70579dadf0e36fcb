"""MAINT_TRAIN_LOG: a trainer's console output, followed for its bars and step lines
(app/progress/sources/train_log.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from . import Source, SourcePath, SourceSettings


class TrainLogSettings(SourceSettings):
    train_log: Path | None = Field(
        None,
        description="trainer log to follow for tqdm-style progress; or `NODE=PATH` entries, as for "
        "`MAINT_PROGRESS_FILE` (`gpu-1=/mnt/a/train.log,gpu-2=/mnt/b/train.log`)",
    )

    @property
    def train_logs(self) -> tuple[SourcePath, ...]:
        """Every MAINT_TRAIN_LOG entry: the untagged PATH first, then the NODE=PATH ones by node."""
        return self.source_paths("train_log")


class TrainLog(Source):
    name = "train_log"
    settings = TrainLogSettings
    label = "train log"


SOURCE = TrainLog
