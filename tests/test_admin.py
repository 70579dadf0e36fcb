"""The push endpoint and the CLI's progress/status commands, against a real shim."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Shim, ShimFactory, clean_env
from tests.test_http import request

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
    status, response_headers, _ = request(push_shim, "PUT", "/_maintenance/progress", headers, b'{"step": 1}')
    assert status == expected
    assert response_headers["www-authenticate"] == "Bearer"
    assert status_of(push_shim)["progress"] is None


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"{}", b'{"step": -1}', b'{"step": 5, "total": 3}', b'{"step": "x"}', b'{"step": 1.5}',
     b'{"step": 1, "total": 0}', b"[1, 2]", b'{"step": NaN}'],
)
def test_push_rejects_bad_bodies_with_422(push_shim: Shim, body: bytes) -> None:
    status, _, data = request(push_shim, "PUT", "/_maintenance/progress", AUTH, body)
    assert status == 422, data
    assert "detail" in json.loads(data)


def test_push_updates_state_and_never_logs_the_token(start_shim: ShimFactory) -> None:
    push_shim = start_shim(env=PUSH_ENV)
    for step in (100, 200):
        status, _, _ = request(
            push_shim, "PUT", "/_maintenance/progress", AUTH, json.dumps({"step": step, "total": 3000}).encode()
        )
        assert status == 204
    data = status_of(push_shim)
    progress = data["progress"]
    assert isinstance(progress, dict)
    assert (progress["step"], progress["total"]) == (200, 3000)
    assert progress["fraction"] == pytest.approx(200 / 3000, abs=1e-4)
    request(push_shim, "PUT", "/_maintenance/progress", {"Authorization": "Bearer leaked-guess-0123456789"}, b"{}")
    push_shim.stop()
    log = push_shim.output()
    assert TOKEN not in log and "leaked-guess" not in log


def test_push_is_404_without_a_token(start_shim: ShimFactory) -> None:
    shim = start_shim()
    status, _, _ = request(shim, "PUT", "/_maintenance/progress", AUTH, b'{"step": 1, "total": 2}')
    assert status == 404


def test_cli_progress_and_status(start_shim: ShimFactory, tmp_path: Path) -> None:
    push_shim = start_shim(env=PUSH_ENV)
    env = clean_env({"MAINT_ADMIN_TOKEN": TOKEN})
    pushed = subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "progress", "--step", "750", "--total", "3000",
         "--url", push_shim.url],
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
        [sys.executable, "-m", "maintenance_shim", "progress", "--step", "1", "--url", push_shim.url],
        env=clean_env({"MAINT_ADMIN_TOKEN": "another-token-0123456789"}), cwd=tmp_path,
        capture_output=True, text=True, timeout=20, check=False,
    )
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr
    assert "another-token" not in wrong.stderr


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


def test_cli_status_without_a_shim_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "status", "--url", "http://127.0.0.1:9"],
        env=clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=20, check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("maintenance-shim: no shim answering at") and "Traceback" not in result.stderr


def test_serve_is_the_default_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "--listen", "127.0.0.1:99999"],
        env=clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=20, check=False,
    )
    assert result.returncode == 2 and "MAINT_LISTEN" in result.stderr  # parsed as `serve --listen ...`
