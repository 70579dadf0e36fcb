"""The built wheel installs as `maintenance_shim` beside a user's own FastAPI service whose package is `app`.

Both run in one fresh venv; uninstalling either leaves the other whole. Needs PyPI (or pip's cache) for
the dependencies, like the test command itself.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import ROOT, build_wheel, clean_env, start_server, wait_http

USER_APP = """
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def hello() -> dict[str, str]:
    return {"hello": "from the user's own app"}


def create_app() -> FastAPI:
    return app
"""


def _run(
    args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _built(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.args} failed:\n{result.stdout}\n{result.stderr}"


def side_by_side(*steps: Callable[[], object]) -> None:
    """Run independent steps at the same time (threads: each waits on its own process); re-raise the first failure."""
    with ThreadPoolExecutor(max_workers=len(steps)) as pool:
        for future in [pool.submit(step) for step in steps]:
            future.result()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    """(venv, shim wheel, user wheel): a fresh venv and the two wheels, built here."""
    base = tmp_path_factory.mktemp("install")
    wheels = base / "wheels"
    user = base / "user-service"
    (user / "app").mkdir(parents=True)
    (user / "app" / "__init__.py").write_text("")
    (user / "app" / "main.py").write_text(USER_APP)
    (user / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=77"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "user-service"
        version = "1.0"
        dependencies = ["fastapi", "uvicorn"]

        [tool.setuptools]
        packages = ["app"]
    """))
    env_dir = base / "venv"
    # Three independent steps, side by side: the two wheels and the venv (each checked by _run).
    side_by_side(
        lambda: _built(build_wheel(ROOT, wheels)),
        lambda: _built(build_wheel(user, wheels)),
        lambda: _run([sys.executable, "-m", "venv", str(env_dir)]),
    )
    shim_wheel = next(wheels.glob("maintenance_shim-*.whl"))
    user_wheel = next(wheels.glob("user_service-*.whl"))
    _run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(shim_wheel), str(user_wheel)])
    yield env_dir, shim_wheel, user_wheel


def _shim_answers(env_dir: Path, cwd: Path) -> None:
    server = start_server(
        lambda ports: [str(env_dir / "bin" / "maintenance-shim"), "serve", "--listen", f"127.0.0.1:{ports[0]}=studio"],
        cwd / "shim.log", what="the installed shim", cwd=cwd, env=clean_env())
    port = server.port
    try:
        wait_http(f"http://127.0.0.1:{port}/_maintenance/health", timeout=90)  # generous: a busy machine
        assert _status(f"http://127.0.0.1:{port}/anything") == 503
    finally:
        server.stop()
    check = _run([str(env_dir / "bin" / "python"), "-m", "maintenance_shim", "check"], cwd=cwd, env=clean_env())
    assert "configuration OK" in check.stdout


def _user_app_answers(env_dir: Path, cwd: Path) -> None:
    server = start_server(
        lambda ports: [str(env_dir / "bin" / "python"), "-m", "uvicorn", "app.main:app", "--port", str(ports[0])],
        cwd / "user.log", what="the user's service", cwd=cwd, env=clean_env())
    port = server.port
    try:
        wait_http(f"http://127.0.0.1:{port}/", timeout=90)
        assert _status(f"http://127.0.0.1:{port}/") == 200
    finally:
        server.stop()


def test_both_run_side_by_side(venv: tuple[Path, Path, Path], tmp_path: Path) -> None:
    env_dir, _, _ = venv
    script = "import importlib.metadata as m; print(m.distribution('maintenance-shim').read_text('top_level.txt'))"
    top_level = _run([str(env_dir / "bin" / "python"), "-c", script])
    assert top_level.stdout.split() == ["maintenance_shim"]
    # Two servers, each on its own port: at the same time.
    side_by_side(lambda: _shim_answers(env_dir, tmp_path), lambda: _user_app_answers(env_dir, tmp_path))


def test_uninstalling_one_leaves_the_other(venv: tuple[Path, Path, Path], tmp_path: Path) -> None:
    env_dir, shim_wheel, user_wheel = venv
    pip = [str(env_dir / "bin" / "python"), "-m", "pip"]
    _run([*pip, "uninstall", "-y", "-q", "user-service"])
    _shim_answers(env_dir, tmp_path)
    _run([*pip, "install", "-q", "--no-deps", str(user_wheel)])
    _run([*pip, "uninstall", "-y", "-q", "maintenance-shim"])
    _user_app_answers(env_dir, tmp_path)
    _run([*pip, "install", "-q", "--no-deps", str(shim_wheel)])
    _shim_answers(env_dir, tmp_path)
