"""Settings that gave a traceback, a hang or a silent misreading: each stops start-up with exit 2 and one
line naming the setting (issue 28, item 11). Real `maintenance-shim serve`, `check` and `env --shell`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from maintenance_shim.settings.shim import load_settings
from tests.support import clean_env, free_port

pytestmark = pytest.mark.e2e  # real `maintenance-shim` processes
SHIM_CMD = str(Path(sys.executable).with_name("maintenance-shim"))


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {"MAINT_LISTEN": f"127.0.0.1:{free_port()}", "MAINT_ADMIN_LISTEN": "off"}
    return subprocess.run([SHIM_CMD, *args], env=clean_env({**base, **env}), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _refused(done: subprocess.CompletedProcess[str], named: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"maintenance-shim: {named}"), done.stderr


def _template_dir(tmp_path: Path, page: str) -> Path:
    directory = tmp_path / "templates"
    directory.mkdir()
    (directory / "page.html").write_text(page)
    return directory


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAINT_ETA", "99999999999h"),  # was OverflowError from timedelta
        ("MAINT_ETA", "1h30"),  # was 1 h 0 min 30 s: now an error (write 1h30m)
        ("MAINT_ETA", "9999-12-31T23:59:59"),
        ("MAINT_ETA", "2001-01-01T00:00:00Z"),  # in the past
        ("MAINT_ETA", "400d"),
        ("MAINT_STALL_SECONDS", "inf"),  # was a ValueError traceback from the Estimator
        ("MAINT_STALL_SECONDS", "nan"),
        ("MAINT_RESUME_SECONDS", "nan"),
        ("MAINT_RETRY_AFTER_MAX", "1" + "0" * 30),
        ("MAINT_LANGUAGES", "en,sw"),  # started and labelled English text `sw`; `check` refused it
        ("MAINT_LOGO", "/dev/zero"),  # read to MemoryError
    ],
)
def test_a_bad_value_stops_serve_with_one_line(tmp_path: Path, name: str, value: str) -> None:
    done = _run(["serve"], {name: value, "MAINT_LOGO_ALT": "Logo"}, tmp_path)
    _refused(done, name)


@pytest.mark.parametrize("kind", ["fifo", "huge", "dev-zero"])
def test_a_logo_is_checked_by_type_and_size_before_reading(tmp_path: Path, kind: str) -> None:
    logo = tmp_path / "logo.svg"
    if kind == "fifo":
        os.mkfifo(logo)  # was a hang at start-up
    elif kind == "huge":
        with logo.open("wb") as handle:  # 1 GB, sparse: read whole before the size check, before
            handle.truncate(1 << 30)
    else:
        logo = Path("/dev/zero")
    done = _run(["serve"], {"MAINT_LOGO": str(logo), "MAINT_LOGO_ALT": "Example"}, tmp_path, timeout=30)
    _refused(done, "MAINT_LOGO")
    assert ("FIFO" in done.stderr) if kind == "fifo" else True
    assert ("1,073,741,824 bytes" in done.stderr) if kind == "huge" else True


def test_a_recursive_template_stops_start_up(tmp_path: Path) -> None:
    """Was a RecursionError with 1,513 lines of traceback."""
    templates = _template_dir(tmp_path, "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")
    _refused(_run(["serve"], {"MAINT_TEMPLATE_DIR": str(templates)}, tmp_path), "MAINT_TEMPLATE_DIR")


def test_an_endless_template_stops_start_up_within_the_limit(tmp_path: Path) -> None:
    """Was a hang: 10^10 iterations (the sandbox allows ranges of 100,000)."""
    templates = _template_dir(
        tmp_path, "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    )
    done = _run(["serve"], {"MAINT_TEMPLATE_DIR": str(templates)}, tmp_path)
    _refused(done, "MAINT_TEMPLATE_DIR")
    assert "does not render within 10 s" in done.stderr


def test_a_template_reaches_no_python(tmp_path: Path) -> None:
    """MAINT_TEMPLATE_DIR runs sandboxed: `os.popen` through a template's globals is refused at start-up."""
    marker = tmp_path / "ran"
    # The classic escape: Jinja's own `cycler` global, its module's `os`. Unsandboxed, it ran the command.
    templates = _template_dir(tmp_path, f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}")
    _refused(_run(["check"], {"MAINT_TEMPLATE_DIR": str(templates)}, tmp_path), "MAINT_TEMPLATE_DIR")
    assert not marker.exists()


@pytest.mark.parametrize("command", [["serve"], ["check"], ["env", "--shell"]])
def test_a_non_utf8_env_file_is_named_with_its_line(tmp_path: Path, command: list[str]) -> None:
    env_file = tmp_path / "maintenance.env"
    env_file.write_bytes(b"MAINT_SWITCH=port\nMAINT_MESSAGE=caf\xe9\n")  # Latin-1, not UTF-8
    done = _run([*command, "--env-file", str(env_file)], {}, tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"maintenance-shim: {env_file}:2: not UTF-8 text (byte 0xe9)" in done.stderr


def test_a_fifo_as_the_env_file_is_refused(tmp_path: Path) -> None:
    env_file = tmp_path / "maintenance.env"
    os.mkfifo(env_file)
    done = _run(["check", "--env-file", str(env_file)], {}, tmp_path, timeout=30)
    assert done.returncode == 2 and "is a FIFO, not a regular file" in done.stderr, done.stderr


def test_eta_durations_are_strict_and_bounded() -> None:
    now = datetime.now().astimezone()
    for text, seconds in (("45m", 2700), ("1h30m", 5400), ("2h", 7200), ("90s", 90), ("900", 900)):
        settings = load_settings(environ={"MAINT_ETA": text})
        deadline = settings.eta_deadline(now)
        assert deadline == now + timedelta(seconds=seconds), text
    ahead = (now + timedelta(days=2)).isoformat()
    assert load_settings(environ={"MAINT_ETA": ahead}).eta_deadline(now) is not None
