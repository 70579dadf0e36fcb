"""Nothing a file or a number does can stop the answers (issue 28, the input side): real shim processes.

FIFOs at every path the shim reads (the progress file, the trainer log, the run history), numbers no
training has (step 1e28, a float 1e300, a log line of 27 digits, a push total of 10^12, tqdm's
9223372036854775807), a megabyte of progress characters in the log, and a template that fails at request
time: the shim answers every request (503, or 200 for the status), stops on SIGTERM, and says what it
ignored in its log.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import Shim, ShimFactory, request

TOKEN = "t" * 32


def _answers_all(shim: Shim, count: int = 10) -> None:
    """Every kind of request gets its ordinary answer (within the client's 10 s timeout)."""
    for _ in range(count):
        assert request(shim, "GET", "/x", {"Accept": "text/html"})[0] == 503
    assert request(shim, "GET", "/v1/x?format=json")[0] == 503
    assert request(shim, "GET", "/x", {"Accept": "application/problem+json"})[0] == 503
    status, _, body = request(shim, "GET", "/_maintenance/status")
    assert status == 200, body
    assert request(shim, "GET", "/_maintenance/health")[0] == 200


def _status(shim: Shim) -> dict[str, Any]:
    status, _, body = request(shim, "GET", "/_maintenance/status")
    assert status == 200, body
    data: dict[str, Any] = json.loads(body)
    return data


def _wait(condition: Any, shim: Shim, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}:\n{shim.output()}"
        time.sleep(0.1)


def _stops_on_sigterm(shim: Shim) -> None:
    shim.proc.send_signal(signal.SIGTERM)
    assert shim.proc.wait(15) == 0, shim.output()


@pytest.mark.parametrize("setting", ["MAINT_PROGRESS_FILE", "MAINT_TRAIN_LOG", "MAINT_TRAINER_LOG_JSONL"])
def test_a_fifo_at_a_source_path_never_blocks(start_shim: ShimFactory, tmp_path: Path, setting: str) -> None:
    """Today's follower opened the FIFO on the event loop: every request timed out, SIGTERM did nothing."""
    path = tmp_path / "progress"
    os.mkfifo(path)
    shim = start_shim(env={setting: str(path)})
    _wait(lambda: "is a FIFO, not a regular file; ignored" in shim.output(), shim, "no warning about the FIFO")
    _answers_all(shim)
    assert shim.output().count("is a FIFO") == 1  # one warning, not one a poll
    _stops_on_sigterm(shim)


def test_a_source_replaced_by_a_fifo_while_followed(start_shim: ShimFactory, tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    path.write_text(json.dumps({"step": 10, "total": 100}))
    shim = start_shim(env={"MAINT_PROGRESS_FILE": str(path)})
    _wait(lambda: (_status(shim).get("progress") or {}).get("step") == 10, shim, "the file's progress")
    path.unlink()
    os.mkfifo(path)
    _wait(lambda: "is a FIFO" in shim.output(), shim, "no warning about the FIFO")
    _answers_all(shim)
    assert _status(shim)["progress"]["step"] == 10  # the last good progress stays in force
    _stops_on_sigterm(shim)


def test_a_fifo_as_the_run_history_does_not_hang_start_up(start_shim: ShimFactory, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.mkfifo(state / "history.jsonl")
    os.mkfifo(state / "events.jsonl")
    shim = start_shim(env={"MAINT_STATE_DIR": str(state)})  # waits for health: start-up did not hang
    assert "history.jsonl: cannot read the run history" in shim.output()
    _answers_all(shim)
    _stops_on_sigterm(shim)


@pytest.mark.parametrize(
    "document",
    [{"step": 1e28, "total": 2e28}, {"step": 1e300}, {"step": 10**28, "total": 2 * 10**28}],
    ids=["1e28", "float-1e300", "int-10^28"],
)
def test_huge_numbers_in_the_progress_file(start_shim: ShimFactory, tmp_path: Path, document: dict[str, Any]) -> None:
    """Today: HTTP 500 on every path (Babel's format_decimal raised decimal.InvalidOperation)."""
    path = tmp_path / "progress.json"
    path.write_text(json.dumps(document))
    shim = start_shim(env={"MAINT_PROGRESS_FILE": str(path)})
    _wait(lambda: "must be <= 1e+12" in shim.output() or "is not an integer" in shim.output(), shim, "no warning")
    _answers_all(shim)
    path.write_text(json.dumps({"step": 30, "total": 100}))
    _wait(lambda: (_status(shim).get("progress") or {}).get("step") == 30, shim, "the good progress after")
    _answers_all(shim)


def test_a_huge_step_line_in_the_log_neither_fails_nor_sticks(start_shim: ShimFactory, tmp_path: Path) -> None:
    """Today: HTTP 500, and a later tqdm bar did not clear it (the parser kept the larger total)."""
    log = tmp_path / "train.log"
    log.write_text("")
    shim = start_shim(env={"MAINT_TRAIN_LOG": str(log)})
    with log.open("a") as handle:
        handle.write("step 100000000000000000000000000/200000000000000000000000000\n")
        handle.flush()
        # sleep-ok: two polls so the line is read on its own; what follows asserts it changed nothing
        time.sleep(1.2)
        _answers_all(shim)
        assert _status(shim)["progress"] is None
        handle.write(" 50%|█████     | 50/100 [00:10<00:10,  5.00it/s]\n")
    _wait(lambda: (_status(shim).get("progress") or {}).get("step") == 50, shim, "the tqdm bar after it")
    _answers_all(shim)


def test_tqdm_total_of_int64_max_is_not_progress(start_shim: ShimFactory, tmp_path: Path) -> None:
    """Today: the ETA landed past year 9999 (OSError: Value too large) at tqdm's 4 steps/s."""
    log = tmp_path / "train.log"
    log.write_text("")
    shim = start_shim(env={"MAINT_TRAIN_LOG": str(log)})
    with log.open("a") as handle:
        for step in range(1, 25):  # paced: 4 steps a second, as in the report
            handle.write(f"\r  0%|          | {step}/9223372036854775807 [00:0{step // 4}<?, 4.00it/s]")
            handle.flush()
            time.sleep(0.25)
    _answers_all(shim)
    assert _status(shim)["progress"] is None


def test_push_total_of_10_to_the_12_at_4_steps_a_second(start_shim: ShimFactory) -> None:
    """Today: `ValueError: year 10106 is out of range` on every answer once the rate was known."""
    import urllib.request

    shim = start_shim(env={"MAINT_ADMIN_TOKEN": TOKEN})

    def push(step: int) -> None:
        body = json.dumps({"step": step, "total": 10**12}).encode()
        req = urllib.request.Request(f"{shim.admin_url}/_maintenance/progress", data=body, method="PUT",
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as response:
            assert response.status == 204

    step = 0
    deadline = time.monotonic() + 60
    while not _status(shim)["eta"]["known"]:
        assert time.monotonic() < deadline, shim.output()
        push(step)
        step += 1
        time.sleep(0.25)
    eta = _status(shim)["eta"]
    assert eta["seconds"] == 365 * 24 * 3600  # capped at a year: 10^12 steps at 4 a second is 7,900 years
    assert eta["at"].startswith(str(time.gmtime().tm_year + 1)) or eta["at"].startswith(str(time.gmtime().tm_year))
    _answers_all(shim)
    assert "Traceback" not in shim.output()


def test_a_megabyte_of_progress_characters_in_the_log(start_shim: ShimFactory, tmp_path: Path) -> None:
    """Lines of ━ (Rich's bar character) long enough to cost the parser seconds before: skipped unexamined,
    and the progress after them is read."""
    log = tmp_path / "train.log"
    log.write_text("")
    shim = start_shim(env={"MAINT_TRAIN_LOG": str(log)})
    answered: list[int] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            answered.append(request(shim, "GET", "/x")[0])

    thread = threading.Thread(target=client)
    thread.start()
    try:
        with log.open("a", encoding="utf-8") as handle:
            for _ in range(4):
                handle.write("━" * 195_000 + "\n")
                handle.flush()
                time.sleep(0.3)
            handle.write("━" * 65_000 + " 3/10 0:00:01 • 0:00:02 2.00it/s\n")
            handle.write("━" * 2_000 + "\n")
            handle.write("Epoch 0/4 ━━━━━━━━━━ 7/10 0:00:03 • 0:00:01 2.00it/s\n")
        _wait(lambda: (_status(shim).get("progress") or {}).get("step") == 7, shim, "the bar after the long lines")
    finally:
        stop.set()
        thread.join(15)
    assert answered and set(answered) == {503}
    assert "log has lines longer than 2048 bytes; they are skipped" in shim.output()


def test_a_template_that_fails_at_request_time_gets_the_plain_503(start_shim: ShimFactory, tmp_path: Path) -> None:
    """The start-up check renders without progress; this page fails once progress arrives. The answer is a
    plain localized 503 with a Retry-After, the error is logged once, and health says so."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "page.html").write_text(
        "<!doctype html><html lang={{ lang }}><title>{{ texts.title }}</title>"
        "<p>{% if progress %}{{ progress.step // 0 }}{% endif %}{{ texts.detail }}</p></html>"
    )
    progress = tmp_path / "progress.json"
    shim = start_shim(env={"MAINT_TEMPLATE_DIR": str(templates), "MAINT_PROGRESS_FILE": str(progress)})
    assert request(shim, "GET", "/x", {"Accept": "text/html"})[0] == 503
    assert request(shim, "GET", "/_maintenance/health")[0] == 200
    progress.write_text(json.dumps({"step": 5, "total": 100}))
    _wait(lambda: (_status(shim).get("progress") or {}).get("step") == 5, shim, "the progress")
    for _ in range(5):
        status, headers, body = request(shim, "GET", "/x", {"Accept": "text/html", "Accept-Language": "ja"})
        assert status == 503
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert headers["content-language"] == "ja"
        assert 1 <= int(headers["retry-after"]) <= 3600
        assert "メンテナンス" in body.decode()
        time.sleep(0.3)  # across snapshots: rendered again, failing again, logged once
    status, _, body = request(shim, "GET", "/x?format=json")  # JSON renders without the template
    assert status == 503 and json.loads(body)["maintenance"]["progress"]["step"] == 5
    for path in ("/_maintenance/health",):
        status, _, body = request(shim, "GET", path)
        assert status == 503 and json.loads(body)["status"] == "error"
    assert shim.output().count("cannot render the answer") == 1
