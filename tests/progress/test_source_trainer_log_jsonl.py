"""MAINT_TRAINER_LOG_JSONL: LLaMA-Factory's trainer_log.jsonl, written as its callbacks write it, followed by
the real follower (app/progress/sources/trainer_log_jsonl.py) and turned into an ETA by the real Tracker.

The writers below reproduce hiyouga/LLaMA-Factory at ff6d4d12e: `LogCallback` (src/llamafactory/train/
callbacks.py: `_reset` 199-204, `_timing` 206-213, `_write_log` 215-217, `on_init_end`'s removal with
`overwrite_output_dir` 229-236, `on_log` 272-310) and v1's `LoggingCallback.on_log`
(src/llamafactory/v1/utils/callbacks/logging_callback.py: 56, 71-74).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from maintenance_shim.cli import main as cli_main
from maintenance_shim.progress.sources import Context, registry
from maintenance_shim.progress.sources.trainer_log_jsonl import TrainerLogFollower, TrainerLogParser
from maintenance_shim.progress.tracker import EXACT, ProgressUpdate, RetryPolicy, Tracker
from maintenance_shim.settings.env import SettingsError
from maintenance_shim.settings.shim import load_settings
from tests.support import ShimFactory, request, wait_until

TRAINER_LOG = "trainer_log.jsonl"  # src/llamafactory/extras/constants.py:121
LOGGER = "maintenance_shim.sources"


@dataclass
class State:
    """The parts of transformers' TrainerState that LogCallback.on_log reads."""

    global_step: int = 0
    max_steps: int = 0
    log_history: list[dict[str, Any]] = field(default_factory=list)
    num_input_tokens_seen: int = 0


class LogCallback:
    """LLaMA-Factory's LogCallback, its progress part as written in callbacks.py (the thread pool's one
    worker runs `_write_log` in order; here it runs inline)."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = str(output_dir)
        self.start_time = 0.0
        self.cur_steps = 0
        self.max_steps = 0
        self.elapsed_time = ""
        self.remaining_time = ""

    def _reset(self, max_steps: int = 0) -> None:  # callbacks.py:199-204
        self.start_time = time.time()
        self.cur_steps = 0
        self.max_steps = max_steps
        self.elapsed_time = ""
        self.remaining_time = ""

    def _timing(self, cur_steps: int) -> None:  # callbacks.py:206-213
        cur_time = time.time()
        elapsed_time = cur_time - self.start_time
        avg_time_per_step = elapsed_time / cur_steps if cur_steps != 0 else 0
        remaining_time = (self.max_steps - cur_steps) * avg_time_per_step
        self.cur_steps = cur_steps
        self.elapsed_time = str(timedelta(seconds=int(elapsed_time)))
        self.remaining_time = str(timedelta(seconds=int(remaining_time)))

    def _write_log(self, output_dir: str, logs: dict[str, Any]) -> None:  # callbacks.py:215-217
        with open(os.path.join(output_dir, TRAINER_LOG), "a", encoding="utf-8") as f:
            f.write(json.dumps(logs) + "\n")

    def on_init_end(self, overwrite_output_dir: bool) -> None:  # callbacks.py:229-236
        if os.path.exists(os.path.join(self.output_dir, TRAINER_LOG)) and overwrite_output_dir:
            os.remove(os.path.join(self.output_dir, TRAINER_LOG))

    def on_train_begin(self, state: State) -> None:  # callbacks.py:239-244
        self._reset(max_steps=state.max_steps)

    def on_log(self, state: State) -> None:  # callbacks.py:272-310
        self._timing(cur_steps=state.global_step)
        logs = dict(
            current_steps=self.cur_steps,
            total_steps=self.max_steps,
            loss=state.log_history[-1].get("loss"),
            eval_loss=state.log_history[-1].get("eval_loss"),
            predict_loss=state.log_history[-1].get("predict_loss"),
            reward=state.log_history[-1].get("reward"),
            accuracy=state.log_history[-1].get("rewards/accuracies"),
            lr=state.log_history[-1].get("learning_rate"),
            epoch=state.log_history[-1].get("epoch"),
            percentage=round(self.cur_steps / self.max_steps * 100, 2) if self.max_steps != 0 else 100,
            elapsed_time=self.elapsed_time,
            remaining_time=self.remaining_time,
        )
        logs = {k: v for k, v in logs.items() if v is not None}
        self._write_log(self.output_dir, logs)


def v1_on_log(output_dir: Path, global_step: int, num_training_steps: int, logs: dict[str, Any]) -> None:
    """v1's LoggingCallback.on_log (logging_callback.py:56, 71-74): `step` instead of `current_steps`."""
    display_logs = {**logs, "step": global_step, "total_steps": num_training_steps}
    log_file = os.path.join(output_dir, "trainer_log.jsonl")
    with open(log_file, "a", encoding="utf-8") as f:
        f.write(json.dumps(display_logs, ensure_ascii=False) + "\n")


class Recorder:
    def __init__(self) -> None:
        self.updates: list[ProgressUpdate] = []

    def __call__(self, update: ProgressUpdate) -> None:
        self.updates.append(update)

    @property
    def last(self) -> tuple[int, int | None]:
        return self.updates[-1].step, self.updates[-1].total


def _log_steps(callback: LogCallback, state: State, steps: range, every: int = 10) -> None:
    """Training: the Trainer logs every `every` steps (logging_steps), each log an on_log."""
    for step in steps:
        state.global_step = step
        if step % every == 0:
            state.log_history.append({"loss": 2.0 - step / 1000, "learning_rate": 1e-4, "epoch": step / 100})
            callback.on_log(state)


def _follower(path: Path, recorder: Recorder, **kwargs: Any) -> TrainerLogFollower:
    source = registry()["trainer_log_jsonl"]
    context = Context(recorder, None, kwargs.pop("history", None))
    follower = source.from_settings(path, kwargs.pop("node", None), context)
    assert isinstance(follower, TrainerLogFollower)
    return follower


def test_follows_the_lines_llamafactory_appends(tmp_path: Path) -> None:
    callback, state = LogCallback(tmp_path), State(max_steps=300)
    callback.on_init_end(overwrite_output_dir=True)
    callback.on_train_begin(state)
    recorder = Recorder()
    follower = _follower(tmp_path / TRAINER_LOG, recorder)
    follower.poll_once()  # not written yet: nothing, no error
    assert recorder.updates == []
    _log_steps(callback, state, range(1, 21))
    follower.poll_once()
    assert recorder.last == (20, 300)
    update = recorder.updates[-1]
    assert (update.source, update.priority, update.node) == ("jsonl", EXACT, None)
    # An evaluation's on_log (eval_loss, the same step) keeps the step; later steps move it.
    state.log_history.append({"eval_loss": 1.5, "epoch": 0.2})
    callback.on_log(state)
    _log_steps(callback, state, range(21, 51))
    follower.poll_once()
    assert recorder.last == (50, 300)
    line = json.loads((tmp_path / TRAINER_LOG).read_text().splitlines()[-1])
    fields = {"current_steps", "total_steps", "loss", "epoch", "percentage", "elapsed_time", "remaining_time"}
    assert fields <= set(line)


def test_a_half_written_line_waits_and_bad_lines_are_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / TRAINER_LOG
    callback, state = LogCallback(tmp_path), State(max_steps=100)
    callback.on_train_begin(state)
    recorder = Recorder()
    follower = _follower(path, recorder)
    _log_steps(callback, state, range(1, 11))
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"current_steps": 20, "total_st')  # the rest not yet written
    follower.poll_once()
    assert recorder.last == (10, 100)
    with path.open("a", encoding="utf-8") as handle:
        handle.write('eps": 100}\n')
    follower.poll_once()
    assert recorder.last == (20, 100)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("not json\n[1, 2]\n" + json.dumps({"loss": 1.0}) + "\n")
        handle.write(json.dumps({"current_steps": 500, "total_steps": 100}) + "\n")
        handle.write(json.dumps({"current_steps": True, "total_steps": 100}) + "\n")
        handle.write("x" * 40_000 + "\n")
    follower.poll_once()
    assert recorder.last == (20, 100)  # none of them moved it
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and "skipped" in r.getMessage()]
    assert len(warnings) == 2, warnings  # one for the bad records, one for the over-long line
    state.global_step = 30
    state.log_history.append({"loss": 1.0})
    callback.on_log(state)
    follower.poll_once()
    assert recorder.last == (30, 100)


def test_overwrite_output_dir_and_truncation_start_afresh(tmp_path: Path) -> None:
    path = tmp_path / TRAINER_LOG
    first, state = LogCallback(tmp_path), State(max_steps=200)
    first.on_train_begin(state)
    recorder = Recorder()
    follower = _follower(path, recorder)
    _log_steps(first, state, range(1, 101))
    follower.poll_once()
    assert recorder.last == (100, 200)
    # A new run in the same output_dir with overwrite_output_dir: the file is removed, then written anew.
    second, state = LogCallback(tmp_path), State(max_steps=400)
    second.on_init_end(overwrite_output_dir=True)
    second.on_train_begin(state)
    _log_steps(second, state, range(1, 31))
    follower.poll_once()
    assert recorder.last == (30, 400)
    # Truncated in place (an operator's `: > trainer_log.jsonl`), then written again.
    with path.open("r+") as handle:
        handle.truncate(0)
    _log_steps(second, state, range(31, 41))
    follower.poll_once()
    assert recorder.last == (40, 400)


def test_a_resumed_run_appends_from_its_checkpoint(tmp_path: Path) -> None:
    """Resumed from checkpoint-100 after a crash at step 130: the file keeps the old lines and goes on from 100."""
    callback, state = LogCallback(tmp_path), State(max_steps=300)
    callback.on_train_begin(state)
    recorder = Recorder()
    follower = _follower(tmp_path / TRAINER_LOG, recorder)
    _log_steps(callback, state, range(1, 131))
    follower.poll_once()
    resumed, state = LogCallback(tmp_path), State(max_steps=300)
    resumed.on_init_end(overwrite_output_dir=False)
    resumed.on_train_begin(state)
    _log_steps(resumed, state, range(101, 121))
    follower.poll_once()
    assert recorder.last == (120, 300)


def test_v1_lines_with_step(tmp_path: Path) -> None:
    recorder = Recorder()
    follower = _follower(tmp_path / TRAINER_LOG, recorder)
    for step in (5, 10):
        v1_on_log(tmp_path, step, 80, {"loss": 0.5, "learning_rate": 1e-5})
    follower.poll_once()
    assert recorder.last == (10, 80)


def test_a_finished_run_found_at_start_is_history(tmp_path: Path) -> None:
    callback, state = LogCallback(tmp_path), State(max_steps=50)
    callback.on_train_begin(state)
    _log_steps(callback, state, range(1, 51))
    recorder = Recorder()
    follower = _follower(tmp_path / TRAINER_LOG, recorder)
    follower.poll_once()
    assert recorder.updates == []  # at its total when the shim started: the last run, not this one
    again, state = LogCallback(tmp_path), State(max_steps=60)
    again.on_init_end(overwrite_output_dir=True)
    again.on_train_begin(state)
    _log_steps(again, state, range(1, 11))
    follower.poll_once()
    assert recorder.last == (10, 60)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_the_tracker_shows_total_step_and_an_eta_from_it(tmp_path: Path) -> None:
    """Records every 10 steps at 0.5 s a step: step and exact total at once, the ETA within a few records."""
    clock = Clock()
    tracker = Tracker(resume_seconds=0, stall_seconds=300, retry=RetryPolicy(5, 3600, 60), clock=clock)
    parser = TrainerLogParser()
    for step in range(10, 410, 10):
        clock.now += 5.0
        logs = {"current_steps": step, "total_steps": 1000, "loss": 1.0, "epoch": step / 500,
                "percentage": round(step / 1000 * 100, 2), "elapsed_time": "0:00:00", "remaining_time": "0:00:00"}
        records = parser.feed(json.dumps(logs) + "\n")
        last = records[-1]
        tracker.report(ProgressUpdate(clock.now, last.step, last.total, "jsonl", priority=EXACT))
    snapshot = tracker.snapshot()
    assert snapshot.source == "jsonl"
    assert snapshot.progress is not None and (snapshot.progress.step, snapshot.progress.total) == (400, 1000)
    assert snapshot.state == "training"
    assert snapshot.eta_seconds == pytest.approx(600 * 0.5, rel=0.05)  # 600 steps left at 2 steps/s


def test_the_setting_is_checked_named_and_summarised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / TRAINER_LOG
    settings = load_settings(environ={"MAINT_TRAINER_LOG_JSONL": f"gpu-1={path},gpu-2=/mnt/b/{TRAINER_LOG}"})
    assert [item.node for item in settings.source_paths("trainer_log_jsonl")] == ["gpu-1", "gpu-2"]
    assert settings.source_nodes == {"gpu-1", "gpu-2"}
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"MAINT_TRAINER_LOG_JSONL": "gpu 1=/a.jsonl,gpu-2=/b.jsonl"})
    assert caught.value.lines[0].startswith("MAINT_TRAINER_LOG_JSONL: entry 1"), caught.value.lines
    for name in [key for key in os.environ if key.startswith("MAINT_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAINT_TRAINER_LOG_JSONL", str(path))
    monkeypatch.setenv("MAINT_ADMIN_LISTEN", "off")
    assert cli_main(["check"]) == 0
    assert "progress from LLaMA-Factory log;" in capsys.readouterr().out


def test_a_real_shim_follows_it(start_shim: ShimFactory, tmp_path: Path) -> None:
    """`maintenance-shim serve` with MAINT_TRAINER_LOG_JSONL: the status shows LLaMA-Factory's step and total."""
    output_dir = tmp_path / "saves"
    output_dir.mkdir()
    shim = start_shim(env={"MAINT_TRAINER_LOG_JSONL": str(output_dir / TRAINER_LOG)})
    callback, state = LogCallback(output_dir), State(max_steps=300)
    callback.on_init_end(overwrite_output_dir=True)
    callback.on_train_begin(state)
    _log_steps(callback, state, range(1, 21))

    def progress() -> dict[str, Any]:
        status, _, body = request(shim, "GET", "/_maintenance/status")
        assert status == 200, body
        found: dict[str, Any] = json.loads(body).get("progress") or {}
        return found

    assert wait_until(lambda: progress().get("step") == 20, what="step 20 on the status")
    assert progress()["total"] == 300
    with (output_dir / TRAINER_LOG).open("a", encoding="utf-8") as handle:
        handle.write("not json\n")
    _log_steps(callback, state, range(21, 31))
    assert wait_until(lambda: progress().get("step") == 30, what="step 30 after a bad line")
    assert wait_until(lambda: "a line that is not a progress record was skipped" in shim.output(),
                      what="the bad line's warning")
