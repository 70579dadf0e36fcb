"""Smoke run of bench/'s pieces: capture, the raw floor's replay, the wrk report script, the nginx config.

No timing assertions: these only check that the harness measures what it claims to measure.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ShimFactory, free_port

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import raw_floor  # noqa: E402
import run  # noqa: E402


@pytest.fixture
def captured(start_shim: ShimFactory, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """The shim's replies to the benchmark's two request shapes, written where the floor reads them."""
    shim = start_shim(env=dict(run.SHIM_ENV))
    replies = {request.name: run.capture(shim.port, request) for request in run.REQUESTS}
    routes = [[run.JSON_PREFIX, replies[run.API.name]], ["/", replies[run.BROWSER.name]]]
    (tmp_path / "replies.json").write_text(json.dumps({"routes": routes, "by_request": replies}))
    return replies


@pytest.fixture
def floor(captured: dict[str, dict[str, Any]], tmp_path: Path) -> Iterator[int]:
    """A raw floor process replaying `captured`; yields its port and stops it by PID."""
    procs = run.Procs()
    port = free_port()
    argv = run.Server("floor", "floor").argv(port, tmp_path)
    proc = procs.start("floor", argv, env=run.server_env(), cwd=tmp_path, log=tmp_path / "floor.log", cpu=None)
    try:
        run.wait_ready(proc, port)
        yield port
    finally:
        procs.stop_all()


def test_capture_sees_the_feature_rich_503s(captured: dict[str, dict[str, Any]]) -> None:
    html, api = captured[run.BROWSER.name], captured[run.API.name]
    assert html["status"] == api["status"] == 503
    assert dict(html["headers"])["content-language"] == "ja"
    assert dict(html["headers"])["content-type"].startswith("text/html")
    assert dict(api["headers"])["content-type"] == "application/json"
    assert dict(api["headers"])["access-control-allow-origin"] == "https://studio.example.com"
    assert "date" not in dict(html["headers"])


def test_floor_replays_exactly_the_captured_bytes(captured: dict[str, dict[str, Any]], floor: int) -> None:
    for request in run.REQUESTS:
        assert run.capture(floor, request) == captured[request.name]


def test_replay_app_picks_the_route_by_prefix(tmp_path: Path) -> None:
    def reply(body: bytes) -> dict[str, Any]:
        return {
            "status": 503,
            "headers": [["content-length", str(len(body))]],
            "body_b64": base64.b64encode(body).decode(),
        }

    (tmp_path / "r.json").write_text(json.dumps({"routes": [["/api/", reply(b"api")], ["/", reply(b"page")]]}))
    app = raw_floor.Replay(raw_floor.load_routes(tmp_path / "r.json"))

    async def body_for(path: str) -> bytes:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            raise AssertionError("the floor must not read the request body")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app({"type": "http", "path": path}, receive, send)
        assert sent[0]["status"] == 503
        return bytes(sent[1]["body"])

    assert asyncio.run(body_for("/api/v1/x")) == b"api"
    assert asyncio.run(body_for("/gallery")) == b"page"


def test_wrk_report_counts_statuses(floor: int, tmp_path: Path) -> None:
    assert shutil.which("wrk"), "wrk is required (apt-get install wrk)"
    script = run.wrk_script(run.BROWSER, tmp_path)
    result = run.run_wrk(floor, script, connections=2, duration=1, threads=1)
    assert result["requests"] > 0
    assert result["statuses"] == {"503": result["requests"]}
    assert result["non_503"] == 0
    assert result["socket_errors"] == 0


def test_nginx_config_from_the_capture_is_valid(captured: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    assert Path(run.nginx_binary()).exists(), "nginx is required (apt-get install nginx-light)"
    conf = run.write_nginx_conf(tmp_path, free_port())
    done = subprocess.run(
        [run.nginx_binary(), "-t", "-p", str(conf.parent), "-c", str(conf)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    body = (conf.parent / "www" / "_bench" / "503.html").read_bytes()
    assert body == base64.b64decode(captured[run.BROWSER.name]["body_b64"])


def test_side_by_side_measures_both_servers_over_one_window(
    captured: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Two floors loaded at once: each row counts its own server's requests (all 503) and CPU time."""
    procs = run.Procs()
    ports = [free_port(), free_port()]
    try:
        started = [
            procs.start(f"floor{i}", run.Server("floor", "floor").argv(port, tmp_path), env=run.server_env(),
                        cwd=tmp_path, log=tmp_path / f"floor{i}.log", cpu=None)
            for i, port in enumerate(ports)
        ]
        for proc, port in zip(started, ports, strict=True):
            run.wait_ready(proc, port)
        script = run.wrk_script(run.BROWSER, tmp_path)
        rows = run.side_by_side([p.pid for p in started], ports, script, connections=2, duration=1, threads=1)
    finally:
        procs.stop_all()
    assert len(rows) == 2
    for row in rows:
        assert row["requests"] > 0 and row["statuses"] == {"503": row["requests"]}
        assert row["server_cpu_s"] > 0
    # Both wrk runs overlapped: each lasted about the one second asked for, not one after the other.
    assert all(0.9e6 <= row["duration_us"] <= 1.9e6 for row in rows)


def test_pair_ratios_are_per_round_medians() -> None:
    def row(requests: int, cpu: float) -> dict[str, Any]:
        return {"requests": requests, "server_cpu_s": cpu}

    # Round by round the shim uses 1.25x, 1.1x and 1.0x the other's CPU per request, whatever the load.
    rounds = [(row(800, 1.0), row(1000, 1.0)), (row(1000, 2.2), row(2000, 4.0)), (row(500, 0.5), row(500, 0.5))]
    ratios = run.pair_ratios(rounds)
    assert ratios["cpu_ratios"] == pytest.approx([0.8, 1 / 1.1, 1.0])
    assert ratios["cpu_ratio"] == pytest.approx(1 / 1.1)
    assert ratios["rps_ratio"] == pytest.approx(0.8)
    assert ratios["cpu_ratio_iqr"] == pytest.approx([0.8, 1.0])


def test_the_crossover_takes_the_process_bias_out() -> None:
    """X is 2 % faster than Y whatever it does and counting costs 3 %: the crossover finds the 3 %, and its
    A/A rounds the 2 %."""
    import counting_crossover

    cost, bias = 0.97, 1.02
    speed = {"on": cost, "off": 1.0}
    rounds = []
    for x, y in counting_crossover.SETTINGS * 2:
        rx, ry = round(100_000 * speed[x] * bias), round(100_000 * speed[y])
        rounds.append({"setting": [x, y], "requests": [rx, ry], "server_cpu_s": [1.0, 1.0]})
    found = counting_crossover.summarize(rounds)
    assert found["requests"]["share"] == pytest.approx(1 - cost, abs=1e-4)
    assert found["requests"]["bias_aa"] == pytest.approx(bias, abs=1e-4)
    assert found["cpu"]["share"] == pytest.approx(1 - cost, abs=1e-4)  # the same CPU for fewer requests


def test_the_toggle_switches_a_real_shims_counting_off_and_on(tmp_path: Path) -> None:
    """bench/shim_toggle.py: SIGUSR1 and the status endpoint's count stops, SIGUSR2 and it counts again."""
    import urllib.error
    import urllib.request

    import counting_crossover

    procs = run.Procs()
    try:
        shim = counting_crossover.Toggled(procs, "X", tmp_path, cpu=None)

        def ask(times: int) -> None:
            for _ in range(times):
                with pytest.raises(urllib.error.HTTPError) as answer:
                    urllib.request.urlopen(f"http://127.0.0.1:{shim.port}/x", timeout=5)
                assert answer.value.code == 503
                answer.value.close()

        # set() itself sends one request and checks it was counted (on) or not (off)
        start = counting_crossover.counted(shim.admin_port)  # wait_ready's own requests included
        ask(3)
        assert counting_crossover.counted(shim.admin_port) == start + 3
        shim.set("off")
        ask(3)
        assert counting_crossover.counted(shim.admin_port) == start + 3
        shim.set("on")
        ask(2)
        assert counting_crossover.counted(shim.admin_port) == start + 3 + 1 + 2
        assert shim.pid != shim.proc.pid  # the supervisor's child is what gets the signals
    finally:
        procs.stop_all()


def test_the_instruction_count_covers_the_window_alone(tmp_path: Path) -> None:
    """bench/instructions.py: callgrind counts the window of requests and nothing of the start-up (over a
    billion instructions under callgrind: a window holding any of it would show millions per request)."""
    import argparse

    import instructions

    assert shutil.which("valgrind") and shutil.which("callgrind_control"), "scripts/test.sh installs valgrind"
    args = argparse.Namespace(requests=300, connections=4, rounds=1, servers="off,on", request=run.API.name,
                              tree=[], cache_sim=False, scratch=str(tmp_path))
    data = instructions.run(args)
    for name in ("off", "on"):
        (per_request,) = data["results"][run.API.name][name]
        assert 50_000 < per_request["Ir"] < 1_000_000, (name, per_request)
    page = instructions.render(data)
    assert f"- {run.API.name}: metrics on costs " in page
