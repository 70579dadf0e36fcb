"""app/progress/runs.py and the Tracker after the last step: run events, learned save-and-reload time, history."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maintenance_shim.i18n import load_translations
from maintenance_shim.progress.runs import (
    EventsFollower,
    HistoryRecord,
    Learned,
    RunState,
    learn,
    parse_event,
    read_history,
    record_run,
)
from maintenance_shim.progress.tracker import RetryPolicy, Tracker
from maintenance_shim.statedir import HISTORY_FILE
from maintenance_shim.web.texts import build_texts
from tests.support import clean_env

T0 = 1_800_000_000.0
POLICY = RetryPolicy(minimum=5, maximum=3600, unknown=60)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def tracker(clock: Clock, learned: Learned | None = None, resume: float = 120) -> Tracker:
    return Tracker(resume_seconds=resume, stall_seconds=300, retry=POLICY, clock=clock, learned=learned)


def record(started: float, last_step_at: float, exit_at: float, ready: float) -> HistoryRecord:
    return HistoryRecord(started_at=started, ready_at=ready, first_step=0, last_step=100, total=100,
                         first_step_at=started + 5, last_step_at=last_step_at, trainer_exit_at=exit_at,
                         trainer_status=0, services=["studio"])


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"event": "start"}', "'t' is not a time"),
        ('{"t": 5, "event": "explode"}', "unknown event"),
        ('{"t": 5, "event": "trainer-exit", "status": "0"}', "'status' is not an integer"),
        ('{"t": 5, "event": "services-ready", "services": "studio"}', "'services' is not a list"),
    ],
)
def test_bad_event_lines_say_what_is_wrong(line: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_event(line)


def test_run_state_follows_the_events() -> None:
    state = RunState()
    for line in (
        '{"t": 100, "event": "start"}',
        '{"t": 900, "event": "trainer-exit", "status": 3}',
        '{"t": 901, "event": "services-starting", "services": ["studio", "video"]}',
        '{"t": 902, "event": "services-waiting", "services": ["studio", "video"]}',
    ):
        state.apply(parse_event(line))
    assert (state.started_at, state.trainer_exit_at, state.trainer_status) == (100, 900, 3)
    assert (state.phase, state.services, state.ready_at) == ("waiting", ("studio", "video"), None)
    state.apply(parse_event('{"t": 950, "event": "services-ready", "services": ["studio", "video"]}'))
    assert (state.phase, state.ready_at) == ("ready", 950)
    state.apply(parse_event('{"t": 2000, "event": "start"}'))
    assert (state.started_at, state.trainer_exit_at, state.phase) == (2000, None, None)


def test_stop_without_a_wrapped_command_still_ends_training() -> None:
    state = RunState()
    state.apply(parse_event('{"t": 100, "event": "start"}'))
    state.apply(parse_event('{"t": 500, "event": "services-starting", "services": ["studio"]}'))
    assert state.trainer_exit_at == 500 and state.trainer_status is None


def test_events_follower_reads_appends_and_warns_once_per_bad_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "maintenance_shim.runs")
    path = tmp_path / "events.jsonl"
    path.write_text('{"t": 100, "event": "start"}\n{garbage\n{"t": 200, "event": "trainer-')
    follower = EventsFollower(path)
    assert [event.event for event in follower.poll_once()] == ["start"]
    with path.open("a") as file:
        file.write('exit", "status": 0}\n')
    assert [event.event for event in follower.poll_once()] == ["trainer-exit"]
    assert follower.poll_once() == []
    assert len([r for r in caplog.records if "line 2 skipped" in r.getMessage()]) == 1
    path.write_text('{"t": 300, "event": "start"}\n')  # emptied by the next start_maintenance.sh
    follower.poll_once()
    assert follower.state.started_at == 300 and follower.state.trainer_exit_at is None


def test_history_learns_medians_and_skips_a_corrupt_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "maintenance_shim.runs")
    path = tmp_path / HISTORY_FILE
    lines = [record(T0 + i * 1e4, T0 + i * 1e4 + 1000, T0 + i * 1e4 + 1000 + save, T0 + i * 1e4 + 1000 + total)
             .to_json() for i, (save, total) in enumerate([(20, 60), (30, 90), (25, 70)])]
    path.write_text(lines[0] + "\n{half a line\n" + '{"ready_at": "soon"}\n' + "\n".join(lines[1:]) + "\n")
    records = read_history(path)
    assert len(records) == 3
    assert sum("not valid records" in r.getMessage() for r in caplog.records) == 1
    learned = learn(records)
    assert (learned.resume, learned.runs) == (70, 3)
    assert learned.reload == 45  # median of 40, 60, 45
    assert learned.duration == 1070
    assert read_history(tmp_path / "missing.jsonl") == []


def test_after_the_last_step_the_phases_are_said_with_the_learned_eta() -> None:
    clock = Clock()
    learned = Learned(resume=60, reload=40, duration=None, runs=3)
    shim = tracker(clock, learned)
    assert shim.resume_seconds == 60  # learned, not MAINT_RESUME_SECONDS
    for step in range(0, 101):
        clock.now += 1
        shim.record(clock.now, step, 100, "file")
    last_step = clock.now
    clock.now += 10
    snapshot = shim.snapshot()
    assert snapshot.state == "finishing" and snapshot.eta_seconds == 50  # the save is under way
    run = RunState(started_at=T0, trainer_exit_at=last_step + 20, trainer_status=0, phase="trainer-exited")
    clock.now = last_step + 20
    shim.run_changed(run)
    snapshot = shim.snapshot()
    assert (snapshot.state, snapshot.after, snapshot.eta_seconds) == ("finishing", "trainer-exited", 40)
    en = load_translations("en")
    assert build_texts(snapshot, en, "en", "studio").message.endswith(
        "The training job has finished; studio will be started next."
    )
    run.phase, run.services = "waiting", ("studio", "video")
    shim.run_changed(run)
    clock.now = last_step + 20 + 200  # far beyond what was learned: never 'overdue' while the scripts work
    snapshot = shim.snapshot()
    assert (snapshot.state, snapshot.eta_seconds) == ("finishing", 10)
    assert build_texts(snapshot, en, "en", "studio").message.endswith(
        "Waiting for the health check of studio and video."
    )
    ja = build_texts(snapshot, load_translations("ja"), "ja", "studio").message
    assert "studio" in ja and "video" in ja


def test_a_failed_trainer_is_said_with_its_status() -> None:
    clock = Clock()
    shim = tracker(clock, resume=30)
    shim.run_changed(RunState(started_at=T0, trainer_exit_at=T0 + 5, trainer_status=137, phase="trainer-exited"))
    clock.now = T0 + 5
    snapshot = shim.snapshot()
    assert (snapshot.state, snapshot.eta_seconds, snapshot.basis) == ("finishing", 30, "setting")
    assert "status 137" in build_texts(snapshot, load_translations("en"), "en", "studio").message


def test_before_any_progress_the_eta_comes_from_recent_runs() -> None:
    clock = Clock()
    shim = tracker(clock, Learned(resume=60, reload=40, duration=1800, runs=4))
    shim.run_changed(RunState(started_at=T0 - 300))
    snapshot = shim.snapshot()
    assert (snapshot.state, snapshot.eta_seconds, snapshot.basis) == ("training", 1500, "history")
    texts = build_texts(snapshot, load_translations("en"), "en", "studio")
    assert texts.eta_sentence.endswith("(Estimated from recent runs.)")
    shim.record(clock.now, 1, 100, "log")  # progress arrives: it rules from now on
    assert shim.snapshot().source == "log"


@pytest.mark.e2e
def test_record_run_and_the_history_command(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text(
        '{"t": 1800000000, "event": "start"}\n'
        '{"t": 1800001000, "event": "trainer-exit", "status": 0}\n'
        '{"t": 1800001090, "event": "services-ready", "services": ["studio"]}\n'
    )
    (tmp_path / "progress-summary.json").write_text(json.dumps(
        {"first_step": 0, "last_step": 3000, "total": 3000, "first_step_at": 1800000010,
         "last_step_at": 1800000980, "mean_rate": 3.09}
    ))
    made = record_run(tmp_path, T0 + 5000)
    assert (made.duration, made.resume, made.reload) == (1090, 110, 90)
    command = [sys.executable, "-m", "maintenance_shim", "history", "--state-dir", str(tmp_path)]
    shown = subprocess.run(command, capture_output=True, text=True, env=clean_env(), check=True, timeout=30)
    started = datetime.fromtimestamp(T0, UTC).astimezone().strftime("%Y-%m-%d %H:%M")
    assert started in shown.stdout and "18m10s" in shown.stdout and "0-3000 of 3000" in shown.stdout
    assert "learned save-and-reload time (median of the last 1): 110 s" in shown.stdout
    empty = subprocess.run([*command[:-1], str(tmp_path / "none")], capture_output=True, text=True,
                           env=clean_env(), check=True, timeout=30)
    assert "no runs recorded" in empty.stdout


def test_the_switched_event_carries_how_long_the_switch_took() -> None:
    state = RunState()
    state.apply(parse_event('{"t": 100, "event": "start"}'))
    state.apply(parse_event('{"t": 104, "event": "switched", "seconds": 3.25, "services": []}'))
    assert state.switch_seconds == 3.25 and state.phase is None and state.trainer_exit_at is None
    state.apply(parse_event('{"t": 200, "event": "start"}'))
    assert state.switch_seconds is None
    with pytest.raises(ValueError, match="'seconds' is not a duration"):
        parse_event('{"t": 5, "event": "switched", "seconds": -1}')


def _paced(t: Tracker, clock: Clock, steps: range, every: float, save_at: int = 0, save: float = 0.0) -> None:
    for step in steps:
        clock.now += every
        t.record(clock.now, step, 200, "log")
        if save_at and step and step % save_at == 0:
            clock.now += save


def test_a_first_run_allows_its_longest_save_plus_the_way_back_not_the_default() -> None:
    """No history and no MAINT_RESUME_SECONDS: the save-and-reload allowance is the longest save seen in
    this run plus the time the scripts measured for the way back (else this run's switch in), never the
    120 s default; before any is known, 0 (the ETA moves later at once when one shows up). Compared with
    the same samples under an allowance of 0 (MAINT_RESUME_SECONDS=0), so only the allowance is measured."""

    def eta(first_run: bool, resume: float = 0.0, startup: float | None = None, saves: bool = True) -> float:
        clock = Clock()
        t = Tracker(resume_seconds=resume, stall_seconds=300, retry=POLICY, clock=clock, first_run=first_run,
                    startup_seconds=startup)
        t.run_changed(RunState(started_at=T0, switch_seconds=4.0))
        _paced(t, clock, range(0, 60), 0.5, save_at=40 if saves else 0, save=6.0)
        value = t.snapshot().eta_seconds
        assert value is not None
        return float(value)

    assert abs(eta(True, resume=120, saves=False) - eta(False, saves=False) - 4) <= 2  # the switch in only
    assert abs(eta(True, resume=120) - eta(False) - (6 + 4)) <= 2  # the longest save, then the switch in
    assert abs(eta(True, resume=120, startup=9.0) - eta(False) - (6 + 9)) <= 2  # the way back, measured
    assert eta(False, resume=120) - eta(False) >= 110  # MAINT_RESUME_SECONDS set: it stands


def test_the_event_command_writes_what_the_shim_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The scripts write their run events through `maintenance-shim event` (no JSON built in bash)."""
    from maintenance_shim.cli import main
    from maintenance_shim.progress.runs import parse_event

    assert main(["event", "start", "studio", "video", "--state-dir", str(tmp_path)]) == 0
    assert main(["event", "trainer-exit", "--status", "3", "--state-dir", str(tmp_path)]) == 0
    assert main(["event", "nonsense", "--state-dir", str(tmp_path)]) == 2
    assert "unknown event 'nonsense'" in capsys.readouterr().err
    events = [parse_event(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(e.event, e.status, e.services) for e in events] == [
        ("start", None, ("studio", "video")),
        ("trainer-exit", 3, ()),
    ]
