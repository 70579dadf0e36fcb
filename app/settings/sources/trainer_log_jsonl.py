"""MAINT_TRAINER_LOG_JSONL: LLaMA-Factory's `trainer_log.jsonl` in its output_dir
(app/progress/sources/trainer_log_jsonl.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from . import Source, SourceSettings


class TrainerLogJsonlSettings(SourceSettings):
    trainer_log_jsonl: Path | None = Field(
        None,
        description="LLaMA-Factory's `trainer_log.jsonl` (in the run's `output_dir`): its `current_steps` of "
        "`total_steps`, written every `logging_steps` ([progress.md](progress.md)); or `NODE=PATH` entries, "
        "as for `MAINT_PROGRESS_FILE`",
    )


class TrainerLogJsonl(Source):
    name = "trainer_log_jsonl"
    settings = TrainerLogJsonlSettings
    label = "LLaMA-Factory log"


SOURCE = TrainerLogJsonl
