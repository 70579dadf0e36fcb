"""Shared fixtures: real shim processes on free loopback ports, stopped by PID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support import ARTIFACTS, ROOT, Shim, ShimFactory, ShimLauncher, clean_env, free_port, wait_http

__all__ = ["ARTIFACTS", "ROOT", "Shim", "ShimFactory", "ShimLauncher", "clean_env", "free_port", "wait_http"]

if TYPE_CHECKING:  # Playwright is imported by the browser fixture only: the suite collects without it
    from playwright.sync_api import Browser


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
