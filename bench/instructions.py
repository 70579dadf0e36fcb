"""Instructions per request under callgrind: the shim with metrics off and on, and the raw floor.

Timings on this shared 2-core machine move by 5-16 % between two processes of one build (see
docs/benchmarks/counting.md); the instructions a server executes per request hardly move at all. Each
server runs under `valgrind --tool=callgrind --instr-atstart=no`; after its first 503, its admin app's
build and a warm-up, instrumentation is switched on (`callgrind_control -i on`) for exactly `--requests`
requests, sent over `--connections` kept-alive connections, then off. Instructions per request are the
window's total over its requests. With `--cache-sim` callgrind also simulates the caches, and the page adds
an estimate of cycles (instructions + 10 per first-level miss + 100 per last-level miss: cachegrind's
rule of thumb).

What is left of the noise is the work that follows the clock (uvicorn's tick, the Date header, the
metrics' once-a-second tick): a window that takes longer holds more of it. Rounds alternate the order of
the servers, and the page gives every round's figure.

Usage: python bench/instructions.py [--requests N] [--rounds R] [--cache-sim] [--servers off,on,floor]
       [--tree NAME=PATH ...]

`--tree NAME=PATH` adds the shim from another copy of the package (a directory holding maintenance_shim/,
e.g. an older commit's app/ copied there), metrics on, as server NAME: before/after comparisons of a change.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run as bench  # noqa: E402

RESULTS = BENCH / "results"
DOC = BENCH.parent / "docs" / "benchmarks/instructions.md"
START_TIMEOUT = 300.0  # a shim's start-up under callgrind takes 10-30 s here
WARM_UP = 400


@dataclass
class Contender:
    name: str
    label: str
    env: dict[str, str] = field(default_factory=dict)
    floor: bool = False


def contenders(names: list[str], trees: list[str]) -> list[Contender]:
    known = {
        "off": Contender("off", "shim, MAINT_METRICS=off", {"MAINT_METRICS": "off"}),
        "on": Contender("on", "shim, metrics on (default)", {"MAINT_METRICS": "on"}),
        "floor": Contender("floor", "raw ASGI floor (replays shim bytes)", floor=True),
    }
    chosen = [known[name] for name in names]
    for item in trees:
        name, _, path = item.partition("=")
        if not name or not (Path(path) / "maintenance_shim").is_dir():
            raise SystemExit(f"instructions.py: --tree {item!r}: want NAME=PATH, PATH holding maintenance_shim/")
        chosen.append(Contender(name, f"shim from {path}, metrics on", {"PYTHONPATH": str(Path(path).resolve())}))
    return chosen


def send_many(port: int, raw: bytes, count: int, connections: int) -> None:
    """`count` requests over `connections` kept-alive connections, each answer read in full; every
    answer must be a 503."""
    errors: list[BaseException] = []

    def worker(todo: int) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
                buffered = b""
                for _ in range(todo):
                    sock.sendall(raw)
                    while b"\r\n\r\n" not in buffered:
                        buffered += _recv(sock)
                    head, _, rest = buffered.partition(b"\r\n\r\n")
                    if not head.startswith(b"HTTP/1.1 503 "):
                        raise AssertionError(f"not a 503: {head[:60]!r}")
                    found = re.search(rb"(?im)^content-length: *(\d+)", head)
                    length = int(found.group(1)) if found else 0
                    while len(rest) < length:
                        rest += _recv(sock)
                    buffered = rest[length:]
        except BaseException as error:  # reported by the caller
            errors.append(error)

    shares = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]
    threads = [threading.Thread(target=worker, args=(share,)) for share in shares if share]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"the load failed: {errors[0]!r}")


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("the server closed the connection")
    return data


def wait_admin(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Until the admin app (built in a thread after the first 503) answers: its imports must not fall in
    the window."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_maintenance/status", timeout=60) as answer:
                answer.read()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the admin listener never answered") from None
            time.sleep(0.5)


def measure_one(procs: bench.Procs, item: Contender, request: bench.Request, scratch: Path,
                args: argparse.Namespace) -> dict[str, float]:
    """One server under callgrind, one window of `args.requests` requests: events per request."""
    port, admin = bench.free_port(), bench.free_port()
    out = scratch / f"callgrind-{item.name}-{request.name}.out"
    out.unlink(missing_ok=True)
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    if args.cache_sim:
        valgrind.append("--cache-sim=yes")
    env = bench.server_env() | {"MAINT_SUPERVISE": "false", "MAINT_ADMIN_LISTEN": f"127.0.0.1:{admin}"} | item.env
    argv = bench.Server("floor", "").argv(port, scratch) if item.floor else bench.Server("shim", "").argv(port, scratch)
    proc = procs.start(item.name, [*valgrind, *argv], env=env, cwd=scratch, log=scratch / f"{item.name}.log", cpu=None)
    try:
        bench.wait_ready(proc, port, timeout=START_TIMEOUT)
        if not item.floor:
            wait_admin(admin, proc)
        raw = bench.raw_request(request, port)
        send_many(port, raw, WARM_UP, args.connections)
        time.sleep(1.0)  # the warm-up's last answers out; the next tick begins
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
        began = time.monotonic()
        send_many(port, raw, args.requests, args.connections)
        seconds = time.monotonic() - began
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        finally:
            procs.stop(proc)
    text = out.read_text()
    events = re.search(r"^events: (.*)$", text, re.M)
    totals = re.search(r"^totals: (.*)$", text, re.M)
    if events is None or totals is None:
        raise RuntimeError(f"{out}: no callgrind totals")
    names, values = events.group(1).split(), totals.group(1).split()
    per = {name: int(value) / args.requests for name, value in zip(names, values, strict=True)}
    if args.cache_sim:
        per["cycles_est"] = (
            per["Ir"] + 10 * (per["I1mr"] + per["D1mr"] + per["D1mw"]) + 100 * (per["ILmr"] + per["DLmr"] + per["DLmw"])
        )
    per["window_s"] = seconds
    return per


def capture_replies(procs: bench.Procs, scratch: Path) -> None:
    """replies.json for the floor, from a shim started without valgrind."""
    port = bench.free_port()
    env = bench.server_env() | {"MAINT_SUPERVISE": "false"}
    proc = procs.start("capture", bench.Server("shim", "").argv(port, scratch), env=env, cwd=scratch,
                       log=scratch / "capture.log", cpu=None)
    try:
        bench.wait_ready(proc, port)
        replies = {r.name: bench.capture(port, r) for r in bench.REQUESTS}
    finally:
        procs.stop(proc)
    routes = [[bench.JSON_PREFIX, replies[bench.API.name]], ["/", replies[bench.BROWSER.name]]]
    (scratch / "replies.json").write_text(json.dumps({"routes": routes, "by_request": replies}))


def run(args: argparse.Namespace) -> dict[str, Any]:
    chosen = contenders(args.servers.split(","), args.tree)
    requests = [r for r in bench.REQUESTS if r.name in args.request.split(",")]
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    procs = bench.Procs()
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        if any(item.floor for item in chosen):
            capture_replies(procs, scratch)
        for round_no in range(args.rounds):
            order = chosen if round_no % 2 == 0 else chosen[::-1]
            for request in requests:
                for item in order:
                    per = measure_one(procs, item, request, scratch, args)
                    results.setdefault(request.name, {}).setdefault(item.name, []).append(per)
                    print(f"round {round_no + 1} {request.name} {item.name}: {per['Ir']:,.0f} instructions/request"
                          f" ({per['window_s']:.1f} s window)", flush=True)
    finally:
        procs.stop_all()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "requests": args.requests,
        "connections": args.connections,
        "rounds": args.rounds,
        "cache_sim": args.cache_sim,
        "servers": {item.name: item.label for item in chosen},
        "results": results,
    }


def git_state() -> str:
    rev = bench.command_output(["git", "-C", str(bench.ROOT), "rev-parse", "--short", "HEAD"])
    status = ["git", "-C", str(bench.ROOT), "status", "--porcelain", "app"]
    dirty = subprocess.run(status, capture_output=True, text=True)
    return rev + (" + uncommitted changes in app/" if dirty.stdout.strip() else "")


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def render(data: dict[str, Any]) -> str:
    key = "cycles_est" if data["cache_sim"] else "Ir"
    lines = [
        "# Benchmarks: instructions per request (callgrind)",
        "",
        "Generated by `bench/instructions.py`; rerun it to refresh this page.",
        "",
        f"- Date: {data['date']} (shim at git {data['git']}); valgrind's callgrind, one server at a time",
        f"- A window of exactly {data['requests']:,} requests over {data['connections']} kept-alive connections per"
        f" server and request, after its admin app's build and {WARM_UP} warm-up requests; {data['rounds']} rounds,"
        " the servers' order reversed every other round",
        "- Requests: the `browser-html` and `api-json-cors` requests of `bench/run.py`, from 127.0.0.1",
        "",
        "| request | server | instructions/request (median) | every round | "
        + ("est. cycles/request | " if data["cache_sim"] else "")
        + "window s |",
        "|---|---|---:|---|" + ("---:|" if data["cache_sim"] else "") + "---:|",
    ]
    for request, by_server in data["results"].items():
        for name, rows in by_server.items():
            rounds = ", ".join(f"{row['Ir']:,.0f}" for row in rows)
            cycles = f" {median(rows, 'cycles_est'):,.0f} |" if data["cache_sim"] else ""
            lines.append(f"| {request} | {data['servers'][name]} | {median(rows, 'Ir'):,.0f} | {rounds} |{cycles}"
                         f" {median(rows, 'window_s'):.1f} |")
    lines += ["", "Differences (medians; " + ("estimated cycles" if data["cache_sim"] else "instructions") + "):", ""]
    for request, by_server in data["results"].items():
        base = by_server.get("off")
        if base and "on" in by_server:
            delta = median(by_server["on"], key) / median(base, key) - 1
            lines.append(f"- {request}: metrics on costs {delta:+.2%} against MAINT_METRICS=off"
                         " (the counting: the rest of the metrics is off the request path)")
        if "floor" in by_server:
            for name in by_server:
                if name != "floor":
                    ratio = median(by_server["floor"], key) / median(by_server[name], key)
                    lines.append(f"- {request}: {data['servers'][name]} runs at {ratio:.3f}x the floor's"
                                 " instructions per request (floor / server)")
        for name in by_server:
            if name not in ("off", "on", "floor") and "on" in by_server:
                delta = median(by_server[name], key) / median(by_server["on"], key) - 1
                lines.append(f"- {request}: {data['servers'][name]}: {delta:+.2%} against this tree, metrics on")
    lines += ["", "Raw results: `bench/results/instructions-*.json` (git-ignored).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default="off,on,floor")
    parser.add_argument("--request", default=",".join(r.name for r in bench.REQUESTS))
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--cache-sim", action="store_true")
    parser.add_argument("--scratch", default="/tmp/maintenance-shim-instructions")
    parser.add_argument("--doc", default=str(DOC), help="the page to write ('-': none)")
    args = parser.parse_args(argv)
    data = run(args)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"instructions-{stamp}.json").write_text(json.dumps(data, indent=1))
    page = render(data)
    if args.doc != "-":
        Path(args.doc).write_text(page)
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
