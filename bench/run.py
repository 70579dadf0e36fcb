"""One benchmark run: the shim against its fair floor, a bare FastAPI catch-all and nginx, with wrk on loopback.

Usage: python bench/run.py [--duration 10] [--connections 64,256] [--startup-runs 7] [--no-docs]

Writes bench/results/bench-<UTC time>.json (git-ignored) and rewrites docs/benchmarks/README.md. Every process
it starts is recorded by PID and stopped (SIGTERM, wait, SIGKILL) at the end, also on error or Ctrl-C.
Servers run on CPU 0, wrk and this script on CPU 1, when the machine has two CPUs or more.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import http.client
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maintenance_shim.supervise import serving_pid

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
DOCS = ROOT / "docs" / "benchmarks/README.md"
SERVER_CPU = 0
CLIENT_CPU = 1

# Every feature on: CORS, health paths, a static ETA, three catalogs.
SHIM_ENV = {
    "MAINT_CORS_ORIGINS": "https://studio.example.com,https://app.example.com",
    "MAINT_HEALTH_PATHS": "/healthz,/api/health",
    "MAINT_ETA": "45m",
    "MAINT_LANGUAGES": "en,ja,zh_Hans",
    "MAINT_LOG_LEVEL": "warning",
    "MAINT_ADMIN_LISTEN": "off",
}
SERVICE = "studio"

TARGETS = {
    "floor_ratio": 0.8,
    "limits_ratio": 0.95,  # the limits (app/uvicorn_ext/protocol.py) cost at most 5% of requests per second
    "bare_ratio": 2.5,
    "startup_s": 0.6,
    "rss_mb": 70.0,
}


@dataclass(frozen=True)
class Request:
    """One request shape, sent identically by wrk (Lua) and by the capture."""

    name: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: str = ""


CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
BROWSER = Request(
    name="browser-html",
    method="GET",
    path="/gallery?page=2",
    headers=(
        ("Connection", "keep-alive"),
        ("sec-ch-ua", '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"'),
        ("sec-ch-ua-mobile", "?0"),
        ("sec-ch-ua-platform", '"Windows"'),
        ("Upgrade-Insecure-Requests", "1"),
        ("User-Agent", CHROME_UA),
        (
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,"
            "*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
        ),
        ("Sec-Fetch-Site", "none"),
        ("Sec-Fetch-Mode", "navigate"),
        ("Sec-Fetch-User", "?1"),
        ("Sec-Fetch-Dest", "document"),
        ("Accept-Encoding", "gzip, deflate, br, zstd"),
        ("Accept-Language", "ja-JP,ja;q=0.9,en-US;q=0.8,en;q=0.7"),
        ("Cookie", "_ga=GA1.1.1234567890.1732000000; session=eyJ1IjoiZGVtbyJ9.Zx1y2w.c2lnbmF0dXJl; theme=dark"),
    ),
)
API = Request(
    name="api-json-cors",
    method="POST",
    path="/api/v1/txt2img",
    headers=(
        ("Connection", "keep-alive"),
        ("User-Agent", CHROME_UA),
        ("Accept", "application/json"),
        ("Accept-Language", "zh-CN,zh;q=0.9,en;q=0.8"),
        ("Accept-Encoding", "gzip, deflate, br, zstd"),
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer sk-bench-0123456789abcdef"),
        ("Origin", "https://studio.example.com"),
        ("Referer", "https://studio.example.com/"),
        ("Sec-Fetch-Site", "same-site"),
        ("Sec-Fetch-Mode", "cors"),
        ("Sec-Fetch-Dest", "empty"),
    ),
    body=json.dumps({"prompt": "a lighthouse at dawn, oil painting", "steps": 30, "width": 1024, "height": 1024}),
)
REQUESTS = (BROWSER, API)
JSON_PREFIX = "/api/"


# ---------------------------------------------------------------- processes


@dataclass
class Procs:
    """Every process this run started, stopped by PID."""

    running: dict[int, tuple[str, subprocess.Popen[bytes]]] = field(default_factory=dict)

    def start(
        self, name: str, argv: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path, cpu: int | None
    ) -> subprocess.Popen[bytes]:
        def pin() -> None:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})

        with log.open("ab") as out:
            proc = subprocess.Popen(
                list(argv),
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=pin,
                start_new_session=True,
            )
        self.running[proc.pid] = (name, proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        name, _ = self.running.pop(proc.pid, ("?", proc))
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            print(f"warning: {name} (pid {proc.pid}) ignored SIGTERM; killing", file=sys.stderr)
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for _, proc in list(self.running.values()):
            self.stop(proc)


@contextlib.contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """SIGTERM raises like Ctrl-C, so the `finally` that stops every process runs."""

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raw_request(request: Request, port: int) -> bytes:
    """The request as bytes on the wire (the capture and the startup probe send exactly this)."""
    body = request.body.encode()
    lines = [f"{request.method} {request.path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in request.headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def first_status(port: int, request: Request, timeout: float) -> int | None:
    """The status of one request, or None when nothing listens yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(raw_request(request, port))
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                data += chunk
    except OSError:
        return None
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(match.group(1)) if match else None


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while first_status(port, BROWSER, 1.0) is None:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering on port {port}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing answered on port {port} within {timeout} s")
        time.sleep(0.02)


def capture(port: int, request: Request) -> dict[str, Any]:
    """Status, headers (wire order, minus Date/Server which the server adds itself) and body of one reply."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest(request.method, request.path, skip_accept_encoding=True)
        for name, value in request.headers:
            conn.putheader(name, value)
        body = request.body.encode()
        if body:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        response = conn.getresponse()
        payload = response.read()
        headers = [
            [name.lower(), value] for name, value in response.getheaders() if name.lower() not in ("date", "server")
        ]
        return {"status": response.status, "headers": headers, "body_b64": base64.b64encode(payload).decode()}
    finally:
        conn.close()


# ---------------------------------------------------------------- wrk


def lua_string(text: str) -> str:
    return json.dumps(text)  # ASCII JSON strings are valid Lua string literals


def wrk_script(request: Request, directory: Path) -> Path:
    lines = [f"wrk.method = {lua_string(request.method)}", f"wrk.path = {lua_string(request.path)}"]
    lines += [f"wrk.headers[{lua_string(name)}] = {lua_string(value)}" for name, value in request.headers]
    if request.body:
        lines.append(f"wrk.body = {lua_string(request.body)}")
    script = directory / f"{request.name}.lua"
    script.write_text("\n".join(lines) + "\n\n" + (BENCH / "report.lua").read_text())
    return script


def wrk_argv(port: int, script: Path, connections: int, duration: float, threads: int) -> list[str]:
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}",
    ]


def _pin_client() -> None:
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {CLIENT_CPU})


def wrk_result(argv: list[str], returncode: int, stdout: str, stderr: str, connections: int) -> dict[str, Any]:
    """wrk's BENCH_JSON line (report.lua) with req/s, p50, p99, non-503 and socket errors worked out."""
    line = next((x for x in stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({returncode}): {stderr.strip() or stdout.strip()}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = result["duration_us"] / 1e6
    statuses = {int(k): v for k, v in result["statuses"].items()}
    errors = result["errors"]
    result.update(
        rps=result["requests"] / seconds,
        p50_ms=result["latency_us"]["p50"] / 1000,
        p99_ms=result["latency_us"]["p99"] / 1000,
        non_503=sum(n for code, n in statuses.items() if code != 503),
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        connections=connections,
        command=" ".join(argv),
    )
    return result


def run_wrk(port: int, script: Path, connections: int, duration: float, threads: int) -> dict[str, Any]:
    argv = wrk_argv(port, script, connections, duration, threads)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, preexec_fn=_pin_client)
    return wrk_result(argv, done.returncode, done.stdout, done.stderr, connections)


def side_by_side(
    pids: Sequence[int], ports: Sequence[int], script: Path, connections: int, duration: float, threads: int
) -> list[dict[str, Any]]:
    """One wrk per server, all at once, each server's CPU time read over the same window.

    The servers share one CPU and the wrk processes another, so whatever else the machine does in that
    window slows all of them alike: the ratio of their CPU time per request (and, with the CPU shared
    fairly, of their req/s) holds to about a percent where back-to-back runs scatter by tens of percent.
    """
    before = [cpu_seconds(pid) for pid in pids]
    argvs = [wrk_argv(port, script, connections, duration, threads) for port in ports]
    running = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_pin_client)
        for argv in argvs
    ]
    outputs = [proc.communicate(timeout=duration + 60) for proc in running]
    after = [cpu_seconds(pid) for pid in pids]
    rows = []
    for argv, proc, (out, err), start, end in zip(argvs, running, outputs, before, after, strict=True):
        row = wrk_result(argv, proc.returncode, out, err, connections)
        row["server_cpu_s"] = end - start
        rows.append(row)
    return rows


def pair_ratios(rounds: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """Medians (and quartiles) over rounds of (shim row, other row) run side by side: server CPU per request
    other/shim and requests shim/other (higher is better for the shim in both)."""
    cpu = [(o["server_cpu_s"] / o["requests"]) / (m["server_cpu_s"] / m["requests"]) for m, o in rounds]
    rps = [m["requests"] / o["requests"] for m, o in rounds]

    def spread(values: list[float]) -> list[float]:
        if len(values) < 4:
            return [min(values), max(values)]
        q = statistics.quantiles(values, n=4)
        return [q[0], q[2]]

    return {
        "cpu_ratio": statistics.median(cpu),
        "cpu_ratio_iqr": spread(cpu),
        "rps_ratio": statistics.median(rps),
        "rps_ratio_iqr": spread(rps),
        "cpu_ratios": cpu,
        "rps_ratios": rps,
    }


# ---------------------------------------------------------------- servers


@dataclass(frozen=True)
class Server:
    """How to start one contender on a port."""

    name: str
    label: str

    def argv(self, port: int, scratch: Path) -> list[str]:
        py = sys.executable
        if self.name in ("shim", "shimcopy"):
            return [py, "-m", "maintenance_shim", "serve", "--listen", f"127.0.0.1:{port}={SERVICE}"]
        if self.name == "nolimits":
            return [py, str(BENCH / "shim_nolimits.py"), "--port", str(port)]
        if self.name == "floor":
            return [py, str(BENCH / "raw_floor.py"), "--port", str(port), "--replies", str(scratch / "replies.json")]
        if self.name == "bare":
            return [py, str(BENCH / "bare_fastapi.py"), "--port", str(port)]
        if self.name == "nginx":
            conf = write_nginx_conf(scratch, port)
            return [nginx_binary(), "-p", str(scratch / "nginx"), "-c", str(conf)]
        raise ValueError(self.name)


SERVERS = (
    Server("shim", "maintenance-shim (all features)"),
    Server("nolimits", "the shim's app on uvicorn's own protocol (limits off)"),
    Server("floor", "raw ASGI floor (replays shim bytes)"),
    Server("bare", "bare FastAPI catch-all"),
    Server("nginx", "nginx `return 503`"),
    Server("shimcopy", "a second, identical shim (the side-by-side method's A/A check)"),
)


OTHERS = ("nolimits", "floor", "bare", "nginx")  # what the shim is compared with


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINT_")}
    env.update(SHIM_ENV)
    env["PYTHONPATH"] = str(ROOT)  # measure this checkout, whatever is installed
    env["PYTHONDONTWRITEBYTECODE"] = "0"
    return env


def nginx_headers(reply: dict[str, Any]) -> str:
    lines = []
    for name, value in reply["headers"]:
        if name == "content-length":
            continue
        if any(ch in value for ch in '"$\\'):
            raise ValueError(f"header {name} cannot be written into nginx.conf as is: {value!r}")
        if name == "content-type":
            lines.append(f'            default_type "{value}";')
        else:
            lines.append(f'            add_header {name} "{value}" always;')
    return "\n".join(lines)


def write_nginx_conf(scratch: Path, port: int) -> Path:
    replies = json.loads((scratch / "replies.json").read_text())
    html, jsn = replies["by_request"][BROWSER.name], replies["by_request"][API.name]
    base = scratch / "nginx"
    (base / "www" / "_bench").mkdir(parents=True, exist_ok=True)
    (base / "www" / "_bench" / "503.html").write_bytes(base64.b64decode(html["body_b64"]))
    (base / "www" / "_bench" / "503.json").write_bytes(base64.b64decode(jsn["body_b64"]))
    text = (BENCH / "nginx.conf").read_text()
    text = text.replace("@DIR@", str(base)).replace("@PORT@", str(port))
    text = text.replace("@HTML_HEADERS@", nginx_headers(html)).replace("@JSON_HEADERS@", nginx_headers(jsn))
    conf = base / "nginx.conf"
    conf.write_text(text)
    for path in [scratch, *scratch.rglob("*")]:  # nginx workers may run as nobody
        path.chmod(0o755 if path.is_dir() else 0o644)
    return conf


def vm_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def event_loop_evidence(pid: int) -> dict[str, Any]:
    """Which extension modules the process mapped, and what py-spy sees at the bottom of the stack."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    evidence: dict[str, Any] = {
        "uvloop_so_mapped": "uvloop/loop." in maps,
        "httptools_so_mapped": "httptools/parser/parser." in maps,
    }
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if Path(py_spy).exists():
        dump = subprocess.run([py_spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30)
        text = dump.stdout + dump.stderr
        evidence["py_spy_dump"] = text.strip()
        # The pure-Python asyncio loop shows base_events._run_once and selectors in every idle stack;
        # uvloop's loop is compiled, so the Python stack ends at run_until_complete.
        evidence["asyncio_selector_loop_seen"] = "_run_once" in text or "selectors.py" in text
    return evidence


# ---------------------------------------------------------------- the run


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children threads so far (nginx: master plus workers)."""
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for one in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def cpu_pressure_us() -> int | None:
    """Host-wide microseconds some task waited for a CPU (PSI), to flag runs disturbed by other work."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(first.rsplit("total=", 1)[1])


@dataclass
class Running:
    server: Server
    proc: subprocess.Popen[bytes]
    port: int


def baseline_tree(rev: str, scratch: Path) -> Path:
    """`rev` of this repository extracted into `scratch`, with a directory that imports it as
    maintenance_shim (for PYTHONPATH: it comes before the editable install's finder)."""
    tree = scratch / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    site = scratch / "baseline-site"
    site.mkdir()
    (site / "maintenance_shim").symlink_to(tree / "app")
    return site


def baseline_env(env: dict[str, str], site: Path) -> dict[str, str]:
    return {**env, "PYTHONPATH": str(site)}


def start_servers(
    procs: Procs, scratch: Path, args: argparse.Namespace, wanted: list[str], results: dict[str, Any]
) -> list[Running]:
    """The shim first (its replies are captured for the floor and nginx), then the others; all idle on one CPU."""
    env = server_env()
    running: list[Running] = []
    for server in SERVERS:
        if server.name not in wanted:
            continue
        port = free_port()
        proc = procs.start(
            server.name,
            server.argv(port, scratch),
            env=baseline_env(env, args.baseline_site) if server.name == "shimcopy" and args.baseline else env,
            cwd=scratch,
            log=scratch / f"{server.name}.log",
            cpu=args.server_cpu,
        )
        wait_ready(proc, port)
        running.append(Running(server, proc, port))
        if server.name == "shim":
            replies = {r.name: capture(port, r) for r in REQUESTS}
            for name, reply in replies.items():
                if reply["status"] != 503:
                    raise RuntimeError(f"the shim answered {reply['status']} to {name}, not 503")
            routes = [[JSON_PREFIX, replies[API.name]], ["/", replies[BROWSER.name]]]
            (scratch / "replies.json").write_text(json.dumps({"routes": routes, "by_request": replies}, indent=1))
            results["captured"] = {
                name: {
                    "status": r["status"],
                    "headers": r["headers"],
                    "body_bytes": len(base64.b64decode(r["body_b64"])),
                }
                for name, r in replies.items()
            }
    return running


def measure_load(running: list[Running], scratch: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """wrk against every server, interleaved: each case is split into rounds and the server order rotates
    every round, so a burst of outside load hits all contenders alike instead of one of them."""
    scripts = {r.name: wrk_script(r, scratch) for r in REQUESTS}
    for item in running:  # warm-up: caches, allocator, CPU clocks
        for request in REQUESTS:
            run_wrk(item.port, scripts[request.name], 32, args.warmup, args.threads)
    round_seconds = max(1, round(args.duration / args.rounds))
    samples: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for index in range(args.rounds):
        order = running[index % len(running) :] + running[: index % len(running)]
        for request in REQUESTS:
            for connections in args.connections:
                for item in order:
                    cpu_before, psi_before = cpu_seconds(item.proc.pid), cpu_pressure_us()
                    row = run_wrk(item.port, scripts[request.name], connections, round_seconds, args.threads)
                    row["server_cpu_s"] = cpu_seconds(item.proc.pid) - cpu_before
                    psi_after = cpu_pressure_us()
                    if psi_before is not None and psi_after is not None:
                        row["cpu_pressure_pct"] = 100 * (psi_after - psi_before) / row["duration_us"]
                    samples.setdefault((item.server.name, request.name, connections), []).append(row)
        print(f"round {index + 1}/{args.rounds} done", flush=True)
    for (server, case, connections), rows in samples.items():
        requests = sum(r["requests"] for r in rows)
        cpu = sum(r["server_cpu_s"] for r in rows)
        row = {
            "server": server,
            "request": case,
            "connections": connections,
            "requests": requests,
            "rps": statistics.median(r["rps"] for r in rows),
            "rps_rounds": [round(r["rps"]) for r in rows],
            "p50_ms": statistics.median(r["p50_ms"] for r in rows),
            "p99_ms": statistics.median(r["p99_ms"] for r in rows),
            "non_503": sum(r["non_503"] for r in rows),
            "socket_errors": sum(r["socket_errors"] for r in rows),
            "statuses": [r["statuses"] for r in rows],
            "server_cpu_us_per_request": 1e6 * cpu / requests if requests else None,
            "cpu_pressure_pct": max((r.get("cpu_pressure_pct", 0.0) for r in rows), default=None),
            "rounds": rows,
        }
        results["load"].append(row)
        print(
            f"{server:6} {case:14} c={connections:<4} {row['rps']:9.0f} req/s  "
            f"p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  "
            f"cpu/req {row['server_cpu_us_per_request'] or 0:6.1f} us  non-503 {row['non_503']}  "
            f"socket errors {row['socket_errors']}  rounds {row['rps_rounds']}",
            flush=True,
        )
    for item in running:
        if item.server.name != "nginx":
            results["memory"][item.server.name] = vm_status(serving_pid(item.proc.pid))
        if item.server.name == "shim":
            results["event_loop"] = event_loop_evidence(serving_pid(item.proc.pid))
            # One connection, one request at a time: with Nagle on, the body segment written after the
            # header segment waits for the client's delayed ACK and p50 jumps to ~40 ms.
            single = run_wrk(item.port, scripts[BROWSER.name], 1, 2, 1)
            results["event_loop"]["single_connection_ms"] = {"p50": single["p50_ms"], "p99": single["p99_ms"]}


# The targets' references (the floor, limits off, bare FastAPI), measured side by side with the shim;
# `shimcopy` (only when asked for with --servers) checks the method itself: two identical servers side by
# side should come out at 1.00.
PAIRED = ("floor", "nolimits", "bare", "shimcopy")


def measure_pairs(running: list[Running], scratch: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The shim and each target reference under load at the same time (`side_by_side`), in rounds."""
    by_name = {item.server.name: item for item in running}
    shim = by_name["shim"]
    scripts = {r.name: wrk_script(r, scratch) for r in REQUESTS}
    keep = ("requests", "server_cpu_s", "rps", "p99_ms", "non_503", "socket_errors")
    for other_name in PAIRED:
        other = by_name.get(other_name)
        if other is None or args.pair_rounds < 1:
            continue
        for request in REQUESTS:
            for connections in args.connections:
                rounds = []
                for index in range(args.pair_rounds):
                    order = [shim, other] if index % 2 == 0 else [other, shim]  # who starts first alternates
                    rows = side_by_side(
                        [item.proc.pid for item in order],
                        [item.port for item in order],
                        scripts[request.name],
                        connections,
                        args.pair_seconds,
                        args.threads,
                    )
                    mine, theirs = (rows[0], rows[1]) if order[0] is shim else (rows[1], rows[0])
                    rounds.append(({k: mine[k] for k in keep}, {k: theirs[k] for k in keep}))
                entry = {"other": other_name, "request": request.name, "connections": connections}
                entry.update(pair_ratios(rounds))
                entry["rounds"] = [{"shim": m, "other": o} for m, o in rounds]
                results["pairs"].append(entry)
                print(
                    f"side by side: shim vs {other_name:8} {request.name:14} c={connections:<4} "
                    f"CPU/req {entry['cpu_ratio']:.3f}x (IQR {entry['cpu_ratio_iqr'][0]:.3f}-"
                    f"{entry['cpu_ratio_iqr'][1]:.3f})  req {entry['rps_ratio']:.3f}x",
                    flush=True,
                )


def measure_startup(
    server: Server, procs: Procs, scratch: Path, runs: int, pin: int | None
) -> tuple[list[float], list[float]]:
    """Seconds from spawn to the first 503 answered, and the CPU seconds the process used by then; one fresh
    process per run. The CPU time hardly moves when other work on the machine delays the wall clock."""
    times: list[float] = []
    cpu: list[float] = []
    env = server_env()
    for _ in range(runs):
        port = free_port()
        argv = server.argv(port, scratch)
        started = time.perf_counter()
        proc = procs.start(server.name, argv, env=env, cwd=scratch, log=scratch / f"{server.name}-startup.log", cpu=pin)
        try:
            while True:
                status = first_status(port, BROWSER, 2.0)
                if status == 503:
                    times.append(time.perf_counter() - started)
                    cpu.append(cpu_seconds(proc.pid))
                    break
                if status is not None:
                    raise RuntimeError(f"{server.name} answered {status} before any 503")
                if proc.poll() is not None:
                    raise RuntimeError(f"{server.name} exited with {proc.returncode} during start-up")
                if time.perf_counter() - started > 20:
                    raise TimeoutError(f"{server.name} gave no 503 within 20 s")
                time.sleep(0.002)
        finally:
            procs.stop(proc)
        time.sleep(0.2)
    return times, cpu


def version_of(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def command_output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "unavailable"
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else ""


def machine_facts() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    rev = command_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "app"], capture_output=True, text=True)
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": command_output(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "versions": {
            d: version_of(d) for d in ("uvicorn", "uvloop", "httptools", "fastapi", "starlette", "maintenance-shim")
        },
        "wrk": command_output(["wrk", "-v"]).split("Copyright")[0].strip(),
        "nginx": command_output([nginx_binary(), "-v"]),
        "git": rev + (" + uncommitted changes in app/" if dirty.stdout.strip() else ""),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=12.0, help="seconds of load per case (default 12)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds each case is split into (default 3)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per request shape")
    parser.add_argument("--connections", default="64,256", help="comma list (default 64,256)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: wrk has one CPU)")
    parser.add_argument("--startup-runs", type=int, default=7, help="start-up samples for the shim (default 7)")
    parser.add_argument(
        "--pair-rounds", type=int, default=8, help="side-by-side rounds per case against the floor and limits off"
    )
    parser.add_argument("--pair-seconds", type=float, default=4.0, help="seconds per side-by-side round (default 4)")
    parser.add_argument(
        "--servers",
        default="shim,nolimits,floor,bare,nginx",
        help="contenders, from shim,nolimits,floor,bare,nginx,shimcopy (the shim is required; shimcopy, a second "
        "shim side by side with the first, checks the method)",
    )
    parser.add_argument(
        "--baseline",
        metavar="GIT_REV",
        help="run shimcopy from this commit instead (git archive): the change against its baseline, side by side",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks/README.md")
    parser.add_argument(
        "--render", type=Path, metavar="RESULTS_JSON", help="only rewrite the docs page from a results file"
    )
    args = parser.parse_args(argv)
    if args.render:
        DOCS.write_text(markdown(json.loads(args.render.read_text()), args.render.resolve()))
        return 0
    args.connections = [int(x) for x in args.connections.split(",")]
    two_cpus = (os.cpu_count() or 1) > 1
    args.server_cpu = SERVER_CPU if two_cpus else None
    if two_cpus:
        os.sched_setaffinity(0, {CLIENT_CPU})
    for tool in ("wrk",):
        if shutil.which(tool) is None:
            print(f"bench: {tool} not found", file=sys.stderr)
            return 2
    wanted = args.servers.split(",")
    if args.baseline and "shimcopy" not in wanted:
        wanted.append("shimcopy")
    if "shim" not in wanted and ({"floor", "nginx"} & set(wanted)):
        print("bench: the floor and nginx replay the shim's captured bytes, so shim must run too", file=sys.stderr)
        return 2

    started = dt.datetime.now(dt.UTC)
    results: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "settings": {
            "shim_env": SHIM_ENV,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "pair_rounds": args.pair_rounds,
            "pair_seconds": args.pair_seconds,
            "baseline": args.baseline,
            "pinning": f"servers on CPU {SERVER_CPU}, wrk on CPU {CLIENT_CPU}" if two_cpus else "none (1 CPU)",
            "command": " ".join(["python bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
            "requests": {
                r.name: {"method": r.method, "path": r.path, "headers": dict(r.headers), "body": r.body}
                for r in REQUESTS
            },
        },
        "load": [],
        "pairs": [],
        "memory": {},
        "startup": {},
    }
    procs = Procs()
    scratch = Path(tempfile.mkdtemp(prefix="maint-bench-"))
    args.baseline_site = baseline_tree(args.baseline, scratch) if args.baseline else None
    try:
        with interrupts_as_exceptions():
            running = start_servers(procs, scratch, args, wanted, results)
            measure_load(running, scratch, args, results)
            measure_pairs(running, scratch, args, results)
            for item in running:
                procs.stop(item.proc)
            for server in SERVERS:
                if server.name in wanted:
                    runs = args.startup_runs if server.name == "shim" else 3
                    samples, cpu = measure_startup(server, procs, scratch, runs, args.server_cpu)
                    results["startup"][server.name] = {
                        "samples_s": samples,
                        "median_s": statistics.median(samples),
                        "cpu_samples_s": cpu,
                        "cpu_median_s": statistics.median(cpu),
                    }
                    print(
                        f"startup {server.name:6} median {statistics.median(samples):.3f} s "
                        f"(cpu {statistics.median(cpu):.3f} s)  {[round(x, 3) for x in samples]}",
                        flush=True,
                    )
    finally:
        procs.stop_all()
        for name in (f"{server.name}.log" for server in SERVERS):
            log = scratch / name
            if log.exists() and log.stat().st_size:
                results.setdefault("server_logs", {})[name] = log.read_text()[-4000:]
        shutil.rmtree(scratch, ignore_errors=True)
    results["verdict"] = verdict(results)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"results: {out}")
    if not args.no_docs:
        DOCS.write_text(markdown(results, out))
        print(f"table: {DOCS}")
    for check in results["verdict"]:
        print(f"{'PASS' if check['met'] else 'MISS'}  {check['target']}: {check['measured']}")
    return 0


# ---------------------------------------------------------------- reporting


def load_row(results: dict[str, Any], server: str, request: str, connections: int) -> dict[str, Any] | None:
    for row in results["load"]:
        if (row["server"], row["request"], row["connections"]) == (server, request, connections):
            found: dict[str, Any] = row
            return found
    return None


def _per_round(row: dict[str, Any], key: str) -> list[float]:
    """One figure per round of a load row: its req/s, or its server CPU seconds per request."""
    if key == "rps":
        return [float(r["rps"]) for r in row["rounds"]]
    return [r["server_cpu_s"] / r["requests"] if r["requests"] else float("nan") for r in row["rounds"]]


def paired(results: dict[str, Any], other: str, key: str) -> list[tuple[str, int, float]]:
    """The shim against `other`, round by round, as the median of the per-round ratios.

    Within one round every contender runs the same case back to back, so a pair shares whatever else the
    machine was doing at that minute; the median over rounds then drops the rounds a neighbour disturbed.
    key "rps": shim req/s over other's (higher is better); key "cpu": other's CPU per request over the
    shim's (the shim's efficiency; higher is better)."""
    out = []
    for row in results["load"]:
        if row["server"] != "shim":
            continue
        base = load_row(results, other, row["request"], row["connections"])
        if not base or len(base["rounds"]) != len(row["rounds"]):
            continue
        mine, theirs = _per_round(row, key), _per_round(base, key)
        pairs = [(m / t if key == "rps" else t / m) for m, t in zip(mine, theirs, strict=True) if m > 0 and t > 0]
        if pairs:
            out.append((row["request"], row["connections"], statistics.median(pairs)))
    return out


def ratios(results: dict[str, Any], other: str) -> list[tuple[str, int, float]]:
    return paired(results, other, "rps")


def cpu_ratios(results: dict[str, Any], other: str) -> list[tuple[str, int, float]]:
    """Server CPU per request of `other` over the shim's: the shim's efficiency, independent of outside load."""
    return paired(results, other, "cpu")


def verdict(results: dict[str, Any]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def ratio_check(other: str, target: float, what: str, key: str) -> None:
        side = [p for p in results.get("pairs", []) if p["other"] == other]
        if side:  # measured side by side: the steadier figure
            field = "rps_ratio" if key == "rps" else "cpu_ratio"
            found = [(p["request"], p["connections"], p[field]) for p in side]
            what += ", side by side"
        else:
            found = paired(results, other, key)
        if found:
            worst = min(r for _, _, r in found)
            measure = "req/s" if key == "rps" else "server CPU per request"
            checks.append(
                {
                    "target": f"shim >= {target}x {what} by {measure} (every case)",
                    "measured": ", ".join(f"{req} c={c}: {r:.2f}x" for req, c, r in found),
                    "met": worst >= target,
                }
            )

    # Issue wording: the floor ratio by server CPU per request, the limits' cost in requests per second.
    ratio_check("floor", TARGETS["floor_ratio"], "raw ASGI floor", "cpu")
    ratio_check("nolimits", TARGETS["limits_ratio"], "the same app with limits off", "rps")
    ratio_check("bare", TARGETS["bare_ratio"], "bare FastAPI", "cpu")
    if "shim" in results["startup"]:
        median = results["startup"]["shim"]["median_s"]
        checks.append(
            {
                "target": f"startup to first 503 < {TARGETS['startup_s']} s (median)",
                "measured": f"{median:.3f} s",
                "met": median < TARGETS["startup_s"],
            }
        )
    if "shim" in results["memory"]:
        rss = results["memory"]["shim"]["VmRSS"]
        checks.append(
            {
                "target": f"RSS after load < {TARGETS['rss_mb']:.0f} MB",
                "measured": f"{rss:.1f} MB",
                "met": rss < TARGETS["rss_mb"],
            }
        )
    shim_rows = [r for r in results["load"] if r["server"] == "shim"]
    if shim_rows:
        bad = sum(r["non_503"] for r in shim_rows)
        errors = sum(r["socket_errors"] for r in shim_rows)
        total = sum(r["requests"] for r in shim_rows)
        checks.append({"target": "zero non-503 answers under load", "measured": f"{bad} of {total}", "met": bad == 0})
        checks.append({"target": "zero socket errors under load", "measured": str(errors), "met": errors == 0})
    return checks


def noise_note(results: dict[str, Any]) -> list[str]:
    """A warning when other work competed for the CPUs during the load runs (Linux PSI, host-wide)."""
    pressures = [r["cpu_pressure_pct"] for row in results["load"] for r in row["rounds"] if "cpu_pressure_pct" in r]
    if not pressures:
        return []
    spread = [max(row["rps_rounds"]) / min(row["rps_rounds"]) for row in results["load"] if min(row["rps_rounds"]) > 0]
    return [
        f"CPU pressure (PSI `some`, share of wall time some task waited for a CPU) per round: "
        f"median {statistics.median(pressures):.0f}%, max {max(pressures):.0f}%; fastest/slowest round of one case: "
        f"up to {max(spread):.1f}x. Above a few percent other work shared the machine: trust the CPU-per-request "
        "column and ratios more than req/s.",
        "",
    ]


def markdown(results: dict[str, Any], out: Path) -> str:
    m = results["machine"]
    s = results["settings"]
    labels = {server.name: server.label for server in SERVERS}
    baseline = results["settings"].get("baseline")
    if baseline:
        labels["shimcopy"] = f"the shim at {baseline} (baseline)"
    v = m["versions"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run.py`; rerun it to refresh this page (see `bench/README.md` for the method).",
        "",
        f"- Date: {results['date']} (shim at git {m['git']})",
        f"- Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gb']} GB RAM; {m['os']}, Linux {m['kernel']}",
        f"- Python {m['python']}; uvicorn {v['uvicorn']}, uvloop {v['uvloop']}, httptools {v['httptools']}, "
        f"FastAPI {v['fastapi']}, Starlette {v['starlette']}; {m['wrk']}; {m['nginx']}",
        f"- Command: `{s['command']}`; wrk `-t{s['wrk_threads']}`, {s['duration_s']:g} s of load per case in "
        f"{s['rounds']} interleaved rounds (server order rotated each round), after {s['warmup_s']:g} s warm-up; "
        f"keep-alive, loopback; {s['pinning']}",
        "- Python servers: one process, uvloop, httptools, access log off. Shim settings: "
        + ", ".join(f"`{k}={val}`" for k, val in s["shim_env"].items()),
        "",
        "Requests (the same bytes from wrk's Lua script and from the capture):",
        "",
    ]
    for name, req in s["requests"].items():
        hdr = req["headers"]
        lines.append(
            f"- `{name}`: `{req['method']} {req['path']}`, {len(hdr)} headers (Accept `{hdr['Accept'][:40]}...`, "
            f"Accept-Language `{hdr['Accept-Language']}`"
            + (f", Origin `{hdr['Origin']}`, {len(req['body'])}-byte JSON body" if req["body"] else ", Cookie")
            + ")"
        )
    captured = results.get("captured", {})
    if captured:
        lines += [
            "",
            "Shim replies captured and replayed by the floor and nginx: "
            + "; ".join(
                f"`{n}` {c['status']}, {len(c['headers'])} headers, {c['body_bytes']} body bytes"
                for n, c in captured.items()
            )
            + ".",
        ]
    lines += [
        "",
        "## Throughput and latency",
        "",
        *noise_note(results),
        "req/s, p50 and p99 are medians over the rounds; server CPU is the server process's user+system time",
        "per request (robust against other load on the machine); non-503 and socket errors are totals.",
        "",
        "| server | request | conns | req/s | p50 ms | p99 ms | server CPU µs/req | non-503 | socket errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["load"]:
        cpu = row.get("server_cpu_us_per_request")
        lines.append(
            f"| {labels[row['server']]} | {row['request']} | {row['connections']} | {row['rps']:,.0f} | "
            f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {cpu:.1f} | {row['non_503']} | {row['socket_errors']} |"
        )
    lines += [
        "",
        "## Shim relative to the others",
        "",
        "Median over the rounds of the per-round ratios (each round runs every contender back to back): req/s "
        "shim/other (higher is better for the shim); in brackets server CPU per request other/shim.",
        "",
        "| request | conns | vs limits off | vs floor | vs bare FastAPI | vs nginx |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    by_key: dict[tuple[str, int], dict[str, float]] = {}
    for other in OTHERS:
        for req, conns, r in ratios(results, other):
            by_key.setdefault((req, conns), {})[other] = r
    for (req, conns), vals in by_key.items():
        cpu = {
            o: r
            for o, (rq, c, r) in ((o, x) for o in OTHERS for x in cpu_ratios(results, o))
            if (rq, c) == (req, conns)
        }
        cells = [(f"{vals[o]:.2f}x" + (f" ({cpu[o]:.2f}x)" if o in cpu else "")) if o in vals else "-" for o in OTHERS]
        lines.append(f"| {req} | {conns} | " + " | ".join(cells) + " |")
    pairs = results.get("pairs", [])
    if pairs:
        lines += [
            "",
            "## Side by side: the targets' figures",
            "",
            f"The shim and one reference under the same load at the same time ({s.get('pair_rounds')} rounds of "
            f"{s.get('pair_seconds', 0):g} s per case, one wrk each): both servers share CPU 0 and both wrk CPU 1, so "
            "other work on the machine slows both alike. Medians over the rounds, interquartile range in brackets; "
            "higher is better for the shim.",
            "",
            "| request | conns | against | server CPU per request, other/shim | requests, shim/other |",
            "|---|---:|---|---:|---:|",
        ]
        for p in pairs:
            cpu_lo, cpu_hi = p["cpu_ratio_iqr"]
            rps_lo, rps_hi = p["rps_ratio_iqr"]
            lines.append(
                f"| {p['request']} | {p['connections']} | {labels[p['other']]} | {p['cpu_ratio']:.3f}x "
                f"({cpu_lo:.3f}-{cpu_hi:.3f}) | {p['rps_ratio']:.3f}x ({rps_lo:.3f}-{rps_hi:.3f}) |"
            )
    lines += [
        "",
        "## Start-up and memory",
        "",
        "| server | startup to first 503, median | samples (s) | CPU by then, median | RSS after load | peak RSS |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for server in SERVERS:
        st = results["startup"].get(server.name)
        mem = results["memory"].get(server.name, {})
        if not st:
            continue
        samples = ", ".join(f"{x:.3f}" for x in st["samples_s"])
        rss = f"{mem['VmRSS']:.1f} MB" if "VmRSS" in mem else "-"
        hwm = f"{mem['VmHWM']:.1f} MB" if "VmHWM" in mem else "-"
        cpu = f"{st['cpu_median_s']:.3f} s" if "cpu_median_s" in st else "-"
        lines.append(f"| {server.label} | {st['median_s']:.3f} s | {samples} | {cpu} | {rss} | {hwm} |")
    ev = results.get("event_loop")
    if ev:
        lines += [
            "",
            "## Event loop of the shim process",
            "",
            f"- uvloop extension mapped: {ev['uvloop_so_mapped']}; "
            f"httptools parser mapped: {ev['httptools_so_mapped']}",
        ]
        if "asyncio_selector_loop_seen" in ev:
            lines.append(
                "- py-spy dump shows the pure-Python asyncio loop (`_run_once`/`selectors`): "
                f"{ev['asyncio_selector_loop_seen']} (False means the compiled uvloop loop is running)"
            )
        if "single_connection_ms" in ev:
            one = ev["single_connection_ms"]
            lines.append(
                f"- one connection, one request at a time (`browser-html`): p50 {one['p50']:.2f} ms, "
                f"p99 {one['p99']:.2f} ms (Nagle without TCP_NODELAY would show ~40 ms)"
            )
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for check in results["verdict"]:
        lines.append(f"| {check['target']} | {check['measured']} | {'yes' if check['met'] else '**no**'} |")
    reference = [
        (row["request"], row["connections"], row["rps"] / bare["rps"])
        for row in results["load"]
        if row["server"] == "floor"
        and (bare := load_row(results, "bare", row["request"], row["connections"])) is not None
        and bare["rps"]
    ]
    if reference:
        shown = ", ".join(f"{request} c={conns}: {ratio:.2f}x" for request, conns, ratio in reference)
        lines += [
            "",
            f"For reference, the raw floor itself over the bare FastAPI catch-all (req/s): {shown}. The two",
            "throughput targets can both hold only where the floor is at least 2.5 / 0.8 = 3.1x bare FastAPI.",
        ]
    lines += ["", f"Raw results: `{out.relative_to(ROOT)}` (git-ignored).", ""]
    lines += [
        "The cost of following a live progress source (a log growing at 100 lines/s), and the 503 throughput",
        "with it against a static ETA, are measured by `bench/live_source.py`: "
        "[live-source.md](live-source.md). Latency while a training job keeps every",
        "core busy: [under-load.md](under-load.md) (`bench/under_load.py`). The live",
        "ETA on real trainers: [eta.md](eta.md). The request counting (metrics on against",
        "off) and the access log: [metrics.md](metrics.md) (`bench/metrics_cost.py`).",
        "Memory over a 10-minute soak with random header values: [soak.md](soak.md)",
        '(`bench/soak.py`). The "limits off" row is the same app on uvicorn\'s stock httptools protocol',
        "(`bench/shim_nolimits.py`): the shim row against it is what the header, timeout and connection",
        "limits of `app/uvicorn_ext/protocol.py` cost.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
