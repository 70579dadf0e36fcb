"""Request counts, the Prometheus collector (scraped by a real Prometheus) and the run summary that
stop_maintenance.sh prints (a known load through a real nginx)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from maintenance_shim.main import create_app, create_tracker
from maintenance_shim.metrics import registry_for
from maintenance_shim.reporter import write_progress_file
from maintenance_shim.settings.shim import load_settings
from maintenance_shim.traffic import DistinctClients, Traffic, TrafficTicker, client_key
from maintenance_shim.web.catchall import MaintenanceApp
from tests.support import ShimFactory, free_port, wait_http, wait_until
from tests.support.nginx import HOSTS, start_nginx

ROOT = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).resolve().parents[1] / "support" / "standin.py"


def _scope(client: str | None, headers: list[tuple[bytes, bytes]] | None = None,
           server: str = "127.0.0.1") -> dict[str, Any]:
    return {"client": (client, 50000) if client else None, "server": (server, 8080), "headers": headers or []}


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (_scope("198.51.100.7"), "198.51.100.7"),
        # Forwarding headers count only from a proxy on this host: a remote client cannot pick its key.
        (_scope("198.51.100.7", [(b"x-forwarded-for", b"10.0.0.1")]), "198.51.100.7"),
        (_scope("127.0.0.1", [(b"x-forwarded-for", b"203.0.113.5, 10.0.0.2")]), "203.0.113.5"),
        (_scope("127.0.0.1", [(b"x-real-ip", b"203.0.113.9")]), "203.0.113.9"),
        (_scope("127.0.0.1", [(b"x-real-ip", b"203.0.113.9"), (b"x-forwarded-for", b"203.0.113.5")]), "203.0.113.5"),
        (_scope("::1"), "::1"),
        (_scope("192.0.2.1", [(b"x-real-ip", b"203.0.113.9")], server="192.0.2.1"), "192.0.2.1"),
        (_scope(None), "-"),
        # The scripts' sample request is not a client.
        (_scope("127.0.0.1", [(b"x-maintenance-shim", b"check")]), None),
    ],
)
def test_client_key(scope: dict[str, Any], expected: str | None) -> None:
    assert client_key(scope) == expected


def test_distinct_clients_exact_below_the_cap_then_estimated() -> None:
    clients = DistinctClients(cap=1000)
    for index in range(999):
        key = f"10.0.{index // 256}.{index % 256}"
        if key not in clients.seen:
            clients.add(key)
    assert clients.exact and clients.count() == 999
    for index in range(999, 60_000):
        key = f"client-{index}"
        if key not in clients.seen:
            clients.add(key)
    assert not clients.exact
    assert len(clients.seen) == 1000  # memory stays bounded: the set stops at the cap
    assert abs(clients.count() - 60_000) / 60_000 < 0.06, clients.count()  # 1.6% standard error


def test_traffic_counts_peaks_and_new_runs() -> None:
    now = [1000.0]
    traffic = Traffic(clock=lambda: now[0])
    for _ in range(3):
        traffic.hit(("studio", "html", "ja", 503), _scope("203.0.113.1"))
    traffic.hit(("video", "json", "en", 503), _scope("203.0.113.2"))
    traffic.hit(("studio", "health", "", 200), _scope("127.0.0.1", [(b"x-maintenance-shim", b"check")]))
    traffic.hit(("studio", "health", "", 200), _scope("127.0.0.1"))
    traffic.tick(0.0)
    traffic.hit(("video", "json", "en", 503), _scope("203.0.113.2"))
    traffic.tick(0.5)
    assert traffic.peak_rps == 2.0
    now[0] = 1060.0
    summary = traffic.summary()
    assert summary["turned_away"] == 5
    assert summary["by_service"] == {"studio": {"html": 3}, "video": {"json": 2}}
    assert summary["health_checks"] == 1
    assert summary["distinct_clients"] == 3
    assert summary["duration_seconds"] == 60
    traffic.new_run(900.0)  # written before this shim started: same run, earlier start
    assert traffic.total() == 6 and traffic.since == 900.0
    traffic.new_run(1050.0)  # a later start: a new run
    assert traffic.total() == 0 and traffic.clients.count() == 0 and traffic.since == 1050.0


def test_a_replacement_server_carries_on_the_runs_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A killed server's requests-summary.json, read by the server the supervisor starts in its place: the
    requests carry on exactly, the clients as a number (no longer exact); not from another run's file."""
    run_start = 1_000_000.0
    first = Traffic(clock=lambda: run_start + 30)
    first_ticker = TrafficTicker(first, lambda: run_start, tmp_path)
    first._last_tick = time.monotonic() - 2.0  # its poll comes two seconds after its start: 2 requests/s
    for n in range(3):
        first.hit(("studio", "html", "ja", 503), _scope(f"203.0.113.{n}"))
    first.hit(("video", "json", "en", 503), _scope("203.0.113.9"))
    first_ticker.poll_once()  # its last write before the kill
    assert json.loads((tmp_path / "requests-summary.json").read_text())["turned_away"] == 4

    second = Traffic(clock=lambda: run_start + 60)
    second.hit(("studio", "html", "ja", 503), _scope("198.51.100.1"))  # before its first poll
    second._last_tick = time.monotonic() - 1.0  # that poll comes a second after the server's start
    with caplog.at_level("INFO", logger="maintenance_shim.traffic"):
        TrafficTicker(second, lambda: run_start, tmp_path).poll_once()
    assert "carrying on the request counts of an earlier server of this run: 4 turned away" in caplog.text
    assert second.counts == {("studio", "html", "ja", 503): 4, ("video", "json", "en", 503): 1}
    summary = json.loads((tmp_path / "requests-summary.json").read_text())
    assert summary["turned_away"] == 5 and summary["since"] == first.summary()["since"]
    assert summary["distinct_clients"] == 5 and summary["distinct_clients_exact"] is False
    assert 1.9 < second.peak_rps < 2.1  # the first server's: the carried counts are no burst of requests

    other_run = Traffic(clock=lambda: run_start + 120)
    TrafficTicker(other_run, lambda: run_start + 100, tmp_path).poll_once()  # the file names another run
    assert other_run.total() == 0 and other_run.summary()["distinct_clients_exact"] is True
    (tmp_path / "requests-summary.json").write_text(json.dumps({"since": first.summary()["since"], "counts": [["x"]]}))
    broken = Traffic(clock=lambda: run_start + 60)
    with caplog.at_level("WARNING", logger="maintenance_shim.traffic"):
        TrafficTicker(broken, lambda: run_start, tmp_path).poll_once()
    assert broken.total() == 0 and "unreadable request counts, not carried on" in caplog.text


def test_collector_reads_counts_state_and_progress(tmp_path: Path) -> None:
    settings = load_settings(environ={"MAINT_ETA": "30m"})
    tracker = create_tracker(settings)
    traffic = Traffic()
    traffic.hit(("studio", "html", "ja", 503), _scope("203.0.113.1"))
    traffic.hit(("studio", "html", "ja", 503), _scope("203.0.113.1"))
    now = time.time()
    for index in range(8):
        tracker.record(tracker.now() - 8 + index, 100 + index * 10, 1000, "push")
    families = {f.name: f for f in text_string_to_metric_families(
        generate_latest(registry_for(traffic, tracker, now - 60)).decode()
    )}
    requests = families["maintenance_shim_requests"].samples
    assert [(s.labels, s.value) for s in requests if s.name.endswith("_total")] == [
        ({"service": "studio", "format": "html", "locale": "ja", "status": "503"}, 2.0)
    ]
    states = {s.labels["state"]: s.value for s in families["maintenance_shim_state"].samples}
    assert sum(states.values()) == 1.0 and states["training"] == 1.0
    assert families["maintenance_shim_progress_step"].samples[0].value == 170
    assert families["maintenance_shim_progress_fraction"].samples[0].value == 0.17
    assert families["maintenance_shim_eta_seconds"].samples[0].value > 0
    assert families["maintenance_shim_seconds_since_progress"].samples[0].value < 5
    assert families["maintenance_shim_maintenance_started_timestamp_seconds"].samples[0].value == now - 60
    assert families["maintenance_shim_build_info"].samples[0].labels["version"]
    assert families["maintenance_shim_distinct_clients"].samples[0].value == 1


def test_metrics_off_counts_nothing() -> None:
    app = create_app(load_settings(environ={"MAINT_METRICS": "off"}))
    assert isinstance(app, MaintenanceApp) and app.traffic is None and app.observe is None
    for _ in range(3):
        assert _call(app, _request(("203.0.113.9", 4000))) == 503  # answered all the same
    app = create_app(load_settings(environ={}))
    assert isinstance(app, MaintenanceApp) and app.traffic is not None
    assert app.observe is None  # the access log is off by default


# ---- a real Prometheus scrapes a real shim ------------------------------------------------------


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    data = _get_json(f"{base}/api/v1/query?query={urllib.parse.quote(expr)}")
    assert data["status"] == "success", data
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


def _send(port: int, path: str, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """Debian's prometheus binary on a free loopback port (started by the test, stopped by PID)."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is required (apt-get install prometheus; scripts/test.sh does)"
    port = free_port()
    config = tmp_path / "prometheus.yml"
    log = (tmp_path / "prometheus.log").open("wb")
    proc: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        started = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )
        proc.append(started)
        return started

    try:
        yield start, port, config  # type: ignore[misc]
    finally:
        for started in proc:
            if started.poll() is None:
                started.send_signal(signal.SIGTERM)
                try:
                    started.wait(10)
                except subprocess.TimeoutExpired:
                    started.kill()
                    started.wait(5)
        log.close()


def test_prometheus_scrapes_the_shim_while_progress_advances(
    start_shim: ShimFactory, prometheus: Any, tmp_path: Path
) -> None:
    start, prom_port, config = prometheus
    progress = tmp_path / "progress.json"
    write_progress_file(progress, 0, 400)
    shim = start_shim(services=["studio"], env={"MAINT_PROGRESS_FILE": str(progress), "MAINT_LOG_LEVEL": "warning"})
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
        "scrape_configs:\n  - job_name: shim\n    metrics_path: /_maintenance/metrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{shim.admin_port}']\n"
    )
    start()
    base = f"http://127.0.0.1:{prom_port}"
    deadline = time.monotonic() + 30
    while not _ready(f"{base}/-/ready"):
        assert time.monotonic() < deadline, "Prometheus did not become ready"
        time.sleep(0.1)
    while not _query(base, 'up{job="shim"} == 1'):  # the first scrape has happened
        assert time.monotonic() < deadline, "Prometheus never scraped the shim"
        time.sleep(0.2)
    sent: Counter[tuple[str, str]] = Counter()
    began = time.time()
    for round_ in range(1, 15):  # ~7 s: the progress file advances, requests arrive
        write_progress_file(progress, round_ * 20, 400)
        for _ in range(round_ % 3 + 1):
            assert _send(shim.port, "/gallery", {"Accept": "text/html", "Accept-Language": "ja"}) == 503
            sent["html", "ja"] += 1
        assert _send(shim.port, "/api/run", {"Accept-Language": "zh-CN"}) == 503
        sent["json", "zh_Hans"] += 1
        time.sleep(0.5)
    deadline = time.monotonic() + 15
    while True:  # the last scrape after the last request carries the final counts
        rows = _query(base, 'maintenance_shim_requests_total{job="shim"}')
        seen = {(row["metric"]["format"], row["metric"]["locale"]): float(row["value"][1]) for row in rows}
        if seen == {key: float(count) for key, count in sent.items()}:
            break
        assert time.monotonic() < deadline, (seen, sent)
        time.sleep(0.5)
    assert {row["metric"]["service"] for row in rows} == {"studio"}
    assert {row["metric"]["status"] for row in rows} == {"503"}
    # The step series rose while Prometheus watched, and the state was training with a known ETA.
    span = max(5, round(time.time() - began))
    steps = _query(base, f"max_over_time(maintenance_shim_progress_step[{span}s])"
                   f" - min_over_time(maintenance_shim_progress_step[{span}s])")
    history = _get_json(f"{base}/api/v1/query?query=" + urllib.parse.quote(f"maintenance_shim_progress_step[{span}s]"))
    assert steps and float(steps[0]["value"][1]) >= 100, history
    changes = _query(base, f"changes(maintenance_shim_progress_step[{span}s])")
    assert float(changes[0]["value"][1]) >= 3, changes
    assert float(_query(base, 'maintenance_shim_state{state="training"}')[0]["value"][1]) == 1
    assert float(_query(base, "maintenance_shim_eta_seconds")[0]["value"][1]) > 0
    assert float(_query(base, "maintenance_shim_progress_rate_steps_per_second")[0]["value"][1]) > 0
    assert float(_query(base, "maintenance_shim_distinct_clients")[0]["value"][1]) == 1
    started = float(_query(base, "maintenance_shim_maintenance_started_timestamp_seconds")[0]["value"][1])
    assert abs(started - began) < 30
    assert _query(base, "maintenance_shim_build_info")
    # The public listener does not serve the metrics; the status carries the running counts.
    assert _send(shim.port, "/_maintenance/metrics", {}) == 404
    status = _get_json(f"{shim.url}/_maintenance/status")
    assert status["requests"]["turned_away"] == sum(sent.values())
    assert status["requests"]["by_service"] == {"studio": {"html": sent["html", "ja"], "json": sent["json", "zh_Hans"]}}


# ---- the run summary after a known load through nginx ---------------------------------------------


def _hook(name: str, port: int, tmp: Path, action: str) -> str:
    py, script = shlex.quote(sys.executable), shlex.quote(str(STANDIN))
    pidfile = tmp / f"{name}.pid"
    if action == "start":
        return (f"{py} {script} start --pidfile {pidfile} --log {tmp}/{name}.log -- --name {name} --port {port}")
    if action == "stop":
        return f"{py} {script} stop --pidfile {pidfile}"
    return f"{py} {script} drain --url http://127.0.0.1:{port} --timeout 10"


def _kill_pidfile(path: Path) -> None:
    try:
        pid = int(path.read_text())
        if b"standin.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


@pytest.mark.parametrize("kill_midway", [False, True], ids=["one-server", "server-killed-midway"])
@pytest.mark.e2e
def test_stop_prints_a_summary_matching_the_load(tmp_path: Path, kill_midway: bool) -> None:
    """A known load through nginx; `server-killed-midway` kill -9s the serving process after the first three
    clients, and the server the supervisor starts in its place carries the counts on."""
    shim_cmd = Path(sys.executable).with_name("maintenance-shim")
    ports = {"studio": free_port(), "video": free_port()}
    nginx = start_nginx(tmp_path, ports)
    state = tmp_path / "state"
    settings = {
        "MAINT_SWITCH": "nginx",
        "MAINT_SERVICES": "studio video:api",
        "MAINT_STATE_DIR": str(state),
        "MAINT_SHIM_CMD": str(shim_cmd),
        "MAINT_LISTEN": f"127.0.0.1:{free_port()}=studio,127.0.0.1:{free_port()}=video:api",
        "MAINT_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
        "MAINT_NGINX_BIN": shutil.which("nginx") or "/usr/sbin/nginx",
        "MAINT_NGINX_ARGS": nginx.args,
        "MAINT_SETTLE_SECONDS": "0.3",
        "MAINT_HEALTH_TIMEOUT": "10",
        "MAINT_LOG_LEVEL": "warning",
    }
    for name, port in ports.items():
        for action in ("start", "stop", "drain"):
            settings[f"MAINT_SERVICE_{name}_{action.upper()}"] = _hook(name, port, tmp_path, action)
        settings[f"MAINT_SERVICE_{name}_HEALTH_URL"] = f"http://127.0.0.1:{port}/health"
        settings[f"MAINT_SERVICE_{name}_INCLUDE"] = str(nginx.include(name))
    env_file = tmp_path / "maintenance.env"
    env_file.write_text("".join(f"{key}={shlex.quote(value)}\n" for key, value in settings.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINT_")} | {"MAINT_ENV_FILE": str(env_file)}

    def run(script: str) -> subprocess.CompletedProcess[str]:
        from tests.support.scripts import run_script

        return run_script([str(ROOT / "scripts" / script)], env=env, cwd=tmp_path, timeout=90)

    try:
        for name in ports:
            subprocess.run(settings[f"MAINT_SERVICE_{name}_START"], shell=True, check=True)
        wait_http(f"http://127.0.0.1:{ports['studio']}/health")
        wait_http(f"http://127.0.0.1:{ports['video']}/health")
        started = run("start_maintenance.sh")
        assert started.returncode == 0, started.stderr
        # The known load: 6 clients (nginx puts each one's address first in X-Forwarded-For), each
        # sending a browser page, an API call and a text request to studio and JSON to the video API.
        load: Counter[tuple[str, str]] = Counter()
        clients = [f"203.0.113.{index}" for index in range(1, 7)]
        for index, client in enumerate(clients):
            if kill_midway and index == 3:
                _kill_the_serving_server(state, sum(load.values()))
            for _ in range(index + 1):
                for service, path, accept, fmt in (
                    ("studio", "/gallery", "text/html", "html"),
                    ("studio", "/api/v1/txt2img", "*/*", "json"),
                    ("studio", "/robots.txt", "text/plain", "text"),
                    ("video", "/v1/videos", "*/*", "json"),
                ):
                    status = _send(nginx.port, path, {"Host": HOSTS[service], "Accept": accept,
                                                      "X-Forwarded-For": client})
                    assert status == 503
                    load[service, fmt] += 1
        stopped = run("stop_maintenance.sh")
        assert stopped.returncode == 0, stopped.stderr
    finally:
        for name in ports:
            _kill_pidfile(tmp_path / f"{name}.pid")
        nginx.stop()
    total = sum(load.values())
    print(stopped.stdout)
    lines = stopped.stdout.splitlines()
    assert lines[0] == (
        f"requests turned away: {total:,} (studio: html {load['studio', 'html']}, json {load['studio', 'json']}, "
        f"text {load['studio', 'text']}; video: json {load['video', 'json']})"
    ), stopped.stdout
    # Killed midway, the clients are added up across the two servers: right here (each client talks to one
    # server), but no longer known to be exact.
    assert lines[1].split() == ["distinct", "clients:", str(len(clients))] + (["(estimated)"] if kill_midway else [])
    record = json.loads((state / "history.jsonl").read_text().splitlines()[-1])["requests"]
    assert record["turned_away"] == total
    assert record["by_service"] == {
        "studio": {"html": load["studio", "html"], "json": load["studio", "json"], "text": load["studio", "text"]},
        "video": {"json": load["video", "json"]},
    }
    assert record["distinct_clients"] == len(clients) and record["distinct_clients_exact"] is not kill_midway
    assert 1 <= record["peak_requests_per_second"] <= total
    assert record["health_checks"] == 0


def _kill_the_serving_server(state: Path, sent: int) -> None:
    """Once the server has written its counts of the `sent` requests (once a second), kill -9 it; back when
    the supervisor has started another on the same sockets."""

    def written() -> bool:
        try:
            record = json.loads((state / "requests-summary.json").read_text())
        except (OSError, ValueError):
            return False
        return bool(record.get("turned_away") == sent)

    wait_until(written, what=f"requests-summary.json counting the {sent} requests sent")
    serving = json.loads((state / "shim-serving.json").read_text())["serving"]
    assert b"maintenance" in Path(f"/proc/{serving}/cmdline").read_bytes()
    os.kill(serving, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while json.loads((state / "shim-serving.json").read_text())["serving"] == serving:
        assert time.monotonic() < deadline, "no replacement server"
        time.sleep(0.05)


def test_a_local_connection_without_forwarding_headers_is_not_scanned_again() -> None:
    plain: dict[int, Any] = {}
    client = ("127.0.0.1", 50000)
    first = {"client": client, "server": ("127.0.0.1", 80), "headers": [(b"accept", b"*/*")]}
    assert client_key(first, plain) == "127.0.0.1"
    later = {**first, "headers": [(b"x-forwarded-for", b"203.0.113.5")]}
    assert client_key(later, plain) == "127.0.0.1"  # same connection (same tuple): a client, not a proxy
    other = {**later, "client": ("127.0.0.1", int("50000"))}  # an equal tuple of another connection
    assert client_key(other, plain) == "203.0.113.5"


def test_a_known_connection_counts_each_request_and_its_client_once_per_run() -> None:
    traffic = Traffic(clock=lambda: 1000.0)
    key = ("studio", "html", "en", 503)
    remote = {"client": ("203.0.113.7", 40000), "headers": [(b"accept", b"*/*")]}
    for _ in range(3):
        traffic.hit(key, remote)
    assert traffic.counts == {key: 3} and traffic.clients.count() == 1
    traffic.new_run(2000.0)  # a new run forgets its clients: the known connection's client counts again
    traffic.hit(key, remote)
    assert traffic.counts == {key: 1} and traffic.clients.count() == 1
    # A proxy on this host: one connection, many clients; never remembered as one client's connection.
    proxy = ("127.0.0.1", 50001)
    for n in range(3):
        traffic.hit(key, {"client": proxy, "headers": [(b"x-forwarded-for", f"198.51.100.{n}".encode())]})
    assert traffic.counts == {key: 4} and traffic.clients.count() == 4
    # The scripts' own check request is neither counted nor remembered.
    check = {"client": ("127.0.0.1", 50002), "headers": [(b"x-maintenance-shim", b"check")]}
    traffic.hit(key, check)
    traffic.hit(key, check)
    assert traffic.counts == {key: 4} and traffic.clients.count() == 4


def _request(client: tuple[str, int], headers: list[tuple[bytes, bytes]] | None = None, path: str = "/",
             accept: bytes = b"text/html") -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "query_string": b"", "server": ("127.0.0.1", 8080),
            "client": client, "headers": [(b"accept", accept), *(headers or [])]}


def _call(app: MaintenanceApp, scope: dict[str, Any]) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the catch-all never reads the body")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status: int = sent[0]["status"]
    return status


def test_the_fast_path_counts_what_traffic_hit_counts() -> None:
    """Through the app (its cached answers and their tallies): a client's connection, a local proxy's, the
    scripts' check, two formats, then a new run, which zeroes the tallies the cached answers hold."""
    app = create_app(load_settings(environ={}))
    assert isinstance(app, MaintenanceApp) and app.traffic is not None
    traffic = app.traffic
    browser, proxy, check = ("203.0.113.7", 40000), ("127.0.0.1", 50001), ("127.0.0.1", 50002)
    for _ in range(5):
        assert _call(app, _request(browser)) == 503
    for _ in range(2):
        assert _call(app, _request(browser, accept=b"application/json")) == 503
    for n in range(3):
        assert _call(app, _request(proxy, [(b"x-forwarded-for", f"198.51.100.{n}".encode())])) == 503
    for _ in range(2):
        assert _call(app, _request(check, [(b"x-maintenance-shim", b"check")])) == 503
    service = app.responder.service_for(("127.0.0.1", 8080)).name  # the unnamed default service
    html, json_ = (service, "html", "en", 503), (service, "json", "en", 503)
    assert traffic.counts == {html: 8, json_: 2} and traffic.total() == 10
    assert traffic.clients.count() == 4  # the browser and the proxy's three; never the check
    traffic.new_run(traffic.since + 60)
    assert traffic.counts == {} and traffic.total() == 0 and traffic.clients.count() == 0
    for _ in range(4):
        assert _call(app, _request(browser)) == 503  # the same cached answer, counting from zero
    assert traffic.counts == {html: 4} and traffic.clients.count() == 1
