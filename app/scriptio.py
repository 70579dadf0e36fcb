"""What the scripts in scripts/ write and ask, done here so bash parses and builds no JSON: their JSON log
lines (MAINT_LOG_FORMAT=json, as the shim's own), the run events, the start-up time record, and whether a
PID is still the shim they started. Each is one `maintenance-shim` subcommand (cli.py); cheap imports only,
as every call is a process start on the switch's path."""

from __future__ import annotations

import re
import time
from pathlib import Path

from .statedir import EVENTS_FILE, STARTUP_FILE, write_json_atomically

# Each function imports what only it needs: every call is a process start of its own.

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # in a script's message: a blank (newlines and tabs stay)


def log_line(t: float, level: str, logger: str, message: str) -> str:
    """One JSON log line, exactly as the shim's JsonFormatter writes its own (UTC, milliseconds, Z)."""
    import logging

    from .logsetup import JsonFormatter

    record = logging.LogRecord(logger, getattr(logging, level.upper()), "", 0, _CONTROL.sub(" ", message), (), None)
    record.created = t
    return JsonFormatter().format(record)


def append_event(state_dir: Path, t: float, name: str, status: int | None, services: tuple[str, ...],
                 seconds: float | None) -> None:
    """Append one run event (validated as the shim reads it: ValueError) to the state dir's events file."""
    from .progress.runs import event_line

    line = event_line(t, name, status, services, seconds)
    with (state_dir / EVENTS_FILE).open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def record_startup(state_dir: Path, seconds: float, t: float | None = None) -> None:
    """The time the scripts took to bring the services back, for the shim's first guess (runs.read_startup)."""
    if not 0 <= seconds <= 86400:
        raise ValueError(f"{seconds!r} is not a duration in seconds")
    write_json_atomically(state_dir / STARTUP_FILE, {"seconds": seconds, "t": int(time.time() if t is None else t)})


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def is_shim(pid: int, start: str) -> bool:
    """`pid` is alive (not a zombie), started at `start` (proc_starttime) and runs `... serve ...`."""
    from .supervise import proc_starttime

    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return pid_alive(pid) and bool(start) and proc_starttime(pid) == start and b"serve" in cmdline
