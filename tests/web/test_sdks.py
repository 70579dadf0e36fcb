"""API SDKs against a real `openai` service: the exception text shows the localized message and ETA, and
`x-should-retry` makes their retry loops fail at once when the ETA is far and retry when it is near."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import openai
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError

from maintenance_shim.i18n import Catalogs
from maintenance_shim.progress.tracker import RetryPolicy, Tracker
from maintenance_shim.web.negotiate import Choice, LocaleMatcher
from maintenance_shim.web.render import Renderer, Service
from maintenance_shim.web.responder import Responder
from tests.support import Shim, ShimFactory, clean_env, request


def openai_chat(client: openai.OpenAI) -> object:
    return client.chat.completions.create(model="video-1", messages=[{"role": "user", "content": "a cat"}])


@pytest.fixture(scope="module")
def far_shim(module_shim_launcher: ShimFactory) -> Shim:
    """ETA 45 minutes: Retry-After far beyond what SDKs wait, `x-should-retry: false`."""
    return module_shim_launcher(services=["video:openai"], env={"MAINT_ETA": "45m"})


@pytest.fixture(scope="module")
def capped_shim(module_shim_launcher: ShimFactory) -> Shim:
    """ETA 10 minutes with Retry-After capped at 30 s: openai-python would wait 30 s twice but for the header."""
    return module_shim_launcher(services=["video:openai"], env={"MAINT_ETA": "10m", "MAINT_RETRY_AFTER_MAX": "30"})


@pytest.fixture(scope="module")
def near_shim(module_shim_launcher: ShimFactory) -> Shim:
    """ETA 100 s (within the 120 s default), Retry-After 2 s: `x-should-retry: true`."""
    return module_shim_launcher(
        services=["video:openai"],
        env={"MAINT_ETA": "100s", "MAINT_RETRY_AFTER_MIN": "1", "MAINT_RETRY_AFTER_MAX": "2"},
    )


class Counter:
    """Every request the SDK's HTTP client sends, with when it was sent."""

    def __init__(self) -> None:
        self.sent: list[float] = []

    def __call__(self, _request: object) -> None:
        self.sent.append(time.monotonic())


@pytest.fixture
def counted() -> Iterator[tuple[openai.DefaultHttpxClient, Counter]]:
    """openai-python's own HTTP client (on httpx or httpx2, whichever it uses), counting what it sends."""
    counter = Counter()
    with openai.DefaultHttpxClient(event_hooks={"request": [counter]}, timeout=10) as client:
        yield client, counter


def expected_messages(shim: Shim, language: str) -> set[str]:
    """The localized sentence the shim sends now (twice, in case the minute turns during the test)."""
    found = set()
    for _ in range(2):
        status, headers, body = request(shim, "POST", "/v1/chat/completions", {"Accept-Language": language})
        assert status == 503 and headers["content-type"] == "application/json"
        data = json.loads(body)
        message = data["error"]["message"]
        assert data["maintenance"]["eta"]["text"] in message, data  # the ETA is in the sentence
        found.add(message)
    return found


def assert_shows(text: str, messages: set[str]) -> None:
    assert any(message in text for message in messages), (text, messages)


@pytest.mark.parametrize(("language", "marker"), [("en", "Expected back in 45 minutes"), ("ja", "分後")])
def test_openai_shows_the_message_and_does_not_retry_a_far_eta(
    far_shim: Shim, counted: tuple[openai.DefaultHttpxClient, Counter], language: str, marker: str
) -> None:
    http_client, counter = counted
    client = openai.OpenAI(
        base_url=f"{far_shim.url}/v1",
        api_key="x",
        http_client=http_client,
        default_headers={"Accept-Language": language},
    )
    calls: list[Callable[[], object]] = [
        lambda: client.images.generate(model="image-1", prompt="a cat"),
        lambda: openai_chat(client),
    ]
    for call in calls:
        before = len(counter.sent)
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as caught:
            call()
        messages = expected_messages(far_shim, language)
        shown = str(caught.value)
        assert_shows(shown, messages)
        assert shown.startswith("Error code: 503 - ")
        assert marker in shown
        assert caught.value.status_code == 503
        assert caught.value.type == "service_unavailable_error"
        assert caught.value.code == "service_unavailable"
        assert caught.value.response.headers["x-should-retry"] == "false"
        assert len(counter.sent) - before == 1  # exactly one request: no retry loop
        assert time.monotonic() - started < 2


def test_openai_does_not_retry_a_far_eta_with_a_short_retry_after(
    capped_shim: Shim, counted: tuple[openai.DefaultHttpxClient, Counter]
) -> None:
    """Retry-After 30 s alone would have openai-python wait 30 s twice; `x-should-retry: false` stops it."""
    http_client, counter = counted
    client = openai.OpenAI(base_url=f"{capped_shim.url}/v1", api_key="x", http_client=http_client)
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        openai_chat(client)
    assert caught.value.response.headers["retry-after"] == "30"
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert len(counter.sent) == 1
    assert time.monotonic() - started < 2
    assert_shows(str(caught.value), expected_messages(capped_shim, "en"))


def test_openai_retries_a_near_eta_after_retry_after(
    near_shim: Shim, counted: tuple[openai.DefaultHttpxClient, Counter]
) -> None:
    http_client, counter = counted
    client = openai.OpenAI(base_url=f"{near_shim.url}/v1", api_key="x", http_client=http_client, max_retries=2)
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        openai_chat(client)
    elapsed = time.monotonic() - started
    assert caught.value.response.headers["x-should-retry"] == "true"
    assert caught.value.response.headers["retry-after"] == "2"
    assert len(counter.sent) == 3, counter.sent  # the first try and max_retries=2 retries
    gaps = [b - a for a, b in zip(counter.sent, counter.sent[1:], strict=False)]
    # Retry-After (2 s), not openai-python's own backoff (0.5 s, then 1 s, less jitter).
    assert all(1.9 <= gap < 3.5 for gap in gaps), gaps
    assert elapsed < 8
    assert_shows(str(caught.value), expected_messages(near_shim, "en"))


@pytest.mark.parametrize("language", ["en", "ja"])
def test_huggingface_chat_completion_shows_the_message(far_shim: Shim, language: str) -> None:
    client = InferenceClient(base_url=far_shim.url, headers={"Accept-Language": language})
    with pytest.raises(HfHubHTTPError) as caught:
        client.chat_completion([{"role": "user", "content": "a cat"}], max_tokens=8)
    messages = expected_messages(far_shim, language)
    shown = str(caught.value)
    assert "503" in shown
    # On a line of its own, verbatim (the `error` object's repr on the line before escapes U+202F).
    assert set(shown.splitlines()) & messages, shown
    assert caught.value.server_message is not None
    assert_shows(caught.value.server_message, messages)


def test_huggingface_text_to_image_shows_the_message(far_shim: Shim) -> None:
    """It asks for `Accept: image/png`, which gets the text 503 (nothing acceptable), shown as it is."""
    client = InferenceClient(model=far_shim.url, headers={"Accept-Language": "ja"})
    with pytest.raises(HfHubHTTPError) as caught:
        client.text_to_image("a cat")
    assert caught.value.response.headers["content-type"].startswith("text/plain")
    assert_shows(str(caught.value), expected_messages(far_shim, "ja"))


FORMATS = [
    ("html", "GET", {"Accept": "text/html"}),
    ("json", "GET", {}),
    ("problem", "GET", {"Accept": "application/problem+json"}),
    ("text", "GET", {"Accept": "image/png"}),
    ("html", "HEAD", {"Accept": "text/html"}),
    ("json", "POST", {"Accept": "application/json"}),
]


@pytest.mark.parametrize(("fmt", "method", "headers"), FORMATS)
def test_robots_and_should_retry_on_every_format(
    far_shim: Shim, near_shim: Shim, fmt: str, method: str, headers: dict[str, str]
) -> None:
    for shim, should_retry in ((far_shim, "false"), (near_shim, "true")):
        for path in ("/v1/images/generations", f"/?format={fmt}"):
            status, got, _ = request(shim, method, path, headers)
            assert status == 503
            assert got["x-robots-tag"] == "noindex", got
            assert got["x-should-retry"] == should_retry, got


def test_page_and_api_services_carry_the_headers_too(start_shim: ShimFactory) -> None:
    shim = start_shim(services=["studio", "video:api"], env={"MAINT_ETA": "45m"})
    for url, accept in ((shim.url_for(0), "text/html"), (shim.url_for(1), "application/json")):
        status, got, body = request(url, "GET", "/", {"Accept": accept})
        assert status == 503
        assert (got["x-robots-tag"], got["x-should-retry"]) == ("noindex", "false")
    data = json.loads(body)
    # The api kind: FastAPI's shape, OpenAI's error object and huggingface_hub's `errors`, one sentence.
    assert set(data) == {"detail", "error", "errors", "maintenance"}
    assert data["error"]["message"] == data["errors"][0]["message"] == data["detail"]


def test_openai_body_shape(far_shim: Shim) -> None:
    status, headers, body = request(far_shim, "GET", "/v1/models", {"Accept": "*/*"})
    assert status == 503 and headers["content-type"] == "application/json"  # JSON by default, like `api`
    data = json.loads(body)
    assert set(data) == {"error", "errors", "maintenance"}
    error = data["error"]
    assert error == {
        "message": error["message"],
        "type": "service_unavailable_error",
        "param": None,
        "code": "service_unavailable",
    }
    assert data["errors"] == [{"message": error["message"]}]
    assert data["maintenance"]["service"] == "video"
    assert error["message"].startswith(data["maintenance"]["message"])
    _, _, status_body = request(far_shim, "GET", "/_maintenance/status")
    assert set(json.loads(status_body)) - {"requests"} == set(data["maintenance"])  # + the running counts
    _, problem_headers, problem = request(far_shim, "GET", "/v1/models", {"Accept": "application/problem+json"})
    assert problem_headers["content-type"] == "application/problem+json"
    assert json.loads(problem)["detail"] == error["message"]


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "maintenance_shim", *args],
        env=clean_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


@pytest.mark.e2e
def test_listen_accepts_the_openai_kind(tmp_path: Path) -> None:
    result = _run(["check"], {"MAINT_LISTEN": "127.0.0.1:8000=video:openai,127.0.0.1:7860=studio"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "127.0.0.1:8000=video:openai" in result.stdout


@pytest.mark.parametrize(
    ("env", "args", "name", "shown"),
    [
        ({}, ["serve", "--listen", "127.0.0.1:8000=video:gpt"], "MAINT_LISTEN", "'gpt'"),
        ({"MAINT_LISTEN": "127.0.0.1:8000=video:OpenAI"}, ["check"], "MAINT_LISTEN", "'OpenAI'"),
        ({"MAINT_SDK_RETRY_MAX_SECONDS": "-1"}, ["check"], "MAINT_SDK_RETRY_MAX_SECONDS", "-1"),
        ({"MAINT_SDK_RETRY_MAX_SECONDS": "2m"}, ["serve"], "MAINT_SDK_RETRY_MAX_SECONDS", "2m"),
    ],
)
@pytest.mark.e2e
def test_bad_kind_or_retry_setting_exits_2_naming_it(
    env: dict[str, str], args: list[str], name: str, shown: str, tmp_path: Path
) -> None:
    result = _run(args, env, tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0] and shown in lines[0]
    assert "Traceback" not in result.stderr


def _headers(responder: Responder) -> dict[str, str]:
    reply = responder.maintenance_reply(Service("video", "openai"), Choice("en", "json", False))
    return {name.decode(): value.decode() for name, value in reply.headers}


@pytest.mark.parametrize(
    ("eta", "limit", "expected"),
    [(300, 120, "false"), (300, 600, "true"), (None, 600, "false"), (60, 0, "false"), (60, 60, "true")],
)
def test_should_retry_follows_the_limit(eta: int | None, limit: int, expected: str) -> None:
    """The Responder's `sdk_retry_max_seconds` (MAINT_SDK_RETRY_MAX_SECONDS): true while the ETA is within it."""
    now = datetime.now().astimezone()
    kwargs: dict[str, Any] = {"static_deadline": now + timedelta(seconds=eta - 0.5)} if eta is not None else {}
    tracker = Tracker(resume_seconds=120, stall_seconds=300, retry=RetryPolicy(5, 3600, 60), **kwargs)
    service = Service("video", "openai")
    responder = Responder(
        tracker=tracker,
        renderer=Renderer(Catalogs(["en"]), ["en"], {"en": None}, "lang"),
        matcher=LocaleMatcher(["en"], "en"),
        services={8000: service},
        default_service=service,
        cookie_name="lang",
        json_paths=["/api/"],
        sdk_retry_max_seconds=limit,
    )
    headers = _headers(responder)
    assert headers["x-should-retry"] == expected
    assert headers["x-robots-tag"] == "noindex"
