"""A bounded soak: one shim process, random header values on every request, RSS sampled as it runs.

Usage: python bench/soak.py [--duration 600] [--requests 1000000] [--connections 8] [--interval 5]
                            [--warmup 60] [--max-growth-mb 8] [--json PATH] [--url URL]

Starts `python -m maintenance_shim serve` on a free loopback port (every feature on: CORS `*`, health
paths, a static ETA, three languages) unless --url points at a running shim (then RSS is read from
--pid, if given). Loopback only. The load is asyncio keep-alive connections sending requests whose
Accept-Language, Accept, Cookie, Origin, query and path are random, plus a fresh connection now and then
and an oversized head now and then (431). Ends after --duration seconds or --requests requests, whichever
comes first, and prints one line per RSS sample and a summary.

Exit status 0 when RSS grew by at most --max-growth-mb between the end of the warm-up and the end, and
every answer was a 503 (or the 431 asked for); 1 otherwise. The process it starts is stopped by PID
(SIGTERM, then SIGKILL) at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maintenance_shim.supervise import serving_pid

ROOT = Path(__file__).resolve().parent.parent
SHIM_ENV = {
    "MAINT_CORS_ORIGINS": "*",
    "MAINT_HEALTH_PATHS": "/healthz",
    "MAINT_ETA": "45m",
    "MAINT_LANGUAGES": "en,ja,zh_Hans",
    "MAINT_LOG_LEVEL": "warning",
    "MAINT_ADMIN_LISTEN": "off",
}
LANGS = ["en", "ja", "zh", "zh-CN", "zh-TW", "fr", "de", "ko", "pt-BR", "es-419"]


@dataclass
class Stats:
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (seconds, requests, RSS kB)


def random_tag(rng: random.Random) -> str:
    kind = rng.randrange(5)
    letters = string.ascii_letters
    if kind == 0:
        return rng.choice(LANGS)
    if kind == 1:
        return f"{rng.choice(['en', 'ja', 'zh'])}-{''.join(rng.choices(letters + string.digits, k=rng.randint(1, 8)))}"
    if kind == 2:
        return "-".join("".join(rng.choices(letters, k=rng.randint(2, 8))) for _ in range(rng.randint(1, 4)))
    if kind == 3:
        return "".join(rng.choices(string.ascii_letters + string.digits + "-_;=.*", k=rng.randint(1, 24)))
    return f"{''.join(rng.choices(string.ascii_lowercase, k=rng.choice((2, 3))))}_{rng.randint(0, 999)}"


def random_request(rng: random.Random) -> tuple[bytes, str]:
    """One request with random header values: (its bytes, the status it must get)."""
    method = rng.choice(["GET", "GET", "GET", "HEAD", "POST", "OPTIONS"])
    path = rng.choice(["/", "/gallery", "/api/v1/txt2img", "/healthz", f"/x/{rng.getrandbits(32):x}"])
    expected = "200" if path == "/healthz" and method in ("GET", "HEAD") else "503"
    if rng.random() < 0.2:
        path += f"?lang={random_tag(rng)}&format={rng.choice(['json', 'html', 'text', 'bogus'])}"
    languages = ",".join(f"{random_tag(rng)};q=0.{rng.randint(1, 9)}" for _ in range(rng.randint(1, 5)))
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Accept-Language: {languages}",
        f"Accept: {rng.choice(['text/html,*/*;q=0.8', 'application/json', '*/*', random_tag(rng) + '/x'])}",
        f"User-Agent: soak/{rng.getrandbits(48):x}",
    ]
    origin = rng.random() < 0.5
    if origin:
        lines.append(f"Origin: https://{rng.getrandbits(40):x}.example")
    if method == "OPTIONS" and rng.random() < 0.5:
        lines.append("Access-Control-Request-Method: POST")
        if origin:
            expected = "200"  # a preflight from an allowed origin (MAINT_CORS_ORIGINS=*)
    if rng.random() < 0.3:
        lines.append(f"Cookie: session={rng.getrandbits(128):x}; lang={random_tag(rng)}")
    body = b""
    if method == "POST":
        body = json.dumps({"prompt": "".join(rng.choices(string.ascii_letters, k=rng.randint(1, 200)))}).encode()
        lines.append(f"Content-Length: {len(body)}")
    if rng.random() < 0.002:
        lines.append("X-Big: " + "a" * 40_000)
        expected = "431"
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body, expected


async def read_response(reader: asyncio.StreamReader, head_request: bool) -> tuple[str, bool]:
    """(status, whether the server closes the connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, rest = head.partition(b"\r\n")
    status = status_line.split(b" ", 2)[1].decode()
    length = 0
    close = False
    for line in rest.split(b"\r\n"):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and b"close" in value.lower():
            close = True
    if length and not head_request:
        await reader.readexactly(length)
    return status, close


async def client(host: str, port: int, rng: random.Random, stats: Stats, deadline: float, limit: int) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.monotonic() < deadline and stats.requests < limit:
        if writer is None or rng.random() < 0.01:  # a fresh connection now and then
            if writer is not None:
                writer.close()
            reader, writer = await asyncio.open_connection(host, port)
        assert reader is not None
        data, expected = random_request(rng)
        try:
            writer.write(data)
            status, close = await read_response(reader, data.startswith(b"HEAD "))
        except (OSError, asyncio.IncompleteReadError) as error:
            stats.errors[type(error).__name__] += 1
            writer.close()
            writer = None
            continue
        stats.requests += 1
        stats.statuses[status if status == expected else f"unexpected {status} (wanted {expected})"] += 1
        if close:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


def rss_kb(pid: int | None) -> int:
    """RSS of the serving process (the supervisor's child when there is one)."""
    if pid is None:
        return 0
    for line in Path(f"/proc/{serving_pid(pid)}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def sampler(pid: int | None, stats: Stats, started: float, interval: float, deadline: float, limit: int) -> None:
    last = 0
    while time.monotonic() < deadline and stats.requests < limit:
        now = time.monotonic() - started
        rss = rss_kb(pid)
        stats.samples.append((now, stats.requests, rss))
        rate = (stats.requests - last) / interval if stats.samples[1:] else 0.0
        last = stats.requests
        print(f"{now:7.1f} s  {stats.requests:9,d} requests  {rate:8,.0f} req/s  RSS {rss / 1024:7.1f} MB", flush=True)
        await asyncio.sleep(interval)
    stats.samples.append((time.monotonic() - started, stats.requests, rss_kb(pid)))


async def run_load(args: argparse.Namespace, host: str, port: int, pid: int | None) -> Stats:
    stats = Stats()
    started = time.monotonic()
    deadline = started + args.duration
    rng = random.Random(args.seed)
    tasks = [
        asyncio.create_task(client(host, port, random.Random(rng.getrandbits(64)), stats, deadline, args.requests))
        for _ in range(args.connections)
    ]
    tasks.append(asyncio.create_task(sampler(pid, stats, started, args.interval, deadline, args.requests)))
    await asyncio.gather(*tasks)
    return stats


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_shim(workdir: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    log = workdir / "soak-shim.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINT_")}
    env.update(SHIM_ENV)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "maintenance_shim", "serve", "--listen", f"127.0.0.1:{port}=studio"],
            cwd=workdir, env=env, stdout=handle, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_maintenance/health", timeout=1):
                break
        except urllib.error.HTTPError:
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc)
                raise SystemExit(f"the shim did not start:\n{log.read_text(errors='replace')}") from None
            time.sleep(0.05)
    return proc, port, log


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def summarize(args: argparse.Namespace, stats: Stats) -> dict[str, Any]:
    samples = stats.samples
    warm = [s for s in samples if s[0] >= args.warmup] or samples[-1:]
    start_rss = samples[0][2] if samples else 0
    warm_rss = warm[0][2] if warm else 0
    end_rss = samples[-1][2] if samples else 0
    peak_rss = max((s[2] for s in samples), default=0)
    seconds = samples[-1][0] if samples else 0.0
    unexpected = {k: v for k, v in stats.statuses.items() if k.startswith("unexpected")}
    return {
        "requests": stats.requests,
        "seconds": round(seconds, 1),
        "requests_per_second": round(stats.requests / seconds) if seconds else 0,
        "rss_mb": {
            "start": round(start_rss / 1024, 1),
            "after_warmup": round(warm_rss / 1024, 1),
            "end": round(end_rss / 1024, 1),
            "peak": round(peak_rss / 1024, 1),
            "growth_after_warmup": round((end_rss - warm_rss) / 1024, 2),
        },
        "statuses": dict(stats.statuses),
        "client_errors": dict(stats.errors),
        "unexpected": unexpected,
        "settings": vars(args),
        "samples": [asdict_sample(s) for s in samples],
    }


def asdict_sample(sample: tuple[float, int, int]) -> dict[str, float]:
    return {"seconds": round(sample[0], 2), "requests": sample[1], "rss_mb": round(sample[2] / 1024, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--requests", type=int, default=1_000_000, help="stop after this many (default 1,000,000)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent keep-alive connections (default 8)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS counts (default 60)")
    parser.add_argument("--max-growth-mb", type=float, default=8.0, help="allowed RSS growth after warm-up")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--json", type=Path, help="write the summary and samples here")
    parser.add_argument("--url", help="soak a running shim at this loopback URL instead of starting one")
    parser.add_argument("--pid", type=int, help="with --url: the shim's PID, to read its RSS")
    args = parser.parse_args(argv)
    args.warmup = min(args.warmup, args.duration / 2)

    proc = None
    log = None
    pid: int | None = args.pid
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        try:
            if args.url:
                host, _, port_text = args.url.removeprefix("http://").rstrip("/").partition(":")
                if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
                    raise SystemExit("--url must be a loopback address")
                port = int(port_text or 80)
            else:
                proc, port, log = start_shim(Path(tmp))
                host, pid = "127.0.0.1", proc.pid
            stats = asyncio.run(run_load(args, host, port, pid))
        finally:
            if proc is not None:
                stop(proc)
        shim_log = log.read_text(errors="replace") if log is not None else ""
    summary = summarize(args, stats)
    summary["shim_tracebacks"] = shim_log.count("Traceback")
    rss = summary["rss_mb"]
    print(
        f"{summary['requests']:,} requests in {summary['seconds']} s ({summary['requests_per_second']:,} req/s); "
        f"RSS {rss['start']} MB at start, {rss['after_warmup']} MB after {args.warmup:g} s of warm-up, "
        f"{rss['end']} MB at the end (peak {rss['peak']} MB): {rss['growth_after_warmup']:+} MB after warm-up"
    )
    print(f"statuses: {summary['statuses']}; client errors: {summary['client_errors']}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    failed = []
    if pid is not None and rss["growth_after_warmup"] > args.max_growth_mb:
        failed.append(f"RSS grew {rss['growth_after_warmup']} MB after warm-up (allowed {args.max_growth_mb})")
    if summary["unexpected"]:
        failed.append(f"unexpected answers: {summary['unexpected']}")
    if summary["shim_tracebacks"]:
        failed.append(f"{summary['shim_tracebacks']} tracebacks in the shim's log")
    if not summary["requests"]:
        failed.append("no request was answered")
    for line in failed:
        print(f"FAIL: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
