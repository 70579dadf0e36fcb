"""Helpers every test module shares: free ports, waiting for a port or URL, stopping a process by PID, one
HTTP request, real shim processes, and the shim's app in-process (httpx.ASGITransport, no socket).

Test modules import from here, never from one another; tests/conftest.py holds the fixtures.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from maintenance_shim.supervise import serving_pid

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("MAINT_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kb(pid: int) -> int:
    """Resident memory of the shim's serving process, in KiB (`pid` is the shim as started)."""
    for line in Path(f"/proc/{serving_pid(pid)}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test process environment without any MAINT_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINT_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def wait_http(url: str, timeout: float = 10.0) -> None:
    """Wait until `url` answers anything over HTTP."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout} s") from None
            time.sleep(0.05)


@dataclass
class Shim:
    """A running `maintenance-shim serve` process."""

    proc: subprocess.Popen[bytes]
    ports: list[int]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        """The admin listener (progress push, metrics, API docs): MAINT_ADMIN_LISTEN, on its own port."""
        return f"http://{self.env['MAINT_ADMIN_LISTEN']}"

    @property
    def admin_port(self) -> int:
        return int(self.env["MAINT_ADMIN_LISTEN"].rsplit(":", 1)[1])

    def url_for(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


ShimFactory = Callable[..., Shim]


class ShimLauncher:
    """Starts shim processes and stops them all (by PID) on close."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Shim] = []

    def __call__(
        self,
        services: list[str] | None = None,
        env: dict[str, str] | None = None,
        ports: list[int] | None = None,
        cwd: Path | None = None,
    ) -> Shim:
        services = services or ["studio"]
        ports = ports or [free_port() for _ in services]
        args = [sys.executable, "-m", "maintenance_shim", "serve"]
        for port, service in zip(ports, services, strict=True):
            args += ["--listen", f"127.0.0.1:{port}={service}"]
        log = self.directory / f"shim-{len(self.started)}-{ports[0]}.log"
        full_env = clean_env({"MAINT_ADMIN_LISTEN": f"127.0.0.1:{free_port()}", **(env or {})})
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                args, cwd=cwd or self.directory, env=full_env, stdout=handle, stderr=subprocess.STDOUT
            )
        shim = Shim(proc, ports, log, full_env)
        self.started.append(shim)
        # Generous: on a busy machine the first health answer waits for FastAPI's import (DeferredApp) for
        # many seconds; a shim that exited fails at once.
        deadline = time.monotonic() + 60
        while True:
            try:
                wait_http(f"{shim.url}/_maintenance/health", timeout=2)
                return shim
            except TimeoutError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    shim.stop()
                    raise AssertionError(f"shim did not start:\n{shim.output()}") from None

    def close(self) -> None:
        for shim in self.started:
            shim.stop()


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    """Wait until something accepts TCP connections on `port`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on {port} after {timeout}s") from None
            time.sleep(0.02)


def stop_pid(proc: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 10.0) -> None:
    """SIGTERM the process we started, wait, then SIGKILL: only ever a PID we hold a handle to."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def request(
    target: Shim | InProcess | str,
    method: str = "GET",
    path: str = "/",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request (a fresh connection, or in-process); headers come back lower-cased (last value wins)."""
    if isinstance(target, InProcess):
        return target.request(method, path, headers, body)
    url = target.url if isinstance(target, Shim) else target
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


class InProcess:
    """The shim's whole ASGI app, called through httpx.ASGITransport: for tables of requests that need no
    socket (negotiation, formats, headers). Settings come from `env` alone, never from os.environ."""

    def __init__(self, env: dict[str, str] | None = None, services: list[str] | None = None) -> None:
        from maintenance_shim.main import create_app
        from maintenance_shim.settings.shim import load_settings

        names = services or ["studio"]
        self.ports = [9000 + index for index in range(len(names))]
        listen = [f"127.0.0.1:{port}={name}" for port, name in zip(self.ports, names, strict=True)]
        environ = {"MAINT_ADMIN_LISTEN": "127.0.0.1:9999", **(env or {})}
        settings = load_settings(environ=environ, overrides={"listen": listen})
        self.app = create_app(settings)
        self.url = f"http://127.0.0.1:{self.ports[0]}"
        self.admin_url = "http://127.0.0.1:9999"

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        url: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        # Header values as bytes (latin-1), like http.client sends them: httpx would refuse non-ASCII text.
        raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]

        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url=url or self.url) as client:
                return await client.request(method, path, headers=raw, content=body)

        response = asyncio.run(call())
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content
