"""Runtime presets (app/runtimes/) against small real HTTP stand-ins of each server's documented API
(tests/support/runtime_standins.py), through `maintenance-shim runtime sleep|wake|ready` as the scripts call it;
the settings' checks; the registry (a new preset is one file); the GPU check; and with_maintenance.sh with
a preset behind a real nginx. The same against a real vLLM: tests/runtimes/test_runtime_vllm.py (marker vllm)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from maintenance_shim import cli, gpu, runtimes
from tests.support.runtime import Users, site
from tests.support.runtime_standins import Running, serve
from tests.support.scripts import _shim_cmd

ROOT = Path(__file__).resolve().parents[2]

# preset -> (its RUNTIME_* settings beyond the URL, whether `ready` says no while it sleeps)
PRESETS: dict[str, tuple[dict[str, str], bool]] = {
    "vllm": ({}, True),
    "sglang": ({}, True),
    "llamacpp": ({"RUNTIME_MODEL": "tiny"}, True),
    "ollama": ({"RUNTIME_MODEL": "tiny:latest"}, True),
    "triton": ({"RUNTIME_MODEL": "tiny"}, True),
    "comfyui": ({}, False),  # ComfyUI answers as ever; the next prompt loads the models again
}
STANDIN_MODEL = {"ollama": "tiny:latest"}


@pytest.fixture(autouse=True)
def _no_maint_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("MAINT_"):
            monkeypatch.delenv(key)


def _env(tmp: Path, name: str, url: str, extra: dict[str, str]) -> Path:
    lines = {"MAINT_SERVICES": "chat", "MAINT_SERVICE_chat_RUNTIME": name, "MAINT_SERVICE_chat_RUNTIME_URL": url,
             **{f"MAINT_SERVICE_chat_{key}": value for key, value in extra.items()}}
    path = tmp / f"{name}.env"
    path.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
    return path


def _run(capsys: pytest.CaptureFixture[str], action: str, env: Path) -> tuple[int, str, str]:
    """`maintenance-shim runtime ACTION --service chat --env-file ENV`, in this process (cli.main)."""
    code = cli.main(["runtime", action, "--service", "chat", "--env-file", str(env)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_registry_finds_every_preset_the_issue_names() -> None:
    assert runtimes.names() == ["comfyui", "llamacpp", "ollama", "sglang", "triton", "vllm"]
    assert sorted(PRESETS) == runtimes.names()
    for name in runtimes.names():
        preset = runtimes.get(name)
        assert preset.name == name and preset.summary


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_sleeps_wakes_and_says_when_ready(name: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    extra, not_ready_asleep = PRESETS[name]
    with serve(name, model=STANDIN_MODEL.get(name, "tiny")) as server:
        env = _env(tmp_path, name, server.url, extra)
        assert _run(capsys, "ready", env)[0] == 0
        code, _, err = _run(capsys, "sleep", env)
        assert code == 0, err
        assert f"chat: {name} at {server.url}: " in err
        if name == "comfyui":  # /free only sets flags; its worker unloads when it next runs
            deadline = time.monotonic() + 10
            while not server.state.asleep:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert server.state.asleep, server.state.calls
        code, out, _ = _run(capsys, "ready", env)
        assert code == (1 if not_ready_asleep else 0), out
        if not_ready_asleep:
            assert out.strip(), "a preset that is not ready says why"
        code, _, err = _run(capsys, "wake", env)
        assert code == 0, err
        assert "ready" in err and "after the wake call" in err
        assert _run(capsys, "ready", env)[0] == 0
        if name != "comfyui":
            assert not server.state.asleep and server.state.weights_ok, server.state


def test_vllm_level_2_reloads_the_weights_and_ready_does_not_wait_for_a_held_completion(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serve("vllm") as server:
        env = _env(tmp_path, "vllm", server.url, {"RUNTIME_LEVEL": "2"})
        assert _run(capsys, "sleep", env)[0] == 0
        assert server.state.level == 2 and not server.state.weights_ok
        started = time.monotonic()
        code, out, _ = _run(capsys, "ready", env)
        assert (code, out.strip()) == (1, "GET /is_sleeping says true")
        assert time.monotonic() - started < 15  # the stand-in holds a completion 30 s, as vLLM asleep does
        assert "POST /v1/completions" not in server.state.calls
        code, _, err = _run(capsys, "wake", env)
        assert code == 0, err
        assert "weights reloaded" in err
        calls = server.state.calls
        assert calls.index("POST /collective_rpc") > calls.index("POST /wake_up")
        assert server.state.weights_ok and "POST /v1/completions" in calls


def test_sglang_loads_the_weights_from_runtime_weights_or_its_model_path(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serve("sglang", model="/models/tiny") as server:
        env = _env(tmp_path, "sglang", server.url, {})
        assert _run(capsys, "sleep", env)[0] == 0 and _run(capsys, "wake", env)[0] == 0
        assert server.state.loaded_from == "/models/tiny"
        env = _env(tmp_path, "sglang", server.url, {"RUNTIME_WEIGHTS": "/new/step-1000"})
        assert _run(capsys, "sleep", env)[0] == 0 and _run(capsys, "wake", env)[0] == 0
        assert server.state.loaded_from == "/new/step-1000"
        env = _env(tmp_path, "sglang", server.url, {"RUNTIME_WEIGHTS": "/wrong"})
        assert _run(capsys, "sleep", env)[0] == 0
        code, _, err = _run(capsys, "wake", env)
        assert code == 1
        assert "update_weights_from_disk (/wrong) answered 400" in err and "Failed to get weights iterator" in err


@pytest.mark.parametrize(("name", "extra", "action", "says"), [
    ("llamacpp", {"RUNTIME_MODEL": "other"}, "sleep", "/models/unload (other) answered 400: "),
    ("llamacpp", {"RUNTIME_MODEL": "other"}, "wake", "model is not found"),
    ("triton", {"RUNTIME_MODEL": "other"}, "wake", "failed to poll from model repository"),
    ("ollama", {"RUNTIME_MODEL": "other"}, "sleep", "answered 404: {\"error\": \"model 'other' not found\"}"),
])
def test_a_failure_names_the_servers_answer(name: str, extra: dict[str, str], action: str, says: str,
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serve(name) as server:
        code, _, err = _run(capsys, action, _env(tmp_path, name, server.url, extra))
    assert code == 1
    assert f"chat: {name} at {server.url}: {action} failed: " in err and says in err, err
    assert len(err.strip().splitlines()) == 1


def test_a_server_that_does_not_answer_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serve("vllm") as server:
        url = server.url
    code, _, err = _run(capsys, "sleep", _env(tmp_path, "vllm", url, {}))
    assert code == 1 and f"POST {url}/sleep?level=1: " in err and "refused" in err


@pytest.mark.parametrize(("settings", "line"), [
    ({"RUNTIME": "vlm"}, "MAINT_SERVICE_chat_RUNTIME: 'vlm' is not one of command, comfyui, llamacpp, ollama, "
                         "sglang, triton, vllm"),
    ({"RUNTIME": "vllm"}, "MAINT_SERVICE_chat_RUNTIME_URL is not set (needed by RUNTIME=vllm)"),
    ({"RUNTIME": "vllm", "RUNTIME_URL": "localhost:8000"},
     "MAINT_SERVICE_chat_RUNTIME_URL: 'localhost:8000' is not an http:// or https:// URL"),
    ({"RUNTIME": "vllm", "RUNTIME_URL": "http://x", "RUNTIME_LEVEL": "3"},
     "MAINT_SERVICE_chat_RUNTIME_LEVEL: 3 is not a level of the vllm preset (1, 2)"),
    ({"RUNTIME": "vllm", "RUNTIME_URL": "http://x", "RUNTIME_TIMEOUT": "soon"},
     "MAINT_SERVICE_chat_RUNTIME_TIMEOUT: Input should be a valid number"),
    ({"RUNTIME": "llamacpp", "RUNTIME_URL": "http://x"},
     "MAINT_SERVICE_chat_RUNTIME_MODEL: the llamacpp preset needs the model's name"),
    ({"RUNTIME": "ollama", "RUNTIME_URL": "http://x", "RUNTIME_MODEL": "m", "RUNTIME_WEIGHTS": "/w"},
     "MAINT_SERVICE_chat_RUNTIME_WEIGHTS: the ollama preset cannot load weights from a path"),
    ({"RUNTIME_URL": "http://x"}, "MAINT_SERVICE_chat_RUNTIME_URL: needs MAINT_SERVICE_chat_RUNTIME set to a preset"),
    ({"RUNTIME": "vllm", "RUNTIME_URL": "http://x", "STOP": "systemctl stop vllm"},
     "MAINT_SERVICE_chat_STOP: not used with RUNTIME=vllm (the preset sleeps and wakes the server); remove it"),
    ({"RUNTIME": "vllm", "RUNTIME_URL": "http://x", "LISTEN": "127.0.0.1:8000", "_SWITCH": "port"},
     "MAINT_SERVICE_chat_RUNTIME: a sleeping vllm server keeps its port, so MAINT_SWITCH=port cannot hand it"),
])
def test_a_bad_runtime_setting_stops_with_one_line_naming_it(settings: dict[str, str], line: str,
                                                             tmp_path: Path) -> None:
    env = tmp_path / "bad.env"
    lines = ["MAINT_SERVICES=chat"] + [
        f"MAINT{key}={shlex.quote(value)}" if key.startswith("_") else f"MAINT_SERVICE_chat_{key}={shlex.quote(value)}"
        for key, value in settings.items()]
    env.write_text("\n".join(lines) + "\n")
    done = subprocess.run([_shim_cmd(), "env", "--env-file", str(env)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(f"maintenance-shim: {line}"), done.stderr


def test_a_new_preset_is_one_file(tmp_path: Path) -> None:
    """A copy of the package plus one file, runtimes/throwaway.py: the settings take RUNTIME=throwaway and
    `maintenance-shim runtime` runs it; nothing else was touched."""
    package = tmp_path / "maintenance_shim"
    shutil.copytree(ROOT / "app", package, ignore=shutil.ignore_patterns("__pycache__"))
    marks = tmp_path / "marks"
    (package / "runtimes" / "throwaway.py").write_text(f'''
from pathlib import Path

from ._base import Runtime, Server


class Throwaway(Runtime):
    name = "throwaway"
    summary = "writes a file per call"

    def sleep(self, server: Server) -> str:
        Path({str(marks)!r}).open("a").write("sleep " + server.options.url + "\\n")
        return "slept"

    def wake(self, server: Server) -> str:
        Path({str(marks)!r}).open("a").write("wake\\n")
        return "woke"

    def ready(self, server: Server) -> str | None:
        return None


PRESET = Throwaway()
''')
    env = tmp_path / "a.env"
    env.write_text("MAINT_SERVICES=chat\nMAINT_SERVICE_chat_RUNTIME=throwaway\n"
                   "MAINT_SERVICE_chat_RUNTIME_URL=http://127.0.0.1:9\n")
    run_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}
    for action in ("sleep", "wake", "ready"):
        done = subprocess.run([sys.executable, "-m", "maintenance_shim", "runtime", action, "--service", "chat",
                               "--env-file", str(env)], cwd=tmp_path, env=run_env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
    assert marks.read_text() == "sleep http://127.0.0.1:9\nwake\n"
    env.write_text("MAINT_SERVICES=chat\nMAINT_SERVICE_chat_RUNTIME=nope\n")
    done = subprocess.run([sys.executable, "-m", "maintenance_shim", "env", "--env-file", str(env)], cwd=tmp_path,
                          env=run_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "throwaway, triton, vllm" in done.stderr


# ---- the GPU check (app/gpu.py) --------------------------------------------------------------------------

# nvidia-smi's CSV (noheader, nounits), in the format of its --query-gpu / --query-compute-apps help
BUSY_GPUS = "0, GPU-1a2b, 15876, 24576\n1, GPU-3c4d, 312, 24576\n"
FREE_GPUS = "0, GPU-1a2b, 402, 24576\n1, GPU-3c4d, 312, 24576\n"
APPS = "GPU-1a2b, 4242, /usr/bin/python3 -m vllm.entrypoints.openai.api_server, 15360\nGPU-1a2b, 77, Xorg, [N/A]\n"


def _replay(gpus: list[str]) -> gpu.Run:
    answers = iter(gpus)
    last = [gpus[-1]]

    def run(args: list[str]) -> str:
        if args == gpu.APPS_QUERY:
            return APPS
        last[0] = next(answers, last[0])
        return last[0]

    return run


def test_the_gpu_check_waits_until_the_memory_is_free(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu.wait_free(30, 1024, _replay([BUSY_GPUS, BUSY_GPUS, FREE_GPUS]), every=0.01) == 0
    err = capsys.readouterr().err
    assert "the GPU is free (GPU 0 402 MiB, GPU 1 312 MiB in use; at most 1024 MiB counts as free)" in err


def test_the_gpu_check_names_what_still_holds_memory(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu.wait_free(0.05, 1024, _replay([BUSY_GPUS]), every=0.01) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("maintenance-shim: the GPU is not free after 0.05s: GPU 0: 15876 of 24576 MiB in use "
                   "(PID 4242 /usr/bin/python3 -m vllm.entrypoints.openai.api_server 15360 MiB; PID 77 Xorg ? MiB)")


def test_without_nvidia_smi_it_says_it_cannot_check() -> None:
    assert shutil.which("nvidia-smi") is None, "this machine has nvidia-smi: the test is for one without"
    done = subprocess.run([_shim_cmd(), "gpu", "--wait", "5"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stderr == ("maintenance-shim: cannot check that the GPU is free: no nvidia-smi here "
                           "(no NVIDIA GPU or driver)\n")


# ---- with_maintenance.sh with a preset, behind a real nginx ---------------------------------------------


@pytest.fixture
def vllm_standin() -> Iterator[Running]:
    with serve("vllm") as server:
        yield server


def test_with_maintenance_sleeps_the_service_and_wakes_it_behind_nginx(vllm_standin: Running,
                                                                       tmp_path: Path) -> None:
    server = vllm_standin
    web = site(tmp_path, server.port, {"RUNTIME": "vllm", "RUNTIME_URL": server.url})
    seen = tmp_path / "seen-503"
    asleep = tmp_path / "asleep-during-cmd"
    # CMD, the "training": waits until the users got the shim's 503, records whether vLLM was asleep.
    train = (f"import pathlib, time, urllib.request\n"
             f"deadline = time.monotonic() + 60\n"
             f"while not pathlib.Path({str(seen)!r}).exists() and time.monotonic() < deadline: time.sleep(0.05)\n"
             f"body = urllib.request.urlopen({server.url + '/is_sleeping'!r}).read().decode()\n"
             f"pathlib.Path({str(asleep)!r}).write_text(body)\n")
    try:
        with Users(web.nginx.port, "tiny", hang=20) as users:
            users.wait_for("server-200")

            def mark() -> None:
                users.wait_for("shim-503", 3, timeout=120)
                seen.touch()

            marker = threading.Thread(target=mark, daemon=True)
            marker.start()
            done = web.run("with_maintenance.sh", "--", sys.executable, "-c", train, timeout=180)
            marker.join(1)
            users.wait_for("server-200", users.counts()["server-200"] + 2)
    finally:
        web.stop()
    assert done.returncode == 0, done.stderr
    assert asleep.read_text() == '{"is_sleeping": true}'
    order = users.order()  # by the time each answer came (at a reload, nginx's old and new workers overlap)
    assert order[0] == order[-1] == "server-200" and "shim-503" in order, users.counts()
    assert server.state.held == 0, "a user's completion reached vLLM while it slept"
    assert not [kind for kind in users.counts() if kind.startswith(("BAD", "HUNG"))], users.counts()
    assert "cannot check that the GPU is free: no nvidia-smi here" in done.stderr
    assert "chat" not in done.stderr and "studio: vllm at " in done.stderr and "ready " in done.stderr
    calls = server.state.calls
    assert calls.index("POST /sleep") < calls.index("POST /wake_up")


def test_a_failed_sleep_rolls_back_and_a_failed_wake_keeps_the_shim(vllm_standin: Running, tmp_path: Path) -> None:
    server = vllm_standin
    web = site(tmp_path, server.port, {"RUNTIME": "vllm", "RUNTIME_URL": server.url})
    web.write_env(MAINT_HEALTH_TIMEOUT="10", MAINT_START_TIMEOUT="20")
    try:
        with Users(web.nginx.port, "tiny", hang=20) as users:
            server.state.fail = {"/sleep"}
            done = web.run("start_maintenance.sh", timeout=120)
            assert done.returncode == 1
            assert f"POST {server.url}/sleep?level=1 answered 500: " in done.stderr, done.stderr
            assert "rolled back: the live services are serving" in done.stderr, done.stderr
            users.wait_for("server-200", users.counts()["server-200"] + 2)

            server.state.fail = set()
            assert web.run("start_maintenance.sh", timeout=120).returncode == 0
            users.wait_for("shim-503", users.counts()["shim-503"] + 2)
            server.state.fail = {"/wake_up"}
            done = web.run("stop_maintenance.sh", timeout=120)
            assert done.returncode == 1
            assert f"wake failed: POST {server.url}/wake_up answered 500: " in done.stderr, done.stderr
            assert "the shim stays in place" in done.stderr, done.stderr
            marks = users.counts()["shim-503"]
            users.wait_for("shim-503", marks + 2)

            server.state.fail = set()
            done = web.run("stop_maintenance.sh", timeout=120)
            assert done.returncode == 0, done.stderr
            users.wait_for("server-200", users.counts()["server-200"] + 2)
    finally:
        web.stop()
    assert not [kind for kind in users.counts() if kind.startswith(("BAD", "HUNG"))], users.counts()
    assert server.state.held == 0
