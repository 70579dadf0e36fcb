"""Shared fixtures: real shim processes on free loopback ports, stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("MAINT_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        full_env = clean_env(env)
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                args, cwd=cwd or self.directory, env=full_env, stdout=handle, stderr=subprocess.STDOUT
            )
        shim = Shim(proc, ports, log, full_env)
        self.started.append(shim)
        try:
            wait_http(f"{shim.url}/_maintenance/health")
        except TimeoutError:
            shim.stop()
            raise AssertionError(f"shim did not start:\n{shim.output()}") from None
        return shim

    def close(self) -> None:
        for shim in self.started:
            shim.stop()


@pytest.fixture
def start_shim(tmp_path: Path) -> Iterator[ShimFactory]:
    """Start real shim processes: start_shim(services=["studio", "video:api"], env={...})."""
    launcher = ShimLauncher(tmp_path)
    yield launcher
    launcher.close()


@pytest.fixture(scope="module")
def module_shim_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShimFactory]:
    """Like start_shim, for shims shared by a whole test module (read-only tests)."""
    launcher = ShimLauncher(tmp_path_factory.mktemp("shims"))
    yield launcher
    launcher.close()


CHROMIUM = "/usr/bin/chromium"
# As root and on a closed network: no sandbox, no background connections to Google.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's headless Chromium driven by Playwright; missing Chromium fails the test, never skips it."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is required (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
