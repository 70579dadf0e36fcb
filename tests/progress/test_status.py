"""Tracker snapshots (fake clock) and the localized sentences for every state in every language."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from maintenance_shim.i18n import load_translations
from maintenance_shim.progress.eta import State
from maintenance_shim.progress.tracker import PARSED, Progress, ProgressUpdate, RetryPolicy, Snapshot, Tracker
from maintenance_shim.web.texts import build_texts

POLICY = RetryPolicy(minimum=5, maximum=3600, unknown=60)
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def make_tracker(clock: Clock, deadline: float | None = None, resume: float = 120) -> Tracker:
    return Tracker(
        resume_seconds=resume,
        stall_seconds=300,
        retry=POLICY,
        static_deadline=datetime.fromtimestamp(deadline, UTC) if deadline else None,
        clock=clock,
    )


@pytest.mark.parametrize(
    ("eta", "expected"), [(None, 60), (1, 5), (4, 5), (90, 90), (3600, 3600), (86400, 3600)]
)
def test_retry_policy_clamps(eta: int | None, expected: int) -> None:
    assert POLICY.retry_after(eta) == expected


def test_unknown_without_sources() -> None:
    snapshot = make_tracker(Clock()).snapshot()
    assert (snapshot.state, snapshot.eta_seconds, snapshot.eta_at, snapshot.retry_after) == ("unknown", None, None, 60)
    assert snapshot.progress is None


def test_static_eta_counts_down_then_is_overdue() -> None:
    clock = Clock()
    tracker = make_tracker(clock, deadline=T0 + 600)
    first = tracker.snapshot()
    assert (first.state, first.eta_seconds, first.retry_after) == ("training", 600, 600)
    assert first.eta_at == datetime.fromtimestamp(T0 + 600, UTC)
    clock.now += 0.4
    assert tracker.snapshot() is first  # recomputed at most once a second
    clock.now += 0.7
    assert tracker.snapshot().eta_seconds == 599
    clock.now = T0 + 601
    late = tracker.snapshot()
    assert (late.state, late.eta_seconds, late.retry_after) == ("overdue", None, 60)


def test_progress_drives_the_eta_and_retry_after_agrees() -> None:
    clock = Clock()
    tracker = make_tracker(clock, resume=120)
    for second in range(0, 200, 2):  # 1 step/s, 3000 steps
        clock.now = T0 + second
        tracker.record(clock.now, second, 3000, "log")
    snapshot = tracker.snapshot()
    true_remaining = (3000 - 198) / 1.0 + 120
    assert snapshot.state == "training"
    assert snapshot.eta_seconds is not None
    assert abs(snapshot.eta_seconds - true_remaining) / true_remaining < 0.1
    assert snapshot.retry_after == min(3600, snapshot.eta_seconds)
    assert snapshot.progress == Progress(198, 3000, 0.066, 1.0, datetime.fromtimestamp(T0 + 198, UTC))
    assert snapshot.source == "log"


def test_a_single_sample_falls_back_to_the_static_eta() -> None:
    clock = Clock()
    tracker = make_tracker(clock, deadline=T0 + 900)
    tracker.record(T0, 10, 3000, "file")
    snapshot = tracker.snapshot()
    assert snapshot.state == "training" and snapshot.eta_seconds == 900
    assert snapshot.progress is not None and snapshot.progress.step == 10


def test_finishing_then_overdue_never_zero() -> None:
    clock = Clock()
    tracker = make_tracker(clock, resume=60)
    for step in range(0, 101, 10):
        clock.now = T0 + step
        tracker.record(clock.now, step, 100, "push")
    assert tracker.snapshot().state == "finishing"
    clock.now += 600
    snapshot = tracker.snapshot()
    assert snapshot.state == "overdue"
    assert snapshot.eta_seconds is not None and snapshot.eta_seconds >= 1 and snapshot.retry_after >= 5


def test_stalled_keeps_a_sensible_retry_after() -> None:
    clock = Clock()
    tracker = make_tracker(clock)
    for step in range(0, 50):
        clock.now = T0 + step
        tracker.record(clock.now, step, 3000, "log")
    clock.now += 301
    snapshot = tracker.snapshot()
    assert snapshot.state == "stalled"
    assert 5 <= snapshot.retry_after <= 3600


STATES: list[State] = ["training", "finishing", "overdue", "stalled", "unknown"]
WORDS = {
    "en": {"training": "trains", "finishing": "complete", "overdue": "longer", "stalled": "not reported",
           "unknown": "maintenance"},
    "ja": {"training": "学習", "finishing": "完了", "overdue": "長引", "stalled": "報告されていません",
           "unknown": "メンテナンス"},
    "zh_Hans": {"training": "训练", "finishing": "已完成", "overdue": "比预期长", "stalled": "没有报告",
                "unknown": "维护"},
}


@pytest.mark.parametrize("locale", ["en", "ja", "zh_Hans"])
@pytest.mark.parametrize("state", STATES)
def test_every_state_is_said_in_every_language(locale: str, state: State) -> None:
    known = state != "unknown"
    snapshot = Snapshot(
        state=state,
        eta_seconds=1320 if known else None,
        eta_at=datetime(2026, 11, 22, 15, 30, tzinfo=UTC) if known else None,
        retry_after=1320 if known else 60,
        progress=Progress(1200, 3000, 0.4, 1.78, None) if known else None,
        source=None,
    )
    texts = build_texts(snapshot, load_translations(locale), locale, "studio")
    assert WORDS[locale][state] in texts.message
    assert "studio" in texts.message and "%(" not in texts.detail
    if known:
        assert texts.eta_relative is not None and re.search(r"22", texts.eta_relative)
        assert texts.eta_clock is not None and ("15:30" in texts.eta_clock or "3:30\u202fPM" in texts.eta_clock)
        assert texts.progress is not None and "1,200" in texts.progress and "3,000" in texts.progress
        assert texts.eta_relative in texts.detail


@pytest.mark.parametrize(
    ("locale", "left", "expected"),
    [("en", 1, "1 step to go"), ("en", 2, "2 steps to go"), ("en", 1800, "1,800 steps to go"),
     ("ja", 1, "残り 1 ステップ"), ("zh_Hans", 1800, "还剩 1,800 步")],
)
def test_steps_left_is_plural_correct(locale: str, left: int, expected: str) -> None:
    snapshot = Snapshot("training", 60, datetime(2026, 1, 1, tzinfo=UTC), 60,
                        Progress(3000 - left, 3000, None, None, None), None)
    assert build_texts(snapshot, load_translations(locale), locale, "x").steps_left == expected


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("en", "This service is paused for maintenance."), ("ja", "このサービス はメンテナンスのため一時停止しています。"),
     ("zh_Hans", "本服务 正在维护，暂停服务。")],
)
def test_an_unnamed_service_is_this_service(locale: str, expected: str) -> None:
    snapshot = Snapshot("unknown", None, None, 60, None, None)
    assert build_texts(snapshot, load_translations(locale), locale, "").message == expected


def _steady(tracker: Tracker, clock: Clock, source: str, steps: range, seconds_per_step: float, total: int) -> None:
    for step in steps:
        clock.now += seconds_per_step
        tracker.record(clock.now, step, total, source)


def test_each_source_has_its_own_estimate_and_exact_sources_win() -> None:
    """The log lags the progress file by a few steps: no restart, no 'late report' juggling; the file wins."""
    clock = Clock()
    tracker = make_tracker(clock, resume=0)
    for step in range(0, 300):
        clock.now += 0.1
        tracker.record(clock.now, step, 900, "file")
        tracker.record(clock.now, max(0, step - 7), 900, "log", priority=PARSED)
    snapshot = tracker.snapshot()
    assert snapshot.source == "file"
    assert snapshot.progress is not None and snapshot.progress.step == 299
    assert snapshot.eta_seconds == pytest.approx(60, abs=2)
    # The file stops (its writer died); after the stall time the log, still moving, takes over.
    for step in range(293, 600):
        clock.now += 1.0
        tracker.record(clock.now, step, 900, "log", priority=PARSED)
    assert tracker.snapshot().source == "log"


def test_only_the_current_epoch_known_gives_progress_without_a_run_eta() -> None:
    clock = Clock()
    tracker = make_tracker(clock, resume=0)
    for step in range(0, 150):
        clock.now += 0.1
        tracker.report(ProgressUpdate(clock.now, 300 + step, 600, "log", scope="epoch", epoch=1,
                                      epoch_step=step, epoch_total=300))
    snapshot = tracker.snapshot()
    assert snapshot.state == "training"
    assert snapshot.eta_seconds is None and snapshot.retry_after == POLICY.unknown
    assert snapshot.progress is not None
    assert (snapshot.progress.step, snapshot.progress.total, snapshot.progress.epoch) == (149, 300, 1)
    assert snapshot.progress.scope == "epoch" and snapshot.progress.rate == pytest.approx(10.0, rel=0.05)
    texts = build_texts(snapshot, load_translations("en"), "en", "studio")
    assert texts.eta_sentence == (
        "Only the current epoch's progress is known, so there is no estimate for the whole run."
    )
    assert texts.progress == "Epoch 1: Step 149 of 300 (50%)"


def test_estimating_and_phases_are_said() -> None:
    clock = Clock()
    tracker = make_tracker(clock, resume=0)
    tracker.record(clock.now, 0, 900, "push")
    clock.now += 3
    tracker.record(clock.now, 1, 900, "push")
    snapshot = tracker.snapshot()
    assert snapshot.state == "estimating" and snapshot.eta_seconds is None
    texts = build_texts(snapshot, load_translations("ja"), "ja", "studio")
    assert texts.eta_sentence == "学習が始まりました。進む速さを測り終えると見込み時間をお知らせします。"
    _steady(tracker, clock, "push", range(2, 100), 0.2, 900)
    clock.now += 0.5
    tracker.record(clock.now, 99, 900, "push", "saving")
    snapshot = tracker.snapshot()
    assert snapshot.state == "training" and snapshot.progress is not None and snapshot.progress.phase == "saving"
    assert build_texts(snapshot, load_translations("en"), "en", "studio").progress == (
        "Step 99 of 900 (11%) · Saving a checkpoint"
    )
