"""What real clients show their users for the shim's 503: twelve clients, directly and through real nginx
(tests/support/client_texts.py), the status line that carries the ETA to those that read nothing else, the
`api` kind's one JSON body, and one service behind listeners of two kinds."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maintenance_shim.progress.tracker import Progress, Snapshot
from maintenance_shim.web.reason import MAX_PHRASE, phrase, status_line
from tests.support import Shim, ShimFactory, clean_env, free_port, request, wait_port
from tests.support.caddy import start_caddy
from tests.support.client_texts import SHIM_ENV, call_hf_chat, call_openai, documented, run_all, table
from tests.support.haproxy import start_haproxy
from tests.support.nginx import Nginx, start_nginx
from tests.support.traefik import start_traefik


@dataclass
class Proxied:
    shim: Shim
    nginx: Nginx

    @property
    def proxied(self) -> str:
        return f"http://127.0.0.1:{self.nginx.port}"


@pytest.fixture(scope="module")
def proxied(module_shim_launcher: ShimFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """An `api` shim with an ETA of 5 minutes, and the shipped nginx site in front of it."""
    shim = module_shim_launcher(services=["video:api"], env=SHIM_ENV)
    nginx = start_nginx(tmp_path_factory.mktemp("nginx"), {"studio": shim.port, "video": shim.port})
    try:
        yield Proxied(shim, nginx)
    finally:
        nginx.stop()


def test_twelve_clients_show_why_and_until_when(proxied: Proxied) -> None:
    records = run_all(proxied.shim.url, proxied.proxied)
    counted = [record for record in records if record.client.counted]
    assert len({record.client.name for record in counted}) == len(counted) == 12
    for index, where in enumerate(("directly", "through nginx")):
        showing = [record.client.name for record in counted if record.shows_eta[index]]
        assert len(showing) >= 8, (where, showing, records)
    stale = "docs/http.md's client table is stale: python -m tests.support.client_texts --write"
    assert table(records) == documented(), stale


def _sentences(shim: Shim, language: str) -> set[str]:
    """The localized sentence the JSON 503 carries now (twice, in case the minute turns meanwhile)."""
    found = set()
    for _ in range(2):
        status, _, body = request(shim, "POST", "/v1/chat/completions", {"Accept-Language": language})
        assert status == 503
        data = json.loads(body)
        assert data["detail"] == data["error"]["message"] == data["errors"][0]["message"]
        found.add(data["detail"])
    return found


@pytest.mark.parametrize(
    ("language", "marker"), [("en", "Expected back in 5 minutes"), ("ja", "分後"), ("fr", "5 minutes")]
)
def test_openai_and_huggingface_show_the_localized_sentence_on_an_api_listener(
    proxied: Proxied, language: str, marker: str
) -> None:
    headers = {"Accept-Language": language}
    for call in (call_openai, call_hf_chat):
        shown = call(proxied.shim.url, headers)
        sentences = _sentences(proxied.shim, language)
        assert any(sentence in shown for sentence in sentences), (call.__name__, shown, sentences)
        assert marker in shown or marker.replace("5", "4") in shown, shown
        # Plain spaces in what SDKs print: no U+202F (`9:22 PM`), U+00A0, or its escape in a repr.
        assert "\u202f" not in shown and "\xa0" not in shown and "\\u202f" not in shown and "\\xa0" not in shown


def test_the_page_keeps_typographic_spaces_where_babel_puts_them(proxied: Proxied) -> None:
    _, _, page = request(proxied.shim, "GET", "/", {"Accept": "text/html", "Accept-Language": "en"})
    assert "\u202f" in page.decode()  # `3:30 PM`, as CLDR writes it
    for fmt in ("json", "problem", "text"):
        _, _, body = request(proxied.shim, "GET", f"/?format={fmt}", {"Accept-Language": "fr"})
        assert "\u202f" not in body.decode() and "\xa0" not in body.decode(), fmt


def _status_line(url: str, method: str = "GET", path: str = "/", headers: dict[str, str] | None = None) -> str:
    """The status line as it arrived, byte for byte."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        lines = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{lines}\r\n".encode())
        received = b""
        while b"\r\n" not in received:
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
    return received.split(b"\r\n", 1)[0].decode("ascii")


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/v1/models", {}),  # the fast path: the head written from its encoded lines
        ("HEAD", "/v1/models", {}),  # a head alone
        ("POST", "/v1/models?lang=ja", {}),  # answered in full, through uvicorn's loop
        ("OPTIONS", "/v1/models", {"Cookie": "lang=ja"}),
    ],
)
def test_the_status_line_says_when_on_every_path(
    proxied: Proxied, method: str, path: str, headers: dict[str, str]
) -> None:
    for url in (proxied.shim.url, proxied.proxied):
        line = _status_line(url, method, path, headers)
        assert line.startswith("HTTP/1.1 503 Service Unavailable: Video back in about "), line
        assert line.endswith(" UTC)"), line


def test_the_status_line_can_be_turned_off(start_shim: ShimFactory) -> None:
    shim = start_shim(services=["video:api"], env={**SHIM_ENV, "MAINT_REASON_PHRASE": "off"})
    for method in ("GET", "HEAD"):
        assert _status_line(shim.url, method) == "HTTP/1.1 503 Service Unavailable"


def test_a_service_behind_two_kinds_of_listener_gets_each_its_own_body(start_shim: ShimFactory) -> None:
    """The same service on an `api` and an `openai` listener: each kind its body, whichever was asked first."""
    shim = start_shim(services=["video:api", "video:openai"], env={**SHIM_ENV, "MAINT_CORS_ORIGINS": "*"})
    api, openai = shim.url_for(0), shim.url_for(1)
    for headers in ({}, {"Accept-Language": "ja"}, {"Origin": "https://app.example.com"}):
        for path in ("/v1/models", "/v1/models?lang=en"):  # the fast path, and the one answered in full
            for url in (api, openai, api):
                status, _, body = request(url, "GET", path, headers)
                assert status == 503
                keys = set(json.loads(body))
                expected = {"error", "errors", "maintenance"} | ({"detail"} if url == api else set())
                assert keys == expected, (url, path, headers, keys)


def _snapshot(state: str, eta: int | None) -> Snapshot:
    at = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)
    return Snapshot(
        state=state,  # type: ignore[arg-type]
        eta_seconds=eta,
        eta_at=at if eta is not None else None,
        retry_after=eta or 60,
        progress=Progress(step=1, total=10, fraction=0.1, rate=None, updated_at=at - timedelta(minutes=1)),
        source="test",
    )


@pytest.mark.parametrize(
    ("state", "eta", "expected"),
    [
        ("training", 45 * 60, "Service Unavailable: video back in about 45 minutes (15:30 UTC)"),
        ("training", 30, "Service Unavailable: video back in less than a minute (15:30 UTC)"),
        ("training", 125 * 60, "Service Unavailable: video back in about 2 hours 5 minutes (15:30 UTC)"),
        ("overdue", 600, "Service Unavailable: video running late, now back in about 10 minutes (15:30 UTC)"),
        ("overdue", None, "Service Unavailable: video running late, back when training ends"),
        ("stalled", None, "Service Unavailable: video paused, training stalled, no estimate"),
        ("estimating", None, "Service Unavailable: video paused for training, estimate follows"),
        ("finishing", None, "Service Unavailable: video finishing training, back shortly"),
        ("unknown", None, "Service Unavailable: video paused for maintenance, no estimate yet"),
    ],
)
def test_the_phrase_for_each_state(state: str, eta: int | None, expected: str) -> None:
    assert phrase(_snapshot(state, eta), "video", UTC) == expected


@pytest.mark.parametrize(
    "name", ["vid\r\nSet-Cookie: a=b", "名前", "x" * 500, "a\x00b\x7fc: d", "Café Studio", ""]
)
def test_the_phrase_is_safe_and_bounded(name: str) -> None:
    text = phrase(_snapshot("training", 45 * 60), name, UTC)
    assert len(text) <= MAX_PHRASE
    assert all(0x20 <= ord(char) < 0x7F for char in text), text
    assert text.count(":") == 1 + text.count("15:30"), text  # `Service Unavailable:` and the clock only
    line = status_line(503, text)
    assert line.startswith(b"HTTP/1.1 503 Service Unavailable") and line.endswith(b"\r\n")
    assert line.count(b"\n") == line.count(b"\r") == 1


def _head(port: int, host: str) -> tuple[str, dict[str, str]]:
    """The status line and the header fields of a GET to the proxy on `port` for `host`."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /v1/models HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    line, *fields = received.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    return line, {name.lower(): value.strip() for name, _, value in (field.partition(":") for field in fields)}


@pytest.fixture(scope="module")
def behind(module_shim_launcher: ShimFactory) -> Shim:
    """A shim for both shipped services, healthy on the stand-ins' /health (HAProxy and Traefik check it)."""
    return module_shim_launcher(services=["studio", "video:api"], env={**SHIM_ENV, "MAINT_HEALTH_PATHS": "/health"})


# Measured: nginx and HAProxy pass the upstream's reason phrase through; Caddy and Traefik (Go's net/http
# writes its own `http.StatusText`) send the stock one.
@pytest.mark.parametrize(
    ("proxy", "passes"), [("nginx", True), ("haproxy", True), ("caddy", False), ("traefik", False)]
)
def test_the_status_line_through_each_proxy(behind: Shim, tmp_path: Path, proxy: str, passes: bool) -> None:
    shim = {"studio": behind.ports[0], "video": behind.ports[1]}
    down = {"studio": free_port(), "video": free_port()}  # the live services are stopped: the shim answers
    running: Nginx | object
    if proxy == "nginx":
        running = start_nginx(tmp_path, shim)
    elif proxy == "caddy":
        running = start_caddy(tmp_path, shim, clean_env())
    elif proxy == "haproxy":
        running = start_haproxy(tmp_path, down, shim)
    else:
        running = start_traefik(tmp_path, down, shim)
    try:
        port: int = running.port  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while True:  # until the proxy has the shim in use (HAProxy and Traefik find their live server down)
            line, fields = _head(port, "video-api.example.com")
            if "x-should-retry" in fields or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "x-should-retry" in fields, (line, fields)  # the shim's answer, not the proxy's own 503
        direct = _status_line(behind.url_for(1), "GET", "/v1/models")
        if passes:
            assert line.split(" (")[0] == direct.split(" (")[0], (line, direct)
        else:
            assert line == "HTTP/1.1 503 Service Unavailable", line
    finally:
        running.stop()  # type: ignore[attr-defined]


def test_http2_has_no_reason_phrase(behind: Shim, tmp_path: Path) -> None:
    """nginx speaking HTTP/2 to the client (h2c here; h2 over TLS is the same frames): `:status` alone."""
    nginx = start_nginx(tmp_path, {"studio": behind.ports[1], "video": behind.ports[1]})
    try:
        port = free_port()
        nginx.extra.write_text(
            f"server {{ listen 127.0.0.1:{port} http2; location / {{ proxy_pass http://video_backend; "
            f"include {nginx.prefix}/maintenance-shim/proxy.conf; }} }}\n"
        )
        nginx.proc.send_signal(signal.SIGHUP)  # our child, by PID: reload with the HTTP/2 server
        wait_port(port, timeout=20)
        result = subprocess.run(
            ["curl", "-sS", "-i", "--http2-prior-knowledge", f"http://127.0.0.1:{port}/v1/models"],
            capture_output=True, text=True, timeout=30, check=False,
        )
        assert result.stdout.splitlines()[0].strip() == "HTTP/2 503", result.stdout
        assert "x-should-retry" in result.stdout  # the shim's answer; its ETA is in the body alone
    finally:
        nginx.stop()
