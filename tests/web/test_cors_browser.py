"""A real cross-origin fetch() in headless Chromium reads the 503, its Retry-After and its JSON."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.support import ShimFactory

if TYPE_CHECKING:
    from playwright.sync_api import Browser

FETCH = """async (url) => {
  try {
    const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                body: JSON.stringify({prompt: "a cat"})});
    return {status: r.status, retryAfter: r.headers.get("Retry-After"),
            language: r.headers.get("Content-Language"), body: await r.json()};
  } catch (e) { return {error: String(e)}; }
}"""


@pytest.fixture
def studio_origin() -> Iterator[str]:
    """A real web frontend on another loopback port: the origin the fetch comes from."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>studio frontend</title><p>frontend"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run_fetch(chromium: Browser, origin: str, url: str) -> dict[str, Any]:
    context = chromium.new_context(locale="ja-JP")
    try:
        page = context.new_page()
        page.goto(origin)
        result: dict[str, Any] = page.evaluate(FETCH, url)
        return result
    finally:
        context.close()


def test_cross_origin_fetch_reads_503_and_retry_after(
    chromium: Browser, start_shim: ShimFactory, studio_origin: str
) -> None:
    shim = start_shim(services=["studio"], env={"MAINT_CORS_ORIGINS": studio_origin, "MAINT_ETA": "15m"})
    result = run_fetch(chromium, studio_origin, f"{shim.url}/api/generate")
    assert "error" not in result, result
    assert result["status"] == 503
    assert result["retryAfter"] is not None
    assert int(result["retryAfter"]) == result["body"]["maintenance"]["retry_after"]
    assert result["language"] == "ja"
    assert result["body"]["maintenance"]["eta"]["known"] is True


def test_without_cors_the_browser_hides_the_503(
    chromium: Browser, start_shim: ShimFactory, studio_origin: str
) -> None:
    shim = start_shim(services=["studio"], env={"MAINT_CORS_ORIGINS": "https://elsewhere.example"})
    result = run_fetch(chromium, studio_origin, f"{shim.url}/api/generate")
    assert "Failed to fetch" in result.get("error", ""), result
