"""What following a live progress source costs: idle CPU while a log grows at 100 lines/s, and 503 throughput
with that source against the same shim with a static ETA, in one run.

Usage: python bench/live_source.py [--idle SECONDS] [--duration SECONDS] [--rounds N] [--out FILE]

Two shims run side by side on CPU 0 (wrk on CPU 1): `static` with MAINT_ETA, `live` with MAINT_TRAIN_LOG
fed by a writer appending tqdm-style lines (with `\\r` updates, postfix fields and a newline every tenth
line) at 100 lines/s for the whole run. Idle cost: the live shim's CPU time over the idle window, minus
the static shim's, as a percentage of one core. Throughput: interleaved wrk rounds against both.
Every process is stopped by PID at the end, also on errors.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (
    BROWSER,
    ROOT,
    SERVER_CPU,
    Procs,
    cpu_seconds,
    free_port,
    interrupts_as_exceptions,
    run_wrk,
    server_env,
    wait_ready,
    wrk_script,
)

LINES_PER_SECOND = 100
TOTAL_STEPS = 1_000_000


def write_log(path: Path, stop: threading.Event) -> int:
    """Append tqdm-like progress at LINES_PER_SECOND until `stop`; returns the lines written."""
    written = 0
    started = time.monotonic()
    with path.open("a", encoding="utf-8") as log:
        while not stop.is_set():
            step = written + 1
            end = "\n" if step % 10 == 0 else "\r"
            log.write(
                f"Steps:  {step * 100 // TOTAL_STEPS:3d}%|          | {step}/{TOTAL_STEPS} "
                f"[00:{step // 100 % 60:02d}<99:59,  {LINES_PER_SECOND}.00it/s, loss=0.1{step % 7}, lr=1e-4]{end}"
            )
            log.flush()
            written += 1
            time.sleep(max(0.0, started + written / LINES_PER_SECOND - time.monotonic()))
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle measurement (default 20)")
    parser.add_argument("--duration", type=float, default=16.0, help="seconds of load per shim (default 16)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default 4)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "live-source.json")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks/live-source.md")
    args = parser.parse_args()

    procs = Procs()
    stop = threading.Event()
    results: dict[str, Any] = {"lines_per_second": LINES_PER_SECOND}
    with tempfile.TemporaryDirectory(prefix="shim-live-") as scratch_name, interrupts_as_exceptions():
        scratch = Path(scratch_name)
        log = scratch / "train.log"
        log.touch()
        writer_result: list[int] = []
        writer = threading.Thread(target=lambda: writer_result.append(write_log(log, stop)), daemon=True)
        try:
            shims: dict[str, tuple[int, Any]] = {}
            for name, extra in (("static", {"MAINT_ETA": "45m"}), ("live", {"MAINT_TRAIN_LOG": str(log)})):
                port = free_port()
                env = {**server_env(), **extra}
                argv = [sys.executable, "-m", "maintenance_shim", "serve", "--listen", f"127.0.0.1:{port}=studio"]
                proc = procs.start(name, argv, env=env, cwd=scratch, log=scratch / f"{name}.log", cpu=SERVER_CPU)
                wait_ready(proc, port)
                shims[name] = (port, proc)
            writer.start()
            time.sleep(2)  # the follower has caught up with the log
            before = {name: cpu_seconds(proc.pid) for name, (_, proc) in shims.items()}
            time.sleep(args.idle)
            after = {name: cpu_seconds(proc.pid) for name, (_, proc) in shims.items()}
            idle = {name: after[name] - before[name] for name in shims}
            results["idle_cpu_seconds"] = idle
            results["idle_seconds"] = args.idle
            results["follow_cost_percent_of_one_core"] = 100 * (idle["live"] - idle["static"]) / args.idle

            script = wrk_script(BROWSER, scratch)
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name in shims}
            for index in range(args.rounds):
                order = list(shims) if index % 2 == 0 else list(reversed(shims))
                for name in order:
                    port, proc = shims[name]
                    cpu_before = cpu_seconds(proc.pid)
                    run = run_wrk(port, script, args.connections, args.duration / args.rounds, 1)
                    used = cpu_seconds(proc.pid) - cpu_before
                    rounds[name].append(
                        {"rps": run["rps"], "cpu_us_per_request": 1e6 * used / max(1, run["requests"]),
                         "non_503": run["non_503"], "socket_errors": run["socket_errors"]}
                    )
            results["load"] = {
                name: {
                    "rps_median": statistics.median(r["rps"] for r in runs),
                    "cpu_us_per_request_median": statistics.median(r["cpu_us_per_request"] for r in runs),
                    "rounds": runs,
                }
                for name, runs in rounds.items()
            }
            status_url = f"http://127.0.0.1:{shims['live'][0]}/_maintenance/status"
            with urllib.request.urlopen(status_url, timeout=5) as response:
                status = json.loads(response.read())
            results["live_status_progress"] = status["progress"]
        finally:
            stop.set()
            if writer.is_alive():
                writer.join(5)
            procs.stop_all()
        results["lines_written"] = writer_result[0] if writer_result else None

    live, static = results["load"]["live"], results["load"]["static"]
    results["rps_ratio_live_over_static"] = live["rps_median"] / static["rps_median"]
    results["cpu_ratio_static_over_live"] = static["cpu_us_per_request_median"] / live["cpu_us_per_request_median"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"follow cost: {results['follow_cost_percent_of_one_core']:.2f}% of one core "
          f"(live {results['idle_cpu_seconds']['live']:.3f} s, static {results['idle_cpu_seconds']['static']:.3f} s "
          f"CPU over {args.idle:.0f} s; {LINES_PER_SECOND} lines/s)")
    for name in ("static", "live"):
        row = results["load"][name]
        print(f"{name:6} {row['rps_median']:9.0f} req/s  cpu/req {row['cpu_us_per_request_median']:6.1f} us  "
              f"rounds {[round(r['rps']) for r in row['rounds']]}")
    print(f"live/static req/s {results['rps_ratio_live_over_static']:.3f}, "
          f"CPU per request static/live {results['cpu_ratio_static_over_live']:.3f}")
    print(f"live shim's progress at the end: {results['live_status_progress']}")
    print(f"results: {args.out}")
    args.docs.write_text(markdown(results, args))
    print(f"docs: {args.docs}")
    return 0


def markdown(results: dict[str, Any], args: argparse.Namespace) -> str:
    """The docs page for one run."""
    live, static = results["load"]["live"], results["load"]["static"]
    lines = [
        "# Benchmark: the cost of a live progress source",
        "",
        f"Generated by `python bench/live_source.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Two",
        "shims side by side on CPU 0 (wrk on CPU 1): `static` (MAINT_ETA) and `live` (the same, plus",
        f"MAINT_TRAIN_LOG fed by a writer appending tqdm-style lines at {LINES_PER_SECOND} lines/s with `\\r`",
        "updates for the whole run). Same request as `browser-html` in [benchmarks/README.md](benchmarks/README.md).",
        "",
        "## Following the log, no HTTP load",
        "",
        f"- CPU over {results['idle_seconds']:.0f} s: live {results['idle_cpu_seconds']['live']:.3f} s, "
        f"static {results['idle_cpu_seconds']['static']:.3f} s",
        f"- cost of following: **{results['follow_cost_percent_of_one_core']:.2f}% of one core** (target < 2%)",
        f"- the live shim's progress at the end: step {results['live_status_progress']['step']}, "
        f"rate {results['live_status_progress']['rate_per_second']} steps/s",
        "",
        f"## 503 throughput, {args.rounds} interleaved rounds, {args.connections} connections",
        "",
        "| shim | req/s (median) | rounds | server CPU µs/request |",
        "|---|---:|---|---:|",
    ]
    for name, row in (("static", static), ("live", live)):
        rounds = ", ".join(f"{r['rps']:.0f}" for r in row["rounds"])
        lines.append(f"| {name} | {row['rps_median']:.0f} | {rounds} | {row['cpu_us_per_request_median']:.1f} |")
    lines += [
        "",
        f"live / static: **{results['rps_ratio_live_over_static']:.3f}** in req/s, "
        f"**{results['cpu_ratio_static_over_live']:.3f}** in CPU per request (static / live; target: within 5%).",
        "Req/s moves with whatever else the machine runs; CPU per request is the steadier measure.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
