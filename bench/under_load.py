"""The shim's latency while a training job keeps every core busy, at each scheduling priority.

    python bench/under_load.py [--seconds 20] [--rate 200] [--nice 0,-5,-10] [--hogs N]

Starts one CPU-bound stand-in per core for the training job's data loaders (nice 0, as a trainer runs),
then for each shim priority a shim (nice N) on a loopback port, and sends an open-loop load of `--rate`
requests a second (a new request every 1/rate s, whether or not the previous ones were answered, from a
client at nice -15 so that the client's own scheduling is not what is measured). Prints p50/p99/max and
the number of answers per priority, and writes them to `bench/results/under-load-<time>.json`.
Only processes it started are ended, by PID; everything runs on loopback and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUEST = (b"GET /gallery?page=2 HTTP/1.1\r\nHost: studio.example.com\r\nAccept: text/html\r\n"
           b"Accept-Language: ja-JP,ja;q=0.9\r\nConnection: close\r\n\r\n")
HOG = "import itertools\nfor _ in itertools.count():\n    pass\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


async def one(port: int, latencies: list[float], failures: list[str]) -> None:
    start = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        writer.write(REQUEST)
        await writer.drain()
        head = await asyncio.wait_for(reader.readline(), 5)
        await asyncio.wait_for(reader.read(), 5)
        writer.close()
        if not head.startswith(b"HTTP/1.1 503"):
            failures.append(head.decode(errors="replace").strip())
            return
        latencies.append(time.perf_counter() - start)
    except (OSError, TimeoutError) as error:
        failures.append(repr(error))


async def load(port: int, rate: float, seconds: float) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    failures: list[str] = []
    tasks = []
    begin = time.perf_counter()
    count = int(rate * seconds)
    for index in range(count):
        delay = begin + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(port, latencies, failures)))
    await asyncio.gather(*tasks)
    return latencies, failures


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def run_shim(nice: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINT_")}
    env.update({"MAINT_ETA": "45m", "MAINT_LOG_LEVEL": "warning", "MAINT_ADMIN_LISTEN": "off", "PYTHONPATH": str(ROOT)})
    # nice -n is relative to this (client) process's own priority.
    command = ["nice", "-n", str(nice - os.nice(0)), sys.executable, "-m", "maintenance_shim", "serve",
               "--listen", f"127.0.0.1:{port}=studio"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--nice", default="0,-5,-10", help="shim priorities to measure (negative needs root)")
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2,
                        help="CPU-bound stand-ins (default: one per core)")
    args = parser.parse_args()
    try:
        os.nice(-15 - os.nice(0))  # the client: measured, not measuring its own wait for a core
    except PermissionError:
        print("note: not root, the client runs at the default priority", file=sys.stderr)
    hogs = [subprocess.Popen(["nice", "-n", str(-os.nice(0)), sys.executable, "-c", HOG])
            for _ in range(args.hogs)]
    results = []
    try:
        time.sleep(1.0)
        for nice in (int(item) for item in args.nice.split(",")):
            proc, port = run_shim(nice)
            try:
                asyncio.run(load(port, args.rate, 2.0))  # warm-up: imports, caches, the first snapshots
                latencies, failures = asyncio.run(load(port, args.rate, args.seconds))
            finally:
                stop(proc)
            row = {
                "shim_nice": nice,
                "rate": args.rate,
                "seconds": args.seconds,
                "hogs": args.hogs,
                "answered": len(latencies),
                "failed": len(failures),
                "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
                "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
                "max_ms": round(max(latencies) * 1000, 2) if latencies else None,
            }
            results.append(row)
            print(json.dumps(row))
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(5)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out / f"under-load-{stamp}.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
