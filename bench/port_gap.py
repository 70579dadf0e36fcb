"""Port mode (MAINT_SWITCH=port): the longest time a client gets no answer while the scripts hand a
service's port to the shim (start_maintenance.sh) and back (stop_maintenance.sh), under load.

Usage: python bench/port_gap.py [--cycles 5] [--clients 4] [--json PATH]

Two stand-in services (tests/support/standin.py, started and stopped through the scripts' hooks as in
tests/scripts/test_scripts.py), each hit by --clients threads sending requests on fresh connections every 4 ms
(tests/support/scripts.py's Hammer); then --cycles start/stop cycles. For each switch, the longest window
with only refused or reset connections on one service's port: from the end of the last answered request
before it to the start of the first answered one after it (an upper bound on the real gap).

What the shim controls is the start: it is launched first and stops the services only once it is loaded
and retrying the bind (scripts/lib/port.sh port_takeover), so it takes each port within ~10 ms of its being
freed. At the stop, the shim lets the port go and the START hook starts the service: the window is the
service's own start-up (here a Python interpreter importing http.server), which no switch can hide from
a service that binds only once, at the end of its start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import free_port  # noqa: E402
from tests.support.scripts import SERVICES, Hammer, Service, Setup, Target, _shim_cmd  # noqa: E402


def make_setup(tmp: Path) -> Setup:
    services = {name: Service(name, free_port(), tmp) for name in SERVICES}
    settings = {
        "MAINT_SERVICES": "studio video:api", "MAINT_STATE_DIR": str(tmp / "state"), "MAINT_SHIM_CMD": _shim_cmd(),
        "MAINT_LOCK_TIMEOUT": "5", "MAINT_HEALTH_TIMEOUT": "20", "MAINT_SETTLE_SECONDS": "0.3",
        "MAINT_LOG_LEVEL": "warning", "MAINT_ADMIN_LISTEN": f"127.0.0.1:{free_port()}", "MAINT_SWITCH": "port",
    }
    for name, service in services.items():
        settings[f"MAINT_SERVICE_{name}_START"] = service.hook("start")
        settings[f"MAINT_SERVICE_{name}_STOP"] = service.hook("stop")
        settings[f"MAINT_SERVICE_{name}_DRAIN"] = service.hook("drain")
        settings[f"MAINT_SERVICE_{name}_HEALTH_URL"] = f"http://127.0.0.1:{service.port}/health"
        settings[f"MAINT_SERVICE_{name}_LISTEN"] = f"127.0.0.1:{service.port}"
    setup = Setup(tmp, services, settings)
    setup.write_env()
    return setup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4, help="client threads per service")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    starts: list[float] = []
    stops: list[float] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="port-gap-") as tmp:
        setup = make_setup(Path(tmp))
        for service in setup.services.values():
            service.start()
        try:
            targets = [Target(name, svc.port) for name, svc in setup.services.items() for _ in range(args.clients)]
            with Hammer(targets) as hammer:
                hammer.wait_for("service-200")
                for _ in range(args.cycles):
                    began = time.monotonic()
                    started = setup.run("start_maintenance.sh")
                    if started.returncode:
                        raise SystemExit(f"start_maintenance.sh failed:\n{started.stderr}")
                    hammer.wait_for("shim-503")
                    time.sleep(0.5)
                    starts.append(hammer.longest_refused(since=began))
                    stop_began = time.monotonic()
                    stopped = setup.run("stop_maintenance.sh")
                    if stopped.returncode:
                        raise SystemExit(f"stop_maintenance.sh failed:\n{stopped.stderr}")
                    hammer.wait_for("service-200")
                    time.sleep(0.5)
                    stops.append(hammer.longest_refused(since=stop_began))
                failures = hammer.failures()
                counts = dict(hammer.counts())
        finally:
            for pid in setup.shim_pids():
                os.kill(pid, signal.SIGKILL)
            for service in setup.services.values():
                service.kill()
    result = {
        "cycles": args.cycles, "clients_per_service": args.clients,
        "start_gap_ms": [round(gap * 1000, 1) for gap in starts],
        "stop_gap_ms": [round(gap * 1000, 1) for gap in stops],
        "start_gap_ms_median": round(statistics.median(starts) * 1000, 1),
        "start_gap_ms_max": round(max(starts) * 1000, 1),
        "stop_gap_ms_median": round(statistics.median(stops) * 1000, 1),
        "stop_gap_ms_max": round(max(stops) * 1000, 1),
        "answers": counts, "bad": failures,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
