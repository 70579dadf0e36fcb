"""The shim's current maintenance state: progress updates in, a once-a-second Snapshot out.

Every progress source (the followers in ``sources/``, the push, trainer callbacks through either) hands
the Tracker the same thing, a ``ProgressUpdate`` carrying its source's priority; a new source is its
module in ``sources/`` and its settings module (app/settings/sources/). The Tracker keeps one Estimator
per source and shows the best source: the freshest among those updated within the stall time, higher
priority first (exact sources: file, push, before parsed logs), whole-run progress before
current-epoch-only progress.

Updates may name the GPU node that trains (``node``): the estimators are then kept per (node, source), each
node gets its own snapshot from its own sources (its own stall timer), and the service's snapshot is the
node coming back earliest. Without any node named, nothing of this shows.

Time: every interval and ETA is computed on the Tracker's monotonic ``clock`` (``time.monotonic``), so a
wall-clock step (NTP, a resumed VM, an operator's ``date -s``) drops no update and moves no ETA. The wall
clock (``wall_clock``) only turns results into times people read (``eta_at``, ``updated_at``) and takes the
scripts' run events (wall-clock seconds written by other processes) in. Numbers are bounded where they
enter: steps and totals at ``MAX_COUNT`` (the push API's cap), ETAs at ``MAX_ETA_SECONDS``, rates at
``MAX_RATE``, so that every answer can be rendered whatever a source reports.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from ..nodes import MAX_NODES, NodeLimitError, is_node_name
from .eta import MIN_REMAINING, Estimate, Estimator, Phase, State
from .runs import AfterPhase, Learned, ProgressSummary, RunState

logger = logging.getLogger("maintenance_shim")

Scope = Literal["run", "epoch"]
# What an ETA rests on: training progress, recent runs, MAINT_ETA, or MAINT_RESUME_SECONDS.
Basis = Literal["progress", "history", "static", "setting"]
# While the scripts report what follows the last step, the ETA does not fall below this (seconds).
_AFTER_FLOOR = 10.0
# A ProgressUpdate's priority: sources that know the exact step and total win over ones that parse text.
EXACT = 2
PARSED = 1
# Steps and totals beyond this are refused (the push API's Field(le=...) and the file and log parsers say the
# same); ETAs are shown at most this far ahead (a year); rates at most this high (steps per second).
MAX_COUNT = 10**12
MAX_ETA_SECONDS = 365 * 24 * 3600
MAX_RATE = 1e9


@dataclass(frozen=True)
class ProgressUpdate:
    """One observation from a progress source: ``step`` of ``total`` at ``t`` on the Tracker's monotonic clock.

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
    node: str | None = None
    # The source saw no training progress yet (what it took for it was a side task: a bar that finished
    # before training): the state is 'estimating', never 'finishing' or 'overdue'.
    pending: bool = False
    # The step the trainer's first step-numbered save named (``checkpoint-100``): it saves every that many.
    save_every: int | None = None
    # Among fresh sources, the higher wins (EXACT, PARSED); each source's module says its own.
    priority: int = EXACT


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
class NodeSnapshot:
    """One node's own state, ETA and progress, from its own sources (as a Snapshot is, with no run events)."""

    node: str
    state: State
    eta_seconds: int | None
    eta_at: datetime | None
    progress: Progress | None
    source: str | None
    basis: Basis | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything a response says about the ETA; responses render from one Snapshot, so they agree.

    ``nodes`` (sorted by name) once any update named a node; the rest is then the node coming back earliest.
    """

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
    nodes: tuple[NodeSnapshot, ...] = ()
    # A sentence for the operator about the progress sources (a log whose progress is invisible), or None.
    notice: str | None = None


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
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] | None = None,
        learned: Learned | None = None,
        first_run: bool = False,
        startup_seconds: float | None = None,
    ) -> None:
        """`clock` (monotonic seconds) times updates and ETAs; `wall_clock` (default `time.time`, or `clock`
        itself when a test gives only a clock) only turns them into wall-clock times for display."""
        self._learned = learned or Learned()
        # resume_seconds is only the default (MAINT_RESUME_SECONDS not set): before any history, the run's
        # own save pauses and the services' measured start-up stand in for it (_allowance).
        self._first_run = first_run
        self._startup = startup_seconds
        # The save-and-reload time: learned from recent runs, else the operator's MAINT_RESUME_SECONDS.
        if self._learned.resume is not None:
            resume_seconds = self._learned.resume
        self._resume_seconds = resume_seconds
        self._stall_seconds = stall_seconds
        Estimator(resume_seconds=resume_seconds, stall_seconds=stall_seconds)  # validates both now
        self._retry = retry
        self._clock = clock
        if wall_clock is None:
            wall_clock = time.time if clock is time.monotonic else clock
        self._wall_clock = wall_clock
        # The static ETA on the monotonic clock, fixed now: a later clock step does not move it.
        self._deadline = self._from_wall(static_deadline.timestamp()) if static_deadline else None
        # Wall-clock times of run events -> monotonic, each converted once, when first seen.
        self._event_times: dict[float, float] = {}
        self._lock = threading.Lock()
        # node (None: untagged) -> source name -> its estimator.
        self._groups: dict[str | None, dict[str, _Followed]] = {}
        # Nodes named so far or reserved for configured sources; at most MAX_NODES.
        self._nodes: set[str] = set()
        self._run: RunState | None = None
        self._cached: Snapshot | None = None
        self._valid_until = 0.0
        self._failures: set[str] = set()
        self._notice: str | None = None

    def notice(self, text: str | None) -> None:
        """A progress source's sentence for the operator (None clears it); shown on status."""
        with self._lock:
            self._notice = text
            self._valid_until = 0.0

    def now(self) -> float:
        """The current time on the Tracker's (monotonic) clock, for a ProgressUpdate's ``t``."""
        return self._clock()

    def _from_wall(self, wall: float) -> float:
        """A wall-clock time as a time on the monotonic clock, by how far it is from the wall clock now."""
        return self._clock() - (self._wall_clock() - wall)

    def _to_wall(self, t: float) -> float:
        """A monotonic time as a wall-clock time, by how far it is from the monotonic clock now."""
        return self._wall_clock() - (self._clock() - t)

    def _event_time(self, wall: float) -> float:
        found = self._event_times.get(wall)
        if found is None:
            found = self._event_times[wall] = self._from_wall(wall)
        return found

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
            now = self._clock()
            best = self._best(now, self._groups.get(self._choose(now)[0], {}))
            if best is None:
                return None
            estimate = best[1].estimator.estimate(self._clock())
            if estimate.step is None:
                return None
            first_step, first_at, last_at = estimate.first_step, estimate.started_at, estimate.updated_at
            rate = None
            if first_at is not None and last_at is not None and first_step is not None and last_at > first_at:
                rate = round((estimate.step - first_step) / (last_at - first_at), 4)
            # The history file holds wall-clock times.
            first_wall = None if first_at is None else round(self._to_wall(first_at), 3)
            last_wall = None if last_at is None else round(self._to_wall(last_at), 3)
            return ProgressSummary(first_step, estimate.step, estimate.total, first_wall, last_wall, rate)

    def reserve_nodes(self, names: Iterable[str]) -> None:
        """Count these nodes (a configured source's) among the tracked ones from the start, so that pushes
        naming other nodes can never crowd them out; ValueError for a bad name or too many."""
        with self._lock:
            wanted = self._nodes | set(names)
            bad = sorted(name for name in wanted if not is_node_name(name))
            if bad:
                raise ValueError(f"not a node name: {bad[0]!r}")
            if len(wanted) > MAX_NODES:
                raise NodeLimitError(f"at most {MAX_NODES} nodes are tracked")
            self._nodes = wanted

    def report(self, update: ProgressUpdate) -> None:
        """A progress observation from one source (of one node, when it names one).

        Raises ValueError for a bad node name, a step or total beyond ``MAX_COUNT`` or a time that is not a
        number, and NodeLimitError for a node beyond ``MAX_NODES``; nothing changes then.
        """
        if update.step > MAX_COUNT or (update.total is not None and update.total > MAX_COUNT):
            raise ValueError(f"step and total must be at most {MAX_COUNT:.0e}")
        if not math.isfinite(update.t):
            raise ValueError(f"not a time: {update.t!r}")
        with self._lock:
            node = update.node
            if node is not None and node not in self._nodes:
                if not is_node_name(node):
                    raise ValueError(f"not a node name: {node!r}")
                if len(self._nodes) >= MAX_NODES:
                    raise NodeLimitError(
                        f"{MAX_NODES} nodes are tracked already; a report for a new node ({node!r}) is refused"
                    )
                self._nodes.add(node)
            sources = self._groups.setdefault(node, {})
            followed = sources.get(update.source)
            if followed is None:
                followed = sources[update.source] = _Followed(
                    Estimator(resume_seconds=self._resume_seconds, stall_seconds=self._stall_seconds,
                              final_work=self._learned.resume is None)
                )
            # The allowance is in the shown finish each sample moves (earlier only gradually): set it first.
            followed.estimator.resume_seconds = self._allowance(followed.estimator)
            followed.estimator.add(update.t, update.step, update.total, update.phase, update.save_every)
            followed.last = update
            self._valid_until = 0.0

    def record(
        self, t: float, step: int, total: int | None, source: str, phase: str | None = None, node: str | None = None,
        priority: int = EXACT,
    ) -> None:
        """Shorthand for ``report(ProgressUpdate(t, step, total, source, phase, node=node, priority=priority))``."""
        self.report(ProgressUpdate(t, step, total, source, phase, node=node, priority=priority))

    def snapshot(self) -> Snapshot:
        """The current Snapshot; the same object for every request within one second."""
        now = self._clock()
        cached = self._cached
        if cached is not None and now < self._valid_until:
            return cached
        with self._lock:
            try:
                snapshot = self._compute(now)
            except Exception as error:  # never a failed request: an unknown ETA, logged once per kind
                snapshot = self._unknown(error)
            if self._notice is not None:
                snapshot = replace(snapshot, notice=self._notice)
            self._cached = snapshot
            self._valid_until = math.floor(now) + 1.0
        return snapshot

    def _unknown(self, error: Exception) -> Snapshot:
        kind = type(error).__name__
        if kind not in self._failures:
            self._failures.add(kind)
            logger.error("cannot compute the ETA; answering with an unknown one", exc_info=error)
        return Snapshot("unknown", None, None, self._retry.retry_after(None), None, None)

    def _best(self, now: float, sources: dict[str, _Followed]) -> tuple[str, _Followed] | None:
        def rank(item: tuple[str, _Followed]) -> tuple[bool, int, bool, float]:
            _, followed = item
            last = followed.last
            assert last is not None
            fresh = now - last.t < self._stall_seconds
            return (fresh, last.priority, last.scope == "run", last.t)

        candidates = [item for item in sources.items() if item[1].last is not None]
        return max(candidates, key=rank) if candidates else None

    def _choose(self, now: float) -> tuple[str | None, Snapshot | None, dict[str, Snapshot]]:
        """The node the service's snapshot follows (None: the untagged sources), its snapshot, and each tagged
        node's own snapshot (no run events); no snapshots while no update named a node.

        Among nodes with an ETA in an active state the earliest wins, then those training without one, then
        overdue, stalled and unknown ones; untagged sources take part like a node of their own.
        """
        tagged = sorted(node for node in self._groups if node is not None)
        if not tagged:
            return None, None, {}
        nodes = {node: self._compute_group(now, self._groups[node], None) for node in tagged}
        candidates: dict[str | None, Snapshot] = {node: item for node, item in nodes.items()}
        if any(item.last is not None for item in self._groups.get(None, {}).values()):
            candidates[None] = self._compute_group(now, self._groups[None], None)
        chosen = min(candidates, key=lambda node: _service_rank(candidates[node], node))
        return chosen, candidates[chosen], nodes

    def _compute(self, now: float) -> Snapshot:
        chosen, top, nodes = self._choose(now)
        if top is None:
            return self._compute_group(now, self._groups.get(None, {}), self._run)
        if self._run is not None:  # the scripts' events (the trainer's exit) apply to the service as a whole
            top = self._compute_group(now, self._groups[chosen], self._run)
        return replace(
            top,
            nodes=tuple(
                NodeSnapshot(node, item.state, item.eta_seconds, item.eta_at, item.progress, item.source, item.basis)
                for node, item in nodes.items()
            ),
        )

    def _compute_group(self, now: float, sources: dict[str, _Followed], run: RunState | None) -> Snapshot:
        """The existing per-source logic on one node's sources (or the untagged ones), with ``run`` events."""
        best = self._best(now, sources)
        estimate: Estimate | None = None
        progress = None
        name: str | None = None
        allowance = self._resume_seconds
        if best is not None:
            name, followed = best
            allowance = followed.estimator.resume_seconds = self._allowance(followed.estimator)
            estimate = followed.estimator.estimate(now)
            progress = _progress(estimate, followed.last, self._to_wall)
        if run is not None and run.trainer_exit_at is not None:
            # After the last step the scripts say what is happening: no 'overdue' while they do.
            basis: Basis = "history" if self._learned.reload is not None else "setting"
            return self._make(now, "finishing", self._after_remaining(now, run, estimate, allowance), progress,
                              source=name, run=run, basis=basis)
        if best is None and run is not None and run.started_at is not None and self._learned.duration is not None:
            from_history = self._event_time(run.started_at) + self._learned.duration - now
            if from_history > 0:
                return self._make(now, "training", from_history, None, source="history", basis="history")
        if best is not None and best[1].last is not None and best[1].last.pending:
            # Model loading, caching, a baseline sample: training has not started.
            return self._make(now, "estimating", None, None, source=name)
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

    def _allowance(self, estimator: Estimator) -> float:
        """The save-and-reload time added after the last step: learned from the run history; else
        MAINT_RESUME_SECONDS when it is set; else (a first run) the longest save pause seen in this run plus
        the time the scripts last took to bring the services back (startup.json), or, never measured, the
        time this run's switch in took; each 0 until known. Low rather than high:
        the shown ETA moves later at once when a save shows up, but earlier only gradually."""
        if self._learned.resume is not None or not self._first_run:
            return self._resume_seconds
        estimator.final_work = False  # the final save is in this allowance already (its longest save)
        back = self._startup
        if back is None and self._run is not None:
            back = self._run.switch_seconds  # never measured: the switch in stands in for the way back
        return estimator.longest_pause + (back or 0.0)

    def _after_remaining(self, now: float, run: RunState, estimate: Estimate | None, allowance: float) -> float:
        """Time left once the trainer has exited: the learned reload time from its exit, else the
        save-and-reload time from the last step; at least ``_AFTER_FLOOR`` while the scripts work."""
        if run.phase == "ready":
            return MIN_REMAINING
        assert run.trainer_exit_at is not None
        exit_at = self._event_time(run.trainer_exit_at)
        if self._learned.reload is not None:
            left = exit_at + self._learned.reload - now
        else:
            anchor = exit_at
            if estimate is not None and estimate.updated_at is not None:
                anchor = min(anchor, estimate.updated_at)
            left = anchor + allowance - now
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
        eta_seconds = None
        if remaining is not None and not math.isnan(remaining):
            eta_seconds = max(1, math.ceil(min(remaining, MAX_ETA_SECONDS)))
        eta_at = (
            datetime.fromtimestamp(math.floor(self._wall_clock()) + eta_seconds, UTC)
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


_ACTIVE: tuple[State, ...] = ("training", "finishing")


def _service_rank(snapshot: Snapshot, node: str | None) -> tuple[int, float, str]:
    """Sort key of a node for the service's snapshot: the one coming back earliest first."""
    if snapshot.state in _ACTIVE and snapshot.eta_seconds is not None:
        kind = 0
    elif snapshot.state in ("estimating", "training"):
        kind = 1
    else:
        kind = {"finishing": 1, "overdue": 2, "stalled": 3}.get(snapshot.state, 4)
    eta = math.inf if snapshot.eta_seconds is None else float(snapshot.eta_seconds)
    return kind, eta, node or ""


def _progress(estimate: Estimate, last: ProgressUpdate | None, to_wall: Callable[[float], float]) -> Progress | None:
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
        datetime.fromtimestamp(to_wall(estimate.updated_at), UTC).replace(microsecond=0)
        if estimate.updated_at is not None
        else None
    )
    rate = round(min(estimate.rate, MAX_RATE), 3) if estimate.rate is not None else None
    return Progress(step, total, fraction, rate, updated, estimate.phase, scope, epoch, epochs)
