"""The HTML page in real Chromium (/usr/bin/chromium): language, live progress and countdown, switcher,
reload into the returning service, screenshots, no scripts, and no request leaving the origin."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from maintenance_shim.i18n import load_translations
from tests.support import ShimFactory
from tests.support.page import (
    ALL_LANGS,
    TAGS,
    Watch,
    expect,
    finishing_shim,
    new_context,
    overflow,
    shot,
    status,
    training_shim,
    wait_for_step,
    write_progress,
)

if TYPE_CHECKING:  # imported when a browser runs: the suite collects without Playwright
    from playwright.sync_api import Browser, Page

# The live tests run in these (switching on into Arabic); the screenshots cover every offered language.
LANGS = ["en", "ja", "zh_Hans"]
# The face each of these scripts must be drawn with in the tests.
NOTO = {"ko": "Noto Sans CJK KR", "th": "Noto Sans Thai", "ar": "Noto Sans Arabic", "zh_Hant": "Noto Sans CJK TC"}
# Retry-After 2 s: the page polls every 2 s (its floor; its cap is 15 s).
POLL_SECONDS = 2
FAST_POLL = {"MAINT_RETRY_AFTER_MIN": "1", "MAINT_RETRY_AFTER_MAX": str(POLL_SECONDS)}


@pytest.fixture(scope="module")
def browser(chromium: Browser) -> Browser:
    """The shared headless Debian Chromium (conftest)."""
    return chromium


def catalog(lang: str) -> Any:
    return load_translations(lang)


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
    assert page.inner_text("#title") == _("%(service)s will be back soon") % {"service": "Studio"}
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
    deadline = time.monotonic() + 30  # a timer of the page: late on a busy machine, never skipped
    while countdown_seconds(page) >= first:
        assert time.monotonic() < deadline, f"the countdown stayed at {first} s"
        page.wait_for_timeout(100)

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

    # The switcher, by keyboard: Enter on its toggle opens the list, Escape closes it, Enter on a
    # language changes the language and the cookie, and keeps path and query.
    other = {"en": "ja", "ja": "zh_Hans", "zh_Hans": "ar"}[lang]
    menu = page.locator("#languages")
    assert page.is_hidden(f"a[data-locale={other}]")
    page.focus("#languages summary")
    page.keyboard.press("Enter")
    expect(menu).to_have_attribute("open", "")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.locale") == ALL_LANGS[0]
    page.keyboard.press("Escape")
    expect(menu).not_to_have_attribute("open", "")
    assert page.evaluate("document.activeElement.tagName") == "SUMMARY"
    page.keyboard.press("Enter")
    page.focus(f"a[data-locale={other}]")
    page.keyboard.press("Enter")
    expect(page.locator("html")).to_have_attribute("lang", TAGS[other])
    assert page.get_attribute("html", "dir") == ("rtl" if other == "ar" else "ltr")
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
    """Every language at 1280 and 360 px, light and dark, and with the language list open at 360 and 320
    px: nothing wider than the viewport, screenshots of each (dark ones at 360 px), every page < 30 KB.
    Korean, Thai, Arabic and Traditional Chinese are drawn with Debian's Noto faces (fonts-noto-core,
    fonts-noto-cjk), which the page's font stacks name after the platforms' own system faces."""
    shim, _ = training_shim(start_shim, tmp_path)
    watch = Watch()
    sizes: dict[str, int] = {}
    for lang in ALL_LANGS:
        context = new_context(browser, lang, watch, viewport={"width": 1280, "height": 800})
        page = context.new_page()
        response = page.goto(f"{shim.url}/gallery?id=7")
        assert response is not None
        sizes[lang] = len(response.body())
        assert sizes[lang] < 30 * 1024, sizes
        page.wait_for_selector("#countdown", state="visible")
        assert page.get_attribute("html", "lang") == TAGS[lang]
        if lang in NOTO:
            assert NOTO[lang] in platform_fonts(page, "#message")
            assert NOTO[lang] in platform_fonts(page, "h1")
        for width in (1280, 360):
            page.set_viewport_size({"width": width, "height": 800})
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                widths = overflow(page)
                assert widths[0] <= widths[1], f"{lang} {width} {scheme} overflows: {widths}"
                if width == 360 or scheme == "light":  # dark at 1280 px adds nothing the others do not show
                    shot(page, f"page-{lang}-{width}-{scheme}")
        page.emulate_media(color_scheme="light")
        page.click("#languages summary")
        for width in (360, 320):
            page.set_viewport_size({"width": width, "height": 800})
            widths = overflow(page)
            assert widths[0] <= widths[1], f"{lang} {width} with the language list open overflows: {widths}"
        if lang in ("en", "ko", "th", "ar"):
            shot(page, f"page-{lang}-320-languages")
        context.close()
    watch.assert_clean(shim.url)
    print("page sizes (bytes):", sizes)


def platform_fonts(page: Page, selector: str) -> set[str]:
    """The font families Chromium drew `selector`'s text with (DevTools' "Rendered Fonts")."""
    session = page.context.new_cdp_session(page)
    session.send("DOM.enable")
    session.send("CSS.enable")
    root = session.send("DOM.getDocument")["root"]["nodeId"]
    node = session.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    fonts = session.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    session.detach()
    return {font["familyName"] for font in fonts}


def test_right_to_left(browser: Browser, start_shim: ShimFactory, tmp_path: Path) -> None:
    """Arabic: dir=rtl, the bar fills from the right, the switcher starts on the right, and the Latin
    service name and the numbers sit in their own isolates, also after the script redraws them."""
    shim, progress_file = training_shim(start_shim, tmp_path, **FAST_POLL)
    watch = Watch()
    context = new_context(browser, "ar", watch, viewport={"width": 360, "height": 800})
    page = context.new_page()
    page.goto(f"{shim.url}/")
    assert page.get_attribute("html", "dir") == "rtl"
    bar = page.locator("#bar").bounding_box()
    fill = page.locator("#fill").bounding_box()
    assert bar is not None and fill is not None
    assert abs((fill["x"] + fill["width"]) - (bar["x"] + bar["width"])) < 1, (bar, fill)
    assert fill["width"] < bar["width"] * 0.5
    assert page.locator("#message bdi").all_inner_texts() == ["Studio"]
    assert page.locator("#title bdi").all_inner_texts() == ["Studio"]
    assert page.get_attribute("#countdown", "dir") == "ltr"
    assert len(page.locator("#progress-text bdi").all()) == 3  # step, total, percent

    page.click("#languages summary")
    items = [page.locator(f"#languages li:nth-child({n})").bounding_box() for n in (1, 2)]
    summary = page.locator("#languages summary").bounding_box()
    main = page.locator("main").bounding_box()
    assert items[0] is not None and items[1] is not None and summary is not None and main is not None
    assert items[0]["x"] > items[1]["x"], "the first language is not on the right"
    assert summary["x"] + summary["width"] > main["x"] + main["width"] * 0.75, "the switcher is not on the right"
    assert page.get_attribute("a[data-locale=en]", "dir") == "ltr"

    # The script redraws the progress sentence: its numbers are isolated again.
    write_progress(progress_file, 450, 1000, time.time())
    wait_for_step(shim, 450)
    expect(page.locator("#bar")).to_have_attribute("aria-valuenow", "450", timeout=(POLL_SECONDS + 3) * 1000)
    assert page.locator("#progress-text bdi").first.inner_text() == "450"
    assert page.locator("#message bdi").all_inner_texts() == ["Studio"]
    # Western digits, as the server writes them.
    assert page.inner_text("#countdown").replace(":", "").isdigit()
    shot(page, "page-ar-360-rtl-open")
    # A new message from the status poll (training is over): the script isolates the name in it too.
    write_progress(progress_file, 1000, 1000, time.time())
    wait_for_step(shim, 1000)
    expect(page.locator("body")).to_have_attribute("data-state", "finishing", timeout=(POLL_SECONDS + 3) * 1000)
    assert page.inner_text("#message") == status(shim, "ar")["message"]
    assert page.locator("#message bdi").all_inner_texts() == ["Studio"]
    context.close()
    watch.assert_clean(shim.url)


@pytest.mark.parametrize("state", ["unknown", "finishing"])
def test_other_states(browser: Browser, start_shim: ShimFactory, tmp_path: Path, state: str) -> None:
    shim = finishing_shim(start_shim, tmp_path) if state == "finishing" else start_shim(services=["studio"])
    watch = Watch()
    for lang in [*LANGS, "ar"]:
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
