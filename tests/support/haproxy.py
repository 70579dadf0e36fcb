"""A real HAProxy on loopback for the script and fallback tests, built from deploy/haproxy/haproxy.cfg.

It runs in the foreground as our child (`haproxy -db`) and is stopped by PID. The shipped file is copied
with its addresses rewritten: the stats socket -> a Unix socket in the test's dir, `bind :80` -> a free
loopback port, each backend's `live` server -> its stand-in service's port and `shim` server -> the
shim's listener, the health paths -> the stand-ins' `/health`; the log goes to stderr (our log file).
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import PortInUse, start_on_free_ports, wait_listening, wait_until

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "haproxy"
HOSTS = {"studio": "studio.example.com", "video": "video-api.example.com"}


def haproxy_bin() -> str | None:
    """Debian's haproxy (/usr/sbin/haproxy), or None when it is not installed."""
    return shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)


@dataclass
class HAProxy:
    """A running `haproxy -db`: our child, with its own dir."""

    dir: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def config(self) -> Path:
        return self.dir / "haproxy.cfg"

    @property
    def socket(self) -> Path:
        return self.dir / "admin.sock"

    def log(self) -> str:
        path = self.dir / "haproxy.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def api(self, command: str) -> str:
        """One runtime API command over the stats socket; its answer."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_state(self, backend: str, server: str) -> tuple[int, int]:
        """(operational state, admin state) of `backend`/`server` (show servers state)."""
        for line in self.api(f"show servers state {backend}").splitlines():
            fields = line.split()
            if len(fields) > 6 and fields[1] == backend and fields[3] == server:
                return int(fields[5]), int(fields[6])
        raise KeyError(f"{backend}/{server}")

    def wait_up(self, backend: str, server: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.server_state(backend, server)[0] != 2:
            assert time.monotonic() < deadline, f"{backend}/{server} not UP:\n{self.log()}"
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGUSR1 (soft stop) to our haproxy by PID, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def local_globals(text: str, haproxy_dir: Path, port: int, name: str) -> str:
    """A shipped config's stats socket in `haproxy_dir`, its log on stdout, its `bind :80` on loopback `port`."""
    text = text.replace("stats socket /run/haproxy/admin.sock", f"stats socket {haproxy_dir}/admin.sock")
    text = text.replace("log /dev/log local0", "log stdout format raw local0")
    text, count = re.subn(r"^    bind :80$", f"    bind 127.0.0.1:{port}", text, flags=re.M)
    assert count == 1, f"deploy/haproxy/{name} no longer has one `bind :80`"
    return text


def render_config(haproxy_dir: Path, port: int, live: dict[str, int], shim: dict[str, int]) -> str:
    """deploy/haproxy/haproxy.cfg with the test's addresses (see the module docstring)."""
    text = local_globals((DEPLOY / "haproxy.cfg").read_text(), haproxy_dir, port, "haproxy.cfg")
    text = text.replace("GET /healthz", "GET /health")
    for service, live_port in live.items():
        section = re.search(rf"^backend {service}\n(?:    .*\n|\n)*", text, re.M)
        assert section, f"deploy/haproxy/haproxy.cfg has no backend {service}"
        body = section.group(0)
        new, n_live = re.subn(r"server live 127\.0\.0\.1:\d+", f"server live 127.0.0.1:{live_port}", body)
        new, n_shim = re.subn(r"server shim 127\.0\.0\.1:\d+", f"server shim 127.0.0.1:{shim[service]}", new)
        assert n_live == n_shim == 1, f"backend {service} no longer has one `live` and one `shim` server"
        text = text.replace(body, new)
    return text


def start_haproxy(base: Path, live: dict[str, int], shim: dict[str, int]) -> HAProxy:
    """Start haproxy under `base`/haproxy with the shipped config; `live` and `shim` map service -> port."""
    binary = haproxy_bin()
    if binary is None:
        raise AssertionError("haproxy is not installed (apt-get install haproxy); CI installs it")
    haproxy_dir = base / "haproxy"
    haproxy_dir.mkdir(parents=True, exist_ok=True)
    return start_on_free_ports(lambda ports: _start(binary, haproxy_dir, ports[0], live, shim))


def _start(binary: str, haproxy_dir: Path, port: int, live: dict[str, int], shim: dict[str, int]) -> HAProxy:
    (haproxy_dir / "haproxy.log").unlink(missing_ok=True)  # a previous attempt's "Address already in use"
    (haproxy_dir / "haproxy.cfg").write_text(render_config(haproxy_dir, port, live, shim))
    with (haproxy_dir / "haproxy.log").open("ab") as log:
        proc = subprocess.Popen([binary, "-db", "-f", str(haproxy_dir / "haproxy.cfg")],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    haproxy = HAProxy(haproxy_dir, port, proc)
    try:
        wait_listening(proc.pid, [port], haproxy.log, "haproxy")
        wait_until(haproxy.socket.exists, what=f"haproxy's stats socket {haproxy.socket}")
    except (PortInUse, AssertionError):
        haproxy.stop()
        raise
    return haproxy
