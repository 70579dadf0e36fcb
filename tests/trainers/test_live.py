"""Real time, real processes: a tqdm training loop and a progress-file writer drive a running shim."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from maintenance_shim.reporter import Reporter
from tests.support import Shim, ShimFactory, request, wait_until

STEPS, RATE, RESUME = 900, 50.0, 10

TRAINER = textwrap.dedent(
    f"""
    import sys, time
    from tqdm import tqdm
    for _ in tqdm(range(7), desc="Loading pipeline components...", file=sys.stderr):
        time.sleep(0.01)
    bar = tqdm(total={STEPS}, desc="Steps", file=sys.stderr, mininterval=0.1)
    start = time.monotonic()
    for step in range({STEPS}):
        time.sleep(max(0.0, start + (step + 1) / {RATE} - time.monotonic()))
        bar.update(1)
        bar.set_postfix(loss=0.1, lr=1e-4)
    bar.close()
    """
)


def status(shim: Shim) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(request(shim, "GET", "/_maintenance/status")[2])
    return result


def test_status_follows_a_real_tqdm_run(start_shim: ShimFactory, tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    shim = start_shim(env={"MAINT_TRAIN_LOG": str(log), "MAINT_RESUME_SECONDS": str(RESUME)})
    assert status(shim)["state"] == "unknown"
    with log.open("ab") as handle:
        trainer = subprocess.Popen([sys.executable, "-c", TRAINER], stderr=handle)
        started = time.monotonic()
        seen: list[dict[str, Any]] = []
        try:
            # 18 s paced by the clock; the deadline is generous for a busy machine.
            while trainer.poll() is None and time.monotonic() - started < 120:
                # A sample every half second of an 18 s run paced by the clock: its middle (8 s) gives about 16.
                # sleep-ok: 5 are asked for below, and a sample waits for nothing but the shim's answer.
                time.sleep(0.5)
                seen.append(status(shim))
        finally:
            if trainer.poll() is None:
                trainer.kill()
            trainer.wait()
    steps = [s["progress"]["step"] for s in seen if s["progress"]]
    assert steps == sorted(steps) and steps[-1] >= STEPS - 50
    # 'estimating' (progress, no ETA) until the rate rests on 3 s of steps after the warm-up: 4 s at most.
    early = [s for s in seen if s["progress"] and s["state"] == "estimating"]
    assert all(s["progress"]["fraction"] < 0.4 for s in early), early
    mid = [s for s in seen if s["progress"] and 0.4 <= s["progress"]["fraction"] <= 0.85]
    assert len(mid) >= 5, seen
    for sample in mid:
        progress = sample["progress"]
        assert progress["total"] == STEPS
        assert abs(progress["rate_per_second"] - RATE) / RATE < 0.2, progress
        true_remaining = (STEPS - progress["step"]) / RATE + RESUME
        # eta.seconds is whole seconds and the log is polled every 0.5 s: allow that on top of 10 %.
        assert abs(sample["eta"]["seconds"] - true_remaining) <= 0.1 * true_remaining + 1.5, sample
        assert sample["state"] == "training"
        assert sample["retry_after"] == max(5, sample["eta"]["seconds"])
    # The shim polls the log: wait for it to read the last step.
    final = wait_until(lambda: (now := status(shim))["state"] == "finishing" and now, what="the finishing state")
    assert final["state"] == "finishing" and final["progress"]["step"] == STEPS


def test_status_follows_a_progress_file(start_shim: ShimFactory, tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    shim = start_shim(env={"MAINT_PROGRESS_FILE": str(path), "MAINT_ETA": "30m"})
    assert status(shim)["progress"] is None
    reporter = Reporter(path, total=3000, min_interval=0)
    for step in (100, 250, 400):
        reporter.update(step)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            progress = status(shim)["progress"]
            if progress and progress["step"] == step:
                break
            time.sleep(0.1)
        assert progress is not None and (progress["step"], progress["total"]) == (step, 3000)
    path.write_text("{half-written")
    wait_until(lambda: "keeping the last good progress" in shim.output(), what="the half-written file's warning")
    # sleep-ok: a quiet period (more polls of the same bad file): longer on a busy machine, never failing
    time.sleep(1.2)
    assert status(shim)["progress"]["step"] == 400  # the last good state is kept
    assert shim.output().count("keeping the last good progress") == 1
    assert request(shim, "GET", "/")[0] == 503
