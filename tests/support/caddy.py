"""A real Caddy on loopback for the script tests, built from the shipped deploy/caddy/ files.

Everything lives under its own dir: the Caddyfile, the imported upstream files, the log, and HOME,
XDG_CONFIG_HOME and XDG_DATA_HOME (Caddy's autosave.json and storage), so it writes nothing global.
It runs in the foreground as our child (`caddy run`) and is stopped by PID. The shipped files are
copied with their paths rewritten: `/etc/caddy/maintenance-shim/` -> the dir, each site address ->
`http://HOST:PORT` on a free loopback port (picked again when taken), the `to` lines -> the stand-in
services' ports; a global options block is put in front (admin endpoint on a free loopback port, so
`caddy reload` finds this instance through the Caddyfile; `auto_https off`; `default_bind 127.0.0.1`)
and an `import` of an extra file that tests break to make `caddy validate` fail.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support import PortInUse, start_on_free_ports, wait_listening
from tests.support.nginx import HOSTS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "caddy"

__all__ = ["HOSTS", "Caddy", "caddy_bin", "start_caddy"]


def caddy_bin() -> str | None:
    """The caddy binary (Debian: /usr/bin/caddy), or None when it is not installed."""
    return shutil.which("caddy") or next((p for p in ("/usr/bin/caddy", "/usr/sbin/caddy") if Path(p).exists()),
                                         None)


@dataclass
class Caddy:
    """A running `caddy run`: our child, with its own dir."""

    dir: Path
    port: int
    admin_port: int
    bin: str
    proc: subprocess.Popen[bytes]
    run_env: dict[str, str]

    @property
    def config(self) -> Path:
        return self.dir / "Caddyfile"

    @property
    def env(self) -> dict[str, str]:
        """What to add to the environment of every caddy command (ours and the scripts')."""
        return _own_env(self.dir)

    def include(self, service: str) -> Path:
        """The file imported inside `service`'s reverse_proxy block (what the scripts swap)."""
        return self.dir / "maintenance-shim" / f"{service}.upstream.caddy"

    @property
    def extra(self) -> Path:
        """An extra file imported by the Caddyfile; tests break it to make `caddy validate` fail."""
        return self.dir / "extra.caddy"

    def log(self) -> str:
        path = self.dir / "caddy.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def restart(self) -> None:
        """Stop our caddy and run a new one on the same Caddyfile (as `systemctl restart caddy`)."""
        self.stop()
        since = self._sizes()
        self.proc = _launch(self.dir, self.bin, self.run_env)
        self.wait_listening(since)

    def _sizes(self) -> list[int]:
        return [len(path.read_bytes()) if path.exists() else 0 for path in self._logs()]

    def _logs(self) -> list[Path]:
        return [self.dir / "stderr.log", self.dir / "caddy.log"]

    def output(self, since: list[int] | None = None) -> str:
        """What our caddy wrote (its stderr and its log), from the sizes `since` on (this start's lines)."""
        offsets = since or [0, 0]
        return "".join(path.read_bytes()[offset:].decode(errors="replace") if path.exists() else ""
                       for path, offset in zip(self._logs(), offsets, strict=True))

    def wait_listening(self, since: list[int] | None = None) -> None:
        """Until our caddy listens on its port and its admin port; stopped on failure (PortInUse when one of
        them was taken, by what it wrote after `since`)."""
        try:
            wait_listening(self.proc.pid, [self.admin_port, self.port], lambda: self.output(since), "caddy")
        except (PortInUse, AssertionError):
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM to our caddy by PID, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _own_env(caddy_dir: Path) -> dict[str, str]:
    return {
        "HOME": str(caddy_dir / "home"),
        "XDG_CONFIG_HOME": str(caddy_dir / "config"),
        "XDG_DATA_HOME": str(caddy_dir / "data"),
    }


def _caddyfile(caddy_dir: Path, port: int, admin_port: int) -> str:
    text = (DEPLOY / "Caddyfile").read_text()
    if re.search(r"^\{", text, re.M):
        raise AssertionError("deploy/caddy/Caddyfile now has a global options block; merge the test's into it")
    text = text.replace("/etc/caddy/maintenance-shim/", f"{caddy_dir}/maintenance-shim/")
    for host in HOSTS.values():
        text, count = re.subn(rf"^{re.escape(host)} \{{", f"http://{host}:{port} {{", text, flags=re.M)
        if count != 1:
            raise AssertionError(f"deploy/caddy/Caddyfile no longer has one site block `{host} {{`")
    head = f"""{{
	admin 127.0.0.1:{admin_port}
	auto_https off
	default_bind 127.0.0.1
	log {{
		output file {caddy_dir}/caddy.log
		level INFO
	}}
}}

import {caddy_dir}/extra.caddy

"""
    return head + text


def _launch(caddy_dir: Path, binary: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with (caddy_dir / "stderr.log").open("ab") as log:
        return subprocess.Popen(
            [binary, "run", "--config", str(caddy_dir / "Caddyfile"), "--adapter", "caddyfile"],
            cwd=caddy_dir, env={**env, **_own_env(caddy_dir)},
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )


def start_caddy(base: Path, upstreams: dict[str, int], env: dict[str, str]) -> Caddy:
    """Start caddy under `base`/caddy with the shipped Caddyfile; `upstreams` maps service -> live port;
    `env` is the environment to run it in (Caddy.env is laid over it)."""
    binary = caddy_bin()
    if binary is None:
        raise AssertionError("caddy is not installed (apt-get install caddy); CI installs it")
    caddy_dir = base / "caddy"
    for sub in ("maintenance-shim", "home", "config", "data"):
        (caddy_dir / sub).mkdir(parents=True, exist_ok=True)
    return start_on_free_ports(lambda ports: _start(caddy_dir, binary, ports, upstreams, env), 2)


def _start(caddy_dir: Path, binary: str, ports: list[int], upstreams: dict[str, int], env: dict[str, str]) -> Caddy:
    port, admin_port = ports
    for old_log in ("stderr.log", "caddy.log"):
        (caddy_dir / old_log).unlink(missing_ok=True)  # a previous attempt's "address already in use"
    for service, live_port in upstreams.items():
        text = (DEPLOY / f"{service}.upstream.caddy").read_text()
        text, count = re.subn(r"^to 127\.0\.0\.1:\d+$", f"to 127.0.0.1:{live_port}", text, flags=re.M)
        if count != 1:
            raise AssertionError(f"deploy/caddy/{service}.upstream.caddy no longer has one `to 127.0.0.1:PORT`")
        (caddy_dir / "maintenance-shim" / f"{service}.upstream.caddy").write_text(text)
    (caddy_dir / "extra.caddy").write_text("# nothing\n")
    (caddy_dir / "Caddyfile").write_text(_caddyfile(caddy_dir, port, admin_port))
    proc = _launch(caddy_dir, binary, env)
    caddy = Caddy(caddy_dir, port, admin_port, binary, proc, env)
    caddy.wait_listening()
    return caddy
