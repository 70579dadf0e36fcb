"""The switching scripts in haproxy mode: a real HAProxy built from deploy/haproxy/haproxy.cfg, switched
through its runtime API (`set server ... state drain|ready` on the stats socket; no reload, no file).

Same stand-in services, shim and state helpers as tests/scripts/test_scripts.py; load from tests/support/loadgen.py
(pages, JSON calls, slow POSTs, kept-alive connections), bounded in count and time, loopback only.
A missing haproxy fails these tests: CI installs it (scripts/test.sh).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support import free_port, request
from tests.support.haproxy import DEPLOY, HOSTS, HAProxy, haproxy_bin, start_haproxy
from tests.support.loadgen import KeepAlive, Load
from tests.support.scripts import (
    SERVICES,
    Setup,
    _write_artifact,
)

CYCLES = 5


@dataclass
class HAProxySetup(Setup):
    """`Setup` with a real HAProxy in front of the services (MAINT_SWITCH=haproxy)."""

    haproxy: HAProxy | None = None

    @property
    def proxy(self) -> HAProxy:
        assert self.haproxy is not None
        return self.haproxy

    def admin_states(self) -> dict[str, tuple[int, int]]:
        return {n: self.proxy.server_state(n, "live") for n in SERVICES}

    def assert_live(self) -> None:
        """Every service runs and answers 200 through HAProxy; nothing in maintenance; HAProxy still up."""
        assert self.proxy.proc.poll() is None, self.proxy.log()
        for service in self.services.values():
            assert service.running(), f"{service.name} is not running"
            answer = request(self.proxy.port, "GET", "/", host=HOSTS[service.name], close=True)
            assert answer.status == 200 and answer.text.startswith(service.name), answer
        assert self.state() == {}, self.state()
        assert self.shim_pids() == []


@pytest.fixture
def haproxy_setup(request: pytest.FixtureRequest) -> Iterator[HAProxySetup]:
    """`setup` plus our own HAProxy; the scripts talk to its stats socket."""
    if haproxy_bin() is None:
        pytest.fail("haproxy is not installed (apt-get install haproxy); these tests need it (CI installs it)")
    base: Setup = request.getfixturevalue("setup")
    s = HAProxySetup(base.tmp, base.services, base.settings)
    shim_ports = {"studio": free_port(), "video": free_port()}
    s.haproxy = start_haproxy(s.tmp, {n: svc.port for n, svc in s.services.items()}, shim_ports)
    for name in SERVICES:
        s.proxy.wait_up(name, "live")
    s.write_env(
        MAINT_SWITCH="haproxy",
        MAINT_LISTEN=f"127.0.0.1:{shim_ports['studio']}=studio,127.0.0.1:{shim_ports['video']}=video:api",
        MAINT_HAPROXY_SOCKET=str(s.proxy.socket),
        MAINT_HEALTH_PATHS="/health",  # the shim's setting: HAProxy checks its backup server on /health
    )
    try:
        yield s
    finally:
        s.proxy.stop()


def test_shipped_haproxy_configs_are_valid() -> None:
    binary = haproxy_bin()
    assert binary, "haproxy is not installed (apt-get install haproxy); CI installs it"
    configs = sorted(DEPLOY.glob("*.cfg"))
    assert configs
    for config in configs:
        result = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True)
        assert result.returncode == 0, (config, result.stdout + result.stderr)


def test_haproxy_switch_five_times_under_load_has_no_failed_request(haproxy_setup: HAProxySetup) -> None:
    s = haproxy_setup
    before = s.admin_states()
    pid = s.proxy.proc.pid
    took = []
    with Load(s.proxy.port, HOSTS) as load, \
            KeepAlive(s.proxy.port, "studio", HOSTS["studio"]) as keepalive:
        began = time.monotonic()
        for name in SERVICES:
            load.wait_for(name, "service-200", began)
        for cycle in range(CYCLES):
            t0 = time.monotonic()
            started = s.run("start_maintenance.sh")
            assert started.returncode == 0, started.stderr
            t1 = time.monotonic()
            for name in SERVICES:
                load.wait_for(name, "shim-503", t1)
                assert s.proxy.server_state(name, "live")[1] & 8, "live server not drained"
            if cycle == 0:
                assert "studio: haproxy now sends it to the shim" in started.stderr, started.stderr
                answer = request(s.proxy.port, "POST", "/api/generate", host=HOSTS["video"], close=True)
                assert answer.status == 503 and answer.headers["content-type"].startswith("application/json")
            stopped = s.run("stop_maintenance.sh")
            assert stopped.returncode == 0, stopped.stderr
            t2 = time.monotonic()
            for name in SERVICES:
                load.wait_for(name, "service-200", t2)
            took.append((t1 - t0, t2 - t1))
        time.sleep(0.3)
    s.assert_live()
    assert s.admin_states() == before  # exactly as found: ready, checks UP
    assert s.proxy.proc.pid == pid  # never restarted or reloaded
    counts = load.counts()
    _write_artifact("haproxy_switch_traffic.txt", f"requests through haproxy during {CYCLES} starts and stops:\n"
                    + "".join(f"  {kind}: {n}\n" for kind, n in sorted(counts.items()))
                    + f"  answers other than the service's 200 or the shim's 503: {dict(load.failures())}\n"
                    + f"  kept-alive client connections dropped: {keepalive.dropped} "
                      f"(answers on them: {dict(keepalive.answered)})\n"
                    + "".join(f"  cycle {i + 1}: start {a:.2f} s, stop {b:.2f} s\n" for i, (a, b) in enumerate(took)))
    assert load.failures() == {}, counts
    assert keepalive.dropped == 0 and set(keepalive.answered) == {"service-200", "shim-503"}, keepalive.answered
    assert counts["shim-503"] > 0 and counts["service-200"] > 0


def _assert_rolled_back(s: HAProxySetup, result: subprocess.CompletedProcess[str], needle: str, load: Load) -> None:
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and needle in errors[0], result.stderr
    assert result.stderr.rstrip().endswith(
        "start failed; rolled back: the live services are serving, the shim is stopped"), result.stderr
    assert load.failures() == {}, load.counts()
    assert set(load.counts()) == {"service-200"}, load.counts()


def test_haproxy_unknown_server_rolls_back(haproxy_setup: HAProxySetup) -> None:
    s = haproxy_setup
    before = s.admin_states()
    s.write_env(MAINT_SERVICE_video_HAPROXY_SERVER="video/nosuch")
    with Load(s.proxy.port, HOSTS) as load:
        began = time.monotonic()
        for name in SERVICES:
            load.wait_for(name, "service-200", began)
        result = s.run("start_maintenance.sh")
        time.sleep(0.3)
    _assert_rolled_back(s, result, "haproxy has no server video/nosuch", load)
    s.assert_live()
    assert s.admin_states() == before


def test_haproxy_down_rolls_back_and_leaves_the_services_serving(haproxy_setup: HAProxySetup) -> None:
    s = haproxy_setup
    s.proxy.stop()
    result = s.run("start_maintenance.sh")
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "runtime API at" in errors[0] and "does not answer" in errors[0], result.stderr
    assert "rolled back: the live services are serving" in result.stderr
    for service in s.services.values():
        assert service.running()
        answer = request(service.port, "GET", "/", close=True)
        assert answer.status == 200 and answer.text.startswith(service.name)
    assert s.state() == {} and s.shim_pids() == []
