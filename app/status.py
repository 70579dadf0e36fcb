"""The shim's current maintenance state: progress updates in, a once-a-second Snapshot out.

Every progress source (progress file, trainer log, push, trainer callbacks through either) hands the
Tracker the same thing, a ``ProgressUpdate``; a new source is one class that produces them and one line
of wiring in ``main.py``. The Tracker keeps one Estimator per source and shows the best source: the
freshest among those updated within the stall time, exact sources (file, push) before parsed logs and
whole-run progress before current-epoch-only progress.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from .eta import MIN_REMAINING, Estimate, Estimator, Phase, State
from .runs import AfterPhase, Learned, ProgressSummary, RunState

Scope = Literal["run", "epoch"]
# What an ETA rests on: training progress, recent runs, MAINT_ETA, or MAINT_RESUME_SECONDS.
Basis = Literal["progress", "history", "static", "setting"]
# While the scripts report what follows the last step, the ETA does not fall below this (seconds).
_AFTER_FLOOR = 10.0
# Sources that know the exact step and total win over ones that parse a log.
_PRIORITY = {"push": 2, "file": 2, "log": 1}


@dataclass(frozen=True)
class ProgressUpdate:
    """One observation from a progress source: ``step`` of ``total`` at wall-clock ``t``.

    ``scope`` is ``"epoch"`` when only the current epoch is known (``step``/``total`` then count from the
    first epoch to the end of the current one, ``epoch_step``/``epoch_total`` within it).
    """

    t: float
    step: int
    total: int | None
    source: str
    phase: str | None = None
    scope: Scope = "run"
    epoch: int | None = None
    epochs: int | None = None
    epoch_step: int | None = None
    epoch_total: int | None = None



@dataclass(frozen=True)
class Progress:
    """Training progress as the JSON `progress` object reports it."""

    step: int
    total: int | None
    fraction: float | None
    rate: float | None
    updated_at: datetime | None
    phase: Phase | None = None
    scope: Scope = "run"
    epoch: int | None = None
    epochs: int | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything a response says about the ETA; responses render from one Snapshot, so they agree."""

    state: State
    eta_seconds: int | None
    eta_at: datetime | None
    retry_after: int
    progress: Progress | None
    source: str | None
    basis: Basis | None = None
    after: AfterPhase | None = None
    trainer_status: int | None = None
    services: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetryPolicy:
    """MAINT_RETRY_AFTER_MIN / _MAX / _UNKNOWN."""

    minimum: int
    maximum: int
    unknown: int

    def retry_after(self, eta_seconds: int | None) -> int:
        """Retry-After for an ETA: the ETA clamped, or the unknown value; always an integer >= 1."""
        if eta_seconds is None:
            return max(1, self.unknown)
        return max(1, self.minimum, min(self.maximum, eta_seconds))


class _Followed:
    """One source's estimator and its latest update."""

    def __init__(self, estimator: Estimator) -> None:
        self.estimator = estimator
        self.last: ProgressUpdate | None = None


class Tracker:
    """Collects progress from every source and serves a Snapshot recomputed at most once a second.

    Thread-safe for `report` (sources may run in threads); `snapshot` is called on the event loop.
    """

    def __init__(
        self,
        *,
        resume_seconds: float,
        stall_seconds: float,
        retry: RetryPolicy,
        static_deadline: datetime | None = None,
        clock: Callable[[], float] = time.time,
        learned: Learned | None = None,
    ) -> None:
        self._learned = learned or Learned()
        # The save-and-reload time: learned from recent runs, else the operator's MAINT_RESUME_SECONDS.
        if self._learned.resume is not None:
            resume_seconds = self._learned.resume
        self._resume_seconds = resume_seconds
        self._stall_seconds = stall_seconds
        Estimator(resume_seconds=resume_seconds, stall_seconds=stall_seconds)  # validates both now
        self._retry = retry
        self._deadline = static_deadline.timestamp() if static_deadline else None
        self._clock = clock
        self._lock = threading.Lock()
        self._sources: dict[str, _Followed] = {}
        self._run: RunState | None = None
        self._cached: Snapshot | None = None
        self._valid_until = 0.0

    @property
    def stall_seconds(self) -> float:
        return self._stall_seconds

    @property
    def resume_seconds(self) -> float:
        return self._resume_seconds

    @property
    def run(self) -> RunState | None:
        """The run as the scripts' events describe it; None before any event (metrics, notifications)."""
        return self._run

    def run_changed(self, run: RunState) -> None:
        """The scripts' events moved the run on (started, trainer exited, services starting or ready)."""
        with self._lock:
            self._run = RunState(**vars(run))
            self._valid_until = 0.0

    def progress_summary(self) -> ProgressSummary | None:
        """First and last step seen (with times), total and mean rate, for the run's history record."""
        with self._lock:
            best = self._best(self._clock())
            if best is None:
                return None
            estimate = best[1].estimator.estimate(self._clock())
            if estimate.step is None:
                return None
            first_step, first_at, last_at = estimate.first_step, estimate.started_at, estimate.updated_at
            rate = None
            if first_at is not None and last_at is not None and first_step is not None and last_at > first_at:
                rate = round((estimate.step - first_step) / (last_at - first_at), 4)
            return ProgressSummary(first_step, estimate.step, estimate.total, first_at, last_at, rate)

    def report(self, update: ProgressUpdate) -> None:
        """A progress observation from one source."""
        with self._lock:
            followed = self._sources.get(update.source)
            if followed is None:
                followed = self._sources[update.source] = _Followed(
                    Estimator(resume_seconds=self._resume_seconds, stall_seconds=self._stall_seconds)
                )
            followed.estimator.add(update.t, update.step, update.total, update.phase)
            followed.last = update
            self._valid_until = 0.0

    def record(self, t: float, step: int, total: int | None, source: str, phase: str | None = None) -> None:
        """Shorthand for ``report(ProgressUpdate(t, step, total, source, phase))``."""
        self.report(ProgressUpdate(t, step, total, source, phase))

    def snapshot(self) -> Snapshot:
        """The current Snapshot; the same object for every request within one second."""
        now = self._clock()
        cached = self._cached
        if cached is not None and now < self._valid_until:
            return cached
        with self._lock:
            snapshot = self._compute(now)
            self._cached = snapshot
            self._valid_until = math.floor(now) + 1.0
        return snapshot

    def _best(self, now: float) -> tuple[str, _Followed] | None:
        def rank(item: tuple[str, _Followed]) -> tuple[bool, int, bool, float]:
            name, followed = item
            last = followed.last
            assert last is not None
            fresh = now - last.t < self._stall_seconds
            return (fresh, _PRIORITY.get(name, 1), last.scope == "run", last.t)

        candidates = [item for item in self._sources.items() if item[1].last is not None]
        return max(candidates, key=rank) if candidates else None

    def _compute(self, now: float) -> Snapshot:
        best = self._best(now)
        estimate: Estimate | None = None
        progress = None
        name: str | None = None
        if best is not None:
            name, followed = best
            estimate = followed.estimator.estimate(now)
            progress = _progress(estimate, followed.last)
        run = self._run
        if run is not None and run.trainer_exit_at is not None:
            # After the last step the scripts say what is happening: no 'overdue' while they do.
            basis: Basis = "history" if self._learned.reload is not None else "setting"
            return self._make(now, "finishing", self._after_remaining(now, run, estimate), progress,
                              source=name, run=run, basis=basis)
        if best is None and run is not None and run.started_at is not None and self._learned.duration is not None:
            from_history = run.started_at + self._learned.duration - now
            if from_history > 0:
                return self._make(now, "training", from_history, None, source="history", basis="history")
        if estimate is not None and progress is not None and progress.scope == "epoch":
            # Only the current epoch is known: progress and rate, but no whole-run ETA dressed up as one.
            state: State = "stalled" if estimate.state == "stalled" else "training"
            return self._make(now, state, None, progress, source=name)
        if estimate is not None and estimate.state != "unknown":
            remaining, state = estimate.remaining, estimate.state
            basis = "progress"
            if state == "finishing":
                basis = "history" if self._learned.resume is not None else "setting"
            if remaining is None and self._deadline is not None and self._deadline > now:
                # Progress is moving but the rate is not established yet: the static ETA stands in.
                remaining = self._deadline - now
                state = "training" if state == "estimating" else state
                basis = "static"
            return self._make(now, state, remaining, progress, source=name, basis=basis)
        if self._deadline is not None:
            remaining = self._deadline - now
            if remaining > 0:
                return self._make(now, "training", remaining, progress, source="static", basis="static")
            return self._make(now, "overdue", None, progress, source="static")
        return self._make(now, "unknown", None, progress, source=name)

    def _after_remaining(self, now: float, run: RunState, estimate: Estimate | None) -> float:
        """Time left once the trainer has exited: the learned reload time from its exit, else the
        save-and-reload time from the last step; at least ``_AFTER_FLOOR`` while the scripts work."""
        if run.phase == "ready":
            return MIN_REMAINING
        assert run.trainer_exit_at is not None
        if self._learned.reload is not None:
            left = run.trainer_exit_at + self._learned.reload - now
        else:
            anchor = run.trainer_exit_at
            if estimate is not None and estimate.updated_at is not None:
                anchor = min(anchor, estimate.updated_at)
            left = anchor + self._resume_seconds - now
        return max(_AFTER_FLOOR, left)

    def _make(
        self,
        now: float,
        state: State,
        remaining: float | None,
        progress: Progress | None,
        source: str | None = None,
        run: RunState | None = None,
        basis: Basis | None = None,
    ) -> Snapshot:
        eta_seconds = None if remaining is None else max(1, math.ceil(remaining))
        eta_at = (
            datetime.fromtimestamp(math.floor(now) + eta_seconds, UTC)
            if eta_seconds is not None
            else None
        )
        return Snapshot(
            state=state,
            eta_seconds=eta_seconds,
            eta_at=eta_at,
            retry_after=self._retry.retry_after(eta_seconds),
            progress=progress,
            source=source,
            basis=basis if eta_seconds is not None else None,
            after=run.phase if run else None,
            trainer_status=run.trainer_status if run else None,
            services=run.services if run else (),
        )


def _progress(estimate: Estimate, last: ProgressUpdate | None) -> Progress | None:
    if estimate.step is None:
        return None
    step, total = estimate.step, estimate.total
    scope: Scope = "run"
    epoch = epochs = None
    if last is not None:
        scope, epoch, epochs = last.scope, last.epoch, last.epochs
        if last.scope == "epoch" and last.epoch_step is not None:
            step, total = last.epoch_step, last.epoch_total
    fraction = None
    if total:
        fraction = round(min(1.0, max(0.0, step / total)), 4)
    updated = (
        datetime.fromtimestamp(estimate.updated_at, UTC).replace(microsecond=0)
        if estimate.updated_at is not None
        else None
    )
    rate = round(estimate.rate, 3) if estimate.rate is not None else None
    return Progress(step, total, fraction, rate, updated, estimate.phase, scope, epoch, epochs)
