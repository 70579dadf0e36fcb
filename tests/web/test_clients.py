"""Real clients honour the Retry-After the shim sends: urllib3's Retry and curl --retry."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import urllib3
from urllib3.util.retry import Retry

from tests.support import Shim, ShimFactory

RETRY_AFTER = 2


@pytest.fixture(scope="module")
def short_shim(module_shim_launcher: ShimFactory) -> Shim:
    """A 10-minute ETA clamped to a 2 s Retry-After, so clients retry quickly."""
    return module_shim_launcher(
        services=["video:api"],
        env={"MAINT_ETA": "10m", "MAINT_RETRY_AFTER_MIN": "1", "MAINT_RETRY_AFTER_MAX": str(RETRY_AFTER)},
    )


def test_urllib3_retry_waits_retry_after(short_shim: Shim) -> None:
    retry = Retry(total=1, respect_retry_after_header=True, raise_on_status=False, backoff_factor=0)
    with urllib3.PoolManager(retries=retry) as pool:
        started = time.monotonic()
        response = pool.request("GET", f"{short_shim.url}/v1/videos")
        elapsed = time.monotonic() - started
    assert response.status == 503
    assert response.headers["Retry-After"] == str(RETRY_AFTER)
    assert response.retries is not None and len(response.retries.history) == 1
    assert RETRY_AFTER - 0.2 <= elapsed < RETRY_AFTER + 2


def test_urllib3_does_not_retry_post_by_default(short_shim: Shim) -> None:
    retry = Retry(total=1, respect_retry_after_header=True, raise_on_status=False)
    with urllib3.PoolManager(retries=retry) as pool:
        started = time.monotonic()
        response = pool.request("POST", f"{short_shim.url}/v1/videos", body=b"{}")
        elapsed = time.monotonic() - started
    assert response.status == 503
    assert elapsed < RETRY_AFTER - 0.5  # POST is not idempotent: urllib3 answers at once


def test_curl_retry_waits_retry_after(short_shim: Shim, tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(  # curl truncates its output file before retrying, so not /dev/null
        ["curl", "--no-progress-meter", "-o", str(tmp_path / "out"), "-w", "%{http_code}", "--retry", "1",
         f"{short_shim.url}/v1/videos"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    elapsed = time.monotonic() - started
    assert result.stdout == "503"
    assert "will retry in 2 second" in result.stderr.lower(), result.stderr
    assert RETRY_AFTER - 0.2 <= elapsed < RETRY_AFTER + 2
