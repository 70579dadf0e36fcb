"""The catch-all's fast path (one cached answer per kind of request) sends exactly what the full path does.

In-process, on the app `create_app` builds: the same request is answered once through `MaintenanceApp`'s
`__call__` (the fast path wherever it applies) and once through `_answer_in_full` (negotiation, the reply
cache and CORS step by step), and the two answers must match byte for byte, while the ETA moves too.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintenance_shim.main import create_app
from maintenance_shim.progress.tracker import RetryPolicy, Tracker
from maintenance_shim.settings.shim import load_settings
from maintenance_shim.uvicorn_ext.wire import HEAD_LINES, STATUS_LINE_KEY, head_lines
from maintenance_shim.web.catchall import MaintenanceApp
from maintenance_shim.web.responder import RequestFacts

ORIGIN = "https://studio.example.com"
ACCEPTS = st.sampled_from(
    [None, "text/html", "application/json", "*/*", "application/problem+json", "text/plain", "image/*;q=0.9"]
)
LANGUAGES = st.sampled_from([None, "ja-JP,ja;q=0.9", "zh-CN,zh;q=0.8", "zh-TW", "fr;q=0.1", "x-junk;;q=", ""])
ORIGINS = st.sampled_from([None, ORIGIN, "https://other.example", "null"])
COOKIES = st.sampled_from([None, "session=abc", "lang=ja", "a=1; lang=zh_Hans", "lang=xx-??"])
QUERIES = st.sampled_from(["", "page=2", "lang=ja", "format=json", "x=1&format=html"])
PATHS = st.sampled_from(["/", "/gallery", "/api/v1/txt2img", "/v1/images/generations", "/healthz"])
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"])


class Harness:
    """The app on a tracker whose clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        env = {
            "MAINT_CORS_ORIGINS": ORIGIN,
            "MAINT_HEALTH_PATHS": "/healthz",
            "MAINT_LANGUAGES": "en,ja,zh_Hans,zh_Hant",
        }
        self.settings = load_settings(
            environ=env, overrides={"listen": ["127.0.0.1:8080=studio", "127.0.0.1:8081=video:api"]}
        )
        self.tracker = Tracker(
            clock=lambda: self.now,
            resume_seconds=self.settings.resume_seconds,
            stall_seconds=self.settings.stall_seconds,
            retry=RetryPolicy(
                self.settings.retry_after_min, self.settings.retry_after_max, self.settings.retry_after_unknown
            ),
        )
        app = create_app(self.settings, self.tracker)
        assert isinstance(app, MaintenanceApp)
        self.app = app

    def call(self, scope: dict[str, Any], full: bool) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            raise AssertionError("the catch-all never reads the body")

        async def send(message: dict[str, Any]) -> None:
            lines = message.get(HEAD_LINES)  # the wire's encoding of the headers (wire.py), the fast path's alone
            if lines is not None:
                assert lines == head_lines(message["headers"], lines.status_line)
                message = {key: value for key, value in message.items() if key != HEAD_LINES}
                if lines.status_line is not None:  # off the fast path the status line travels beside the headers
                    message[STATUS_LINE_KEY] = lines.status_line
            sent.append({**message, "headers": list(message.get("headers", []))} if "headers" in message else message)

        async def run() -> None:
            if full:
                await self.app._answer_in_full(scope, receive, send, RequestFacts.from_scope_headers(scope["headers"]))
            else:
                await self.app(scope, receive, send)

        asyncio.run(run())
        return sent


@pytest.fixture(scope="module")
def harness() -> Harness:
    return Harness()


def scope_for(
    method: str, path: str, query: str, port: int, headers: list[tuple[str, str]]
) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": [(name.encode(), value.encode("latin-1")) for name, value in headers],
        "server": ("127.0.0.1", port),
        "client": ("203.0.113.9", 40000),
    }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=METHODS,
    path=PATHS,
    query=QUERIES,
    port=st.sampled_from([8080, 8081]),
    accept=ACCEPTS,
    language=LANGUAGES,
    origin=ORIGINS,
    cookie=COOKIES,
    repeat=st.sampled_from([None, "cookie", "accept", "accept-language"]),
    step=st.integers(min_value=0, max_value=3),
)
def test_the_fast_path_sends_what_the_full_path_sends(
    harness: Harness,
    method: str,
    path: str,
    query: str,
    port: int,
    accept: str | None,
    language: str | None,
    origin: str | None,
    cookie: str | None,
    repeat: str | None,
    step: int,
) -> None:
    headers = [("host", "127.0.0.1"), ("user-agent", "probe/1")]
    for name, value in (("accept", accept), ("accept-language", language), ("origin", origin), ("cookie", cookie)):
        if value is not None:
            headers.append((name, value))
    if repeat is not None:
        headers.append((repeat, "lang=en" if repeat == "cookie" else "en"))
    if method == "OPTIONS" and origin is not None:
        headers.append(("access-control-request-method", "POST"))
    # Progress moves between examples: the fast path must follow the tracker's snapshot, not keep its first.
    harness.now += 1.5
    harness.tracker.record(harness.now, 100 * step + int(harness.now) % 97, 1000, "push")
    scope = scope_for(method, path, query, port, headers)
    fast = harness.call(dict(scope), full=False)
    if path == "/healthz" and method in ("GET", "HEAD"):
        assert fast[0]["status"] == 200
        return
    common = repeat != "cookie" and method != "OPTIONS" and path != "/healthz" and "=" not in query.replace("page=", "")
    common = common and (cookie is None or "lang=" not in cookie)
    if common:  # the fast path answered, from its cache
        assert any(item.body == fast[1]["body"] for item in harness.app._answers.values())
    full = harness.call(dict(scope), full=True)
    assert fast == full
    assert fast[0]["status"] == (200 if method == "OPTIONS" and origin == ORIGIN else 503)


def test_the_fast_path_follows_the_eta_and_stays_bounded(harness: Harness) -> None:
    """One kind of request, asked again as progress comes in: each answer carries the current progress;
    thousands of distinct Accept-Language values leave the answer cache at its bound."""
    scope = scope_for("GET", "/api/v1/txt2img", "", 8081, [("accept", "application/json"), ("accept-language", "ja")])
    steps = []
    for step in (100, 400, 700):
        harness.now += 30
        harness.tracker.record(harness.now, step, 1000, "push")
        body = harness.call(dict(scope), full=False)[1]["body"]
        steps.append(json.loads(body)["maintenance"]["progress"]["step"])
    assert steps == [100, 400, 700]
    for index in range(5000):
        harness.call(scope_for("GET", "/", "", 8080, [("accept-language", f"x-{index}")]), full=False)
    assert 0 < len(harness.app._answers) <= 1024
