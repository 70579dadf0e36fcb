"""What the request counting and the access log cost: the shim with MAINT_METRICS off, on (the default),
and on with the access log (sampled 1 in 100, and every request), against the raw floor replaying the
shim's bytes, with wrk on loopback in one run.

Usage: python bench/metrics_cost.py [--duration 16] [--rounds 4] [--pair-rounds 8] [--process-pairs 3]
                                    [--connections 64] [--no-docs]

Each case is split into rounds and the server order rotates every round (the table of absolute figures).
The targets are judged side by side: metrics on and off, and on and the floor, loaded at the same time in
`--pair-rounds` rounds (bench/run.py's `side_by_side`), so outside load slows both of a pair alike. Two
processes of the same build differ by a percent or more side by side (their memory layout, hash seeds,
which started first), as much as the counting costs: so metrics on, off and the floor are started afresh
`--process-pairs` times, who starts first alternating, and their rounds pooled; a second metrics-on
process ("on2") is put beside the first as the method's A/A check.
wrk runs from 127.0.0.1: the first request of each connection is looked through for X-Forwarded-For (a
proxy on this host), the rest are not.
Writes bench/results/metrics-cost-<UTC time>.json and docs/benchmarks/metrics.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # bench/run.py: processes, wrk, capture

DOCS = bench.ROOT / "docs" / "benchmarks/metrics.md"
TARGETS = {"floor_ratio": 0.8, "counting_cost": 0.03}
ORDER = ("off", "on", "on2", "log1pc", "logall", "floor")


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    env: dict[str, str]


VARIANTS = (
    Variant("off", "shim, MAINT_METRICS=off", {"MAINT_METRICS": "off"}),
    Variant("on", "shim, metrics on (default)", {}),
    Variant("on2", "shim, metrics on, a second process (A/A check)", {}),
    Variant("log1pc", "shim, metrics + access log 1/100",
            {"MAINT_ACCESS_LOG": "on", "MAINT_ACCESS_LOG_SAMPLE": "0.01"}),
    Variant("logall", "shim, metrics + access log every request",
            {"MAINT_ACCESS_LOG": "on", "MAINT_ACCESS_LOG_SAMPLE": "1"}),
)


@dataclass
class Contender:
    name: str
    label: str
    proc: subprocess.Popen[bytes]
    port: int


def start(procs: bench.Procs, scratch: Path, cpu: int | None, wanted: list[str], floor: bool = True,
          floor_first: bool = False) -> list[Contender]:
    """The variants in `wanted`'s order, then the floor (first with `floor_first`: it replays the
    replies.json an earlier start captured)."""
    running: list[Contender] = []
    if floor and floor_first:
        running.append(start_floor(procs, scratch, cpu))
    for variant in sorted((v for v in VARIANTS if v.name in wanted), key=lambda v: wanted.index(v.name)):
        port = bench.free_port()
        env = bench.server_env() | variant.env | {"MAINT_ADMIN_LISTEN": f"127.0.0.1:{bench.free_port()}"}
        argv = [sys.executable, "-m", "maintenance_shim", "serve", "--listen", f"127.0.0.1:{port}={bench.SERVICE}"]
        proc = procs.start(variant.name, argv, env=env, cwd=scratch, log=scratch / f"{variant.name}.log", cpu=cpu)
        bench.wait_ready(proc, port)
        running.append(Contender(variant.name, variant.label, proc, port))
        if variant.name == "on" and not (scratch / "replies.json").exists():
            replies = {r.name: bench.capture(port, r) for r in bench.REQUESTS}
            routes = [[bench.JSON_PREFIX, replies[bench.API.name]], ["/", replies[bench.BROWSER.name]]]
            (scratch / "replies.json").write_text(json.dumps({"routes": routes, "by_request": replies}))
    if floor and not floor_first:
        running.append(start_floor(procs, scratch, cpu))
    return running


def start_floor(procs: bench.Procs, scratch: Path, cpu: int | None) -> Contender:
    port = bench.free_port()
    floor = bench.Server("floor", "raw ASGI floor (replays shim bytes)")
    proc = procs.start("floor", floor.argv(port, scratch), env=bench.server_env(), cwd=scratch,
                       log=scratch / "floor.log", cpu=cpu)
    bench.wait_ready(proc, port)
    return Contender("floor", floor.label, proc, port)


def warm_up(running: list[Contender], scratch: Path, args: argparse.Namespace) -> None:
    scripts = {r.name: bench.wrk_script(r, scratch) for r in bench.REQUESTS}
    for item in running:
        for request in bench.REQUESTS:
            bench.run_wrk(item.port, scripts[request.name], 32, args.warmup, args.threads)


def measure(running: list[Contender], scratch: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    scripts = {r.name: bench.wrk_script(r, scratch) for r in bench.REQUESTS}
    warm_up(running, scratch, args)
    seconds = max(1, round(args.duration / args.rounds))
    samples: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for index in range(args.rounds):
        order = running[index % len(running):] + running[: index % len(running)]
        for request in bench.REQUESTS:
            for item in order:
                before = bench.cpu_seconds(item.proc.pid)
                row = bench.run_wrk(item.port, scripts[request.name], args.connections, seconds, args.threads)
                row["server_cpu_s"] = bench.cpu_seconds(item.proc.pid) - before
                samples.setdefault((item.name, request.name), []).append(row)
        print(f"round {index + 1}/{args.rounds} done", flush=True)
    rows = []
    for (name, case), rounds in samples.items():
        requests = sum(r["requests"] for r in rounds)
        rows.append({
            "server": name,
            "request": case,
            "rps": statistics.median(r["rps"] for r in rounds),
            "rps_rounds": [round(r["rps"]) for r in rounds],
            "p99_ms": statistics.median(r["p99_ms"] for r in rounds),
            "cpu_us_per_request": 1e6 * sum(r["server_cpu_s"] for r in rounds) / requests,
            "cpu_us_rounds": [1e6 * r["server_cpu_s"] / r["requests"] for r in rounds],
            "requests": requests,
            "non_503": sum(r["non_503"] for r in rounds),
            "socket_errors": sum(r["socket_errors"] for r in rounds),
        })
    return rows


PAIRS = (("on", "off"), ("on", "floor"), ("on", "on2"))  # (measured, reference) loaded side by side


def measure_pairs(running: list[Contender], scratch: Path, args: argparse.Namespace,
                  pairs: tuple[tuple[str, str], ...] = PAIRS) -> dict[tuple[str, str, str], list[Any]]:
    """Each pair under load at the same time (bench.side_by_side), `args.pair_rounds` rounds per request:
    (measured row, reference row) per round, by (measured, reference, request)."""
    by_name = {item.name: item for item in running}
    scripts = {r.name: bench.wrk_script(r, scratch) for r in bench.REQUESTS}
    keep = ("requests", "server_cpu_s", "rps", "p99_ms", "non_503", "socket_errors")
    out: dict[tuple[str, str, str], list[Any]] = {}
    for mine_name, other_name in pairs:
        if mine_name not in by_name or other_name not in by_name:
            continue
        for request in bench.REQUESTS:
            rounds = []
            for index in range(args.pair_rounds):
                pair = [by_name[mine_name], by_name[other_name]]
                order = pair if index % 2 == 0 else pair[::-1]  # who starts first alternates
                rows = bench.side_by_side([c.proc.pid for c in order], [c.port for c in order],
                                          scripts[request.name], args.connections, args.pair_seconds, args.threads)
                if order[0] is not pair[0]:
                    rows.reverse()
                rounds.append(({k: rows[0][k] for k in keep}, {k: rows[1][k] for k in keep}))
            out[mine_name, other_name, request.name] = rounds
            ratios = bench.pair_ratios(rounds)
            print(f"side by side: {mine_name} vs {other_name:5} {request.name:14} CPU/req {ratios['cpu_ratio']:.3f}x "
                  f"requests {ratios['rps_ratio']:.3f}x", flush=True)
    return out


def pooled_pairs(sets: list[dict[tuple[str, str, str], list[Any]]]) -> list[dict[str, Any]]:
    """One entry per (measured, reference, request): the ratios over every process pair's rounds, pooled, and
    each process pair's own median."""
    keys = sorted({key for one in sets for key in one}, key=lambda k: (PAIRS.index(k[:2]), k[2]))
    out = []
    for mine, other, request in keys:
        per_set = [one[mine, other, request] for one in sets if (mine, other, request) in one]
        rounds = [pair for rounds in per_set for pair in rounds]
        entry: dict[str, Any] = {"server": mine, "other": other, "request": request, "process_pairs": len(per_set)}
        entry.update(bench.pair_ratios(rounds))
        entry["rps_ratio_by_process_pair"] = [bench.pair_ratios(r)["rps_ratio"] for r in per_set]
        entry["cpu_ratio_by_process_pair"] = [bench.pair_ratios(r)["cpu_ratio"] for r in per_set]
        entry["rounds"] = [{"shim": m, "other": o} for m, o in rounds]
        out.append(entry)
    return out


def hit_cost() -> dict[str, float]:
    """Nanoseconds one `Traffic.hit` takes in this process (timeit), for a remote client and for a
    request from 127.0.0.1 with the browser request's 15 headers (the X-Forwarded-For scan)."""
    import timeit

    from maintenance_shim.traffic import Traffic

    traffic = Traffic()
    key = ("studio", "html", "ja", 503)
    headers = [(name.lower().encode(), value.encode()) for name, value in bench.BROWSER.headers]
    headers.append((b"host", b"127.0.0.1:8080"))
    # nginx (deploy/nginx/proxy.conf) sends its proxy_set_header fields first.
    proxied = [(b"host", b"studio.example.com"), (b"x-real-ip", b"203.0.113.7"),
               (b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https"), *headers]
    out = {}
    for name, client, sent in (("remote_ns", "198.51.100.7", headers), ("local_client_ns", "127.0.0.1", headers),
                               ("local_proxy_ns", "127.0.0.1", proxied)):
        scope = {"client": (client, 50000), "server": ("127.0.0.1", 8080), "headers": sent}
        runs = timeit.repeat(lambda scope=scope: traffic.hit(key, scope), number=200_000, repeat=5)
        out[name] = min(runs) / 200_000 * 1e9
    return out


def app_cost() -> dict[str, dict[str, float]]:
    """Microseconds the shim's ASGI app takes per request in-process (bench/profile_hot_path.py's harness:
    no sockets, no uvicorn), metrics off and on, interleaved, best of 7, from 127.0.0.1."""
    import asyncio

    import profile_hot_path as hot

    from maintenance_shim.main import create_app
    from maintenance_shim.settings.shim import load_settings

    apps = {}
    for name, extra in (("off", {"MAINT_METRICS": "off"}), ("on", {})):
        env = bench.SHIM_ENV | extra | {"MAINT_LISTEN": f"127.0.0.1:8080={bench.SERVICE}", "MAINT_ADMIN_LISTEN": "off"}
        apps[name] = create_app(load_settings(environ=env))

    async def run() -> dict[str, dict[str, float]]:
        out = {}
        for request in bench.REQUESTS:
            scope = hot.scope_for(request) | {"client": ("127.0.0.1", 50000)}
            times: dict[str, list[float]] = {"off": [], "on": []}
            for _ in range(7):
                for name, app in apps.items():
                    times[name].append(await hot.per_request_us(app, scope, 20000))
            out[request.name] = {name: min(values) for name, values in times.items()}
        return out

    return asyncio.run(run())


def verdict(rows: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(r["server"], r["request"]): r for r in rows}
    side = {(p["server"], p["other"], p["request"]): p for p in pairs}
    checks = []
    for request in bench.REQUESTS:
        on, off, floor = (by[name, request.name] for name in ("on", "off", "floor"))
        # Every figure is paired by round (the variants run back to back in every round), so a drift of the
        # machine's load cancels out: the median of the per-round ratios.
        rps_cost = 1 - statistics.median(a / b for a, b in zip(on["rps_rounds"], off["rps_rounds"], strict=True))
        # Floor by server CPU per request, as the issues word it (and req/s, reported beside it).
        on_vs_floor = statistics.median(a / b for a, b in zip(floor["cpu_us_rounds"], on["cpu_us_rounds"], strict=True))
        on_vs_floor_rps = statistics.median(a / b for a, b in zip(on["rps_rounds"], floor["rps_rounds"], strict=True))
        cpu_cost = statistics.median(
            a / b for a, b in zip(on["cpu_us_rounds"], off["cpu_us_rounds"], strict=True)
        ) - 1
        check: dict[str, Any] = {
            "request": request.name,
            "on_vs_floor": on_vs_floor,
            "on_vs_floor_rps": on_vs_floor_rps,
            "rps_cost": rps_cost,
            "cpu_cost": cpu_cost,
            "judged_on": "back-to-back rounds",
        }
        vs_off, vs_floor = side.get(("on", "off", request.name)), side.get(("on", "floor", request.name))
        if vs_off is not None and vs_floor is not None:
            # Side by side the machine's noise cancels out (bench.side_by_side): these figures decide.
            check.update(
                side_on_vs_floor=vs_floor["cpu_ratio"],
                side_on_vs_floor_rps=vs_floor["rps_ratio"],
                side_rps_cost=1 - vs_off["rps_ratio"],
                side_cpu_cost=1 / vs_off["cpu_ratio"] - 1,
                judged_on="side by side",
                side_rps_cost_by_process_pair=[1 - r for r in vs_off["rps_ratio_by_process_pair"]],
                side_on_vs_floor_by_process_pair=vs_floor["cpu_ratio_by_process_pair"],
            )
            aa = side.get(("on", "on2", request.name))
            if aa is not None:
                check["side_aa_rps_difference"] = 1 - aa["rps_ratio"]
            check["floor_met"] = check["side_on_vs_floor"] >= TARGETS["floor_ratio"]
            check["cost_met"] = check["side_rps_cost"] <= TARGETS["counting_cost"]
        else:
            # req/s moves by more than 3 % between back-to-back rounds; the CPU per request less so.
            check["floor_met"] = on_vs_floor >= TARGETS["floor_ratio"]
            check["cost_met"] = cpu_cost <= TARGETS["counting_cost"]
        checks.append(check)
        for name in ("log1pc", "logall"):
            if (name, request.name) in by:
                checks[-1][f"{name}_cpu_cost"] = statistics.median(
                    a / b for a, b in zip(by[name, request.name]["cpu_us_rounds"], off["cpu_us_rounds"], strict=True)
                ) - 1
    return checks


def render(results: dict[str, Any]) -> str:
    cost = results["hit_cost"]
    labels = {v.name: v.label for v in VARIANTS} | {"floor": "raw ASGI floor (replays shim bytes)"}
    s = results["setup"]
    lines = [
        "# Benchmarks: the cost of metrics and the access log",
        "",
        "Generated by `bench/metrics_cost.py`; rerun it to refresh this page.",
        "",
        f"- Date: {s['date']} (shim at git {s['git']}); {s['machine']}",
        f"- wrk `-t{s['threads']} -c{s['connections']}`, {s['duration_s']} s per case in {s['rounds']} interleaved "
        f"rounds (order rotated each round), after {s['warmup_s']} s warm-up; servers on CPU 0, wrk on CPU 1",
        "- Requests: the `browser-html` and `api-json-cors` requests of `bench/run.py`, from 127.0.0.1; access",
        "  log lines go to a file.",
        "",
        "| server | request | req/s (median) | rounds | p99 ms | server CPU µs/req | non-503 | socket errors |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for row in results["load"]:
        lines.append(
            f"| {labels[row['server']]} | {row['request']} | {row['rps']:,.0f} | {row['rps_rounds']} | "
            f"{row['p99_ms']:.2f} | {row['cpu_us_per_request']:.1f} | {row['non_503']} | {row['socket_errors']} |"
        )
    lines += [
        "",
        "Ratios and costs are medians of per-round pairs (the variants run back to back in every round); where",
        "the side-by-side figures below exist, they decide the targets.",
        "",
        "| request | metrics on vs floor: CPU/req (req/s) | counting cost: CPU/req | counting cost: req/s "
        "| access log 1/100: CPU/req | access log every request: CPU/req |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for check in results["verdict"]:
        lines.append(
            f"| {check['request']} | {check['on_vs_floor']:.2f}x ({check.get('on_vs_floor_rps', float('nan')):.2f}x) | "
            f"{check['cpu_cost']:+.1%} | {check['rps_cost']:+.1%} | "
            f"{check.get('log1pc_cpu_cost', float('nan')):+.1%} | {check.get('logall_cpu_cost', float('nan')):+.1%} |"
        )
    side = [c for c in results["verdict"] if c.get("judged_on") == "side by side"]
    if side:
        lines += [
            "",
            "## Side by side: the targets' figures",
            "",
            f"Metrics on and its reference under the same load at the same time ({s['pair_rounds']} rounds of "
            f"{s['pair_seconds']:g} s per pair, one wrk each, both servers on CPU 0): other work on the machine slows",
            "both alike. Medians over the rounds (interquartile range). Metrics on, off and the floor were started "
            f"afresh {s.get('process_pairs', 1)} times",
            "(who starts first alternating) and their rounds pooled; the figure per process pair is in brackets.",
            "The A/A column puts a second metrics-on process beside the first: two processes of one build differ",
            "side by side by that much, so a difference of that size is within the method's noise in this run.",
            "The counting alone, with the processes' own difference taken out (one pair of processes whose counting",
            "is switched off and on while they run): [counting.md](counting.md).",
            "",
            "| request | metrics on vs floor: CPU/req | (req/s) | counting cost vs off: req/s | (CPU/req) "
            "| A/A: on vs on: req/s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        pairs = {(p["other"], p["request"]): p for p in results.get("pairs", [])}
        for c in side:
            floor, off = pairs["floor", c["request"]], pairs["off", c["request"]]
            lo, hi = floor["cpu_ratio_iqr"]
            off_lo, off_hi = off["rps_ratio_iqr"]
            lines.append(
                f"| {c['request']} | {c['side_on_vs_floor']:.3f}x ({lo:.3f}-{hi:.3f}; per process pair "
                + ", ".join(f"{x:.3f}" for x in c.get("side_on_vs_floor_by_process_pair", []))
                + f"; {'met' if c['floor_met'] else '**not met**'}) | {c['side_on_vs_floor_rps']:.3f}x | "
                f"{c['side_rps_cost']:+.1%} (IQR {1 - off_hi:+.1%} to {1 - off_lo:+.1%}; per process pair "
                + ", ".join(f"{x:+.1%}" for x in c["side_rps_cost_by_process_pair"])
                + f"; {'met' if c['cost_met'] else '**not met**'}) | {c['side_cpu_cost']:+.1%} | "
                + (f"{c['side_aa_rps_difference']:+.1%} |" if "side_aa_rps_difference" in c else "- |")
            )
    lines += [
        "",
        "The shim's ASGI app in-process (`bench/profile_hot_path.py`'s harness, no sockets, best of 7): "
        + "; ".join(
            f"`{c['request']}` {results['app_cost'][c['request']]['off']:.2f} µs off, "
            f"{results['app_cost'][c['request']]['on']:.2f} µs on: +{c['app_cost_us']:.2f} µs, "
            f"{c['app_cost_share']:.1%} of the server CPU per request with metrics off"
            for c in results["verdict"]
        )
        + ".",
        "",
        "One `Traffic.hit` alone (timeit in the bench process, best of 5): "
        f"{cost['remote_ns']:.0f} ns for a remote client, {cost['local_client_ns']:.0f} ns",
        f"for a local client (its connection is remembered as no proxy), {cost['local_proxy_ns']:.0f} ns "
        "for a request from nginx on this host",
        "(X-Forwarded-For read). The access log wrote "
        f"{results['access_log_lines']:,} lines in the every-request variant.",
        "",
        f"Targets: metrics on >= {TARGETS['floor_ratio']}x the raw floor by server CPU per request; the counting "
        f"costs at most {TARGETS['counting_cost']:.0%} of requests per second against metrics off. Both are judged",
        "side by side (without side-by-side rounds: on the back-to-back medians, the cost by CPU per request).",
        "",
        f"Raw results: `{results['out']}` (git-ignored).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=16, help="seconds of load per case (split in rounds)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pair-rounds", type=int, default=8, help="side-by-side rounds per pair and request")
    parser.add_argument("--pair-seconds", type=float, default=4.0, help="seconds per side-by-side round")
    parser.add_argument("--process-pairs", type=int, default=3,
                        help="fresh metrics on/off processes side by side, their rounds pooled")
    parser.add_argument("--variants", default="off,on,on2,log1pc,logall",
                        help="shim variants, from off,on,on2,log1pc,logall (off and on are required)")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks/metrics.md")
    args = parser.parse_args()
    import os

    cpu = bench.SERVER_CPU if (os.cpu_count() or 1) > 1 else None
    procs = bench.Procs()
    with bench.interrupts_as_exceptions(), tempfile.TemporaryDirectory(prefix="maint-metrics-") as tmp:
        scratch = Path(tmp)
        try:
            running = start(procs, scratch, cpu, args.variants.split(","))
            rows = measure(running, scratch, args)
            sets = []
            if args.pair_rounds > 0:
                sets.append(measure_pairs(running, scratch, args))
                restarted = ("on", "off", "floor")
                for index in range(1, args.process_pairs):
                    for item in running:
                        if item.name in restarted:
                            procs.stop(item.proc)
                    # Started in turn and warmed up as the first pair was. Which process starts first
                    # alternates (off or on; the floor or the shims): it can be worth several percent.
                    # The first pair started off first and the floor last: odd pairs turn both around.
                    fresh = start(procs, scratch, cpu, ["on", "off"] if index % 2 else ["off", "on"],
                                  floor_first=index % 2 == 1)
                    warm_up(fresh, scratch, args)
                    print(f"process pair {index + 1}/{args.process_pairs}: metrics on, off and the floor restarted",
                          flush=True)
                    sets.append(measure_pairs(fresh, scratch, args, pairs=(("on", "off"), ("on", "floor"))))
                    running = [item for item in running if item.name not in restarted] + fresh
            pairs = pooled_pairs(sets)
        finally:
            procs.stop_all()
        log = scratch / "logall.log"
        logged = sum(1 for _ in log.open(errors="replace")) if log.exists() else 0
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=bench.ROOT, capture_output=True, text=True)
    now = dt.datetime.now(dt.UTC)
    bench.RESULTS.mkdir(exist_ok=True)
    out = bench.RESULTS / f"metrics-cost-{now:%Y%m%dT%H%M%SZ}.json"
    results: dict[str, Any] = {
        "setup": {
            "date": now.isoformat(timespec="seconds"),
            "git": git.stdout.strip() + " + working tree",
            "machine": f"{os.cpu_count()} CPUs",
            "threads": args.threads,
            "connections": args.connections,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "warmup_s": args.warmup,
            "pair_rounds": args.pair_rounds,
            "pair_seconds": args.pair_seconds,
            "process_pairs": args.process_pairs,
        },
        "load": sorted(rows, key=lambda r: (r["request"], ORDER.index(r["server"]))),
        "access_log_lines": logged,
        "out": str(out.relative_to(bench.ROOT)),
    }
    results["pairs"] = pairs
    results["verdict"] = verdict(rows, pairs)
    results["hit_cost"] = hit_cost()
    results["app_cost"] = app_cost()
    off_cpu = {r["request"]: r["cpu_us_per_request"] for r in rows if r["server"] == "off"}
    for check in results["verdict"]:
        us = results["app_cost"][check["request"]]
        check["app_cost_us"] = us["on"] - us["off"]
        check["app_cost_share"] = (us["on"] - us["off"]) / off_cpu[check["request"]]
    out.write_text(json.dumps(results, indent=1))
    for row in results["load"]:
        print(f"{row['server']:7} {row['request']:14} {row['rps']:9.0f} req/s  "
              f"cpu/req {row['cpu_us_per_request']:6.1f} us  rounds {row['rps_rounds']}  "
              f"non-503 {row['non_503']}  socket errors {row['socket_errors']}")
    for check in results["verdict"]:
        print(json.dumps(check))
    if not args.no_docs:
        DOCS.write_text(render(results))
    ok = all(c["floor_met"] and c["cost_met"] for c in results["verdict"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
