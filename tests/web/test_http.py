"""The HTTP contract: tables of requests in-process (httpx.ASGITransport), and against a real shim process
on free loopback ports whatever needs a socket (uploads, WebSocket, listeners, start-up)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from maintenance_shim.server import WAITING_FOR_PORT
from tests.support import InProcess, Shim, ShimFactory, clean_env, request, wait_until

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"]
ORIGIN = "https://studio.example.com"
# Three languages, so that the tables also show the fallback for a language that is not offered.
SHIM_ENV = {"MAINT_CORS_ORIGINS": ORIGIN, "MAINT_HEALTH_PATHS": "/healthz,/ping", "MAINT_ETA": "20m",
            "MAINT_LANGUAGES": "en,ja,zh_Hans"}


@pytest.fixture(scope="module")
def shim(module_shim_launcher: ShimFactory) -> Shim:
    """A page service with CORS, health paths and a static ETA, shared by the module's read-only tests."""
    return module_shim_launcher(
        services=["studio"],
        env=SHIM_ENV,
    )


@pytest.fixture(scope="module")
def app() -> InProcess:
    """The same settings as `shim`, in-process: for the tables of requests."""
    return InProcess(SHIM_ENV)


def assert_maintenance_headers(headers: dict[str, str]) -> None:
    assert re.fullmatch(r"[1-9][0-9]*", headers["retry-after"]), headers
    assert headers["cache-control"] == "no-store"
    assert headers["content-language"] in {"en", "ja", "zh-Hans"}
    assert "accept-language" in headers["vary"].lower()
    assert "accept" in [item.strip().lower() for item in headers["vary"].split(",")]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gets_503(app: InProcess, method: str) -> None:
    status, headers, body = request(app, method, "/generate/v2?x=1", body=b'{"prompt": "cat"}')
    assert status == 503
    assert_maintenance_headers(headers)
    if method == "HEAD":
        assert body == b""
        _, get_headers, get_body = request(app, "GET", "/generate/v2?x=1")
        assert int(headers["content-length"]) == len(get_body) == int(get_headers["content-length"])
    else:
        assert len(body) == int(headers["content-length"]) > 0


def test_static_eta_feeds_retry_after_json_and_text(shim: Shim) -> None:
    status, headers, body = request(shim, "GET", "/api/images", {"Accept": "application/json"})
    assert status == 503
    data = json.loads(body)
    eta = data["maintenance"]["eta"]
    assert eta["known"] is True
    assert 19 * 60 <= eta["seconds"] <= 20 * 60
    assert int(headers["retry-after"]) == eta["seconds"] == data["maintenance"]["retry_after"]
    assert data["maintenance"]["state"] == "training"
    assert eta["text"] == "in 20 minutes"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", eta["at"])
    assert "in 20 minutes" in data["detail"]
    assert data["maintenance"]["progress"] is None


def test_unknown_eta_uses_retry_after_unknown(start_shim: ShimFactory) -> None:
    shim = start_shim(env={"MAINT_RETRY_AFTER_UNKNOWN": "42"})
    status, headers, body = request(shim, "GET", "/", {"Accept": "application/json"})
    data = json.loads(body)["maintenance"]
    assert (status, headers["retry-after"], data["state"]) == (503, "42", "unknown")
    assert data["eta"] == {"known": False, "seconds": None, "at": None, "text": None, "basis": None}


@pytest.mark.parametrize(
    ("accept_language", "expected"),
    [
        ("ja-JP,ja;q=0.9", "ja"),
        ("zh-CN", "zh-Hans"),
        ("zh-SG,en;q=0.5", "zh-Hans"),
        ("zh", "zh-Hans"),
        ("en-US", "en"),
        ("fr", "en"),
        ("fr-FR,fr;q=0.9,ja;q=0.8,en;q=0.1", "ja"),
        ("en;q=0.2, zh-CN;q=0.9", "zh-Hans"),
        ("ja;q=0", "en"),
        ("*", "en"),
        ("", "en"),
        ("\xff\xfe;;;q=abc,,,", "en"),
        ("ja;q=NaN, zh-CN;q=2", "en"),
        ("x" * 5000, "en"),
    ],
)
def test_language_from_accept_language(app: InProcess, accept_language: str, expected: str) -> None:
    status, headers, body = request(
        app, "GET", "/", {"Accept-Language": accept_language, "Accept": "application/json"}
    )
    assert status == 503
    assert headers["content-language"] == expected
    assert json.loads(body)["maintenance"]["locale"] == expected


def test_language_words_are_in_the_language(app: InProcess) -> None:
    _, _, ja = request(app, "GET", "/", {"Accept-Language": "ja", "Accept": "application/json"})
    _, _, zh = request(app, "GET", "/", {"Accept-Language": "zh-CN", "Accept": "application/json"})
    assert "分後" in json.loads(ja)["maintenance"]["eta"]["text"]
    assert "分钟后" in json.loads(zh)["maintenance"]["eta"]["text"]
    assert "学習" in json.loads(ja)["detail"]
    assert "训练" in json.loads(zh)["detail"]


def test_lang_query_beats_cookie_beats_header(app: InProcess) -> None:
    both = {"Accept-Language": "ja", "Cookie": "theme=dark; lang=zh_Hans", "Accept": "text/html"}
    status, headers, _ = request(app, "GET", "/?lang=en", both)
    assert (status, headers["content-language"]) == (503, "en")
    assert headers["set-cookie"].startswith("lang=en;")
    assert "Path=/" in headers["set-cookie"]
    _, headers, _ = request(app, "GET", "/", both)
    assert headers["content-language"] == "zh-Hans"
    assert "set-cookie" not in headers
    _, headers, _ = request(app, "GET", "/", {**both, "Cookie": "lang=xx-bogus"})
    assert headers["content-language"] == "ja"
    _, headers, _ = request(app, "GET", "/?lang=ja-JP", {"Accept": "application/json"})
    assert headers["content-language"] == "ja"
    assert "set-cookie" not in headers  # the cookie is set on HTML pages only


@pytest.mark.parametrize(
    ("path", "accept", "expected"),
    [
        ("/", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"),
        ("/", "application/json", "application/json"),
        ("/", "application/problem+json", "application/problem+json"),
        ("/", "text/plain", "text/plain"),
        ("/", "text/html;q=0.5, application/json", "application/json"),
        ("/", "application/json;q=0.4, text/html;q=0.8", "text/html"),
        ("/", "application/json, text/html", "application/json"),
        ("/", "*/*", "text/html"),
        ("/", None, "text/html"),
        ("/", "image/png", "text/plain"),
        ("/", "application/*", "application/json"),
        ("/", ";;q=,/,garbage", "text/plain"),
        ("/api/v1/images", "text/html", "application/json"),
        ("/api/v1/images?format=text", "text/html", "text/plain"),
        ("/?format=json", "text/html", "application/json"),
        ("/?format=html", "application/json", "text/html"),
        ("/?format=problem", None, "application/problem+json"),
        ("/?format=bogus", "text/plain", "text/plain"),
    ],
)
def test_format_negotiation(app: InProcess, path: str, accept: str | None, expected: str) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    status, response_headers, body = request(app, "GET", path, headers)
    assert status == 503
    assert response_headers["content-type"].split(";")[0] == expected
    if expected == "application/json":
        data = json.loads(body)
        assert set(data) == {"detail", "error", "errors", "maintenance"}  # the api kind's one body for all SDKs
        assert data["error"]["message"] == data["errors"][0]["message"] == data["detail"]
    elif expected == "application/problem+json":
        data = json.loads(body)
        assert data["status"] == 503 and data["type"] == "about:blank" and data["detail"]
    elif expected == "text/html":
        assert body.startswith(b"<!doctype html>")
        assert "'unsafe-inline'" not in response_headers["content-security-policy"]
    else:
        assert b"Studio" in body and b"<" not in body


def test_cors_preflight_and_503_to_allowed_origin(shim: Shim) -> None:
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization",
    }
    status, headers, _ = request(shim, "OPTIONS", "/api/generate", preflight)
    assert 200 <= status < 300
    assert headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in headers["access-control-allow-methods"]
    assert headers["cache-control"] == "no-store"
    status, headers, _ = request(shim, "POST", "/api/generate", {"Origin": ORIGIN}, b"{}")
    assert status == 503
    assert headers["access-control-allow-origin"] == ORIGIN
    exposed = {item.strip().lower() for item in headers["access-control-expose-headers"].split(",")}
    assert {"retry-after", "content-language"} <= exposed
    assert "origin" in headers["vary"].lower()


def test_cors_other_origin_gets_plain_503(shim: Shim) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    status, headers, _ = request(shim, "OPTIONS", "/api/generate", preflight)
    assert status == 503
    assert "access-control-allow-origin" not in headers


def test_health_and_status_endpoints(shim: Shim) -> None:
    for method in ("GET", "HEAD"):
        for path in ("/_maintenance/health", "/healthz", "/ping"):
            status, headers, body = request(shim, method, path)
            assert status == 200, (method, path)
            assert headers["cache-control"] == "no-store"
            if method == "GET":
                assert json.loads(body) == {"status": "ok", "maintenance": True}
    status, headers, body = request(shim, "GET", "/_maintenance/status?lang=ja")
    assert status == 200 and headers["cache-control"] == "no-store"
    data = json.loads(body)
    assert data["service"] == "studio" and data["locale"] == "ja" and data["state"] == "training"
    assert set(data) == {"service", "state", "message", "eta", "retry_after", "progress", "after_training", "locale",
                         "requests"}  # the running request counts (MAINT_METRICS, app/traffic.py)
    status, headers, _ = request(shim, "GET", "/_maintenance/nothing-here")
    assert status == 404 and headers["cache-control"] == "no-store"
    assert request(shim, "POST", "/healthz")[0] == 503
    status, _, body = request(shim.admin_url, "GET", "/_maintenance/openapi.json")
    assert status == 200 and "/_maintenance/progress" in json.loads(body)["paths"]


def test_100_mb_upload_is_answered_at_once(shim: Shim) -> None:
    size = 100 * 1024 * 1024
    rss_before = _rss_kb(shim.proc.pid)
    with socket.create_connection(("127.0.0.1", shim.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            + f"Content-Length: {size}\r\n\r\n".encode()
        )
        started = time.monotonic()
        chunk = b"\0" * (1024 * 1024)
        sent = 0
        sock.setblocking(False)
        response = b""
        while b"\r\n\r\n" not in response and time.monotonic() - started < 5:
            if sent < size:
                with contextlib.suppress(BlockingIOError):
                    sent += sock.send(chunk)
            try:
                response += sock.recv(65536)
            except BlockingIOError:
                time.sleep(0.001)
        elapsed = time.monotonic() - started
    assert response.startswith(b"HTTP/1.1 503"), response[:100]
    assert elapsed < 1.0
    assert sent < size  # answered long before the upload could finish
    assert _rss_kb(shim.proc.pid) - rss_before < 10 * 1024


def test_full_100_mb_upload_with_curl(shim: Shim, tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    with blob.open("wb") as handle:
        handle.truncate(100 * 1024 * 1024)
    result = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "--data-binary", f"@{blob}",
         f"{shim.url}/api/upload"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    code, seconds = result.stdout.split()
    assert code == "503"
    assert float(seconds) < 5


def test_expect_100_continue_gets_503_without_body(shim: Shim) -> None:
    with socket.create_connection(("127.0.0.1", shim.port), timeout=2) as sock:
        sock.sendall(
            b"POST /api/upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
        )
        started = time.monotonic()
        response = sock.recv(65536)
        elapsed = time.monotonic() - started
    assert response.startswith(b"HTTP/1.1 503"), response[:60]
    assert elapsed < 1.0


def test_websocket_handshake_is_refused_with_503(shim: Shim) -> None:
    async def connect() -> int | None:
        try:
            async with websockets.connect(f"ws://127.0.0.1:{shim.port}/ws/stream", open_timeout=5):
                return None
        except InvalidStatus as error:
            return error.response.status_code

    assert asyncio.run(connect()) == 503
    assert "Traceback" not in shim.output()
    assert request(shim, "GET", "/")[0] == 503


def test_two_listeners_two_services_one_process(start_shim: ShimFactory) -> None:
    shim = start_shim(services=["studio", "video:api"])
    _, studio_headers, studio_body = request(shim.url_for(0), "GET", "/", {"Accept": "*/*"})
    _, video_headers, video_body = request(shim.url_for(1), "GET", "/", {"Accept": "*/*"})
    assert studio_headers["content-type"].startswith("text/html")
    assert b"Studio" in studio_body
    assert video_headers["content-type"] == "application/json"
    assert json.loads(video_body)["maintenance"]["service"] == "video"
    assert json.loads(video_body)["detail"].startswith("Video is paused")  # the tag as a name
    _, _, status = request(shim.url_for(1), "GET", "/_maintenance/status")
    assert json.loads(status)["service"] == "video"


def test_nothing_from_the_request_is_reflected(shim: Shim) -> None:
    evil = "<script>alert(1)</script>"
    path = "/%3Cscript%3E?lang=%3Cscript%3E&format=html&x=%3Cimg%20src=x%3E"
    status, headers, body = request(shim, "GET", path, {"Accept-Language": evil, "Cookie": f"lang={evil}"})
    assert status == 503
    assert b"<script>alert" not in body and b"<img" not in body
    assert headers["content-language"] == "en"


def test_operator_message_replaces_catalog_and_is_escaped(start_shim: ShimFactory) -> None:
    shim = start_shim(
        env={
            "MAINT_MESSAGE": "Back after <b>tuning</b> & tests.",
            "MAINT_MESSAGE_JA": "ただいまモデルを調整中です。",
        }
    )
    _, _, en = request(shim, "GET", "/", {"Accept": "text/html"})
    assert b"Back after &lt;b&gt;tuning&lt;/b&gt; &amp; tests." in en
    _, _, ja = request(shim, "GET", "/", {"Accept": "application/json", "Accept-Language": "ja"})
    assert json.loads(ja)["maintenance"]["message"] == "ただいまモデルを調整中です。"


@pytest.mark.parametrize(
    ("env", "args", "name"),
    [
        ({"MAINT_RETRY_AFTER_MIN": "soon"}, [], "MAINT_RETRY_AFTER_MIN"),
        ({"MAINT_ETA": "next tuesday"}, [], "MAINT_ETA"),
        ({"MAINT_LANGUAGES": "en,xx_BOGUS"}, [], "MAINT_LANGUAGES"),
        ({"MAINT_CORS_ORIGINS": "studio.example.com"}, [], "MAINT_CORS_ORIGINS"),
        ({"MAINT_ADMIN_TOKEN": "short"}, [], "MAINT_ADMIN_TOKEN"),
        ({"MAINT_RETRY_AFTER_MIN": "100", "MAINT_RETRY_AFTER_MAX": "10"}, [], "MAINT_RETRY_AFTER_MIN"),
        ({}, ["--listen", "127.0.0.1:99999"], "MAINT_LISTEN"),
        ({"MAINT_LISTEN": "nonsense"}, [], "MAINT_LISTEN"),
    ],
)
@pytest.mark.e2e
def test_bad_setting_exits_2_naming_it(env: dict[str, str], args: list[str], name: str, tmp_path: Path) -> None:
    for command in (["serve", *args], ["check"]):
        if command == ["check"] and args:
            continue
        result = subprocess.run(
            [sys.executable, "-m", "maintenance_shim", *command],
            env=clean_env(env), cwd=tmp_path, capture_output=True, text=True, timeout=20, check=False,
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert name in lines[0]
        assert "Traceback" not in result.stderr
        if "MAINT_ADMIN_TOKEN" in env:
            assert env["MAINT_ADMIN_TOKEN"] not in result.stderr


@pytest.mark.e2e
def test_env_file_is_read_and_check_passes(tmp_path: Path) -> None:
    (tmp_path / "maintenance.env").write_text("MAINT_ETA=45m\nMAINT_LANGUAGES=en,ja\n# comment\n")
    result = subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "check"],
        env=clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=20, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "static ETA" in result.stdout and "en, ja" in result.stdout


def test_port_taken_fails_with_one_line(start_shim: ShimFactory, tmp_path: Path) -> None:
    shim = start_shim()
    result = subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "serve", "--listen", f"127.0.0.1:{shim.port}"],
        env=clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=20, check=False,
    )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{shim.port}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
def test_bind_retry_takes_the_port_when_it_frees(tmp_path: Path) -> None:
    """A shim started on a taken port says it waits (the line the scripts' port mode waits for), keeps running,
    and answers on the port once it is freed. (How soon is its 10 ms retry's business; timing it here would
    measure the machine.)"""
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    log = tmp_path / "shim.log"
    with log.open("wb") as err:
        shim = subprocess.Popen(
            [sys.executable, "-m", "maintenance_shim", "serve", "--listen", f"127.0.0.1:{port}=studio"],
            env=clean_env({"MAINT_BIND_RETRY_SECONDS": "120"}), cwd=tmp_path,
            stdout=subprocess.DEVNULL, stderr=err,
        )
    try:
        wait_until(lambda: WAITING_FOR_PORT in log.read_text() or shim.poll() is not None, timeout=60,
                   what="the shim's line that it waits for the port")
        assert shim.poll() is None, log.read_text()
        blocker.close()

        def answered() -> int | None:
            try:
                return request(f"http://127.0.0.1:{port}", "GET", "/")[0]
            except OSError:
                return None

        assert wait_until(answered, timeout=60, what="the shim on the freed port", interval=0.01) == 503
    finally:
        blocker.close()
        shim.terminate()
        shim.wait(10)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")
