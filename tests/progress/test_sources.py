"""app/progress/sources/ (progress_file.py, train_log.py) against real files: atomic and broken progress
files, tqdm logs, truncation, rotation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tqdm import tqdm

from maintenance_shim.progress.sources import (
    MAX_CATCH_UP,
    MAX_PROGRESS_FILE,
    TAIL_BYTES,
    FileProgress,
    LogFollower,
    ProgressFileFollower,
    parse_progress_file,
)
from maintenance_shim.progress.tracker import ProgressUpdate

LOGGER = "maintenance_shim.sources"
JAN_15_2025 = datetime(2025, 1, 15, 8, tzinfo=UTC).timestamp()


class Recorder:
    """An on_progress callback that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, int, int | None, str]] = []
        self.updates: list[ProgressUpdate] = []

    def __call__(self, update: ProgressUpdate) -> None:
        self.calls.append((update.t, update.step, update.total, update.source))
        self.updates.append(update)

    @property
    def last(self) -> tuple[int, int | None]:
        return self.calls[-1][1], self.calls[-1][2]


def write_atomically(path: Path, text: str | bytes) -> None:
    """Write then rename, as the reporter and most trainers do."""
    temporary = path.with_name(path.name + ".tmp")
    if isinstance(text, str):
        temporary.write_text(text, encoding="utf-8")
    else:
        temporary.write_bytes(text)
    os.replace(temporary, path)


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


@pytest.fixture
def progress_path(tmp_path: Path) -> Iterator[Path]:
    """Where the trainer writes its progress file."""
    yield tmp_path / "progress.json"


# --- progress file ---------------------------------------------------------------------------------


def test_progress_file_write_then_rename_is_followed(progress_path: Path) -> None:
    recorder = Recorder()
    follower = ProgressFileFollower(progress_path, recorder)
    for step in (100, 200, 300):
        write_atomically(progress_path, json.dumps({"step": step, "total": 3000}))
        follower.poll_once()
        follower.poll_once()  # unchanged: no second report
    assert [(step, total, source) for _, step, total, source in recorder.calls] == [
        (100, 3000, "file"),
        (200, 3000, "file"),
        (300, 3000, "file"),
    ]
    assert abs(recorder.calls[-1][0] - time.monotonic()) < 5  # the Tracker's clock: monotonic


def test_progress_file_updated_at_and_free_fields(progress_path: Path) -> None:
    recorder = Recorder()
    follower = ProgressFileFollower(progress_path, recorder)
    write_atomically(progress_path, json.dumps({"step": 5, "total": 10, "updated_at": 1_700_000_000}))
    follower.poll_once()
    t, *rest = recorder.calls[-1]
    assert rest == [5, 10, "file"]
    # On the Tracker's monotonic clock, as long ago as updated_at says (2023-11-14).
    assert abs(t - (time.monotonic() - (time.time() - 1_700_000_000))) < 5
    document = {"step": 6, "total": 10, "updated_at": "2025-01-15T08:00:00Z", "phase": "train", "message": "hi"}
    write_atomically(progress_path, json.dumps(document))
    follower.poll_once()
    # On the monotonic clock, as long ago as updated_at says.
    assert abs(recorder.calls[-1][0] - (time.monotonic() - (time.time() - JAN_15_2025))) < 5
    assert follower.last == FileProgress(6, 10, JAN_15_2025, "train", "hi")


def test_updated_at_in_the_future_is_clamped_to_now(progress_path: Path) -> None:
    recorder = Recorder()
    follower = ProgressFileFollower(progress_path, recorder)
    write_atomically(progress_path, json.dumps({"step": 1, "total": 2, "updated_at": time.time() + 3600}))
    follower.poll_once()
    assert recorder.calls[-1][0] <= time.monotonic()


PARSE_CASES = [
    (b'{"step": 1200, "total": 3000}', FileProgress(1200, 3000, None, None, None)),
    (b'{"step": 1200}', FileProgress(1200, None, None, None, None)),
    (b'{"step": 1200.0, "total": null, "phase": 3}', FileProgress(1200, None, None, None, None)),
    (b'{"step": 0, "total": 1, "updated_at": 1700000000.5}', FileProgress(0, 1, 1_700_000_000.5, None, None)),
    (
        b'{"step": 1, "total": 1, "updated_at": "2025-01-15T08:00:00+00:00"}',
        FileProgress(1, 1, JAN_15_2025, None, None),
    ),
]


@pytest.mark.parametrize(("data", "expected"), PARSE_CASES)
def test_parse_progress_file(data: bytes, expected: FileProgress) -> None:
    assert parse_progress_file(data) == expected


BAD_FILES = [
    pytest.param(b"", "empty", id="empty"),
    pytest.param(b'{"step": 12', "not JSON", id="half-written"),
    pytest.param(b"step=12 total=30", "not JSON", id="not-json"),
    pytest.param(b"[12, 30]", "not a JSON object", id="not-an-object"),
    pytest.param(b'{"total": 30}', "no 'step'", id="no-step"),
    pytest.param(b'{"step": 40, "total": 30}', "step 40 > total 30", id="step-past-total"),
    pytest.param(b'{"step": -1, "total": 30}', "step must be >= 0", id="negative"),
    pytest.param(b'{"step": NaN, "total": 30}', "not an integer", id="nan"),
    pytest.param(b'{"step": 12.5, "total": 30}', "not an integer", id="fraction"),
    pytest.param(b'{"step": "12", "total": 30}', "not an integer", id="string"),
    pytest.param(b'{"step": true, "total": 30}', "not an integer", id="bool"),
    pytest.param(b'{"step": 12, "total": 0}', "total must be >= 1", id="zero-total"),
    pytest.param(b'{"step": 12, "updated_at": "yesterday"}', "not an ISO-8601 time", id="bad-time"),
    pytest.param(b'{"step": 12, "updated_at": Infinity}', "not a valid time", id="infinite-time"),
    pytest.param(b"\xff\xfe\x00garbage", "not JSON", id="binary"),
    pytest.param(b" " * 10_000_000, "more than", id="10MB"),
]


@pytest.mark.parametrize(("data", "problem"), BAD_FILES)
def test_bad_progress_file_warns_once_and_keeps_last_good(
    progress_path: Path, caplog: pytest.LogCaptureFixture, data: bytes, problem: str
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    recorder = Recorder()
    follower = ProgressFileFollower(progress_path, recorder)
    write_atomically(progress_path, json.dumps({"step": 10, "total": 30}))
    follower.poll_once()
    good = follower.last
    for _ in range(3):
        write_atomically(progress_path, data)
        for _ in range(3):
            follower.poll_once()
    assert len(warnings_in(caplog)) == 1
    assert problem in warnings_in(caplog)[0]
    assert follower.last == good
    assert [(step, total) for _, step, total, _ in recorder.calls] == [(10, 30)]
    if len(data) > MAX_PROGRESS_FILE:
        assert follower.bytes_read < 100  # refused from its size, never read
    # A good file again is followed again, and a new problem is reported again.
    write_atomically(progress_path, json.dumps({"step": 11, "total": 30}))
    follower.poll_once()
    assert recorder.last == (11, 30)
    write_atomically(progress_path, data)
    follower.poll_once()
    assert len(warnings_in(caplog)) == 2


def test_half_written_files_of_changing_length_warn_once(progress_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    recorder = Recorder()
    follower = ProgressFileFollower(progress_path, recorder)
    text = json.dumps({"step": 1234, "total": 3000, "message": "a non-atomic writer"})
    for cut in range(1, len(text) - 1):
        progress_path.write_text(text[:cut])  # in place, as a careless trainer would
        follower.poll_once()
    assert len(warnings_in(caplog)) == 1
    assert recorder.calls == []


def test_missing_progress_file_warns_once_then_is_picked_up(
    progress_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    recorder = Recorder()
    follower = ProgressFileFollower(progress_path, recorder)
    for _ in range(5):
        follower.poll_once()
    assert len(warnings_in(caplog)) == 1
    write_atomically(progress_path, json.dumps({"step": 1, "total": 30}))
    follower.poll_once()
    assert recorder.last == (1, 30)


def test_in_place_rewrite_of_the_same_size_is_seen(progress_path: Path) -> None:
    recorder = Recorder()
    follower = ProgressFileFollower(progress_path, recorder)
    progress_path.write_text('{"step": 11, "total": 30}')
    follower.poll_once()
    # Same size, possibly the same mtime tick: the recent-change rule re-reads it.
    progress_path.write_text('{"step": 12, "total": 30}')
    follower.poll_once()
    assert recorder.last == (12, 30)


# --- log -------------------------------------------------------------------------------------------


def bar(step: int, total: int = 3000, label: str = "Steps") -> str:
    return f"\r{label}:  {100 * step // total:3d}%|█         | {step}/{total} [00:10<16:48,  1.78it/s, loss=0.1]"


def test_log_written_by_real_tqdm_is_followed_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    recorder = Recorder()
    follower = LogFollower(path, recorder)
    with path.open("a", encoding="utf-8") as file:
        for _ in tqdm(range(7), desc="Loading pipeline components...", file=file, mininterval=0):
            pass
        train = tqdm(total=200, desc="Steps", file=file, mininterval=0, miniters=1)
        for step in range(1, 201):
            train.update(1)
            train.set_postfix(loss=0.5, lr=1e-4)
            if step % 17 == 0:
                file.flush()
                follower.poll_once()
                assert recorder.last == (step, 200)
        train.close()
    follower.poll_once()
    assert recorder.last == (200, 200)
    assert {source for *_, source in recorder.calls} == {"log"}
    # Each poll reports only its newest update.
    assert len(recorder.calls) == 200 // 17 + 1


def test_the_log_follower_passes_on_the_step_a_save_named(tmp_path: Path) -> None:
    """The first step-numbered save (diffusers' `Saved state to .../checkpoint-100`) reaches the estimator
    with every later update, so one pause at a multiple of it is a rhythm at once (progress/eta.py)."""
    path = tmp_path / "train.log"
    recorder = Recorder()
    follower = LogFollower(path, recorder)
    with path.open("a", encoding="utf-8") as file:
        file.write(bar(99) + bar(100) + "\nSaved state to /out/checkpoint-100\n" + bar(101))
    follower.poll_once()
    assert recorder.last == (101, 3000)
    assert recorder.updates[-1].save_every == 100


def test_copytruncate_rotation(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    recorder = Recorder()
    follower = LogFollower(path, recorder)
    with path.open("a", encoding="utf-8") as writer:
        writer.write("".join(bar(step) for step in range(1, 500)) + "\n")
        writer.flush()
        follower.poll_once()
        assert recorder.last == (499, 3000)
        shutil.copyfile(path, tmp_path / "train.log.1")
        with path.open("r+") as truncator:
            truncator.truncate(0)
        writer.write(bar(500) + bar(501))
        writer.flush()
        follower.poll_once()
        assert recorder.last == (501, 3000)
        writer.write(bar(502))
        writer.flush()
        follower.poll_once()
        assert recorder.last == (502, 3000)


def test_truncated_and_regrown_past_the_offset_between_polls(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    recorder = Recorder()
    follower = LogFollower(path, recorder)
    path.write_text("step 10/100\n")
    follower.poll_once()
    assert recorder.last == (10, 100)
    path.write_text("new run\n" + "step 3/50\n" * 3)  # truncated and longer than before
    follower.poll_once()
    assert recorder.last == (3, 50)


def test_rename_rotation(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    recorder = Recorder()
    follower = LogFollower(path, recorder)
    path.write_text("step 10/100\n" * 50)
    follower.poll_once()
    os.rename(path, tmp_path / "train.log.1")
    follower.poll_once()  # the log is briefly missing
    path.write_text("step 11/100\n")
    follower.poll_once()
    assert recorder.last == (11, 100)
    with path.open("a") as file:
        file.write("step 12/100\n")
    follower.poll_once()
    assert recorder.last == (12, 100)


def test_large_existing_log_is_read_from_its_tail_only(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    old = "".join(f"{i} INFO loss=0.1 step {i % 1000}/3000\n" for i in range(600_000))
    path.write_text(old + bar(1234) + bar(1235))
    assert path.stat().st_size > 20_000_000
    recorder = Recorder()
    follower = LogFollower(path, recorder)
    follower.poll_once()
    assert recorder.last == (1235, 3000)
    assert follower.bytes_read <= TAIL_BYTES
    with path.open("a", encoding="utf-8") as file:
        file.write(bar(1236))
    follower.poll_once()
    # The newest tqdm bar has no '\r' after it yet; its closing ']' is enough.
    assert recorder.last == (1236, 3000)
    with path.open("a", encoding="utf-8") as file:
        file.write(bar(1237) + "\n")
    follower.poll_once()
    assert recorder.last == (1237, 3000)
    # Later polls read only the appended bytes (plus a 64-byte guard that notices rewrites).
    assert follower.bytes_read <= TAIL_BYTES + 2 * (len(bar(1237).encode()) + 64) + 1


def test_binary_garbage_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    path = tmp_path / "train.log"
    recorder = Recorder()
    follower = LogFollower(path, recorder)
    rnd = random.Random(3)
    path.write_bytes(b"")
    follower.poll_once()
    for step in range(1, 4):
        with path.open("ab") as file:
            file.write(bytes(rnd.randrange(256) for _ in range(5000)) + b"\x00\n")
            file.write(f"step {step}/10\n".encode())
        follower.poll_once()
        assert recorder.last == (step, 10)
    assert len(warnings_in(caplog)) == 1


def test_ten_megabyte_line_in_pieces_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    path = tmp_path / "train.log"
    recorder = Recorder()
    path.write_text("step 1/10\n")
    follower = LogFollower(path, recorder)
    follower.poll_once()
    with path.open("a") as file:
        for _ in range(20):
            file.write("x" * 512 * 1024)
            file.flush()
            follower.poll_once()
        file.write("\nstep 2/10\n")
    follower.poll_once()
    assert recorder.last == (2, 10)
    assert len(warnings_in(caplog)) == 1
    assert "longer than" in warnings_in(caplog)[0]


def test_ten_megabyte_burst_skips_to_the_tail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    path = tmp_path / "train.log"
    recorder = Recorder()
    path.write_text("step 1/10\n")
    follower = LogFollower(path, recorder)
    follower.poll_once()
    with path.open("a") as file:
        file.write("x" * 10_000_000 + "\n" + "step 2/10\n")
    follower.poll_once()
    assert recorder.last == (2, 10)
    assert follower.bytes_read < 2 * TAIL_BYTES < MAX_CATCH_UP
    assert len(warnings_in(caplog)) == 1


def test_multibyte_characters_split_between_reads(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    recorder = Recorder()
    path.write_bytes(b"")
    follower = LogFollower(path, recorder)
    data = (bar(7, label="学習ステップ") + "\n").encode()
    cut = data.index("ス".encode()) + 1
    with path.open("ab") as file:
        file.write(data[:cut])
        file.flush()
        follower.poll_once()
        file.write(data[cut:])
    follower.poll_once()
    assert recorder.last == (7, 3000)


def test_following_100_lines_per_second_is_cheap(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    recorder = Recorder()
    path.write_bytes(b"")
    follower = LogFollower(path, recorder)
    polls, step = 40, 0
    spent = 0.0
    with path.open("a", encoding="utf-8") as file:
        for _ in range(polls):
            # 0.5 s of a trainer printing 100 lines/s: 50 bar updates.
            for _ in range(50):
                step += 1
                file.write(bar(step, total=10_000))
            file.flush()
            started = time.process_time()
            follower.poll_once()
            spent += time.process_time() - started
    assert recorder.last == (step, 10_000)
    # Budget: 2 % of one core at one poll per 0.5 s is 10 ms per poll.
    assert spent / polls < 0.010


def test_run_polls_until_cancelled(tmp_path: Path, progress_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("step 3/10\n")
    write_atomically(progress_path, json.dumps({"step": 4, "total": 10}))
    recorder = Recorder()

    async def follow() -> None:
        tasks = [
            asyncio.create_task(LogFollower(log, recorder, poll_interval=0.01).run()),
            asyncio.create_task(ProgressFileFollower(progress_path, recorder, poll_interval=0.01).run()),
        ]
        deadline = time.monotonic() + 30  # both have polled: soon, or late on a busy machine
        while {source for *_, source in recorder.calls} != {"log", "file"}:
            assert time.monotonic() < deadline, recorder.calls
            await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(follow())
    assert {(step, total, source) for _, step, total, source in recorder.calls} == {
        (3, 10, "log"),
        (4, 10, "file"),
    }


def test_a_follower_stops_when_cancelled_whenever_the_cancel_comes(tmp_path: Path) -> None:
    """Cancelled just as a poll ends, a follower stops: with Python 3.11's asyncio.wait_for around the poll it went
    on polling instead (the cancellation was swallowed), 123 times in 300 here, and the shim's shutdown waited
    on it. Cancels land at varied points of the poll cycle; each follower must end (a generous deadline)."""
    log = tmp_path / "train.log"
    log.write_text("step 3/10\n")

    async def cycles() -> None:
        for index in range(150):
            task = asyncio.create_task(LogFollower(log, Recorder(), poll_interval=0.0).run())
            await asyncio.sleep(0.0005 * (index % 7))
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=10)
            assert done, f"cycle {index}: the follower went on after it was cancelled"
            assert task.cancelled()

    # Not asyncio.run: on a failure it would cancel the follower that ignores cancellation and wait for it forever.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(cycles())
    finally:
        loop.close()


def test_a_log_holding_a_finished_run_is_history(tmp_path: Path) -> None:
    """`tee -a train.log`: the last run's finished bar is in the log when the shim starts; it is not shown."""
    log = tmp_path / "train.log"
    with log.open("w", encoding="utf-8") as file:
        for _ in tqdm(range(50), desc="Steps", file=file, mininterval=0):
            pass
    recorder = Recorder()
    follower = LogFollower(log, recorder, history_seconds=300)
    follower.poll_once()
    assert recorder.calls == []
    with log.open("a", encoding="utf-8") as file:  # the new run starts
        bar = tqdm(total=80, desc="Steps", file=file, mininterval=0)
        bar.update(5)
        file.flush()
        follower.poll_once()
        bar.close()
    assert recorder.calls and recorder.calls[-1][1:3] == (5, 80)


def test_an_old_unfinished_log_is_history_and_a_fresh_one_is_not(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("\rSteps:  40%|████      | 40/100 [00:10<00:15,  4.00it/s]\n", encoding="utf-8")
    old = time.time() - 3600
    os.utime(log, (old, old))
    recorder = Recorder()
    LogFollower(log, recorder, history_seconds=300).poll_once()
    assert recorder.calls == []
    os.utime(log, None)  # written just now: a run in progress that the shim joins
    LogFollower(log, recorder, history_seconds=300).poll_once()
    assert recorder.calls[-1][1:3] == (40, 100)


def test_a_progress_file_of_an_ended_run_is_history(progress_path: Path) -> None:
    write_atomically(progress_path, json.dumps({"step": 30, "total": 30}))
    recorder = Recorder()
    follower = ProgressFileFollower(progress_path, recorder, history_seconds=300)
    follower.poll_once()
    assert recorder.calls == []
    write_atomically(progress_path, json.dumps({"step": 2, "total": 30, "phase": "training"}))
    follower.poll_once()
    assert recorder.calls[-1][1:] == (2, 30, "file") and recorder.updates[-1].phase == "training"
    stale = progress_path.with_name("stale.json")
    write_atomically(stale, json.dumps({"step": 12, "total": 30, "updated_at": time.time() - 3600}))
    ProgressFileFollower(stale, recorder, history_seconds=300).poll_once()
    assert recorder.calls[-1][1] == 2


def test_a_log_whose_progress_is_invisible_says_so_with_the_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """LTX-2's Rich bar into a pipe (the recorded case trainer_ltx2_pipe): training is announced, then nothing
    moves until the final frame. The follower says so (its log, and the notice the status shows), naming
    with_maintenance.sh and --disable-progress-bars; progress clears it."""
    from maintenance_shim.progress.sources import INVISIBLE_NOTICE

    case = Path(__file__).resolve().parents[1] / "data" / "replay" / "trainer_ltx2_pipe" / "chunks.jsonl"
    chunks = [json.loads(line)["data"] for line in case.read_text(encoding="utf-8").splitlines()]
    log = tmp_path / "train.log"
    drawn = next(index for index, chunk in enumerate(chunks) if "━" in chunk)  # the final frame
    log.write_text("".join(chunks[:drawn]), encoding="utf-8")
    notices: list[str | None] = []
    follower = LogFollower(log, lambda update: None, on_notice=notices.append, invisible_after=0.3)
    follower.poll_once()
    assert follower.notice is None
    deadline = time.monotonic() + 30
    while follower.notice is None and time.monotonic() < deadline:
        time.sleep(0.1)
        follower.poll_once()
    assert follower.notice == INVISIBLE_NOTICE and notices == [INVISIBLE_NOTICE]
    assert "with_maintenance.sh" in INVISIBLE_NOTICE and "--disable-progress-bars" in INVISIBLE_NOTICE
    assert any("no progress" in message for message in warnings_in(caplog))
    with log.open("a", encoding="utf-8") as file:
        file.write("".join(chunks[drawn:]) + "\n")
    follower.poll_once()
    assert follower.notice is None and notices[-1] is None
