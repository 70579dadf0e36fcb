"""The push endpoint and the CLI's progress/status commands, against a real shim."""

from __future__ import annotations

import http.client
import json
import socket
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support import Shim, ShimFactory, clean_env, free_port, request

TOKEN = "s3cret-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


PUSH_ENV = {"MAINT_ADMIN_TOKEN": TOKEN, "MAINT_LOG_LEVEL": "debug"}


@pytest.fixture(scope="module")
def push_shim(module_shim_launcher: ShimFactory) -> Shim:
    """A shim that accepts pushed progress, logging at debug level so a leak would show."""
    return module_shim_launcher(env=PUSH_ENV)


def status_of(shim: Shim) -> dict[str, object]:
    result: dict[str, object] = json.loads(request(shim, "GET", "/_maintenance/status")[2])
    return result


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong-token-0123456789abcdef"}, 401),
        ({"Authorization": f"Basic {TOKEN}"}, 401),
        ({"Authorization": f"Bearer {TOKEN}x"}, 401),
        ({"Authorization": "Bearer"}, 401),
    ],
)
def test_push_refuses_missing_or_wrong_token(push_shim: Shim, headers: dict[str, str], expected: int) -> None:
    status, response_headers, _ = request(push_shim.admin_url, "PUT", "/_maintenance/progress", headers, b'{"step": 1}')
    assert status == expected
    assert response_headers["www-authenticate"] == "Bearer"
    assert status_of(push_shim)["progress"] is None


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"{}", b'{"step": -1}', b'{"step": 5, "total": 3}', b'{"step": "x"}', b'{"step": 1.5}',
     b'{"step": 1, "total": 0}', b"[1, 2]", b'{"step": NaN}'],
)
def test_push_rejects_bad_bodies_with_422(push_shim: Shim, body: bytes) -> None:
    status, _, data = request(push_shim.admin_url, "PUT", "/_maintenance/progress", AUTH, body)
    assert status == 422, data
    assert "detail" in json.loads(data)


def test_push_updates_state_and_never_logs_the_token(start_shim: ShimFactory) -> None:
    push_shim = start_shim(env=PUSH_ENV)
    for step in (100, 200):
        status, _, _ = request(
            push_shim.admin_url, "PUT", "/_maintenance/progress", AUTH,
            json.dumps({"step": step, "total": 3000}).encode(),
        )
        assert status == 204
    data = status_of(push_shim)
    progress = data["progress"]
    assert isinstance(progress, dict)
    assert (progress["step"], progress["total"]) == (200, 3000)
    assert progress["fraction"] == pytest.approx(200 / 3000, abs=1e-4)
    guess = {"Authorization": "Bearer leaked-guess-0123456789"}
    request(push_shim.admin_url, "PUT", "/_maintenance/progress", guess, b"{}")
    push_shim.stop()
    log = push_shim.output()
    assert TOKEN not in log and "leaked-guess" not in log


def test_push_is_404_without_a_token(start_shim: ShimFactory) -> None:
    shim = start_shim()
    status, _, _ = request(shim.admin_url, "PUT", "/_maintenance/progress", AUTH, b'{"step": 1, "total": 2}')
    assert status == 404


def test_cli_progress_and_status(start_shim: ShimFactory, tmp_path: Path) -> None:
    push_shim = start_shim(env=PUSH_ENV)
    env = clean_env({"MAINT_ADMIN_TOKEN": TOKEN})
    pushed = subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "progress", "--step", "750", "--total", "3000",
         "--url", push_shim.admin_url],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=20, check=False,
    )
    assert pushed.returncode == 0, pushed.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "status", "--url", push_shim.url],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=20, check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "step 750 of 3000 (25.0%)" in shown.stdout
    assert "state:" in shown.stdout and "retry-after:" in shown.stdout
    wrong = subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "progress", "--step", "1", "--url", push_shim.admin_url],
        env=clean_env({"MAINT_ADMIN_TOKEN": "another-token-0123456789"}), cwd=tmp_path,
        capture_output=True, text=True, timeout=20, check=False,
    )
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr
    assert "another-token" not in wrong.stderr


@pytest.mark.e2e
def test_cli_progress_file_is_written_atomically(tmp_path: Path) -> None:
    target = tmp_path / "progress.json"
    result = subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "progress", "--step", "12", "--total", "40", "--file", str(target)],
        env=clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=20, check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(target.read_text())
    assert (data["step"], data["total"]) == (12, 40)
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]


@pytest.mark.e2e
def test_cli_status_without_a_shim_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "status", "--url", "http://127.0.0.1:9"],
        env=clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=20, check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("maintenance-shim: no shim answering at") and "Traceback" not in result.stderr


@pytest.mark.e2e
def test_serve_is_the_default_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "--listen", "127.0.0.1:99999"],
        env=clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=20, check=False,
    )
    assert result.returncode == 2 and "MAINT_LISTEN" in result.stderr  # parsed as `serve --listen ...`


# ---- the admin listener: writes, docs (and metrics) only there -------------------------------------


def test_public_listeners_answer_404_for_the_admin_paths(push_shim: Shim) -> None:
    for method, path in (("PUT", "/_maintenance/progress"), ("GET", "/_maintenance/docs"),
                         ("GET", "/_maintenance/openapi.json"), ("GET", "/_maintenance/metrics")):
        status, headers, _ = request(push_shim, method, path, AUTH, b'{"step": 1}' if method == "PUT" else None)
        assert status == 404 and headers["cache-control"] == "no-store", (method, path)
    assert status_of(push_shim)["progress"] is None  # nothing got through
    for path in ("/_maintenance/health", "/_maintenance/status"):
        assert request(push_shim, "GET", path)[0] == 200


def test_the_admin_listener_serves_no_service(push_shim: Shim) -> None:
    status, headers, _ = request(push_shim.admin_url, "GET", "/")
    assert status == 404 and headers["cache-control"] == "no-store"
    assert request(push_shim.admin_url, "GET", "/_maintenance/health")[0] == 200
    assert request(push_shim.admin_url, "GET", "/_maintenance/docs")[0] == 200


def test_guessing_the_token_is_rate_limited(start_shim: ShimFactory) -> None:
    shim = start_shim(env=PUSH_ENV)
    wrong = {"Authorization": "Bearer wrong-token-0123456789abcdef", "Content-Type": "application/json"}
    statuses = [request(shim.admin_url, "PUT", "/_maintenance/progress", wrong, b'{"step": 1}')[0] for _ in range(30)]
    assert statuses[:10] == [401] * 10
    assert set(statuses[10:]) == {429}
    status, headers, _ = request(shim.admin_url, "PUT", "/_maintenance/progress", AUTH, b'{"step": 1}')
    assert status == 429 and int(headers["retry-after"]) >= 1  # the limit is per client, right token or not
    time.sleep(1.1)  # sleep-ok: the limit's one-second window must pass; a busy machine only lengthens the wait
    assert request(shim.admin_url, "PUT", "/_maintenance/progress", AUTH, b'{"step": 1}')[0] == 204


def _push_from(shim: Shim, source: str, headers: dict[str, str]) -> int:
    """One push from the loopback address `source` (127.0.0.x), a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", shim.admin_port, timeout=10, source_address=(source, 0))
    try:
        conn.request("PUT", "/_maintenance/progress", body=b'{"step": 1}', headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_wrong_tokens_from_other_addresses_never_lock_the_trainer_out(start_shim: ShimFactory) -> None:
    """20 other loopback addresses guess the token without pause (far past the 100 failures the shared bucket
    allows); the trainer's right-token pushes from its own address all succeed meanwhile."""
    shim = start_shim(env=PUSH_ENV)
    wrong = {"Authorization": "Bearer wrong-token-0123456789abcdef", "Content-Type": "application/json"}
    stop = threading.Event()
    answers: Counter[int] = Counter()
    lock = threading.Lock()

    def guess(source: str) -> None:
        while not stop.is_set():
            status = _push_from(shim, source, wrong)
            with lock:
                answers[status] += 1

    guessers = [threading.Thread(target=guess, args=(f"127.0.0.{n}",), daemon=True) for n in range(2, 22)]
    for thread in guessers:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while sum(answers.values()) < 300 or not answers[429]:  # every bucket the guessers reach is empty
            assert time.monotonic() < deadline, answers
            time.sleep(0.05)
        trainer = [_push_from(shim, "127.0.0.1", AUTH) for _ in range(13)]
        late = dict(answers)
    finally:
        stop.set()
        for thread in guessers:
            thread.join(15)
    assert trainer == [204] * 13, (trainer, late)
    assert set(answers) == {401, 429}, answers
    assert "wrong-token" not in shim.output() and TOKEN not in shim.output()


def test_admin_listener_on_a_unix_socket(start_shim: ShimFactory, tmp_path: Path) -> None:
    path = tmp_path / "admin.sock"
    shim = start_shim(env={**PUSH_ENV, "MAINT_ADMIN_LISTEN": f"unix:{path}"})
    assert stat.S_ISSOCK(path.stat().st_mode) and stat.S_IMODE(path.stat().st_mode) == 0o660
    pushed = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", str(path), "-X", "PUT",
         "-H", f"Authorization: Bearer {TOKEN}", "-d", '{"step": 7, "total": 70}', "http://admin/_maintenance/progress"],
        capture_output=True, text=True, timeout=10, check=True,
    )
    assert pushed.stdout == "204"
    progress = status_of(shim)["progress"]
    assert isinstance(progress, dict) and progress["step"] == 7
    assert request(shim, "PUT", "/_maintenance/progress", AUTH, b'{"step": 8}')[0] == 404
    shim.stop()
    assert not path.exists()


def test_admin_listener_off(start_shim: ShimFactory) -> None:
    shim = start_shim(env={**PUSH_ENV, "MAINT_ADMIN_LISTEN": "off"})
    assert request(shim, "PUT", "/_maintenance/progress", AUTH, b'{"step": 1}')[0] == 404
    assert "no admin listener (MAINT_ADMIN_LISTEN=off)" in shim.output()


@pytest.mark.parametrize(
    ("value", "words"),
    [("127.0.0.1:0", "port must be 1-65535"), ("unix:relative.sock", "must be absolute"),
     ("127.0.0.1:9=studio", "serves no service"), ("nonsense", "is not HOST:PORT")],
)
@pytest.mark.e2e
def test_bad_admin_listen_stops_start_up(tmp_path: Path, value: str, words: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "check"], env=clean_env({"MAINT_ADMIN_LISTEN": value}),
        cwd=tmp_path, capture_output=True, text=True, timeout=20, check=False,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "MAINT_ADMIN_LISTEN" in result.stderr and words in result.stderr


@pytest.mark.e2e
def test_admin_port_must_differ_from_the_public_ones(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "serve", "--listen", "127.0.0.1:8200=studio"],
        env=clean_env({"MAINT_ADMIN_LISTEN": "127.0.0.1:8200"}), cwd=tmp_path, capture_output=True, text=True,
        timeout=20, check=False,
    )
    assert result.returncode == 2 and "MAINT_ADMIN_LISTEN: port 8200 is also a public listener" in result.stderr


@pytest.mark.e2e
def test_a_taken_admin_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "maintenance_shim", "serve", "--listen", f"127.0.0.1:{free_port()}=studio"],
            env=clean_env({"MAINT_ADMIN_LISTEN": f"127.0.0.1:{port}"}), cwd=tmp_path, capture_output=True,
            text=True, timeout=20, check=False,
        )
    assert result.returncode == 1
    assert f"MAINT_ADMIN_LISTEN: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_two_shims_with_their_own_state_dirs_start_side_by_side(start_shim: ShimFactory, tmp_path: Path) -> None:
    """No admin setting at all: each shim's admin listener is admin.sock in its own state dir (issue 22); the
    CLI and the trainer callbacks reach it there; a third shim on an occupied state dir still starts."""
    from maintenance_shim.integrations._core import PushReporter

    dirs = [tmp_path / "a", tmp_path / "b"]
    first, second = (start_shim(env={**PUSH_ENV, "MAINT_ADMIN_LISTEN": "", "MAINT_STATE_DIR": str(d)}) for d in dirs)
    for directory in dirs:
        sock = directory / "admin.sock"
        assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(directory.stat().st_mode) == 0o700
    pushed = subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "progress", "--step", "5", "--total", "50"],
        env=clean_env({"MAINT_ADMIN_TOKEN": TOKEN, "MAINT_STATE_DIR": str(dirs[0])}), capture_output=True,
        text=True, timeout=30, check=False,
    )
    assert pushed.returncode == 0, pushed.stderr
    reporter = PushReporter(f"unix:{dirs[1] / 'admin.sock'}", TOKEN, total=90)
    reporter.update(9)
    reporter.close()
    assert reporter.sent == 1 and reporter.failures == 0
    first_progress, second_progress = status_of(first)["progress"], status_of(second)["progress"]
    assert isinstance(first_progress, dict) and first_progress["step"] == 5
    assert isinstance(second_progress, dict) and second_progress["step"] == 9
    third = start_shim(env={**PUSH_ENV, "MAINT_ADMIN_LISTEN": "", "MAINT_STATE_DIR": str(dirs[0])})
    assert third.proc.poll() is None and "no admin listener" in third.output()
    assert "another process is listening there" in third.output()
