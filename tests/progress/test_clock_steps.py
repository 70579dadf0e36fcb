"""The ETA follows the monotonic clock, not the wall clock (issue 28, item 8): a real shim under libfaketime
(Debian's `faketime`), its wall clock stepped back and forward an hour as NTP or a resumed VM would, while
a trainer writes paced progress to its progress file. The monotonic clock is left alone
(FAKETIME_DONT_FAKE_MONOTONIC=1), as a real clock step leaves it. (libfaketime slows Python's threads: the
admin app's background build takes seconds, so this test reads the 503's JSON, not the status endpoint.)

Before: clock back 1 h dropped every update (the shown step stuck) and the ETA grew by an hour; clock
forward 1 h gave an ETA of two days for a while.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import clean_env, free_port, request, stop_pid

pytestmark = pytest.mark.e2e  # real `maintenance-shim` processes
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
TOTAL = 2000
RATE = 4.0  # steps a second, paced by this test
RESUME = 5


def test_eta_survives_wall_clock_steps(tmp_path: Path) -> None:
    assert LIBFAKETIME.exists(), "libfaketime is required (apt-get install faketime)"
    offset_file = tmp_path / "faketime"
    offset_file.write_text("+0\n")
    progress = tmp_path / "progress.json"
    port = free_port()
    env = clean_env({
        "MAINT_PROGRESS_FILE": str(progress),
        "MAINT_RESUME_SECONDS": str(RESUME),
        "MAINT_ADMIN_LISTEN": "off",
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    })
    log = tmp_path / "shim.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "maintenance_shim", "serve", "--listen", f"127.0.0.1:{port}"],
                                env=env, cwd=tmp_path, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    written = [0]
    stop = threading.Event()

    def trainer() -> None:
        """Writes the progress file (atomically, as the reporter does), paced at RATE steps a second."""
        start = time.monotonic()
        while not stop.is_set() and written[0] < TOTAL:
            step = int((time.monotonic() - start) * RATE)
            if step > written[0]:
                temporary = progress.with_name(".progress.tmp")
                temporary.write_text(json.dumps({"step": step, "total": TOTAL}))
                os.replace(temporary, progress)
                written[0] = step
            time.sleep(0.05)

    def maintenance() -> dict[str, Any]:
        code, _, body = request(url, "GET", "/x?format=json")
        assert code == 503, body
        data: dict[str, Any] = json.loads(body)["maintenance"]
        return data

    def wait_sane(offset_hours: int) -> None:
        """Within 30 s: the shown step follows the file and the ETA matches the paced rate."""
        deadline = time.monotonic() + 30
        while True:
            data, step = maintenance(), written[0]
            progress_now, eta = data.get("progress") or {}, data["eta"]
            shown = progress_now.get("step") or 0
            expected = (TOTAL - step) / RATE + RESUME
            if eta["known"] and step - shown <= 8 and abs(eta["seconds"] - expected) <= 0.25 * expected:
                at = datetime.fromisoformat(eta["at"].replace("Z", "+00:00")).timestamp()
                # Display uses the (stepped) wall clock: the ETA's time is the shim's now plus the seconds.
                assert abs(at - (time.time() + offset_hours * 3600 + eta["seconds"])) <= 5, (eta, offset_hours)
                return
            assert time.monotonic() < deadline, (offset_hours, step, data, log.read_text()[-2000:])
            time.sleep(0.25)

    thread = threading.Thread(target=trainer)
    try:
        deadline = time.monotonic() + 60  # libfaketime slows the start-up (it reads its file at every time call)
        while True:
            try:
                maintenance()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
                time.sleep(0.2)
        thread.start()
        wait_sane(0)
        offset_file.write_text("-1h\n")  # the wall clock steps back an hour
        time.sleep(1.0)
        wait_sane(-1)
        before = written[0]
        deadline = time.monotonic() + 60
        while (maintenance().get("progress") or {}).get("step", 0) <= before:  # updates are not dropped
            assert time.monotonic() < deadline, f"no update past step {before} after the clock stepped back"
            time.sleep(0.2)
        offset_file.write_text("+1h\n")  # and forward: two hours later than a moment ago
        time.sleep(1.0)
        wait_sane(1)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(15)
        stop_pid(proc)
    assert "Traceback" not in log.read_text()
