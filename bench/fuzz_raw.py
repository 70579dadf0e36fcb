"""The raw-request fuzz of tests/uvicorn_ext/test_fuzz.py, for longer: Hypothesis-built and mutated byte streams
(tests/support/rawfuzz.py) at a shim's two service listeners and its admin listener, and through the shipped nginx
site (deploy/nginx/maintenance-shim-site.conf, both upstreams the shim).

Usage: python bench/fuzz_raw.py [--examples 20000] [--no-nginx] [--json PATH]

Starts the shim (and nginx, unless --no-nginx) on free loopback ports, sends --examples connections'
worth straight at the shim (service and admin listeners in turn) and as many through nginx, then reads the
shim's log. Prints the statuses seen and every bad one. Exit status 0 when no answer was a 5xx other than
503 (nginx's own 501/505 aside, but not its 502/504) and the shim logged no traceback; 1 otherwise. Every
process it starts is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.support import free_port  # noqa: E402
from tests.support.nginx import start_nginx  # noqa: E402
from tests.support.rawfuzz import bad_statuses, connection_bytes, exchange, statuses  # noqa: E402


def start_shim(directory: Path) -> tuple[subprocess.Popen[bytes], list[int], int, Path]:
    ports, admin = [free_port(), free_port()], free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINT_")}
    env.update({"MAINT_CORS_ORIGINS": "https://studio.example.com", "MAINT_HEALTH_PATHS": "/healthz",
                "MAINT_ADMIN_TOKEN": "fuzz-token-0123456789", "MAINT_HEADER_TIMEOUT": "2",
                "MAINT_ADMIN_LISTEN": f"127.0.0.1:{admin}", "MAINT_STATE_DIR": str(directory)})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    log = directory / "shim.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "maintenance_shim", "serve",
                                 "--listen", f"127.0.0.1:{ports[0]}=studio",
                                 "--listen", f"127.0.0.1:{ports[1]}=video:api"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/_maintenance/health", timeout=2).read()
            return proc, ports, admin, log
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the shim did not start:\n{log.read_text(errors='replace')}") from None
            time.sleep(0.05)


def fuzz(ports: list[int], examples: int, proxy: bytes | None, seen: Counter[int], bad: list[str]) -> float:
    count = [0]

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=connection_bytes())
    def one(data: bytes) -> None:
        port = ports[count[0] % len(ports)]
        count[0] += 1
        response = exchange(port, data)
        seen.update(statuses(response))
        for code in bad_statuses(response, proxy):
            bad.append(f"{code} on port {port} for {data[:200]!r}")

    began = time.monotonic()
    one()
    return time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--no-nginx", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result: dict[str, object] = {}
    bad: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fuzz-raw-") as tmp:
        proc, ports, admin, log = start_shim(Path(tmp))
        nginx = None
        try:
            direct: Counter[int] = Counter()
            seconds = fuzz([*ports, admin], args.examples, None, direct, bad)
            result["direct"] = {"connections": args.examples, "seconds": round(seconds, 1), "statuses": dict(direct)}
            if not args.no_nginx:
                nginx = start_nginx(Path(tmp), {"studio": ports[0], "video": ports[1]})
                proxied: Counter[int] = Counter()
                seconds = fuzz([nginx.port], args.examples, b"nginx", proxied, bad)
                result["nginx"] = {"connections": args.examples, "seconds": round(seconds, 1),
                                   "statuses": dict(proxied)}
        finally:
            if nginx is not None:
                nginx.stop()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        output = log.read_text(errors="replace")
    tracebacks = output.count("Traceback")
    result.update({"bad": bad[:50], "bad_count": len(bad), "tracebacks": tracebacks,
                   "errors_logged": sum(" ERROR " in line for line in output.splitlines())})
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if not bad and not tracebacks else 1


if __name__ == "__main__":
    sys.exit(main())
