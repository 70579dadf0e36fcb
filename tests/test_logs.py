"""MAINT_LOG_FORMAT=json (the shim's lines, uvicorn's, the scripts'), and the sampled access log."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maintenance_shim.logsetup import JsonFormatter
from tests.support import ShimFactory, clean_env

ROOT = Path(__file__).resolve().parent.parent
SHIM_CMD = str(Path(sys.executable).with_name("maintenance-shim"))


def test_json_formatter_keeps_extra_fields_and_exceptions() -> None:
    record = logging.LogRecord("maintenance_shim.x", logging.WARNING, __file__, 1, "step %d of %s", (3, "é"), None)
    record.request = {"path": "/a"}
    data = json.loads(JsonFormatter().format(record))
    assert data["level"] == "warning" and data["logger"] == "maintenance_shim.x"
    assert data["message"] == "step 3 of é" and data["request"] == {"path": "/a"}
    assert data["t"].endswith("Z")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    data = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in data["exc"]
    assert "\n" not in JsonFormatter().format(record)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return error.code


def test_every_shim_line_is_json_with_a_sampled_access_log(start_shim: ShimFactory, tmp_path: Path) -> None:
    progress = tmp_path / "progress.json"
    progress.write_text("{not json")  # a source warning, logged once
    shim = start_shim(services=["studio"], env={
        "MAINT_LOG_FORMAT": "json", "MAINT_ACCESS_LOG": "on", "MAINT_ACCESS_LOG_SAMPLE": "0.25",
        "MAINT_PROGRESS_FILE": str(progress), "MAINT_HEALTH_PATHS": "/healthz",
    })
    for index in range(20):
        assert _get(f"{shim.url}/page/{index}?token=secret") == 503
    assert _get(f"{shim.url}/healthz") == 200
    time.sleep(1.0)
    shim.stop()
    lines = [line for line in shim.output().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    messages = [record["message"] for record in records]
    assert any(m.startswith("answering for studio") for m in messages), messages
    assert any(m.startswith("Started server process") for m in messages), messages  # uvicorn's too
    assert any("not JSON" in m for m in messages if "progress" in m), messages
    access = [record["request"] for record in records if record["logger"] == "maintenance_shim.access"]
    # One in four of the 21 answers, deterministically: the 1st, 5th, 9th, ...
    assert len(access) == 6, access
    assert access[0] == {"method": "GET", "path": "/page/0", "status": 503, "service": "studio", "format": "html",
                         "locale": "en", "client": "127.0.0.1", "sample_every": 4}
    assert all("secret" not in line for line in lines)  # the query string is never logged
    assert access[-1]["path"] == "/healthz" and access[-1]["status"] == 200


def test_the_access_log_is_off_by_default(start_shim: ShimFactory) -> None:
    shim = start_shim(services=["studio"])
    for _ in range(5):
        assert _get(f"{shim.url}/x") == 503
    shim.stop()
    assert "/x" not in shim.output()


@pytest.mark.e2e
def test_script_log_lines_are_json_objects(tmp_path: Path) -> None:
    message = 'nginx said "no"\tC:\\path\nsecond line \x01'
    code = f'. {ROOT}/scripts/lib.sh; log "$1"; warn "w"; die "gone"'
    # In a zone far from UTC: the scripts' times are UTC with milliseconds and Z, as the shim's own lines.
    done = subprocess.run(["bash", "-c", code, "start_maintenance.sh", message], capture_output=True, text=True,
                          env=clean_env({"MAINT_LOG_FORMAT": "json", "TZ": "Asia/Tokyo"}), timeout=10)
    assert done.returncode == 1
    records = [json.loads(line) for line in done.stderr.splitlines()]
    for record in records:
        stamp = datetime.strptime(record["t"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["t"]), record["t"]
        assert abs((datetime.now(UTC) - stamp).total_seconds()) < 600, record["t"]
    assert [(r["level"], r["message"]) for r in records] == [
        ("info", message.replace("\x01", " ")), ("warning", "w"), ("error", "gone")
    ]
    done = subprocess.run(["bash", "-c", code, "x", "plain"], capture_output=True, text=True, env=clean_env(),
                          timeout=10)
    assert done.stderr.splitlines()[0].endswith(": plain")


@pytest.mark.e2e
def test_bad_observability_settings_exit_2_with_one_line(tmp_path: Path) -> None:
    for name, value in (("MAINT_LOG_FORMAT", "xml"), ("MAINT_METRICS", "maybe"), ("MAINT_ACCESS_LOG_SAMPLE", "0"),
                        ("MAINT_ACCESS_LOG", "sometimes")):
        done = subprocess.run([SHIM_CMD, "check"], env=clean_env({name: value}), cwd=tmp_path, capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 2, (name, done.stdout)
        (line,) = done.stderr.splitlines()
        assert line.startswith(f"maintenance-shim: {name}: "), line


def test_the_access_log_is_written_whatever_the_log_level(caplog: pytest.LogCaptureFixture) -> None:
    from maintenance_shim.traffic import access_log

    parent = logging.getLogger("maintenance_shim")
    level = parent.level
    parent.setLevel(logging.WARNING)  # MAINT_LOG_LEVEL=warning
    try:
        assert access_log(False, 0.5) is None
        observe = access_log(True, 0.5)
        assert observe is not None
        scope = {"client": ("198.51.100.7", 1), "server": ("127.0.0.1", 80), "headers": [], "method": "GET",
                 "path": "/a"}
        with caplog.at_level(logging.INFO, logger="maintenance_shim.access"):
            for _ in range(4):
                observe(("studio", "json", "en", 503), scope)
        assert [r.getMessage() for r in caplog.records] == ["GET /a 503 studio json en 198.51.100.7"] * 2
    finally:
        parent.setLevel(level)
        logging.getLogger("maintenance_shim.access").setLevel(logging.NOTSET)
