"""Progress per GPU node: pushes, progress files and logs tagged with a node, each node's own ETA and stall
timer, the service's ETA from the node coming back earliest, the node limit, and the page showing the nodes.

The Tracker's rules with a fake clock first; then real shim processes with real HTTP pushes from two
threads, a real tqdm run, and the page in Chromium.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from maintenance_shim.nodes import MAX_NODES, NodeLimitError
from maintenance_shim.progress.runs import RunState
from maintenance_shim.progress.sources import FileProgress, ProgressFileError, parse_progress_file
from maintenance_shim.progress.tracker import ProgressUpdate, RetryPolicy, Tracker
from maintenance_shim.settings.env import SettingsError
from maintenance_shim.settings.shim import SourcePath, load_settings, parse_source_paths
from tests.support import ROOT, Shim, ShimFactory, clean_env, request, wait_until
from tests.support.page import BROWSER, Watch, axe_script, expect, new_context, overflow, shot

if TYPE_CHECKING:  # imported when a browser runs: the suite collects without Playwright
    from playwright.sync_api import Browser

T0 = 1_800_000_000.0
TOKEN = "node-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
RESUME = 10


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def make_tracker(clock: Clock, stall: float = 300, deadline: float | None = None) -> Tracker:
    return Tracker(
        resume_seconds=RESUME,
        stall_seconds=stall,
        retry=RetryPolicy(minimum=5, maximum=3600, unknown=60),
        clock=clock,
        static_deadline=datetime.fromtimestamp(deadline, UTC) if deadline else None,
    )


def feed(tracker: Tracker, clock: Clock, rates: dict[str | None, float], totals: dict[str | None, int],
         seconds: float, dt: float = 0.1) -> None:
    """Advance the clock by `seconds`, each node reporting floor(rate * elapsed) steps every `dt`."""
    start = clock.now
    steps = 0
    while clock.now - start < seconds - 1e-9:
        clock.now = round(clock.now + dt, 6)
        steps += 1
        for node, rate in rates.items():
            step = min(totals[node], int(rate * (clock.now - T0)))
            tracker.report(ProgressUpdate(clock.now, step, totals[node], "push", node=node))


# ---- The Tracker, fake clock -----------------------------------------------------------------------------


def test_untagged_progress_has_no_nodes() -> None:
    clock = Clock()
    tracker = make_tracker(clock)
    feed(tracker, clock, {None: 5.0}, {None: 300}, 12)
    snapshot = tracker.snapshot()
    assert snapshot.nodes == ()
    assert snapshot.state == "training" and snapshot.source == "push"


def test_each_node_has_its_own_eta_and_the_service_follows_the_earliest() -> None:
    clock = Clock()
    tracker = make_tracker(clock)
    totals: dict[str | None, int] = {"gpu-1": 300, "gpu-2": 300}
    feed(tracker, clock, {"gpu-1": 5.0, "gpu-2": 2.0}, totals, 15)
    snapshot = tracker.snapshot()
    assert [node.node for node in snapshot.nodes] == ["gpu-1", "gpu-2"]
    one, two = snapshot.nodes
    assert one.progress is not None and two.progress is not None
    for node, rate in ((one, 5.0), (two, 2.0)):
        assert node.state == "training" and node.source == "push"
        assert node.progress is not None and node.progress.rate is not None
        truth = (300 - node.progress.step) / rate + RESUME
        assert node.eta_seconds is not None and abs(node.eta_seconds - truth) <= 0.05 * truth + 1.5, (node, truth)
    # The service is back when the first node is: gpu-1's ETA, its progress, its Retry-After.
    assert (snapshot.state, snapshot.eta_seconds, snapshot.progress) == ("training", one.eta_seconds, one.progress)
    assert snapshot.retry_after == one.eta_seconds
    # A node reaching its total is finishing (saving and reloading): back soonest.
    tracker.report(ProgressUpdate(clock.now + 0.5, 300, 300, "push", node="gpu-2"))
    clock.now += 1.0
    snapshot = tracker.snapshot()
    assert snapshot.nodes[1].state == "finishing"
    assert (snapshot.state, snapshot.eta_seconds) == ("finishing", snapshot.nodes[1].eta_seconds)


def test_a_silent_node_stalls_on_its_own() -> None:
    clock = Clock()
    tracker = make_tracker(clock, stall=3)
    totals: dict[str | None, int] = {"a": 1000, "b": 1000}
    feed(tracker, clock, {"a": 5.0, "b": 2.0}, totals, 10)
    feed(tracker, clock, {"a": 5.0}, totals, 4)
    snapshot = tracker.snapshot()
    states = {node.node: node.state for node in snapshot.nodes}
    assert states == {"a": "training", "b": "stalled"}
    assert snapshot.state == "training" and snapshot.progress == snapshot.nodes[0].progress
    clock.now += 4  # now both are silent
    snapshot = tracker.snapshot()
    assert {node.state for node in snapshot.nodes} == {"stalled"}
    assert snapshot.state == "stalled"


def test_service_rank_estimating_before_overdue_before_stalled() -> None:
    clock = Clock()
    tracker = make_tracker(clock, stall=5)
    # "old" trains 2 s then goes silent (stalled after 5 s); "new" starts later: still estimating.
    tracker.report(ProgressUpdate(clock.now, 0, 100, "push", node="old"))
    clock.now += 6
    tracker.report(ProgressUpdate(clock.now, 0, 100, "push", node="new"))
    tracker.report(ProgressUpdate(clock.now + 0.5, 1, 100, "push", node="new"))
    clock.now += 1
    snapshot = tracker.snapshot()
    assert {node.node: node.state for node in snapshot.nodes} == {"new": "estimating", "old": "stalled"}
    assert snapshot.state == "estimating" and snapshot.progress == snapshot.nodes[0].progress


def test_untagged_sources_take_part_but_are_not_listed() -> None:
    clock = Clock()
    tracker = make_tracker(clock)
    totals: dict[str | None, int] = {None: 200, "gpu-2": 1000}
    feed(tracker, clock, {None: 5.0, "gpu-2": 5.0}, totals, 12)
    snapshot = tracker.snapshot()
    assert [node.node for node in snapshot.nodes] == ["gpu-2"]
    assert snapshot.eta_seconds is not None and snapshot.nodes[0].eta_seconds is not None
    assert snapshot.eta_seconds < snapshot.nodes[0].eta_seconds  # the untagged run ends first


def test_run_events_stay_global() -> None:
    clock = Clock()
    tracker = make_tracker(clock)
    totals: dict[str | None, int] = {"a": 1000, "b": 1000}
    feed(tracker, clock, {"a": 5.0, "b": 2.0}, totals, 10)
    tracker.run_changed(RunState(started_at=T0, trainer_exit_at=clock.now, trainer_status=0, phase="trainer-exited"))
    clock.now += 1
    snapshot = tracker.snapshot()
    assert snapshot.state == "finishing" and snapshot.after == "trainer-exited"
    assert {node.state for node in snapshot.nodes} == {"training"}  # each node still says what it knows


def test_node_limit_and_names() -> None:
    clock = Clock()
    tracker = make_tracker(clock)
    tracker.reserve_nodes(["configured"])
    for index in range(MAX_NODES - 1):
        tracker.report(ProgressUpdate(clock.now, 1, 10, "push", node=f"n{index}"))
    before = tracker.snapshot()
    with pytest.raises(NodeLimitError):
        tracker.report(ProgressUpdate(clock.now, 1, 10, "push", node="one-too-many"))
    for bad in ("", "-x", "a b", "x" * 65, "gpu/2", "ü"):
        with pytest.raises(ValueError):
            tracker.report(ProgressUpdate(clock.now, 1, 10, "push", node=bad))
    # The reserved node still gets in; known nodes keep reporting; nothing else changed.
    tracker.report(ProgressUpdate(clock.now, 2, 10, "push", node="configured"))
    tracker.report(ProgressUpdate(clock.now, 2, 10, "push", node="n0"))
    clock.now += 1
    after = tracker.snapshot()
    assert len(before.nodes) == MAX_NODES - 1 and len(after.nodes) == MAX_NODES
    assert "one-too-many" not in {node.node for node in after.nodes}


# ---- Settings and the progress file ------------------------------------------------------------------------


def test_source_settings_accept_node_entries() -> None:
    assert parse_source_paths("/var/log/train.log") == [SourcePath(None, Path("/var/log/train.log"))]
    assert parse_source_paths("/data/run,1/train.log") == [SourcePath(None, Path("/data/run,1/train.log"))]
    assert parse_source_paths("gpu-1=/mnt/a/train.log, gpu-2=/mnt/b/train.log") == [
        SourcePath("gpu-1", Path("/mnt/a/train.log")), SourcePath("gpu-2", Path("/mnt/b/train.log"))
    ]
    settings = load_settings(environ={
        "MAINT_PROGRESS_FILE": "/run/p.json,gpu-2=/mnt/b/p.json",
        "MAINT_TRAIN_LOG": "gpu-2=/mnt/b/train.log,gpu-1=/mnt/a/train.log",
    })
    assert settings.progress_file == Path("/run/p.json")  # the untagged one, as ever
    assert settings.train_log is None
    assert [item.node for item in settings.train_logs] == ["gpu-1", "gpu-2"]
    assert settings.source_nodes == {"gpu-1", "gpu-2"}
    plain = load_settings(environ={"MAINT_TRAIN_LOG": "/var/log/train.log"})
    assert plain.train_log == Path("/var/log/train.log")
    assert plain.train_logs == (SourcePath(None, Path("/var/log/train.log")),)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("gpu 2=/x", "not a node name"),
        ("gpu-1=", "has no path"),
        ("gpu-1=/a,gpu-1=/b", "given twice"),
        ("/a,/b,gpu-1=/c", "second path without a node"),
        (",".join(f"n{i}=/l{i}" for i in range(MAX_NODES + 1)), "at most 64"),
    ],
)
def test_a_bad_source_entry_is_one_line_naming_the_setting(value: str, reason: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"MAINT_TRAIN_LOG": value})
    assert len(caught.value.lines) == 1
    assert caught.value.lines[0].startswith("MAINT_TRAIN_LOG: ") and reason in caught.value.lines[0]


@pytest.mark.e2e
def test_check_stops_on_a_bad_entry_with_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "check"],
        env=clean_env({"MAINT_PROGRESS_FILE": "gpu-1=/a.json,gpu 2=/b.json"}),
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maintenance-shim: MAINT_PROGRESS_FILE: entry 2"), lines


def test_progress_file_node() -> None:
    assert parse_progress_file(b'{"step": 3, "total": 9, "node": "gpu-2"}') == FileProgress(
        3, 9, None, None, None, "gpu-2"
    )
    for bad in (b'"gpu 2"', b'""', b"7", b'"' + b"x" * 65 + b'"'):
        with pytest.raises(ProgressFileError) as caught:
            parse_progress_file(b'{"step": 3, "total": 9, "node": ' + bad + b"}")
        assert caught.value.kind == "node"


# ---- Real shims -------------------------------------------------------------------------------------------


def status(url: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(request(url, "GET", "/_maintenance/status")[2])
    return result


def push(shim: Shim, **body: Any) -> tuple[int, bytes]:
    code, _, data = request(shim.admin_url, "PUT", "/_maintenance/progress", AUTH, json.dumps(body).encode())
    return code, data


NODE_KEYS = {"node", "state", "eta_seconds", "eta_at", "eta_text", "progress"}
PROGRESS_KEYS = {"step", "total", "fraction", "rate_per_second", "updated_at", "phase", "scope", "epoch", "epochs"}
# Two nodes of one service, pushing concurrently: gpu-fast 5 steps/s, gpu-slow 2 steps/s.
RATES = {"gpu-fast": 5.0, "gpu-slow": 2.0}
TOTALS = {"gpu-fast": 150, "gpu-slow": 120}
PUSH_SECONDS = 11.0


def pusher(shim: Shim, node: str, stop_at: float, errors: list[str]) -> None:
    """Push `node`'s step on every step change, at its true rate, until `stop_at` (monotonic)."""
    rate, start, step = RATES[node], time.monotonic(), 0
    while True:
        due = start + step / rate
        if due > stop_at:
            return
        time.sleep(max(0.0, due - time.monotonic()))
        code, data = push(shim, step=step, total=TOTALS[node], node=node)
        if code != 204:
            errors.append(f"{node} {step}: {code} {data!r}")
        step += 1


@pytest.fixture(scope="module")
def two_nodes(module_shim_launcher: ShimFactory, tagged_run: Future[Any]) -> dict[str, Any]:
    """One run of two nodes pushing concurrently, then gpu-slow falling silent; what the shim said.
    (tagged_run is asked for first so that it runs meanwhile.)"""
    shim = module_shim_launcher(
        services=["studio", "chat:openai"],
        env={"MAINT_ADMIN_TOKEN": TOKEN, "MAINT_RESUME_SECONDS": str(RESUME), "MAINT_STALL_SECONDS": "3"},
    )
    assert "nodes" not in status(shim.url)  # no node named yet: the object is as it always was
    errors: list[str] = []
    start = time.monotonic()
    threads = {
        "gpu-fast": threading.Thread(target=pusher, args=(shim, "gpu-fast", start + PUSH_SECONDS + 6, errors)),
        "gpu-slow": threading.Thread(target=pusher, args=(shim, "gpu-slow", start + PUSH_SECONDS, errors)),
    }
    for thread in threads.values():
        thread.start()
    samples: list[dict[str, Any]] = []
    replies: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = []
    try:
        while time.monotonic() - start < PUSH_SECONDS - 0.5:
            time.sleep(0.5)
            samples.append(status(shim.url))
            if time.monotonic() - start > 7 and len(replies) < 3:
                page_json = json.loads(request(shim, "GET", "/gallery", {"Accept": "application/json"})[2])
                openai = json.loads(request(shim.url_for(1), "POST", "/v1/chat/completions")[2])
                replies.append((status(shim.url), page_json, openai))
        threads["gpu-slow"].join()
        silent_since = time.monotonic()
        later: list[dict[str, Any]] = []
        while time.monotonic() - silent_since < 5:
            time.sleep(0.5)
            later.append(status(shim.url))
    finally:
        for thread in threads.values():
            thread.join()
    return {"shim": shim, "samples": samples, "replies": replies, "later": later, "errors": errors}


def test_two_nodes_pushing_each_get_their_own_eta(two_nodes: dict[str, Any]) -> None:
    assert two_nodes["errors"] == []
    errors: dict[str, list[float]] = {node: [] for node in RATES}
    checked = 0
    for sample in two_nodes["samples"]:
        nodes = {item["node"]: item for item in sample.get("nodes", [])}
        if set(nodes) != set(RATES) or any(item["eta_seconds"] is None for item in nodes.values()):
            continue  # a node still estimating (its first seconds)
        checked += 1
        for name, item in nodes.items():
            assert set(item) == NODE_KEYS and set(item["progress"]) == PROGRESS_KEYS
            assert item["state"] == "training" and item["progress"]["total"] == TOTALS[name]
            truth = (TOTALS[name] - item["progress"]["step"]) / RATES[name] + RESUME
            error = item["eta_seconds"] - truth
            errors[name].append(error / truth)
            assert abs(error) <= 0.1 * truth + 1.5, (name, item, truth)
            assert item["eta_text"] and item["eta_at"].endswith("Z")
        # The service's ETA is the node coming back earliest, and its progress that node's.
        earliest = min(nodes.values(), key=lambda item: item["eta_seconds"])
        assert earliest["node"] == "gpu-fast"
        assert sample["eta"]["seconds"] == earliest["eta_seconds"]
        assert sample["progress"] == earliest["progress"]
        assert sample["state"] == "training"
        assert sample["retry_after"] == max(5, earliest["eta_seconds"])
    assert checked >= 6, two_nodes["samples"]
    worst = {name: max(abs(value) for value in values) for name, values in errors.items()}
    print(f"ETA error per node over {checked} samples: worst {worst}, mean "
          f"{ {name: sum(values) / len(values) for name, values in errors.items()} } (share of the true remaining)")


def test_the_json_503_carries_the_same_nodes(two_nodes: dict[str, Any]) -> None:
    assert two_nodes["replies"]
    for now, page_json, openai in two_nodes["replies"]:
        for body in (page_json, openai):
            maintenance = body["maintenance"]
            assert [item["node"] for item in maintenance["nodes"]] == ["gpu-fast", "gpu-slow"]
            for item, same in zip(maintenance["nodes"], now["nodes"], strict=True):
                assert set(item) == NODE_KEYS and item["state"] == same["state"]
                assert abs(item["eta_seconds"] - same["eta_seconds"]) <= 2
            assert maintenance["eta"]["seconds"] == min(item["eta_seconds"] for item in maintenance["nodes"])
        assert openai["error"]["code"] == "service_unavailable"
        assert "detail" in page_json


def test_a_silent_node_becomes_stalled_alone(two_nodes: dict[str, Any]) -> None:
    last = two_nodes["later"][-1]
    states = {item["node"]: item["state"] for item in last["nodes"]}
    assert states == {"gpu-fast": "training", "gpu-slow": "stalled"}, last
    assert last["state"] == "training"
    assert all(sample["state"] != "stalled" for sample in two_nodes["later"])


def test_node_names_and_the_node_limit_over_http(start_shim: ShimFactory) -> None:
    shim = start_shim(env={"MAINT_ADMIN_TOKEN": TOKEN})
    for bad in ("", "-gpu", "gpu 2", "gpu/2", "x" * 65, "ü", 7, None):
        code, data = push(shim, step=1, total=10, node=bad)
        if bad is None:
            assert code == 204  # null is no node: untagged, as without the field
        else:
            assert code == 422, (bad, code, data)
            assert json.loads(data)["detail"][0]["loc"][-1] == "node"
    for index in range(MAX_NODES):
        assert push(shim, step=1, total=10, node=f"gpu-{index:02d}" + "x" * (58 if index == 0 else 0))[0] == 204
    code, data = push(shim, step=1, total=10, node="gpu-64")
    assert code == 422
    detail = json.loads(data)["detail"][0]
    assert detail["loc"] == ["node"] and "64 nodes are tracked already" in detail["msg"], detail
    assert push(shim, step=2, total=10, node="gpu-01")[0] == 204  # a known node still reports
    def with_new_step() -> list[dict[str, Any]] | None:
        """The nodes once the status (a snapshot recomputed once a second) has gpu-01's new step."""
        nodes: list[dict[str, Any]] = status(shim.url)["nodes"]
        return nodes if any(item["node"] == "gpu-01" and item["progress"]["step"] == 2 for item in nodes) else None

    nodes = wait_until(with_new_step, what="gpu-01's step 2 in the status")
    assert len(nodes) == MAX_NODES and "gpu-64" not in {item["node"] for item in nodes}
    assert [item["node"] for item in nodes] == sorted(item["node"] for item in nodes)
    code, _, body = request(shim, "GET", "/", {"Accept": "text/html"})
    assert code == 503 and body.count(b'class="node"') == MAX_NODES


LOG_STEPS, LOG_RATE = 400, 50.0
TRAINER = textwrap.dedent(
    f"""
    import sys, time
    from tqdm import tqdm
    bar = tqdm(total={LOG_STEPS}, desc="Steps", file=sys.stderr, mininterval=0.1)
    start = time.monotonic()
    for step in range({LOG_STEPS}):
        time.sleep(max(0.0, start + (step + 1) / {LOG_RATE} - time.monotonic()))
        bar.update(1)
    bar.close()
    """
)


def write_json(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document), encoding="utf-8")
    os.replace(tmp, path)


def tagged_scenario(launch: ShimFactory, tmp_path: Path) -> dict[str, Any]:
    """A shim following a tagged progress file, a file naming its node and a tagged log with a real tqdm run;
    then a bad node written to the untagged file. What the shim said at each point."""
    tagged, named, log = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "train.log"
    shim = launch(env={
        # gpu-a by the setting's tag; b.json names its node itself; the log is gpu-log's.
        "MAINT_PROGRESS_FILE": f"gpu-a={tagged},{named}",
        "MAINT_TRAIN_LOG": f"gpu-log={log}",
        "MAINT_RESUME_SECONDS": str(RESUME),
    })
    write_json(tagged, {"step": 10, "total": 100})
    write_json(named, {"step": 30, "total": 300, "node": "gpu-b"})
    samples: list[dict[str, Any]] = []
    with log.open("ab") as handle:
        trainer = subprocess.Popen([sys.executable, "-c", TRAINER], stderr=handle)
        started = time.monotonic()
        try:
            # 8 s paced by the clock; the deadline is generous for a busy machine.
            while trainer.poll() is None and time.monotonic() - started < 120:
                time.sleep(0.5)
                samples.append(status(shim.url))
        finally:
            if trainer.poll() is None:
                trainer.kill()
            trainer.wait()

    def log_node_done() -> dict[str, Any] | None:
        """The status once the shim has read the bar's last step (it polls the log)."""
        now = status(shim.url)
        item = {entry["node"]: entry for entry in now.get("nodes", [])}.get("gpu-log")
        done = item and item["progress"] and item["progress"]["step"] == LOG_STEPS and item["state"] == "finishing"
        return now if done else None

    final = wait_until(log_node_done, what=f"gpu-log at step {LOG_STEPS}, finishing")
    # A bad node in the untagged file.
    write_json(named, {"step": 40, "total": 300, "node": "gpu b"})
    wait_until(lambda: "node is not 1-64 letters" in shim.output(), what="the bad node's warning")
    after_bad = status(shim.url)
    output = shim.output()
    shim.stop()
    return {"samples": samples, "final": final, "after_bad": after_bad, "output": output}


@pytest.fixture(scope="module")
def tagged_run(module_shim_launcher: ShimFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Future[Any]]:
    """tagged_scenario, in a thread of its own from the moment two_nodes starts (which asks for this first):
    both are paced by the clock (the pushes, the tqdm run) and light, and they share nothing but the
    launcher, so the 10 s run goes by beside the two nodes' 16 s of pushes instead of after them."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagged-run") as pool:
        yield pool.submit(tagged_scenario, module_shim_launcher, tmp_path_factory.mktemp("tagged"))


def test_tagged_progress_file_and_log_are_their_nodes(tagged_run: Future[Any]) -> None:
    run = tagged_run.result()
    samples, final = run["samples"], run["final"]
    nodes = {item["node"]: item for item in final["nodes"]}
    assert set(nodes) == {"gpu-a", "gpu-b", "gpu-log"}
    assert (nodes["gpu-a"]["progress"]["step"], nodes["gpu-a"]["progress"]["total"]) == (10, 100)
    assert (nodes["gpu-b"]["progress"]["step"], nodes["gpu-b"]["progress"]["total"]) == (30, 300)
    assert nodes["gpu-log"]["progress"]["step"] == LOG_STEPS and nodes["gpu-log"]["state"] == "finishing"
    # The log's node has a real ETA while the bar runs, within the bound test_live.py holds the log to.
    errors = []
    for sample in samples:
        item = {entry["node"]: entry for entry in sample.get("nodes", [])}.get("gpu-log")
        if item and item["progress"] and 0.4 <= item["progress"]["fraction"] <= 0.85 and item["eta_seconds"]:
            truth = (LOG_STEPS - item["progress"]["step"]) / LOG_RATE + RESUME
            errors.append((item["eta_seconds"] - truth) / truth)
            assert abs(item["eta_seconds"] - truth) <= 0.1 * truth + 1.5, (item, truth)
    assert len(errors) >= 3, samples
    print(f"gpu-log ETA error over {len(errors)} samples: worst {max(abs(e) for e in errors):.3f}")
    # The finishing log node comes back first.
    assert final["state"] == "finishing" and final["progress"] == nodes["gpu-log"]["progress"]
    # A bad node in the untagged file is skipped with a warning; the last good progress stays.
    assert {item["node"]: item for item in run["after_bad"]["nodes"]}["gpu-b"]["progress"]["step"] == 30
    assert "node is not 1-64 letters" in run["output"]


# ---- The page in Chromium ----------------------------------------------------------------------------------


@pytest.fixture
def pushing_shim(start_shim: ShimFactory) -> Iterator[Shim]:
    shim = start_shim(env={
        "MAINT_ADMIN_TOKEN": TOKEN, "MAINT_RESUME_SECONDS": "600",
        # The page polls every 2 s, from its first, unknown state on.
        "MAINT_RETRY_AFTER_MIN": "1", "MAINT_RETRY_AFTER_MAX": "2", "MAINT_RETRY_AFTER_UNKNOWN": "2",
    })
    yield shim


def push_run(shim: Shim, node: str, steps: range, total: int, every: float = 0.1) -> None:
    for step in steps:
        assert push(shim, step=step, total=total, node=node)[0] == 204
        time.sleep(every)


def test_the_page_shows_every_node(chromium: Browser, pushing_shim: Shim) -> None:
    shim = pushing_shim
    watch = Watch()
    context = new_context(chromium, "en", watch)
    page = context.new_page()
    page.goto(f"{shim.url}/")
    assert page.is_hidden("#nodes")  # no node yet: nothing shown
    push_run(shim, "gpu-1", range(0, 25, 1), 100)
    push_run(shim, "gpu-2", range(0, 12, 1), 400)
    # The script adds the rows from /_maintenance/status.
    rows = page.locator("#node-list > li")
    expect(rows).to_have_count(2, timeout=6000)
    assert page.is_visible("#nodes")
    assert page.inner_text("#nodes-title") == "Training nodes"
    assert rows.locator(".node-name").all_inner_texts() == ["gpu-1", "gpu-2"]
    first = rows.nth(0).locator("[role=progressbar]")
    assert first.get_attribute("aria-label") == "gpu-1"
    assert first.get_attribute("aria-valuenow") == "24"
    assert first.get_attribute("aria-valuemax") == "100"
    assert rows.nth(0).locator("rect").get_attribute("width") == "24%"
    assert "Step 24 of 100" in rows.nth(0).locator(".node-progress").inner_text()
    # Server-rendered after a reload, the same rows; a node arriving later joins in place, sorted.
    page.reload()
    assert page.locator("#node-list > li").count() == 2
    push_run(shim, "gpu-0", range(0, 5), 50)
    expect(rows.locator(".node-name")).to_have_text(["gpu-0", "gpu-1", "gpu-2"], timeout=6000)
    now = status(shim.url)
    states = {item["node"]: item["state"] for item in now["nodes"]}
    for index, name in enumerate(["gpu-0", "gpu-1", "gpu-2"]):
        row = rows.nth(index)
        assert row.get_attribute("data-node") == name
        label = {"estimating": "Training", "training": "Training", "stalled": "Stalled"}[states[name]]
        assert row.locator(".node-state").inner_text() == label
    shot(page, "page-nodes-en")
    watch.assert_clean(shim.url)  # no CSP violation, no script error, nothing off the origin
    context.close()


def test_the_nodes_pass_the_accessibility_audit(chromium: Browser, pushing_shim: Shim) -> None:
    """axe-core on a page with nodes, English and Arabic, light and dark, at 360 px."""
    shim = pushing_shim
    push_run(shim, "gpu-1", range(0, 8), 100, every=0.05)
    push_run(shim, "gpu-2", range(0, 3), 400, every=0.05)
    watch = Watch()
    context = chromium.new_context(viewport={"width": 360, "height": 800}, reduced_motion="reduce")
    watch.attach(context)
    context.add_init_script(script=axe_script())
    page = context.new_page()
    found = []
    for lang in ("en", "ar"):
        page.context.set_extra_http_headers({"Accept-Language": BROWSER[lang][0]})
        page.goto(f"{shim.url}/")
        assert page.locator("#node-list > li").count() == 2
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme, reduced_motion="reduce")
            result = page.evaluate("async () => (await axe.run(document)).violations.map((v) => v.id + ' '"
                                   " + v.nodes.map((n) => n.target.join(' ')).join(', '))")
            found += [f"{lang} {scheme}: {item}" for item in result]
            widths = overflow(page)
            assert widths[0] <= widths[1], (lang, scheme, widths)
        shot(page, f"page-nodes-{lang}-360-dark")
    assert found == []
    assert watch.errors == []
    context.close()


def test_the_catalogs_have_the_heading() -> None:
    from maintenance_shim.i18n import load_translations

    for path in sorted((ROOT / "app" / "locales").glob("*/LC_MESSAGES/messages.po")):
        heading = load_translations(path.parent.parent.name).gettext("Training nodes")
        assert heading and (path.parent.parent.name == "en" or heading != "Training nodes"), path
