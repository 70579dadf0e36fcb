"""Training ETA from (wall-clock, step) samples: pure maths, the clock is always an argument.

Rules (docs/progress.md explains them for operators):

- Rate: over the recent window (the samples of the last ``window_seconds``, but at least
  ``min_intervals`` intervals) each interval between two step changes gives seconds per step.
  Intervals slower than ``outlier_factor`` times the median are pauses (checkpoint writes, evaluation,
  warm-up) and are left out; the rate is the kept steps over the kept seconds. A sum rather than a
  median of rates, so that coarse sampling (a log polled every 0.5 s) does not bias it.
- Raw finish: time of the last step change + remaining steps / rate + ``resume_seconds``.
- Smoothing: the shown finish time moves later at once (a pause or a slowdown is evidence) but moves
  earlier only gradually: after a sample ``dt`` seconds after the previous one it closes
  ``1 - exp(-dt / smooth_seconds)`` of the gap to the raw finish. So the finish moves earlier by at most
  that fraction of the remaining time, and never past the raw estimate.
- States: ``unknown`` without samples or total. ``finishing`` once step >= total: remaining is
  resume_seconds counted from the first sample at the total; when that has passed, ``overdue`` with
  remaining ``overdue_floor`` (the reload is late; ask again soon). Otherwise ``stalled`` after
  ``stall_seconds`` without a new step, ``overdue`` when the shown finish has passed, else ``training``.
  Remaining in ``stalled`` and in training ``overdue`` is "if steps resumed now": remaining steps / rate
  + resume_seconds, at least ``overdue_floor``; None while there is no rate yet (a single sample).
- Remaining is never below ``MIN_REMAINING`` (1 s), never NaN; None only when it is unknown.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Literal, NamedTuple

State = Literal["training", "finishing", "overdue", "stalled", "unknown"]

# Retry-After is at least 1 s, and "0 seconds left" is a lie while anything still runs.
MIN_REMAINING = 1.0
# Samples this close in time are one observation (a poll that found several log updates).
_SAME_TIME = 1e-6
# Older samples than this are ignored; small clock jitter between sources is not.
_OLD_TOLERANCE = 1.0
# A lower step that some sample of this recent past already had is a late report, not a restart.
_LATE_SECONDS = 30.0
# Bound the work per sample even for a trainer reporting hundreds of steps per second.
_MAX_SAMPLES = 1024


@dataclass(frozen=True)
class Estimate:
    """What the estimator knows at one moment; ``remaining`` is None when unknown, else > 0."""

    state: State
    remaining: float | None
    rate: float | None
    step: int | None
    total: int | None
    updated_at: float | None


class _Sample(NamedTuple):
    t: float
    step: int


class Estimator:
    """Feed ``add(t, step, total)`` samples, ask ``estimate(now)``; time is wall-clock seconds.

    A step lower than any seen in the last 30 s is a new run and resets the history; a lower step that
    was seen in that time is a late report from a slower source (a log behind the progress file) and
    is ignored, as are samples more than 1 s older than the newest.
    """

    def __init__(
        self,
        *,
        resume_seconds: float,
        stall_seconds: float,
        window_seconds: float = 120.0,
        min_intervals: int = 8,
        outlier_factor: float = 3.0,
        smooth_seconds: float = 5.0,
        overdue_floor: float = 30.0,
    ) -> None:
        if not (math.isfinite(resume_seconds) and resume_seconds >= 0):
            raise ValueError(f"resume_seconds must be a finite number >= 0, not {resume_seconds!r}")
        if not (math.isfinite(stall_seconds) and stall_seconds > 0):
            raise ValueError(f"stall_seconds must be a finite number > 0, not {stall_seconds!r}")
        self.resume_seconds = float(resume_seconds)
        self.stall_seconds = float(stall_seconds)
        self.window_seconds = window_seconds
        self.min_intervals = min_intervals
        self.outlier_factor = outlier_factor
        self.smooth_seconds = smooth_seconds
        self.overdue_floor = max(MIN_REMAINING, overdue_floor)
        self._samples: deque[_Sample] = deque(maxlen=_MAX_SAMPLES)
        self._total: int | None = None
        self._updated_at: float | None = None
        self._rate: float | None = None
        self._finish: float | None = None
        self._finish_t = 0.0
        self._done_at: float | None = None

    def reset(self) -> None:
        """Forget all samples (a new run)."""
        self._samples.clear()
        self._total = None
        self._updated_at = None
        self._rate = None
        self._finish = None
        self._finish_t = 0.0
        self._done_at = None

    def add(self, t: float, step: int, total: int | None) -> None:
        """Record that ``step`` of ``total`` was reached at wall-clock ``t``; a step going back resets."""
        if not math.isfinite(t) or step < 0:
            return
        if total is not None and total <= 0:
            total = None
        last = self._samples[-1] if self._samples else None
        if last is not None:
            if t < last.t - _OLD_TOLERANCE:
                return
            # Jitter between sources' clocks must not make an interval negative.
            t = max(t, last.t)
            if step < last.step:
                if self._is_late(t, step):
                    return
                self.reset()
                last = None
        if total != self._total:
            self._total = total
            # A new total makes the old finish meaningless; shown again from the next raw estimate.
            self._finish = None
            if total is None or step < total:
                self._done_at = None
        self._updated_at = t if self._updated_at is None else max(self._updated_at, t)
        if last is None:
            self._samples.append(_Sample(t, step))
        elif step > last.step:
            if t - last.t <= _SAME_TIME:
                self._samples[-1] = _Sample(last.t, step)
            else:
                self._samples.append(_Sample(t, step))
        if total is not None and step >= total and self._done_at is None:
            self._done_at = self._samples[-1].t
        self._prune()
        self._rate = self._robust_rate()
        self._smooth()

    def estimate(self, now: float) -> Estimate:
        """The state and remaining seconds at wall-clock ``now``; does not change the estimator."""
        if not self._samples:
            return Estimate("unknown", None, None, None, None, None)
        last = self._samples[-1]
        rate, total = self._rate, self._total

        def make(state: State, remaining: float | None) -> Estimate:
            return Estimate(state, remaining, rate, last.step, total, self._updated_at)

        if total is None:
            return make("unknown", None)
        if self._done_at is not None:
            left = self._done_at + self.resume_seconds - now
            if left > 0:
                return make("finishing", max(MIN_REMAINING, left))
            return make("overdue", self.overdue_floor)
        if_resumed_now = None
        if rate is not None:
            if_resumed_now = max(self.overdue_floor, (total - last.step) / rate + self.resume_seconds)
        if now - last.t >= self.stall_seconds:
            return make("stalled", if_resumed_now)
        if self._finish is None:
            return make("training", None)
        if now >= self._finish:
            return make("overdue", if_resumed_now)
        return make("training", max(MIN_REMAINING, self._finish - now))

    def _is_late(self, t: float, step: int) -> bool:
        """True when a recent sample already had ``step``: a slower source reporting, not a new run."""
        for sample in reversed(self._samples):
            if sample.t < t - _LATE_SECONDS:
                return False
            if sample.step <= step:
                return True
        return False

    def _prune(self) -> None:
        samples = self._samples
        newest = samples[-1].t
        while len(samples) > self.min_intervals + 1 and samples[1].t < newest - self.window_seconds:
            samples.popleft()

    def _robust_rate(self) -> float | None:
        """Steps per second over the recent window, pauses left out; None with fewer than two samples."""
        pairs = list(zip(self._samples, list(self._samples)[1:], strict=False))
        if not pairs:
            return None
        per_step = [(b.t - a.t) / (b.step - a.step) for a, b in pairs]
        limit = self.outlier_factor * statistics.median(per_step)
        steps = seconds = 0.0
        for (a, b), cost in zip(pairs, per_step, strict=True):
            if cost <= limit:
                steps += b.step - a.step
                seconds += b.t - a.t
        return steps / seconds if seconds > 0 else None

    def _smooth(self) -> None:
        if self._rate is None or self._total is None or self._done_at is not None:
            return
        last = self._samples[-1]
        raw = last.t + (self._total - last.step) / self._rate + self.resume_seconds
        if self._finish is None or raw >= self._finish:
            self._finish = raw
        else:
            # Time since the previous update, so the pace does not depend on how often samples come.
            dt = max(0.0, last.t - self._finish_t)
            self._finish = raw + (self._finish - raw) * math.exp(-dt / self.smooth_seconds)
        self._finish_t = max(self._finish_t, last.t)
