"""Training ETA from (monotonic time, step) samples of one source: pure maths, the clock is always an argument.

Rules (docs/progress.md explains them for operators):

- Intervals. Each step change closes an interval (seconds, steps). The first interval of a run (from the
  first sample, usually the bar appearing, to the next step) is the warm-up: model compilation, data
  loader start-up. It is left out of everything.
- Pauses. An interval whose seconds per step exceed ``outlier_factor`` times the median of the recent
  normal intervals holds a pause (an evaluation, a checkpoint save); so does time spent in a reported
  ``evaluating`` or ``saving`` phase. Only the normal part of such an interval counts towards the rate;
  the excess is pause time.
- Rate: the least-squares slope of steps over normal seconds across the normal intervals of the last
  ``window_seconds`` (at least ``min_intervals`` of them): coarse sampling (a log polled every 0.5 s)
  neither biases it nor makes it jump when an interval enters or leaves the window.
- Rate changes: when both halves of the last ``change_seconds`` (15 s) are faster (or both slower) than
  the whole window by more than ``change_share`` (12 %), the window restarts there, so a real change (a
  larger batch, a longer sequence) is followed within about 20 s while jitter, which moves one half, is
  not.
- Recurring pauses: the pauses still to come are added. A pause seen once is not a rhythm (diffusers
  validates after epoch 0, then every N epochs; a save at P may be a one-off): it predicts none until it
  recurs, unless the trainer's own numbers say so: a pause at the step its first step-numbered save names
  (``save_every``: ``checkpoint-100`` at step 100, the log parser reads it) recurs every that many steps.
  Pauses at a regular step interval
  count one mean pause per period still ahead (one at the total itself is after the last step: the
  Hugging Face Trainer's final evaluation); irregular ones are amortized: their total per step since the
  warm-up, per remaining step. Hiccups under 1 s are only cut out of the rate, and a pause seen across
  neighbouring intervals is one pause.
- In a pause: once no step came for well over a normal interval, the ETA stops counting down (the work
  left does not shrink while a save runs), for up to a minute or twice the longest pause seen.
- Estimating: no ETA until ``ready_intervals`` normal intervals covering ``ready_seconds`` have been seen.
- Raw finish: time of the last step change + remaining steps / rate + the pauses still to come +
  ``resume_seconds``.
- Smoothing: the shown finish moves later at once when the raw finish is later by more than 3 % of the
  remaining time (at least 2 s): a pause or a slowdown is evidence. Any smaller move, and every move
  earlier, is gradual: after a sample ``dt`` seconds after the previous one it closes
  ``1 - exp(-dt / smooth_seconds)`` of the gap to the raw finish.
- States: ``unknown`` without samples or total; ``estimating`` while the rate is not established;
  ``finishing`` once step >= total: remaining is resume_seconds (plus, before any run history, the mean
  pause seen mid-run: the final save or validation) counted from the first sample at the total, then
  ``overdue`` with remaining ``overdue_floor``. Otherwise ``stalled`` after ``stall_seconds``
  without a new step (outside a reported pause phase), ``overdue`` when the shown finish has passed, else
  ``training``. Remaining in ``stalled`` and training ``overdue`` is "if steps resumed now".
- A step lower than the last is a new run (a restart from a checkpoint): everything is forgotten. One
  Estimator follows one source; the Tracker keeps one per source, so a slower source never looks like a
  restart of a faster one.
- Remaining is never below ``MIN_REMAINING`` (1 s), never NaN; None only when it is unknown.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

State = Literal["training", "estimating", "finishing", "overdue", "stalled", "unknown"]
Phase = Literal["training", "evaluating", "saving"]
PHASES: tuple[Phase, ...] = ("training", "evaluating", "saving")

# Retry-After is at least 1 s, and "0 seconds left" is a lie while anything still runs.
MIN_REMAINING = 1.0
# Samples this close in time are one observation (a poll that found several log updates).
_SAME_TIME = 1e-6
# Older samples than this are ignored; small clock jitter is not.
_OLD_TOLERANCE = 1.0
# Bound the work per sample even for a trainer reporting hundreds of steps per second.
_MAX_INTERVALS = 1024
# A raw finish later than the shown one by more than this (seconds, share of the remaining time) is
# shown at once; smaller moves either way are smoothed.
_LATER_AT_ONCE_SECONDS = 2.0
_LATER_AT_ONCE_SHARE = 0.03
# Pauses shorter than this (seconds) are hiccups: cut out of the rate, not amortized as recurring.
_MIN_PAUSE = 1.0
# The ETA holds still in a silence this long (seconds), or twice the longest pause seen.
_HOLD_SECONDS = 60.0
# Pause starts whose step gaps differ by at most this factor are periodic (an evaluation every N steps).
_PERIODIC = 1.25
# Pauses this close (steps) to the previous one are one pause.
_MERGE_STEPS = 3
# Intervals used for the median that tells a pause from a normal interval.
_MEDIAN_OF = 31


@dataclass(frozen=True)
class Estimate:
    """What the estimator knows at one moment; ``remaining`` is None when unknown, else > 0."""

    state: State
    remaining: float | None
    rate: float | None
    step: int | None
    total: int | None
    updated_at: float | None
    phase: Phase | None = None
    first_step: int | None = None
    started_at: float | None = None


class _Interval(NamedTuple):
    end: float  # time the interval ended (monotonic seconds)
    seconds: float  # normal (non-pause) seconds
    steps: int


def _count_ahead(upcoming: float, period: float, total: int) -> int:
    """Pauses at ``upcoming``, ``upcoming + period``, ... before the last step. A bar shows the step before
    a pause a step or two late or early, so one within ``_MERGE_STEPS`` of the total is at the total: after
    the last step, not before it."""
    last = total - max(_MERGE_STEPS, period / 50)
    return 0 if upcoming >= last else math.floor((last - upcoming) / period) + 1


def _ratio(intervals: Sequence[_Interval] | deque[_Interval]) -> float | None:
    steps = sum(item.steps for item in intervals)
    seconds = sum(item.seconds for item in intervals)
    return steps / seconds if steps > 0 and seconds > 0 else None


class Estimator:
    """Feed ``add(t, step, total, phase)`` samples, ask ``estimate(now)``; times are monotonic seconds (a
    wall-clock step must never reach here: intervals would stretch or shrink)."""

    def __init__(
        self,
        *,
        resume_seconds: float,
        stall_seconds: float,
        window_seconds: float = 45.0,
        min_intervals: int = 8,
        outlier_factor: float = 3.0,
        smooth_seconds: float = 5.0,
        overdue_floor: float = 30.0,
        ready_intervals: int = 4,
        ready_seconds: float = 3.0,
        change_seconds: float = 15.0,
        change_share: float = 0.12,
        final_work: bool = False,
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
        self.ready_intervals = ready_intervals
        self.ready_seconds = ready_seconds
        self.change_seconds = change_seconds
        self.change_share = change_share
        self.final_work = final_work
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new run)."""
        self._intervals: deque[_Interval] = deque(maxlen=_MAX_INTERVALS)
        self._last_t: float | None = None  # time of the last step change (or of the end of a pause)
        self._last_step: int | None = None
        self._first_step: int | None = None
        self._started_at: float | None = None
        self._warm_step: int | None = None  # the step at the end of the warm-up interval
        self._total: int | None = None
        self._updated_at: float | None = None
        self._phase: Phase | None = None
        self._pause_since: float | None = None
        self._pause_seconds = 0.0
        self._pauses = 0
        self._pause_step: int | None = None
        self._pause_steps: list[int] = []
        self._save_every: int | None = None
        self._median_interval: float | None = None
        self._longest_pause = 0.0
        self._normal_count = 0
        self._normal_seconds = 0.0
        self._rate: float | None = None
        self._finish: float | None = None
        self._finish_t = 0.0
        self._done_at: float | None = None

    def add(
        self, t: float, step: int, total: int | None, phase: str | None = None, save_every: int | None = None
    ) -> None:
        """Record that ``step`` of ``total`` was reached at time ``t``; a step going back resets.
        ``save_every``: the step its first step-numbered save named (the trainer saves every that many)."""
        if not math.isfinite(t) or step < 0:
            return
        if total is not None and total <= 0:
            total = None
        if self._last_t is not None and self._last_step is not None:
            if t < self._last_t - _OLD_TOLERANCE:
                return
            t = max(t, self._last_t)
            if step < self._last_step:
                self.reset()
        if total != self._total:
            self._total = total
            self._finish = None  # a new total makes the old finish meaningless
            if total is None or step < total:
                self._done_at = None
        self._updated_at = t if self._updated_at is None else max(self._updated_at, t)
        if save_every is not None and save_every > 0 and self._save_every is None:
            self._save_every = save_every
        new_phase: Phase | None = None
        if phase is not None:
            new_phase = phase if phase in PHASES else "training"
        if self._last_t is None or self._last_step is None:
            self._last_t, self._last_step = t, step
            self._first_step, self._started_at = step, t
        elif step > self._last_step:
            if t - self._last_t <= _SAME_TIME and self._intervals:
                # Several updates seen in one observation: fold them into the previous interval.
                last = self._intervals[-1]
                self._intervals[-1] = last._replace(steps=last.steps + step - self._last_step)
            else:
                self._close_interval(t, step, forced_pause=self._pause_since is not None)
            self._last_t, self._last_step = t, step
            if self._pause_since is not None:
                self._pause_since = t  # still in the pause phase, or it ended with these steps
        elif self._pause_since is not None and new_phase == "training":
            # The pause ended with no step since it began: all of it was pause; the interval restarts now.
            self._add_pause(t - self._pause_since)
            self._last_t = t
        if new_phase is not None:
            if new_phase in ("evaluating", "saving"):
                if self._pause_since is None:
                    self._pause_since = t
            else:
                self._pause_since = None
            self._phase = new_phase
        if total is not None and step >= total and self._done_at is None:
            self._done_at = self._last_t
        self._rate = self._window_rate()
        self._smooth()

    def estimate(self, now: float) -> Estimate:
        """The state and remaining seconds at time ``now``; does not change the estimator."""
        if self._last_t is None or self._last_step is None:
            return Estimate("unknown", None, None, None, None, None)
        rate, total, step, last_t = self._rate, self._total, self._last_step, self._last_t
        pause_left = self.pause_left(step, total) if total is not None else 0.0

        def make(state: State, remaining: float | None) -> Estimate:
            return Estimate(
                state, remaining, rate, step, total, self._updated_at, self._phase, self._first_step,
                self._started_at,
            )

        if total is None:
            return make("unknown", None)
        if self._done_at is not None:
            left = self._done_at + self.after_last_step - now
            if left > 0:
                return make("finishing", max(MIN_REMAINING, left))
            return make("overdue", self.overdue_floor)
        if_resumed_now = None
        if rate is not None:
            if_resumed_now = max(
                self.overdue_floor, (total - step) / rate + pause_left + self.resume_seconds
            )
        paused = self._phase in ("evaluating", "saving")
        if now - last_t >= self.stall_seconds and not paused:
            return make("stalled", if_resumed_now)
        if self._finish is None:
            return make("estimating", None)
        left = self._finish - now
        silent = now - last_t
        if rate is not None and (paused or self._pause_after() < silent <= self._hold_limit()):
            # A pause (an evaluation, a checkpoint save) is under way: the work left does not shrink
            # while it lasts, so neither does the ETA; a silence longer than any pause seen (and than
            # a minute) counts down to 'overdue' again.
            left = max(left, (total - step) / rate + pause_left + self.resume_seconds)
        if left <= 0:
            return make("overdue", if_resumed_now)
        return make("training", max(MIN_REMAINING, left))

    def _pause_after(self) -> float:
        """Seconds without a step after which a pause is under way: well past a normal interval."""
        if self._median_interval is None:
            return math.inf
        return self.outlier_factor * self._median_interval + 1.0

    def _hold_limit(self) -> float:
        return max(_HOLD_SECONDS, 2.0 * self._longest_pause)

    @property
    def longest_pause(self) -> float:
        """The longest pause (an evaluation, a checkpoint save) seen in this run so far, in seconds."""
        return self._longest_pause

    @property
    def after_last_step(self) -> float:
        """Seconds from the last step until the services are back, in ``finishing``: ``resume_seconds``, plus
        (with ``final_work``: no run history teaches it yet) the trainer's own work after its last step, a
        final save or validation, taken to be as long as its mean pause mid-run (the same kind of work). Only
        after the last step: a trainer with no final save exits at once, and its exit (the scripts' event)
        then says what follows; counted into the ETA while training, a one-off mid-run save would be
        predicted again at the end of every run."""
        if not self.final_work or self._pauses == 0:
            return self.resume_seconds
        return self.resume_seconds + self._pause_seconds / self._pauses

    @property
    def pause_per_step(self) -> float:
        """Recurring pause seconds per step, once two pauses have been seen; else 0."""
        if self._pauses < 2 or self._last_step is None:
            return 0.0
        steps = self._last_step - (self._warm_step if self._warm_step is not None else self._last_step)
        return self._pause_seconds / steps if steps > 0 else 0.0

    def pause_left(self, step: int, total: int) -> float:
        """Pause seconds still to come before the last step. Pauses at a regular step interval (an
        evaluation every N steps) are counted one by one, those at or after the total excluded (the Hugging
        Face Trainer's final evaluation follows the last step); irregular ones are amortized per step."""
        if self._pauses == 0 or step >= total:
            return 0.0
        starts = self._pause_steps[-8:]
        if self._pauses == 1:
            # One pause is not a rhythm (diffusers validates after epoch 0, then every N epochs), unless it
            # came at a multiple of the step the trainer's first step-numbered save named: it saves every
            # that many steps.
            every = self._save_every
            off = None if every is None else min(starts[-1] % every, every - starts[-1] % every)
            if every is not None and off is not None and off <= max(_MERGE_STEPS, every / 50):
                return _count_ahead(starts[-1] + every, every, total) * self._pause_seconds
            return 0.0
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        if gaps and min(gaps) > 0 and max(gaps) <= _PERIODIC * min(gaps):
            period = statistics.median(gaps)
            return _count_ahead(starts[-1] + period, period, total) * self._pause_seconds / self._pauses
        return (total - step) * self.pause_per_step

    @property
    def ready(self) -> bool:
        """True once the rate rests on enough normal intervals and seconds to show an ETA."""
        return self._normal_count >= self.ready_intervals and self._normal_seconds >= self.ready_seconds

    def _add_pause(self, seconds: float, at: int | None = None) -> None:
        """Count pause time for the amortization: hiccups under ``_MIN_PAUSE`` are only cut out of the
        rate; a pause within ``_MERGE_STEPS`` of the previous one is the same pause (a slow save seen
        across two intervals), not a second one."""
        if seconds < _MIN_PAUSE or self._warm_step is None or self._last_step is None:
            return  # before the first real interval it is part of the warm-up
        step = self._last_step if at is None else at
        self._longest_pause = max(self._longest_pause, seconds)
        self._pause_seconds += seconds
        if self._pause_step is None or step - self._pause_step > _MERGE_STEPS:
            self._pauses += 1
            self._pause_steps.append(step)
            del self._pause_steps[:-32]
        self._pause_step = step

    def _close_interval(self, t: float, step: int, *, forced_pause: bool) -> None:
        """A step change at ``t``: split the interval since the last one into normal and pause time."""
        assert self._last_t is not None and self._last_step is not None
        seconds, steps = t - self._last_t, step - self._last_step
        if self._warm_step is None:
            self._warm_step = step  # the warm-up interval counts for nothing
            return
        costs = [item.seconds / item.steps for item in list(self._intervals)[-_MEDIAN_OF:] if item.steps]
        median = statistics.median(costs) if len(costs) >= 3 else None
        if median is not None and (forced_pause or seconds / steps > self.outlier_factor * median):
            excess = seconds - steps * median
            if excess > 0:
                # Over several steps (a log line every N steps), the pause was at a printed step, most likely
                # the later one (trainers evaluate and save at round steps, and print at round steps).
                self._add_pause(excess, at=step if steps > 1 else None)
                seconds = steps * median
        elif forced_pause and median is None:
            return  # a pause too early to tell its length from the steps around it: skip the interval
        self._intervals.append(_Interval(t, seconds, steps))
        self._median_interval = statistics.median(item.seconds for item in list(self._intervals)[-_MEDIAN_OF:])
        self._normal_count += 1
        self._normal_seconds += seconds
        self._prune(t)
        self._follow_change()

    def _prune(self, newest: float) -> None:
        intervals = self._intervals
        while len(intervals) > self.min_intervals and intervals[0].end < newest - self.window_seconds:
            intervals.popleft()

    def _follow_change(self) -> None:
        """Forget the intervals before a real rate change: when both halves of the last
        ``change_seconds`` disagree with the whole window by more than ``change_share`` in the same
        direction, the window restarts there (jitter moves one half, not both)."""
        intervals = self._intervals
        if len(intervals) < 2 * self.min_intervals:
            return
        newest = intervals[-1].end
        recent = [item for item in intervals if item.end > newest - self.change_seconds]
        if len(recent) < self.min_intervals or len(recent) == len(intervals):
            return
        half = len(recent) // 2
        whole = _ratio(intervals)
        first, second = _ratio(recent[:half]), _ratio(recent[half:])
        if whole is None or first is None or second is None:
            return
        up = first > whole * (1 + self.change_share) and second > whole * (1 + self.change_share)
        down = first < whole * (1 - self.change_share) and second < whole * (1 - self.change_share)
        if up or down:
            while len(intervals) > len(recent):
                intervals.popleft()

    def _window_rate(self) -> float | None:
        """Least-squares slope of steps over normal seconds in the window: window edges that a poller
        blurs by up to a poll interval move it far less than a plain steps-over-seconds ratio."""
        intervals = self._intervals
        steps = sum(item.steps for item in intervals)
        seconds = sum(item.seconds for item in intervals)
        if steps <= 0 or seconds <= 0:
            return None
        if len(intervals) < 4:
            return steps / seconds
        taus, counts = [0.0], [0.0]
        for item in intervals:
            taus.append(taus[-1] + item.seconds)
            counts.append(counts[-1] + item.steps)
        n = len(taus)
        mean_tau, mean_count = sum(taus) / n, sum(counts) / n
        variance = sum((tau - mean_tau) ** 2 for tau in taus)
        if variance <= 0:
            return steps / seconds
        slope = sum((tau - mean_tau) * (count - mean_count) for tau, count in zip(taus, counts, strict=True)) / variance
        return slope if slope > 0 and math.isfinite(slope) else steps / seconds

    def _smooth(self) -> None:
        if self._rate is None or self._total is None or self._done_at is not None or not self.ready:
            return
        assert self._last_t is not None and self._last_step is not None
        remaining_steps = self._total - self._last_step
        raw = (self._last_t + remaining_steps / self._rate + self.pause_left(self._last_step, self._total)
               + self.resume_seconds)
        finish = self._finish
        # Later at once when it is news (a pause, a slowdown), beyond the noise of the rate itself.
        noise = max(_LATER_AT_ONCE_SECONDS, _LATER_AT_ONCE_SHARE * (raw - self._last_t))
        if finish is None or raw >= finish + noise:
            self._finish = raw
        else:
            dt = max(0.0, self._last_t - self._finish_t)
            self._finish = raw + (finish - raw) * math.exp(-dt / self.smooth_seconds)
        self._finish_t = max(self._finish_t, self._last_t)
