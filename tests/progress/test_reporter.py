"""app/reporter.py with real files: atomic replacement under a concurrent reader, rate limit, close."""

from __future__ import annotations

import json
import logging
import stat
import threading
import time
from pathlib import Path

import pytest

from maintenance_shim.progress.sources import FileProgress, parse_progress_file
from maintenance_shim.reporter import Reporter, write_progress_file


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def read(path: Path) -> dict[str, object]:
    document = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_write_progress_file_contents_mode_and_no_leftovers(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    write_progress_file(path, 1200, 3000, phase="train", message="epoch 2", updated_at=1_700_000_000.25)
    assert read(path) == {
        "step": 1200,
        "total": 3000,
        "updated_at": 1_700_000_000.25,
        "phase": "train",
        "message": "epoch 2",
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]
    # What the shim's follower reads back.
    assert parse_progress_file(path.read_bytes()) == FileProgress(1200, 3000, 1_700_000_000.25, "train", "epoch 2")


def test_write_progress_file_stamps_now(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    write_progress_file(path, 1)
    stamp = read(path)["updated_at"]
    assert isinstance(stamp, float) and abs(stamp - time.time()) < 5
    assert read(path)["total"] is None


@pytest.mark.parametrize(("step", "total"), [(-1, 10), (11, 10), (1, 0), (True, 10), (1.5, 10), ("3", 10)])
def test_write_progress_file_refuses_bad_values(tmp_path: Path, step: object, total: object) -> None:
    with pytest.raises(ValueError):
        write_progress_file(tmp_path / "progress.json", step, total)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_concurrent_reader_always_sees_valid_json(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    write_progress_file(path, 0, 1000)
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.append(int(read(path)["step"]))  # type: ignore[call-overload]
            except BaseException as error:
                errors.append(error)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for step in range(1, 81):
            # Long messages make a torn write likely if the replace were not atomic.
            write_progress_file(path, step, 1000, message="x" * 4000)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert len(seen) > 10
    assert seen == sorted(seen)


def test_reporter_rate_limit_final_step_and_close(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    clock = FakeClock()
    reporter = Reporter(path, total=10, min_interval=1.0, clock=clock)
    cases = [
        (0.0, 1, True),  # the first update is always written
        (0.5, 2, False),
        (0.99, 3, False),
        (1.0, 4, True),
        (1.2, 5, False),
        (1.3, 10, True),  # the final step is written at once
    ]
    on_disk = None
    for at, step, written in cases:
        clock.now = 100.0 + at
        assert reporter.update(step) is written, step
        on_disk = step if written else on_disk
        assert read(path)["step"] == on_disk
    assert reporter.writes == 3
    reporter.close()
    assert reporter.writes == 3  # nothing new to write


def test_reporter_phase_change_is_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    clock = FakeClock()
    reporter = Reporter(path, total=10, min_interval=60.0, clock=clock)
    reporter.update(1)
    assert reporter.update(2, phase="eval") is True
    assert read(path)["phase"] == "eval"


def test_context_manager_writes_the_last_update(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    clock = FakeClock()
    with Reporter(path, min_interval=60.0, clock=clock) as reporter:
        for step in range(1, 50):
            reporter.update(step, total=100)
        assert read(path)["step"] == 1
    assert read(path) | {"updated_at": 0} == {"step": 49, "total": 100, "updated_at": 0}


def test_reporter_survives_an_unwritable_path(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "maintenance_shim.reporter")
    reporter = Reporter(tmp_path / "missing-dir" / "progress.json", total=10, min_interval=0.0)
    for step in range(1, 11):
        assert reporter.update(step) is False
    reporter.close()
    assert len(caplog.records) == 1


def test_reporter_refuses_programming_errors(tmp_path: Path) -> None:
    reporter = Reporter(tmp_path / "progress.json", total=10)
    with pytest.raises(ValueError):
        reporter.update(11)
