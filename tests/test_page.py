"""The HTML page in real Chromium (/usr/bin/chromium): language, live progress and countdown, switcher,
reload into the returning service, screenshots, no scripts, and no request leaving the origin."""

from __future__ import annotations

import http.server
import json
import os
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from maintenance_shim.i18n import load_translations
from tests.conftest import ARTIFACTS, Shim, ShimFactory

LANGS = {"en": "en-US", "ja": "ja-JP", "zh_Hans": "zh-CN"}
TAGS = {"en": "en", "ja": "ja", "zh_Hans": "zh-Hans"}
ZONES = {"en": "America/New_York", "ja": "Asia/Tokyo", "zh_Hans": "Asia/Shanghai"}
# Retry-After 2 s: the page polls every 2 s (its floor; its cap is 15 s).
POLL_SECONDS = 2
FAST_POLL = {"MAINT_RETRY_AFTER_MIN": "1", "MAINT_RETRY_AFTER_MAX": str(POLL_SECONDS)}
# The browser's own note about the 503 itself (the document and the page's probes): the contract, not a fault.
EXPECTED_CONSOLE = re.compile(r"^Failed to load resource: the server responded with a status of 503\b")
REPORT_CSP = """
document.addEventListener("securitypolicyviolation", function (e) {
  console.error("CSP violation: " + e.violatedDirective + " " + e.blockedURI);
});
"""


@pytest.fixture(scope="module")
def browser(chromium: Browser) -> Browser:
    """The shared headless Debian Chromium (conftest)."""
    return chromium


@dataclass
class Watch:
    """What one browser context did: requests, console errors and CSP violations."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def attach(self, context: BrowserContext) -> None:
        context.add_init_script(REPORT_CSP)
        context.on("request", lambda request: self.requests.append(request.url))
        context.on("page", self.attach_page)

    def attach_page(self, page: Page) -> None:
        page.on("console", self.on_console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def on_console(self, message: Any) -> None:
        if message.type == "error" and not EXPECTED_CONSOLE.match(message.text):
            self.errors.append(message.text)

    def assert_clean(self, origin: str) -> None:
        assert self.errors == []
        assert self.requests, "no request was seen"
        outside = [url for url in self.requests if not url.startswith(origin + "/")]
        assert outside == [], "requests left the origin"


def new_context(browser: Browser, lang: str, watch: Watch, **options: Any) -> BrowserContext:
    """A context that speaks `lang` and lives in a time zone of that language."""
    options.setdefault("locale", LANGS[lang])
    options.setdefault("timezone_id", ZONES[lang])
    context = browser.new_context(**options)
    watch.attach(context)
    return context


def catalog(lang: str) -> Any:
    return load_translations(lang)


def status(shim: Shim, lang: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{shim.url}/_maintenance/status?lang={lang}", timeout=5) as response:
        result: dict[str, Any] = json.load(response)
    return result


def write_progress(path: Path, step: int, total: int, at: float) -> None:
    """Atomically, as a trainer does: write a sibling, then rename over."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"step": step, "total": total, "updated_at": at}), encoding="utf-8")
    os.replace(tmp, path)


def wait_for_step(shim: Shim, step: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (status(shim, "en").get("progress") or {}).get("step") != step:
        assert time.monotonic() < deadline, f"the shim never reported step {step}"
        time.sleep(0.1)


def training_shim(start_shim: ShimFactory, tmp_path: Path, **env: str) -> tuple[Shim, Path]:
    """A shim following a progress file that already has six samples (the first interval is warm-up, the
    ETA needs four more over 5 s), so the ETA is known: 3.3 steps/s, 800 steps and 600 s of resume left."""
    progress = tmp_path / "progress.json"
    now = time.time()
    write_progress(progress, 100, 1000, now - 30)
    shim = start_shim(
        services=["studio"],
        env={"MAINT_PROGRESS_FILE": str(progress), "MAINT_RESUME_SECONDS": "600", **env},
    )
    wait_for_step(shim, 100)
    for index in range(1, 6):
        write_progress(progress, 100 + 20 * index, 1000, now - 30 + 6 * index)
        wait_for_step(shim, 100 + 20 * index)
    return shim, progress


def shot(page: Page, name: str) -> None:
    """A full-page screenshot into the artifacts folder."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def countdown_seconds(page: Page) -> int:
    parts = [int(part) for part in page.inner_text("#countdown").strip().split(":")]
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds


class BackHandler(http.server.BaseHTTPRequestHandler):
    """The real service, back: 200 with a marker on every path."""

    def do_GET(self) -> None:
        body = f"<!doctype html><title>back</title><p id=marker>studio is back at {self.path}</p>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def real_service() -> Iterator[list[http.server.ThreadingHTTPServer]]:
    """Holds the stand-in real service started by a test; shut down afterwards."""
    servers: list[http.server.ThreadingHTTPServer] = []
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("lang", list(LANGS))
def test_live_page(
    browser: Browser,
    start_shim: ShimFactory,
    tmp_path: Path,
    lang: str,
    real_service: list[http.server.ThreadingHTTPServer],
) -> None:
    shim, progress_file = training_shim(start_shim, tmp_path, **FAST_POLL)
    watch = Watch()
    context = new_context(browser, lang, watch)
    page = context.new_page()
    response = page.goto(f"{shim.url}/gallery?id=7")
    assert response is not None and response.status == 503
    body = response.body()
    assert len(body) < 30 * 1024

    # The right language, from the catalogs.
    _ = catalog(lang).gettext
    assert page.get_attribute("html", "lang") == TAGS[lang]
    now = status(shim, lang)
    assert page.inner_text("#message") == now["message"]
    assert page.inner_text("#title") == _("%(service)s will be back soon") % {"service": "studio"}
    assert page.inner_text(".hint") == _(
        "This page checks by itself and takes you back as soon as the service returns."
    )
    assert page.inner_text("#countdown-label") == _("Time left")
    assert page.inner_text("#state-label") == _("Training")
    assert now["eta"]["text"] in page.inner_text("#eta")

    # The countdown runs.
    assert page.is_visible("#countdown")
    first = countdown_seconds(page)
    assert 500 < first < 1000
    page.wait_for_timeout(1300)
    assert countdown_seconds(page) < first

    # The progress bar follows the progress file, as /_maintenance/status reports it.
    bar = page.locator("[role=progressbar]")
    assert bar.get_attribute("aria-valuemin") == "0"
    assert bar.get_attribute("aria-valuemax") == "1000"
    assert bar.get_attribute("aria-valuenow") == "200"
    write_progress(progress_file, 450, 1000, time.time())
    wait_for_step(shim, 450)
    expect(bar).to_have_attribute("aria-valuenow", "450", timeout=(POLL_SECONDS + 3) * 1000)
    now = status(shim, lang)
    assert bar.get_attribute("aria-valuenow") == str(now["progress"]["step"])
    assert bar.get_attribute("aria-valuemax") == str(now["progress"]["total"])
    assert page.get_attribute("#fill", "width") == "45%"
    assert "450" in page.inner_text("#progress-text")

    # The switcher changes the language and the cookie, and keeps path and query.
    other = {"en": "ja", "ja": "zh_Hans", "zh_Hans": "en"}[lang]
    page.focus(f"a[data-locale={other}]")
    page.keyboard.press("Enter")
    expect(page.locator("html")).to_have_attribute("lang", TAGS[other])
    assert page.url == f"{shim.url}/gallery?id=7"
    cookies = {cookie["name"]: cookie["value"] for cookie in context.cookies()}
    assert cookies["lang"] == other
    assert page.inner_text(".hint") == catalog(other).gettext(
        "This page checks by itself and takes you back as soon as the service returns."
    )
    page.wait_for_timeout(300)  # let the new page's script start polling

    # The real service comes back on the same port: the page goes there by itself, path and query kept.
    shim.stop()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", shim.port), BackHandler)
    real_service.append(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    back_at = time.monotonic()
    page.wait_for_selector("#marker", timeout=(POLL_SECONDS + 3) * 1000)
    elapsed = time.monotonic() - back_at
    assert page.url == f"{shim.url}/gallery?id=7"
    assert page.inner_text("#marker") == "studio is back at /gallery?id=7"
    assert elapsed < POLL_SECONDS + 2.5
    print(f"{lang}: page size {len(body)} B, back after {elapsed:.2f} s (poll {POLL_SECONDS} s)")

    watch.assert_clean(shim.url)
    context.close()


def test_screenshots(browser: Browser, start_shim: ShimFactory, tmp_path: Path) -> None:
    shim, _ = training_shim(start_shim, tmp_path)
    watch = Watch()
    for lang in LANGS:
        context = new_context(browser, lang, watch, viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.goto(f"{shim.url}/gallery?id=7")
        page.wait_for_selector("#countdown", state="visible")
        assert page.get_attribute("html", "lang") == TAGS[lang]
        for width in (1280, 360):
            page.set_viewport_size({"width": width, "height": 800})
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
                assert widths[0] <= widths[1], f"{lang} {width} {scheme} overflows: {widths}"
                shot(page, f"page-{lang}-{width}-{scheme}")
        context.close()
    watch.assert_clean(shim.url)


@pytest.mark.parametrize("state", ["unknown", "finishing"])
def test_other_states(browser: Browser, start_shim: ShimFactory, tmp_path: Path, state: str) -> None:
    env: dict[str, str] = {}
    progress = tmp_path / "progress.json"
    if state == "finishing":
        env = {"MAINT_PROGRESS_FILE": str(progress)}
    shim = start_shim(services=["studio"], env=env)
    if state == "finishing":
        # Written after the shim started: a file already at its total on start is an old run (history).
        write_progress(progress, 1000, 1000, time.time())
        wait_for_step(shim, 1000)
    watch = Watch()
    for lang in LANGS:
        context = new_context(browser, lang, watch, viewport={"width": 360, "height": 700})
        page = context.new_page()
        page.goto(f"{shim.url}/")
        _ = catalog(lang).gettext
        assert page.get_attribute("body", "data-state") == state
        assert page.inner_text("#message") == status(shim, lang)["message"]
        if state == "unknown":
            assert page.is_hidden("#countdown-row")
            assert page.is_hidden("#progress")
            assert page.inner_text("#eta") == _("There is no estimate yet; please try again later.")
            assert page.inner_text("#state-label") == _("Maintenance")
        else:
            assert page.is_visible("#countdown")
            assert page.inner_text("#state-label") == _("Finishing")
        shot(page, f"page-{lang}-360-{state}")
        context.close()
    watch.assert_clean(shim.url)


def test_without_javascript(browser: Browser, start_shim: ShimFactory, tmp_path: Path) -> None:
    shim, _ = training_shim(start_shim, tmp_path)
    watch = Watch()
    context = new_context(browser, "ja", watch, java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{shim.url}/gallery?id=7")
    now = status(shim, "ja")
    assert page.inner_text("#message") == now["message"]
    assert now["eta"]["text"] in page.inner_text("#eta")
    assert "UTC" in page.inner_text("#eta")
    bar = page.locator("[role=progressbar]")
    assert bar.get_attribute("aria-valuenow") == "200"
    assert bar.get_attribute("aria-valuemax") == "1000"
    assert page.get_attribute("#fill", "width") == "20%"
    assert page.is_visible("#progress-text")
    assert "200" in page.inner_text("#progress-text")
    refresh = page.locator('meta[http-equiv="refresh"]')
    assert refresh.count() == 1
    assert 15 <= int(refresh.get_attribute("content") or "0") <= 120
    shot(page, "page-ja-1280-nojs")
    context.close()
    watch.assert_clean(shim.url)
