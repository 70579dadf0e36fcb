"""What the scripts write through `maintenance-shim` (app/scriptio.py): their JSON log lines, the run events,
the start-up record, and whether a PID is still the shim they started. The scripts' own use of them is
tested end to end in test_scripts*.py, test_runs.py and test_logs.py."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maintenance_shim.progress.runs import parse_event, read_run, read_startup
from maintenance_shim.scriptio import append_event, is_shim, log_line, pid_alive, record_startup
from maintenance_shim.statedir import EVENTS_FILE
from maintenance_shim.supervise import proc_starttime


def test_a_log_line_is_the_shims_json_in_utc() -> None:
    line = json.loads(log_line(1_800_000_000.1234, "warning", "start_maintenance", 'said "no"\tC:\\x\nnext \x01'))
    assert line == {"t": datetime.fromtimestamp(1_800_000_000.1234, UTC).isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"), "level": "warning", "logger": "start_maintenance",
                    "message": 'said "no"\tC:\\x\nnext  '}
    assert line["t"].endswith(".123Z")


def test_events_are_written_as_the_shim_reads_them(tmp_path: Path) -> None:
    append_event(tmp_path, 1_800_000_000.0, "start", None, (), None)
    append_event(tmp_path, 1_800_000_002.5, "switched", None, (), 2.5)
    append_event(tmp_path, 1_800_000_100.0, "trainer-exit", 0, (), None)
    append_event(tmp_path, 1_800_000_101.0, "services-starting", None, ("studio", "video"), None)
    lines = (tmp_path / EVENTS_FILE).read_text().splitlines()
    assert [parse_event(line).event for line in lines] == ["start", "switched", "trainer-exit", "services-starting"]
    assert parse_event(lines[1]).seconds == 2.5 and parse_event(lines[3]).services == ("studio", "video")
    run = read_run(tmp_path)
    assert run.started_at == 1_800_000_000.0 and run.switch_seconds == 2.5
    with pytest.raises(ValueError, match="unknown event"):
        append_event(tmp_path, 1_800_000_102.0, "services-gone", None, (), None)
    with pytest.raises(ValueError, match="not a duration"):
        append_event(tmp_path, 1_800_000_102.0, "switched", None, (), -1.0)
    assert len((tmp_path / EVENTS_FILE).read_text().splitlines()) == 4  # a refused event writes nothing


def test_the_startup_record_is_read_back(tmp_path: Path) -> None:
    record_startup(tmp_path, 7.07)
    assert read_startup(tmp_path) == 7.07
    with pytest.raises(ValueError):
        record_startup(tmp_path, 1e9)
    assert read_startup(tmp_path) == 7.07


def test_a_pid_is_the_shim_only_when_alive_started_then_and_serving() -> None:
    me = os.getpid()
    start = proc_starttime(me)
    assert start.isdigit() and pid_alive(me)
    assert not is_shim(me, start)  # alive and started then, but pytest does not run `serve`
    assert not is_shim(me, "")
    assert not pid_alive(2**22 + 1) and not is_shim(2**22 + 1, start)  # above pid_max: never a process
