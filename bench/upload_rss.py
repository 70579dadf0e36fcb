"""Memory under uploads the shim never reads: RSS of the serving process across many uploads.

Usage: python bench/upload_rss.py [--uploads 10000] [--size 70000] [--warmup 1000] [--clients 4]
                                  [--rounds 1] [--max-growth-mb 10] [--json PATH]

Starts `python -m maintenance_shim serve` on a free loopback port (supervised, as deployed; the serving
process is the one measured), then sends --warmup uploads, reads RSS (the post-warm-up value), sends
--uploads more, and reads RSS again, also once more after a second. With --rounds N, it sends --uploads
N times, reading RSS after each: the growth judged is the last round's (over the RSS before it), so a
high-water mark the allocator reaches once (more connections at once on a faster machine, arenas that
are never given back) does not count, and memory held per upload still does, once per round.
Each upload is a fresh connection sending a POST head and a body of --size bytes in one write, reading
the 503 and closing: a body over SMALL_BODY_BYTES gets `Connection: close` and a lingering close, so a
body buffered for nobody would be held as long as the connection lingers (issue 28: 10,000 uploads of 70
KB took RSS from 70 to 314 MB). --clients threads send them side by side. Loopback only; the shim is
stopped by PID at the end.

Exit status 0 when RSS after the (last round of) uploads is within --max-growth-mb of its value before
that round and every upload got its 503; 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

from maintenance_shim.supervise import serving_pid

ROOT = Path(__file__).resolve().parent.parent


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_shim(port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINT_")}
    env.update({"MAINT_ADMIN_LISTEN": "off", "MAINT_LOG_LEVEL": "warning", "MAINT_STATE_DIR": str(log.parent)})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "maintenance_shim", "serve", "--listen",
                                 f"127.0.0.1:{port}=studio"], env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_maintenance/health", timeout=2).read()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the shim did not start:\n{log.read_text(errors='replace')}") from None
            time.sleep(0.05)


def upload(port: int, data: bytes) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(data)
            head = sock.recv(12)
            return head.decode(errors="replace") if head else "closed"
    except OSError as error:
        return type(error).__name__


def send(port: int, count: int, size: int, clients: int) -> Counter[str]:
    data = b"POST /api/v1/upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n" \
           b"Content-Length: %d\r\n\r\n" % size + b"x" * size
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def run(n: int) -> None:
        local: Counter[str] = Counter(upload(port, data) for _ in range(n))
        with lock:
            outcomes.update(local)

    threads = [threading.Thread(target=run, args=(count // clients + (i < count % clients),)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=70_000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-growth-mb", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="upload-rss-") as tmp:
        port = free_port()
        proc = start_shim(port, Path(tmp) / "shim.log")
        try:
            server = serving_pid(proc.pid)
            start = rss_kb(server)
            warm = send(port, args.warmup, args.size, args.clients)
            warmed = rss_kb(server)
            rounds: list[int] = []
            outcomes = Counter[str]()
            began = time.monotonic()
            for _ in range(max(1, args.rounds)):
                outcomes += send(port, args.uploads, args.size, args.clients)
                rounds.append(rss_kb(server))
            seconds = time.monotonic() - began
            after = rounds[-1]
            time.sleep(1.0)  # every lingering connection closed (LINGER_SECONDS is 0.5 s)
            settled = rss_kb(server)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
    before = rounds[-2] if len(rounds) > 1 else warmed
    growth = (max(after, settled) - before) / 1024
    result = {
        "uploads": args.uploads, "size": args.size, "clients": args.clients, "seconds": round(seconds, 2),
        "rss_mb": {"start": round(start / 1024, 1), "after_warmup": round(warmed / 1024, 1),
                   "after_each_round": [round(kb / 1024, 1) for kb in rounds],
                   "after_uploads": round(after / 1024, 1), "one_second_later": round(settled / 1024, 1)},
        "growth_mb": round(growth, 1), "outcomes": dict(outcomes + warm),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    ok = growth <= args.max_growth_mb and set(outcomes) == {"HTTP/1.1 503"}
    total = args.uploads * len(rounds)
    print(f"RSS {warmed / 1024:.1f} MB after {args.warmup} warm-up uploads, "
          f"{', '.join(f'{kb / 1024:.1f}' for kb in rounds)} MB after each round of {args.uploads} more of "
          f"{args.size} bytes ({total / seconds:.0f}/s), {settled / 1024:.1f} MB a second later: growth "
          f"{growth:.1f} MB over {'the last round' if len(rounds) > 1 else 'the uploads'}: "
          f"{'OK' if ok else 'FAIL'} (bound {args.max_growth_mb} MB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
