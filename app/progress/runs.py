"""What happens around the training steps: the scripts' run events in, the run history out.

The switching scripts append one JSON line per event to ``$MAINT_STATE_DIR/events.jsonl``
(``start_maintenance.sh`` empties it):

- ``{"t": ..., "event": "start"}``: maintenance began;
- ``{"t": ..., "event": "switched", "seconds": 1.2}``: the traffic is on the shim (the switch's own time);
- ``{"t": ..., "event": "trainer-exit", "status": 0}``: the wrapped training command ended;
- ``{"t": ..., "event": "services-starting", "services": ["studio"]}``: their start hooks run;
- ``{"t": ..., "event": "services-waiting", "services": ["studio"]}``: waiting for their health checks;
- ``{"t": ..., "event": "services-ready", "services": ["studio"]}``: all of them answer again.

Each finished run appends one ``HistoryRecord`` to ``$MAINT_STATE_DIR/history.jsonl``. The history
teaches the time from the last training step until the services are back (the checkpoint save and the
model reload, the largest term of the ETA after the last step), and gives an estimate before any
progress arrives (the median duration of recent runs). Pure logic here; file access in ``RunLog``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol

from ..files import open_regular
from ..statedir import EVENTS_FILE, HISTORY_FILE, REQUESTS_FILE, STARTUP_FILE, SUMMARY_FILE, write_json_atomically

logger = logging.getLogger("maintenance_shim.runs")

# Runs the learned times are taken from (the median of these).
RECENT_RUNS = 5
MAX_EVENTS_BYTES = 256 * 1024
MAX_HISTORY_BYTES = 4 * 1024 * 1024

AfterPhase = Literal["trainer-exited", "starting", "waiting", "ready"]
_EVENT_PHASES: dict[str, AfterPhase] = {
    "trainer-exit": "trainer-exited",
    "services-starting": "starting",
    "services-waiting": "waiting",
    "services-ready": "ready",
}


@dataclass(frozen=True)
class RunEvent:
    """One line of the events file."""

    t: float
    event: str
    status: int | None = None
    services: tuple[str, ...] = ()
    seconds: float | None = None  # `switched`: how long the switch in took (its drain left out)


def parse_event(line: str) -> RunEvent:
    """One events-file line -> RunEvent; ValueError saying what is wrong."""
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    t, event = data.get("t"), data.get("event")
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t <= 0:
        raise ValueError(f"'t' is not a time: {t!r}")
    if event not in ("start", "switched") and event not in _EVENT_PHASES:
        raise ValueError(f"unknown event {event!r}")
    status = data.get("status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        raise ValueError(f"'status' is not an integer: {status!r}")
    services = data.get("services") or []
    if not isinstance(services, list) or not all(isinstance(item, str) for item in services):
        raise ValueError("'services' is not a list of names")
    seconds = data.get("seconds")
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= 86400
    ):
        raise ValueError(f"'seconds' is not a duration: {seconds!r}")
    return RunEvent(float(t), event, status, tuple(services), None if seconds is None else float(seconds))


def event_line(t: float, event: str, status: int | None = None, services: tuple[str, ...] = (),
               seconds: float | None = None) -> str:
    """One events-file line, as parse_event reads it; ValueError for an event it would refuse."""
    line = json.dumps({"t": t, "event": event, **({"status": status} if status is not None else {}),
                       **({"seconds": seconds} if seconds is not None else {}),
                       "services": list(services)}, separators=(",", ":"))
    parse_event(line)
    return line


@dataclass
class RunState:
    """The current run as the events describe it."""

    started_at: float | None = None
    trainer_exit_at: float | None = None
    trainer_status: int | None = None
    phase: AfterPhase | None = None
    services: tuple[str, ...] = ()
    ready_at: float | None = None
    switch_seconds: float | None = None  # the scripts' switch in, measured: a first guess at the way back

    def apply(self, event: RunEvent) -> None:
        """Take one event into account."""
        if event.event == "start":
            self.trainer_exit_at = self.trainer_status = self.phase = self.ready_at = None
            self.switch_seconds = None
            self.services = ()
            self.started_at = event.t
            return
        if event.event == "switched":
            self.switch_seconds = event.seconds
            return
        phase = _EVENT_PHASES[event.event]
        if phase == "trainer-exited":
            self.trainer_exit_at, self.trainer_status = event.t, event.status
        elif self.trainer_exit_at is None:
            # Stopped by hand (no wrapped command): the services start now, so training is over.
            self.trainer_exit_at = event.t
        if phase == "ready":
            self.ready_at = event.t
        self.phase = phase
        if event.services:
            self.services = event.services


@dataclass(frozen=True)
class HistoryRecord:
    """One finished run, as ``history.jsonl`` keeps it (times are Unix seconds)."""

    started_at: float | None
    ready_at: float
    first_step: int | None = None
    last_step: int | None = None
    total: int | None = None
    first_step_at: float | None = None
    last_step_at: float | None = None
    mean_rate: float | None = None
    trainer_exit_at: float | None = None
    trainer_status: int | None = None
    services: list[str] = field(default_factory=list)
    # The shim's request counts for the run (traffic.py: turned away per service and format, distinct
    # clients, peak requests per second); None without them.
    requests: dict[str, Any] | None = None

    @property
    def duration(self) -> float | None:
        """From the start of maintenance until the services answered again."""
        return None if self.started_at is None else self.ready_at - self.started_at

    @property
    def resume(self) -> float | None:
        """From the last training step until the services answered again (save + reload)."""
        return None if self.last_step_at is None else self.ready_at - self.last_step_at

    @property
    def reload(self) -> float | None:
        """From the trainer's exit until the services answered again."""
        return None if self.trainer_exit_at is None else self.ready_at - self.trainer_exit_at

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> HistoryRecord:
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = {item.name for item in fields(cls)}
        values: dict[str, Any] = {key: value for key, value in data.items() if key in known}
        record = cls(**values)
        for name in ("started_at", "ready_at", "first_step_at", "last_step_at", "trainer_exit_at", "mean_rate"):
            value = getattr(record, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not math.isfinite(value)):
                raise ValueError(f"{name} is not a number: {value!r}")
        if record.requests is not None and not isinstance(record.requests, dict):
            raise ValueError("requests is not an object")
        for name in ("first_step", "last_step", "total", "trainer_status"):
            value = getattr(record, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{name} is not an integer: {value!r}")
        return record


@dataclass(frozen=True)
class Learned:
    """Medians over recent runs; None where no run tells."""

    resume: float | None = None
    reload: float | None = None
    duration: float | None = None
    runs: int = 0


def _median(values: Iterable[float | None]) -> float | None:
    kept = [value for value in values if value is not None and value >= 0]
    return statistics.median(kept) if kept else None


def learn(records: Sequence[HistoryRecord], recent: int = RECENT_RUNS) -> Learned:
    """What the last ``recent`` runs teach."""
    last = list(records)[-recent:]
    return Learned(
        resume=_median(record.resume for record in last),
        reload=_median(record.reload for record in last),
        duration=_median(record.duration for record in last),
        runs=len(last),
    )


def read_history(path: Path) -> list[HistoryRecord]:
    """The records in ``path``; a missing file is no history, a bad line is skipped with one warning."""
    try:
        fd, info = open_regular(path)  # a FIFO or a device there is refused, never waited on
    except FileNotFoundError:
        return []
    except OSError as error:
        logger.warning("%s: cannot read the run history: %s", path, error)
        return []
    try:
        data = os.pread(fd, MAX_HISTORY_BYTES + 1, max(0, info.st_size - MAX_HISTORY_BYTES - 1))
    except OSError as error:
        logger.warning("%s: cannot read the run history: %s", path, error)
        return []
    finally:
        os.close(fd)
    if len(data) > MAX_HISTORY_BYTES:
        # Keep the newest part: whole lines after the first newline of the tail.
        data = data[-MAX_HISTORY_BYTES:].split(b"\n", 1)[-1]
    records: list[HistoryRecord] = []
    bad = 0
    for line in data.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            records.append(HistoryRecord.from_json(line))
        except (ValueError, TypeError, RecursionError):
            bad += 1
    if bad:
        logger.warning("%s: %d line(s) of the run history are not valid records; skipped", path, bad)
    return records


def append_history(path: Path, record: HistoryRecord) -> None:
    """Append one record (one line, one write: readers never see half a record)."""
    line = (record.to_json() + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class EventsFollower:
    """Follows ``events.jsonl`` (small, appended; emptied at each start) into a RunState.

    ``poll_once`` returns the events that are new since the last poll; a bad line is skipped with one
    warning per line number.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = RunState()
        self._identity: tuple[int, int] | None = None
        self._offset = 0
        self._partial = b""
        self._line = 0
        self._warned: set[int] = set()

    def poll_once(self) -> list[RunEvent]:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return []
        except OSError as error:
            logger.warning("%s: cannot stat the events file: %s", self.path, error)
            return []
        identity = (stat.st_dev, stat.st_ino)
        if identity != self._identity or stat.st_size < self._offset:
            self._identity, self._offset, self._partial, self._line = identity, 0, b"", 0
            self._warned.clear()
            self.state = RunState()
        if stat.st_size == self._offset:
            return []
        try:
            fd, _ = open_regular(self.path)
            try:
                data = os.pread(fd, MAX_EVENTS_BYTES, self._offset)
            finally:
                os.close(fd)
        except OSError as error:
            logger.warning("%s: cannot read the events file: %s", self.path, error)
            return []
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > MAX_EVENTS_BYTES:
            self._partial = b""
        events = []
        for raw in lines:
            self._line += 1
            if not raw.strip():
                continue
            try:
                event = parse_event(raw.decode("utf-8", errors="replace"))
            except ValueError as error:
                if self._line not in self._warned:
                    self._warned.add(self._line)
                    logger.warning("%s: line %d skipped: %s", self.path, self._line, error)
                continue
            self.state.apply(event)
            events.append(event)
        return events


@dataclass(frozen=True)
class ProgressSummary:
    """What the shim saw of the training steps, for the run's history record."""

    first_step: int | None = None
    last_step: int | None = None
    total: int | None = None
    first_step_at: float | None = None
    last_step_at: float | None = None
    mean_rate: float | None = None


class RunRecorder(Protocol):
    """What the RunWatcher needs from the Tracker."""

    def run_changed(self, run: RunState) -> None: ...

    def progress_summary(self) -> ProgressSummary | None: ...


class RunWatcher:
    """Follows the events file into the tracker, and keeps ``progress-summary.json`` up to date for the
    run's history record (``maintenance-shim history --record``, run by stop_maintenance.sh once the
    services answer: in port mode the shim is gone by then)."""

    def __init__(self, state_dir: Path, recorder: RunRecorder, poll_interval: float = 0.5) -> None:
        self.events = EventsFollower(state_dir / EVENTS_FILE)
        self.summary_path = state_dir / SUMMARY_FILE
        self.recorder = recorder
        self.poll_interval = poll_interval
        self._written: ProgressSummary | None = None
        self._failed = False

    def poll_once(self) -> None:
        try:
            if self.events.poll_once():
                self.recorder.run_changed(self.events.state)
            summary = self.recorder.progress_summary()
            if summary is not None and summary != self._written:
                write_json_atomically(self.summary_path, asdict(summary))
                self._written = summary
        except Exception as error:  # never let bookkeeping hurt serving
            if not self._failed:
                self._failed = True
                logger.warning("run events and summary: %r", error)

    async def run(self) -> None:
        import asyncio  # here: `maintenance-shim event` (a process start per event) imports this module too

        while True:
            self.poll_once()
            await asyncio.sleep(self.poll_interval)

    def close(self) -> None:
        """A last look before the shim stops."""
        self.poll_once()


def read_summary(state_dir: Path) -> ProgressSummary:
    """The shim's last progress summary; an empty one when missing or unreadable."""
    try:
        data = json.loads((state_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
        known = {item.name for item in fields(ProgressSummary)}
        return ProgressSummary(**{key: value for key, value in data.items() if key in known})
    except (OSError, ValueError, TypeError, AttributeError):
        return ProgressSummary()


def read_requests(state_dir: Path) -> dict[str, Any] | None:
    """The shim's last request counts; None when missing or unreadable."""
    try:
        data = json.loads((state_dir / REQUESTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_startup(state_dir: Path) -> float | None:
    """Seconds the services last took from their START hooks to a passed health check, as the scripts
    measured it (stop_maintenance.sh, a rollback); None when never measured or unreadable."""
    try:
        data = json.loads((state_dir / STARTUP_FILE).read_text(encoding="utf-8"))
        seconds = float(data["seconds"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return seconds if 0 <= seconds <= 86400 else None


def read_run(state_dir: Path) -> RunState:
    """The run the events file describes."""
    follower = EventsFollower(state_dir / EVENTS_FILE)
    follower.poll_once()
    return follower.state


def record_run(state_dir: Path, ready_at: float) -> HistoryRecord:
    """Build the finished run's record from the events and the shim's summary, and append it."""
    run = read_run(state_dir)
    summary = read_summary(state_dir)
    record = HistoryRecord(
        started_at=run.started_at,
        ready_at=run.ready_at or ready_at,
        **asdict(summary),
        trainer_exit_at=run.trainer_exit_at,
        trainer_status=run.trainer_status,
        services=list(run.services),
        requests=read_requests(state_dir),
    )
    append_history(state_dir / HISTORY_FILE, record)
    return record
