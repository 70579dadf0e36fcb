"""Request latency while the trainer log receives megabyte lines of progress characters (issue 28).

Usage: python bench/log_flood.py [--seconds S] [--out FILE]

One shim (supervised, as deployed) follows MAINT_TRAIN_LOG. A client on loopback sends a GET every 5 ms
on a kept-alive connection and records each latency from the request's scheduled time (a blocked event
loop delays every request due meanwhile). Phases of `--seconds` each, on the same shim:

- `quiet`: nobody writes the log;
- `1MB-lines`: a writer appends lines of 1,000,000 `━` (Rich's bar character, 3 MB of UTF-8) five times a
  second, each followed by a real Rich progress line, so the parser must still find the progress;
- `60k-lines`: lines of 60,000 `━` ending in a progress bar's tail (before issue 28: ~400 ms in the parser
  per line, on the event loop), ten a second;
- `2k-lines`: lines of 2,000 `━` (under the 2,048-character cap: examined), fifty a second.

Prints p50 / p99 / max per phase and whether the progress after the flood was read; `--out` writes JSON.
The shim is stopped by its PID at the end, also on errors.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHIM = [sys.executable, "-m", "maintenance_shim", "serve"]
BAR = "━"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/x")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


INTERVAL = 0.005  # a request every 5 ms, on schedule


def measure(port: int, seconds: float) -> list[float]:
    """Latencies (ms) of GETs scheduled every INTERVAL on one kept-alive connection for `seconds`, each
    counted from its scheduled time: a loop blocked for a second delays every request due meanwhile, as it
    would delay real clients (no coordinated omission)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    start = time.perf_counter()
    count = int(seconds / INTERVAL)
    for index in range(count):
        due = start + index * INTERVAL
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        conn.request("GET", "/v1/models", headers={"Accept": "application/json"})
        response = conn.getresponse()
        response.read()
        latencies.append((time.perf_counter() - due) * 1000)
        assert response.status == 503, response.status
    conn.close()
    return latencies


WRITER = """
import sys, time
path, count, tail, per_second = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
line = "━" * count + tail
step = 0
with open(path, "a", encoding="utf-8") as handle:
    while True:
        step += 1
        handle.write(line + "\\n")
        handle.write(f"Epoch 0/9 {'━' * 20} {step}/100000 0:00:01 • 0:10:00 5.00it/s\\n")
        handle.flush()
        print(step, flush=True)
        time.sleep(1 / per_second)
"""


def writer(log: Path, count: int, tail: str, per_second: float) -> subprocess.Popen[str]:
    """The trainer: another process appending `count` bar characters and `tail`, then a real Rich progress
    line, `per_second` times a second; it prints each step it wrote."""
    return subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(count), tail, str(per_second)],
                            stdout=subprocess.PIPE, text=True)


def shown_step(port: int) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/x?format=json")
    body = json.loads(conn.getresponse().read())
    conn.close()
    progress = body["maintenance"]["progress"]
    return None if progress is None else int(progress["step"])


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 2),
        "max_ms": round(ordered[-1], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        log = Path(directory) / "train.log"
        log.write_text("")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAINT_")}
        env.update({"MAINT_TRAIN_LOG": str(log), "MAINT_ADMIN_LISTEN": "off", "MAINT_LOG_LEVEL": "warning"})
        proc = subprocess.Popen([*SHIM, "--listen", f"127.0.0.1:{port}"], env=env, cwd=directory,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(port)
            measure(port, 1.0)  # warm-up
            results["quiet"] = summary(measure(port, args.seconds))
            for name, count, tail, rate in (
                ("1MB-lines", 1_000_000, "", 5.0),
                ("60k-lines", 60_000, " 3/10 0:00:01 • 0:00:02 2.00it/s", 10.0),
                ("2k-lines", 2_000, "", 50.0),
            ):
                trainer = writer(log, count, tail, rate)
                try:
                    results[name] = summary(measure(port, args.seconds))
                finally:
                    trainer.terminate()
                    out, _ = trainer.communicate(timeout=15)
                last = int(out.split()[-1]) if out.split() else None
                deadline = time.monotonic() + 10
                while shown_step(port) != last and time.monotonic() < deadline:
                    time.sleep(0.1)
                results[name]["log_mb_written"] = round(log.stat().st_size / 1e6, 1)
                results[name]["progress_read_after"] = shown_step(port) == last
                log.write_text("")  # truncated: the next phase starts on a small file
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    for name, numbers in results.items():
        print(f"{name:10s} " + "  ".join(f"{key} {value}" for key, value in numbers.items()))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
