"""A fleet: one service on three nodes behind a real HAProxy (deploy/haproxy/fleet.cfg), each node a real
stand-in service on its own loopback address (127.0.0.11-13), the shim standing as the backup server.

Rolling training (`with_maintenance.sh --rolling`) takes each node out in turn, runs a stand-in trainer
on it that pushes progress with its node name, and brings it back, under continuous client load: no
request may fail, and none reaches the shim (two nodes serve throughout). Then every node goes out
(`start_maintenance.sh --node`): the shim answers, with the ETA of the node coming back first and every
node's progress. Load is bounded in count and time, loopback only; every process is ours, stopped by PID.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    PortInUse,
    Shim,
    ShimFactory,
    clean_env,
    free_port,
    request,
    start_on_free_ports,
    wait_listening,
)
from tests.support.haproxy import DEPLOY, HAProxy, haproxy_bin, local_globals
from tests.support.loadgen import Load
from tests.support.scripts import SCRIPTS, STANDIN, _shim_cmd, _write_artifact, run_script

NODES = {"gpu-1": "127.0.0.11", "gpu-2": "127.0.0.12", "gpu-3": "127.0.0.13"}
TOKEN = "fleet-token-0123456789abcdef"
HOSTS = {"studio": "studio.example.com"}


def _port_free_on_all(port: int) -> bool:
    for host in NODES.values():
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def render_fleet(base: Path, port: int, node_port: int, shim_port: int) -> str:
    """deploy/haproxy/fleet.cfg with the test's addresses: the nodes on 127.0.0.1x, the shim on its port."""
    text = local_globals((DEPLOY / "fleet.cfg").read_text(), base, port, "fleet.cfg")
    for index, (node, host) in enumerate(NODES.items(), start=1):
        text, count = re.subn(rf"server {node} 10\.0\.0\.1{index}:7860", f"server {node} {host}:{node_port}", text)
        assert count == 1, f"deploy/haproxy/fleet.cfg has no `server {node} 10.0.0.1{index}:7860`"
    text, count = re.subn(r"server shim 127\.0\.0\.1:8081", f"server shim 127.0.0.1:{shim_port}", text)
    assert count == 1
    return text


@dataclass
class Fleet:
    tmp: Path
    haproxy: HAProxy
    shim: Shim
    node_port: int

    @property
    def env_file(self) -> Path:
        return self.tmp / "maintenance.env"

    def run(
        self, script: str, *args: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A script with the fleet's env file (and `env`, for a trainer CMD), none of our MAINT_ settings."""
        full = clean_env({"MAINT_ENV_FILE": str(self.env_file), **(env or {})})
        return run_script([str(SCRIPTS / script), *args], env=full, cwd=self.tmp, timeout=timeout)

    def pid(self, node: str) -> int | None:
        try:
            return int((self.tmp / f"{node}.pid").read_text())
        except (OSError, ValueError):
            return None

    def states(self) -> dict[str, tuple[int, int]]:
        return {node: self.haproxy.server_state("studio", node) for node in NODES}

    def push(self, node: str, step: int, total: int) -> None:
        body = json.dumps({"step": step, "total": total, "node": node}).encode()
        request = urllib.request.Request(f"{self.shim.admin_url}/_maintenance/progress", data=body, method="PUT",
                                         headers={"Authorization": f"Bearer {TOKEN}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 204


def _hook(action: str, node_port: int, tmp: Path) -> str:
    py, script = shlex.quote(sys.executable), shlex.quote(str(STANDIN))
    # $MAINT_NODE is the scripts' (each hook runs for one node); the host comes from a file per node.
    host = f'$(cat {tmp}/"$MAINT_NODE".host)'
    if action == "START":
        return (f'{py} {script} start --pidfile {tmp}/"$MAINT_NODE".pid --log {tmp}/"$MAINT_NODE".log -- '
                f'--name studio --host "{host}" --port {node_port} --node "$MAINT_NODE"')
    if action == "STOP":
        return f'{py} {script} stop --pidfile {tmp}/"$MAINT_NODE".pid'
    return f'{py} {script} drain --url "http://{host}:{node_port}" --timeout 10'


@pytest.fixture
def fleet(tmp_path: Path, start_shim: ShimFactory) -> Iterator[Fleet]:
    binary = haproxy_bin()
    if binary is None:
        pytest.fail("haproxy is not installed (apt-get install haproxy); these tests need it (CI installs it)")
    node_port = free_port()
    while not _port_free_on_all(node_port):
        node_port = free_port()
    shim = start_shim(env={"MAINT_ADMIN_TOKEN": TOKEN, "MAINT_HEALTH_PATHS": "/health",
                           "MAINT_STALL_SECONDS": "60", "MAINT_LANGUAGES": "en,ja"})
    shim_port = shim.port
    for node, host in NODES.items():
        (tmp_path / f"{node}.host").write_text(host)
        subprocess.run(["bash", "-c", _hook("START", node_port, tmp_path)], env={**clean_env(), "MAINT_NODE": node},
                       check=True)

    def start_haproxy(ports: list[int]) -> HAProxy:
        (tmp_path / "haproxy.log").unlink(missing_ok=True)
        (tmp_path / "haproxy.cfg").write_text(render_fleet(tmp_path, ports[0], node_port, shim_port))
        with (tmp_path / "haproxy.log").open("ab") as log:
            proc = subprocess.Popen([binary, "-db", "-f", str(tmp_path / "haproxy.cfg")], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log)
        started = HAProxy(tmp_path, ports[0], proc)
        try:
            wait_listening(proc.pid, ports, started.log, "haproxy")
        except (PortInUse, AssertionError):
            started.stop()
            raise
        return started

    haproxy = start_on_free_ports(start_haproxy)
    proc = haproxy.proc
    # HAProxy(dir) reads its socket and log from dir: the rendered config puts the socket there.
    f = Fleet(tmp_path, haproxy, shim, node_port)
    settings = {
        "MAINT_SWITCH": "haproxy",
        "MAINT_SHIM_MANAGED": "external",
        "MAINT_SHIM_CMD": _shim_cmd(),
        "MAINT_HAPROXY_SOCKET": str(tmp_path / "admin.sock"),
        "MAINT_STATE_DIR": str(tmp_path / "state"),
        "MAINT_LISTEN": f"127.0.0.1:{shim_port}=studio",
        "MAINT_HEALTH_PATHS": "/health",
        "MAINT_SERVICES": "studio",
        "MAINT_SERVICE_studio_NODES": " ".join(NODES),
        "MAINT_SERVICE_studio_HAPROXY_SERVER": "studio/gpu-1",
        "MAINT_SERVICE_studio_START": _hook("START", node_port, tmp_path),
        "MAINT_SERVICE_studio_STOP": _hook("STOP", node_port, tmp_path),
        "MAINT_SERVICE_studio_DRAIN": _hook("DRAIN", node_port, tmp_path),
        # No HEALTH_URL: a node is back when HAProxy's own check of its server passes (proxy_test waits).
    }
    f.env_file.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in settings.items()))
    try:
        deadline = time.monotonic() + 30
        seen: object = None
        while True:
            try:
                seen = {**f.states(), "shim": haproxy.server_state("studio", "shim")}
                if all(state[0] == 2 for state in seen.values()):  # type: ignore[attr-defined]
                    break
            except (OSError, KeyError) as error:
                seen = error
            assert proc.poll() is None and time.monotonic() < deadline, (seen, haproxy.log())
            time.sleep(0.1)
        yield f
    finally:
        haproxy.stop()
        for node in NODES:
            subprocess.run(["bash", "-c", _hook("STOP", node_port, tmp_path)],
                           env={**clean_env(), "MAINT_NODE": node}, check=False)


def _through(f: Fleet, path: str = "/api/v1/txt2img", accept: str = "application/json") -> tuple[
    int, dict[str, str], bytes
]:
    return request(f"http://127.0.0.1:{f.haproxy.port}", "GET", path, {"Host": HOSTS["studio"], "Accept": accept})


def test_rolling_training_over_three_nodes_fails_no_request(fleet: Fleet) -> None:
    f = fleet
    ran = f.tmp / "ran.txt"
    before = {node: f.pid(node) for node in NODES}
    fleet_trainer = Path(__file__).resolve().parents[1] / "support" / "fleet_trainer.py"
    trainer = [sys.executable, str(fleet_trainer), "--steps", "15", "--rate", "10", "--log", str(ran)]
    with Load(f.haproxy.port, HOSTS) as load:
        began = time.monotonic()
        load.wait_for("studio", "service-200", began)
        env_push = {"MAINT_PUSH_URL": f.shim.admin_url, "MAINT_ADMIN_TOKEN": TOKEN}  # for the trainer
        result = f.run("with_maintenance.sh", "--rolling", "--", *trainer, timeout=150, env=env_push)
        ended = time.monotonic()
        load.wait_for("studio", "service-200", ended)  # the load ran to the end of the rolling run
    assert result.returncode == 0, result.stderr
    lines = ran.read_text().split()
    assert [lines[i] for i in range(0, len(lines), 3)] == list(NODES), ran.read_text()  # each node, in order
    after = {node: f.pid(node) for node in NODES}
    assert all(after[node] != before[node] and after[node] for node in NODES), (before, after)  # each restarted
    assert all(state == (2, 0) for state in f.states().values()), f.states()  # every node ready and UP again
    for node in NODES:
        assert f"node {node} is out of haproxy" in result.stderr, result.stderr
    assert "rolling done: CMD ran on gpu-1 gpu-2 gpu-3" in result.stderr, result.stderr
    status = json.loads(urllib.request.urlopen(f"{f.shim.url}/_maintenance/status", timeout=5).read())
    nodes = {item["node"]: item for item in status.get("nodes", [])}
    assert set(nodes) == set(NODES), status  # each trainer's push carried its node (MAINT_NODE)
    assert all(item["progress"]["step"] == 15 for item in nodes.values()), nodes
    counts = load.counts()
    _write_artifact("rolling_traffic.txt", f"requests through haproxy during a rolling run over {len(NODES)} nodes "
                    f"({ended - began:.1f} s):\n" + "".join(f"  {kind}: {n}\n" for kind, n in sorted(counts.items()))
                    + f"  failures: {dict(load.failures())}\n" + result.stderr)
    assert load.failures() == {}, counts
    assert set(counts) == {"service-200"}, counts  # two nodes served throughout: the shim was never needed


def _push_loop(f: Fleet, node: str, rate: float, total: int, seconds: float, errors: list[str]) -> None:
    try:
        start = time.monotonic()
        step = 0
        while time.monotonic() - start < seconds:
            step = min(total, int((time.monotonic() - start) * rate) + 1)
            f.push(node, step, total)
            time.sleep(0.25)
    except Exception as error:  # reported by the test
        errors.append(f"{node}: {error!r}")


def test_with_every_node_out_the_shim_answers_with_the_earliest_node(fleet: Fleet) -> None:
    f = fleet
    # Same total, different rates: after 8 s gpu-2 needs ~30 s more, gpu-1 ~80 s, gpu-3 ~140 s.
    plan = {"gpu-1": (2.5, 220), "gpu-2": (6.0, 220), "gpu-3": (1.5, 220)}
    with Load(f.haproxy.port, HOSTS) as load:
        began = time.monotonic()
        load.wait_for("studio", "service-200", began)
        for node in NODES:
            result = f.run("start_maintenance.sh", "--node", node)
            assert result.returncode == 0, result.stderr
        out = time.monotonic()
        load.wait_for("studio", "shim-503", out)
        status = f.run("status_maintenance.sh")
        assert status.returncode == 0, status.stdout + status.stderr
        assert all(f"node out: {node}, active since" in status.stdout for node in NODES), status.stdout
        plain_stop = f.run("stop_maintenance.sh")
        assert plain_stop.returncode == 0 and "nodes out: gpu-1 gpu-2 gpu-3" in plain_stop.stderr, plain_stop.stderr
        errors: list[str] = []
        threads = [threading.Thread(target=_push_loop, args=(f, node, rate, total, 8.0, errors))
                   for node, (rate, total) in plan.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        status, headers, body = _through(f)
        assert status == 503 and int(headers["retry-after"]) >= 1, (status, headers)
        answer: dict[str, Any] = json.loads(body)
        maintenance = answer.get("maintenance", answer)
        nodes = {item["node"]: item for item in maintenance["nodes"]}
        assert set(nodes) == set(NODES), maintenance
        etas = {node: item["eta_seconds"] for node, item in nodes.items()}
        assert isinstance(etas["gpu-2"], int), etas
        assert all(eta is None or eta > etas["gpu-2"] for node, eta in etas.items() if node != "gpu-2"), etas
        assert maintenance["eta"]["seconds"] == etas["gpu-2"], (maintenance["eta"], etas)
        page_status, _, page = _through(f, "/", "text/html")
        assert page_status == 503 and all(node.encode() in page for node in NODES)
        for node in NODES:
            result = f.run("stop_maintenance.sh", "--node", node)
            assert result.returncode == 0, result.stderr
        back = time.monotonic()
        load.wait_for("studio", "service-200", back)
        time.sleep(0.5)
    _write_artifact("fleet_all_out.txt", "every node out, then back, under load:\n"
                    + "".join(f"  {kind}: {n}\n" for kind, n in sorted(load.counts().items()))
                    + f"  node ETAs (s): {etas}; the shim's ETA: {maintenance['eta']['seconds']} s\n")
    assert load.failures() == {}, load.counts()
    assert all(state == (2, 0) for state in f.states().values()), f.states()


def test_node_arguments_are_checked(fleet: Fleet) -> None:
    f = fleet
    unknown = f.run("start_maintenance.sh", "--node", "gpu-9")
    assert unknown.returncode == 1 and "no service lists it in MAINT_SERVICE_<name>_NODES" in unknown.stderr
    bad = f.run("start_maintenance.sh", "--node", "../etc")
    assert bad.returncode == 1 and "--node ../etc: no service lists it" in bad.stderr, bad.stderr
    assert not (f.tmp / "state" / "etc").exists() and not (f.tmp / "etc").exists()
    rolling = f.run("start_maintenance.sh", "--rolling")
    assert rolling.returncode == 1 and "with_maintenance.sh's" in rolling.stderr
    nothing = f.run("stop_maintenance.sh", "--node", "gpu-2")
    assert nothing.returncode == 0 and "node gpu-2 is not out" in nothing.stderr
    assert all(state == (2, 0) for state in f.states().values()), f.states()


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"MAINT_SWITCH": "nginx", "MAINT_SERVICE_studio_INCLUDE": "/tmp/x.conf"},
         "MAINT_SERVICE_studio_NODES needs MAINT_SWITCH=haproxy"),
        ({"MAINT_SWITCH": "haproxy", "MAINT_SERVICE_studio_NODES": "gpu-1 gpu/2"},
         "MAINT_SERVICE_studio_NODES: 'gpu/2' is not a node name"),
        ({"MAINT_SWITCH": "haproxy", "MAINT_SERVICE_studio_NODES": "gpu-1 gpu-1"},
         "MAINT_SERVICE_studio_NODES: a node is listed twice"),
    ],
)
def test_bad_nodes_setting_is_one_line_naming_it(tmp_path: Path, settings: dict[str, str], needle: str) -> None:
    env = {**clean_env(), "MAINT_SERVICES": "studio", "MAINT_SERVICE_studio_NODES": "gpu-1 gpu-2", **settings}
    result = subprocess.run([_shim_cmd(), "env", "--shell"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
