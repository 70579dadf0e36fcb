"""Helpers for the tests that drive the page in Chromium (test_page.py, test_a11y.py): browser contexts
per language, a watch on what a context requested and logged, and shims in a given progress state."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # Playwright is imported when a browser runs: the suite collects without it
    from playwright.sync_api import Browser, BrowserContext, Locator, LocatorAssertions, Page

from tests.support import ARTIFACTS, Shim, ShimFactory

# Each offered locale: the browser locale a user of it has (its Accept-Language, which picks the
# language: es-MX and ar-EG go through the regional matching) and a time zone where it is spoken.
BROWSER = {
    "en": ("en-US", "America/New_York"),
    "ja": ("ja-JP", "Asia/Tokyo"),
    "zh_Hans": ("zh-CN", "Asia/Shanghai"),
    "zh_Hant": ("zh-TW", "Asia/Taipei"),
    "ko": ("ko-KR", "Asia/Seoul"),
    "es": ("es-MX", "America/Mexico_City"),
    "fr": ("fr-FR", "Europe/Paris"),
    "de": ("de-DE", "Europe/Berlin"),
    "pt_BR": ("pt-BR", "America/Sao_Paulo"),
    "ru": ("ru-RU", "Europe/Moscow"),
    "id": ("id-ID", "Asia/Jakarta"),
    "vi": ("vi-VN", "Asia/Ho_Chi_Minh"),
    "th": ("th-TH", "Asia/Bangkok"),
    "ar": ("ar-EG", "Africa/Cairo"),
}
ALL_LANGS = list(BROWSER)
# The HTML lang of each (BCP 47).
TAGS = {lang: lang.replace("_", "-") for lang in ALL_LANGS}
# The browser's own note about the 503 itself (the document and the page's probes): the contract, not a fault.
EXPECTED_CONSOLE = re.compile(r"^Failed to load resource: the server responded with a status of 503\b")
REPORT_CSP = """
document.addEventListener("securitypolicyviolation", function (e) {
  console.error("CSP violation: " + e.violatedDirective + " " + e.blockedURI);
});
"""


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


# axe-core for the accessibility audits: installed from the npm registry on first use, next to the test
# venv (git-ignored, reused afterwards).
AXE_VERSION = "4.14.1"
AXE_DIR = Path(os.environ.get("MAINT_TEST_AXE_DIR", Path(sys.prefix) / "share" / f"axe-core-{AXE_VERSION}"))


def axe_script() -> str:
    """axe-core's browser build (axe.min.js), `npm install`ed into AXE_DIR when it is not there yet."""
    script = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed to install axe-core (apt-get install npm; scripts/test.sh does)"
        subprocess.run(
            [npm, "install", "--prefix", str(AXE_DIR), "--no-save", "--no-audit", "--no-fund",
             "--ignore-scripts", "--loglevel=error", f"axe-core@{AXE_VERSION}"],
            check=True,
            timeout=300,
        )
    package = json.loads((script.parent / "package.json").read_text(encoding="utf-8"))
    assert package["version"] == AXE_VERSION
    return script.read_text(encoding="utf-8")


def new_context(browser: Browser, lang: str, watch: Watch, **options: Any) -> BrowserContext:
    """A context that speaks `lang` and lives in a time zone of that language."""
    locale, zone = BROWSER[lang]
    options.setdefault("locale", locale)
    options.setdefault("timezone_id", zone)
    context = browser.new_context(**options)
    watch.attach(context)
    return context


def status(shim: Shim, lang: str) -> dict[str, Any]:
    """The shim's /_maintenance/status object in `lang`."""
    with urllib.request.urlopen(f"{shim.url}/_maintenance/status?lang={lang}", timeout=5) as response:
        result: dict[str, Any] = json.load(response)
    return result


def write_progress(path: Path, step: int, total: int, at: float) -> None:
    """Atomically, as a trainer does: write a sibling, then rename over."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"step": step, "total": total, "updated_at": at}), encoding="utf-8")
    os.replace(tmp, path)


def wait_for_step(shim: Shim, step: int, timeout: float = 10.0) -> None:
    """Until the shim reports `step`."""
    deadline = time.monotonic() + timeout
    while (status(shim, "en").get("progress") or {}).get("step") != step:
        assert time.monotonic() < deadline, f"the shim never reported step {step}"
        time.sleep(0.1)


def training_shim(start_shim: ShimFactory, directory: Path, **env: str) -> tuple[Shim, Path]:
    """A shim following a progress file that already has six samples (the first interval is warm-up, the
    ETA needs four more over 5 s), so the ETA is known: 3.3 steps/s, 800 steps and 600 s of resume left."""
    progress = directory / "progress.json"
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


def stalled_shim(start_shim: ShimFactory, directory: Path) -> Shim:
    """A shim whose run reported step 400 of 1000 and then nothing for longer than MAINT_STALL_SECONDS (1)."""
    progress = directory / "progress.json"
    shim = start_shim(services=["studio"], env={"MAINT_PROGRESS_FILE": str(progress), "MAINT_STALL_SECONDS": "1"})
    # Written after the shim started, so that its first read does not take it for an old run.
    write_progress(progress, 400, 1000, time.time())
    wait_for_step(shim, 400)
    deadline = time.monotonic() + 10
    while status(shim, "en")["state"] != "stalled":
        assert time.monotonic() < deadline, "the shim never called the run stalled"
        time.sleep(0.1)
    return shim


def finishing_shim(start_shim: ShimFactory, directory: Path) -> Shim:
    """A shim whose progress file reached its total after it started: saving and reloading."""
    progress = directory / "progress.json"
    shim = start_shim(services=["studio"], env={"MAINT_PROGRESS_FILE": str(progress)})
    # Written after the shim started: a file already at its total on start is an old run (history).
    write_progress(progress, 1000, 1000, time.time())
    wait_for_step(shim, 1000)
    return shim


def shot(page: Page, name: str) -> None:
    """A full-page screenshot into the artifacts folder."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def overflow(page: Page) -> tuple[int, int]:
    """The document's (scrollWidth, clientWidth): anything wider than the viewport scrolls sideways."""
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    return int(widths[0]), int(widths[1])


def expect(locator: Locator) -> LocatorAssertions:
    """Playwright's `expect`, imported on first use."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)
