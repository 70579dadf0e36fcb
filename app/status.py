"""The shim's current maintenance state: progress samples in, a once-a-second Snapshot out."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .eta import Estimator, State


@dataclass(frozen=True)
class Progress:
    """Training progress as the JSON `progress` object reports it."""

    step: int
    total: int | None
    fraction: float | None
    rate: float | None
    updated_at: datetime | None


@dataclass(frozen=True)
class Snapshot:
    """Everything a response says about the ETA; responses render from one Snapshot, so they agree."""

    state: State
    eta_seconds: int | None
    eta_at: datetime | None
    retry_after: int
    progress: Progress | None
    source: str | None


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


class Tracker:
    """Collects progress from every source and serves a Snapshot recomputed at most once a second.

    Thread-safe for `record` (sources may run in threads); `snapshot` is called on the event loop.
    """

    def __init__(
        self,
        *,
        resume_seconds: float,
        stall_seconds: float,
        retry: RetryPolicy,
        static_deadline: datetime | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._estimator = Estimator(resume_seconds=resume_seconds, stall_seconds=stall_seconds)
        self._retry = retry
        self._deadline = static_deadline.timestamp() if static_deadline else None
        self._clock = clock
        self._lock = threading.Lock()
        self._source: str | None = None
        self._has_samples = False
        self._cached: Snapshot | None = None
        self._valid_until = 0.0

    def record(self, t: float, step: int, total: int | None, source: str) -> None:
        """A progress observation from `source` (file, log, push) at wall-clock time `t`."""
        with self._lock:
            self._estimator.add(t, step, total)
            self._has_samples = True
            self._source = source
            self._valid_until = 0.0

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

    def _compute(self, now: float) -> Snapshot:
        estimate = self._estimator.estimate(now) if self._has_samples else None
        progress = None
        if estimate is not None and estimate.step is not None:
            fraction = None
            if estimate.total:
                fraction = round(min(1.0, max(0.0, estimate.step / estimate.total)), 4)
            updated = (
                datetime.fromtimestamp(estimate.updated_at, UTC).replace(microsecond=0)
                if estimate.updated_at is not None
                else None
            )
            rate = round(estimate.rate, 3) if estimate.rate is not None else None
            progress = Progress(estimate.step, estimate.total, fraction, rate, updated)
        if estimate is not None and estimate.state != "unknown":
            remaining = estimate.remaining
            if remaining is None and self._deadline is not None and self._deadline > now:
                # Progress is moving but there is no rate yet (one sample): the static ETA stands in.
                remaining = self._deadline - now
            return self._make(now, estimate.state, remaining, progress)
        if self._deadline is not None:
            remaining = self._deadline - now
            if remaining > 0:
                return self._make(now, "training", remaining, progress, source="static")
            return self._make(now, "overdue", None, progress, source="static")
        return self._make(now, "unknown", None, progress)

    def _make(
        self,
        now: float,
        state: State,
        remaining: float | None,
        progress: Progress | None,
        source: str | None = None,
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
            source=source or self._source,
        )
