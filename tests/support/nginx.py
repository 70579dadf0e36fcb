"""A real nginx on loopback for the script tests, built from the shipped deploy/nginx/ site example.

Everything lives under its own prefix dir (pid file, error log, temp paths); it runs in the foreground
as our child (`daemon off`) and is stopped by PID. The shipped files are copied with their paths
rewritten: `/etc/nginx/maintenance-shim/` -> the prefix, `listen 80;` -> a free loopback port, and
the upstream `server` lines -> the stand-in services' ports.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support import PortInUse, start_on_free_ports, wait_listening

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "nginx"
NGINX_BIN = shutil.which("nginx") or "/usr/sbin/nginx"
HOSTS = {"studio": "studio.example.com", "video": "video-api.example.com"}


@dataclass
class Nginx:
    """A running nginx master: our child, with its own prefix."""

    prefix: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def conf(self) -> Path:
        return self.prefix / "conf" / "nginx.conf"

    @property
    def args(self) -> str:
        """The command-line arguments that address this instance (for MAINT_NGINX_ARGS)."""
        return f"-p {self.prefix}/ -c {self.conf} -e {self.prefix}/logs/error.log"

    def include(self, service: str) -> Path:
        """The upstream include file of `service` (what the scripts swap)."""
        return self.prefix / "maintenance-shim" / f"{service}.upstream.conf"

    @property
    def extra(self) -> Path:
        """An extra file included by nginx.conf; tests break it to make `nginx -t` fail."""
        return self.prefix / "conf" / "extra.conf"

    def error_log(self) -> str:
        path = self.prefix / "logs" / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Graceful stop (SIGQUIT) of our master by PID, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _site(port: int, prefix: Path) -> str:
    text = (DEPLOY / "maintenance-shim-site.conf").read_text()
    text = text.replace("/etc/nginx/maintenance-shim/", f"{prefix}/maintenance-shim/")
    text, count = re.subn(r"listen 80;", f"listen 127.0.0.1:{port};", text)
    if count != 2:
        raise AssertionError("deploy/nginx/maintenance-shim-site.conf no longer has two `listen 80;`")
    return text


def _main_conf(prefix: Path) -> str:
    user = ""
    if os.geteuid() == 0:
        user = f"user {pwd.getpwuid(0).pw_name};\n"  # workers must reach the temp dirs under tmp_path
    temp = prefix / "temp"
    return f"""{user}worker_processes 2;
daemon off;
master_process on;
pid {prefix}/logs/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {temp}/client;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {prefix}/conf/extra.conf;
    include {prefix}/conf/site.conf;
}}
"""


def start_nginx(base: Path, upstreams: dict[str, int]) -> Nginx:
    """Start nginx under `base`/nginx with the shipped site; `upstreams` maps service -> live port."""
    prefix = base / "nginx"
    for sub in ("conf", "logs", "temp", "maintenance-shim"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    return start_on_free_ports(lambda ports: _start(prefix, ports[0], upstreams))


def _start(prefix: Path, port: int, upstreams: dict[str, int]) -> Nginx:
    for old_log in ("error.log", "stderr.log"):
        (prefix / "logs" / old_log).unlink(missing_ok=True)  # a previous attempt's "Address already in use"
    shutil.copy(DEPLOY / "proxy.conf", prefix / "maintenance-shim" / "proxy.conf")
    for service, live_port in upstreams.items():
        text = (DEPLOY / f"{service}.upstream.conf").read_text()
        text = re.sub(r"server 127\.0\.0\.1:\d+;", f"server 127.0.0.1:{live_port};", text)
        (prefix / "maintenance-shim" / f"{service}.upstream.conf").write_text(text)
    (prefix / "conf" / "site.conf").write_text(_site(port, prefix))
    (prefix / "conf" / "extra.conf").write_text("# nothing\n")
    (prefix / "conf" / "nginx.conf").write_text(_main_conf(prefix))
    log = (prefix / "logs" / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [NGINX_BIN, "-p", f"{prefix}/", "-c", str(prefix / "conf" / "nginx.conf"),
         "-e", str(prefix / "logs" / "error.log")],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
    )
    log.close()
    nginx = Nginx(prefix, port, proc)
    stderr = prefix / "logs" / "stderr.log"
    try:
        wait_listening(proc.pid, [port], lambda: nginx.error_log() + stderr.read_text(errors="replace"), "nginx")
    except (PortInUse, AssertionError):
        nginx.stop()
        raise
    return nginx
