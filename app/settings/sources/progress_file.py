"""MAINT_PROGRESS_FILE: a JSON progress file written by the trainer (app/progress/sources/progress_file.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from . import Source, SourcePath, SourceSettings


class ProgressFileSettings(SourceSettings):
    progress_file: Path | None = Field(
        None,
        description="JSON progress file written by the trainer ([progress.md](progress.md)); or "
        "comma-separated `NODE=PATH` entries, one per GPU node (`gpu-1=/mnt/a/progress.json`), beside at most "
        "one plain `PATH`",
    )

    @property
    def progress_files(self) -> tuple[SourcePath, ...]:
        """Every MAINT_PROGRESS_FILE entry: the untagged PATH first, then the NODE=PATH ones by node."""
        return self.source_paths("progress_file")


class ProgressFile(Source):
    name = "progress_file"
    settings = ProgressFileSettings
    label = "progress file"


SOURCE = ProgressFile
