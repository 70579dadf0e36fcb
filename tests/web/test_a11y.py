"""Accessibility audit: axe-core (the npm package, injected by Playwright into Debian's Chromium) on the
page in every offered language, light and dark, in each state the page shows (training, finishing,
stalled, unknown), with the language list open; zero violations, and nothing wider than the screen."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support import ARTIFACTS, Shim, ShimFactory
from tests.support.page import (
    ALL_LANGS,
    AXE_VERSION,
    BROWSER,
    TAGS,
    Watch,
    axe_script,
    finishing_shim,
    overflow,
    shot,
    stalled_shim,
    status,
    training_shim,
)

if TYPE_CHECKING:  # imported when a browser runs: the suite collects without Playwright
    from playwright.sync_api import Browser, Page

STATES = ["training", "finishing", "stalled", "unknown"]
# Violations and "needs review" results as plain data: rule, impact, and where.
RUN_AXE = """
async () => {
  const result = await axe.run(document, { resultTypes: ["violations", "incomplete"] });
  const brief = (items) => items.map((item) => ({
    id: item.id, impact: item.impact, help: item.help,
    nodes: item.nodes.map((node) => node.target.join(" ") + ": " + node.failureSummary),
  }));
  return { violations: brief(result.violations), incomplete: brief(result.incomplete),
           passes: result.passes.length, version: axe.version };
}
"""

# axe's color-contrast rule leaves out text it takes for an icon font's ligatures, and it takes joined
# Arabic letters for those (its isIconLigature heuristic: a word's first letter drawn alone differs from
# the word's start); on an Arabic page it checks 5 of the 21 texts. So the Arabic page is checked once
# more with its Arabic letters swapped for Latin ones: the same elements, colours, sizes and weights.
COUNT_CONTRAST = """
async () => {
  const result = await axe.run(document, { runOnly: ["color-contrast"] });
  const nodes = (items) => items.reduce((count, item) => count + item.nodes.length, 0);
  return { checked: nodes(result.passes) + nodes(result.violations) + nodes(result.incomplete),
           violations: result.violations.map((item) => item.nodes.map((node) => node.failureSummary)),
           incomplete: nodes(result.incomplete) };
}
"""
LATIN_STAND_IN = r"""
() => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentNode.nodeName !== "SCRIPT") {
      node.nodeValue = node.nodeValue.replace(/\p{Script=Arabic}/gu, "a");
    }
  }
}
"""


@pytest.fixture(scope="module")
def axe_source() -> str:
    """axe-core's browser build (axe.min.js), installed on first use (tests/support/page.py)."""
    return axe_script()


@pytest.fixture(scope="module")
def state_shims(module_shim_launcher: ShimFactory, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Shim]:
    """One shim in each state the page shows, shared by the module; started side by side."""
    dirs = {state: tmp_path_factory.mktemp(state) for state in STATES}
    starts: dict[str, Callable[[], Shim]] = {
        "unknown": lambda: module_shim_launcher(services=["studio"]),
        "finishing": lambda: finishing_shim(module_shim_launcher, dirs["finishing"]),
        "stalled": lambda: stalled_shim(module_shim_launcher, dirs["stalled"]),
        "training": lambda: training_shim(module_shim_launcher, dirs["training"])[0],
    }
    with ThreadPoolExecutor(len(starts)) as pool:
        futures = {state: pool.submit(start) for state, start in starts.items()}
        return {state: future.result() for state, future in futures.items()}


@dataclass
class Audit:
    """One page with axe-core loaded into every document it opens, and a watch on what it requested."""

    page: Page
    watch: Watch


@pytest.fixture(scope="module")
def audit(chromium: Browser, axe_source: str) -> Iterator[Audit]:
    """One context and page for the whole matrix: a context per run would cost most of its time."""
    watch = Watch()
    context = chromium.new_context(viewport={"width": 360, "height": 800}, reduced_motion="reduce")
    watch.attach(context)
    # An init script, not a <script> the page's CSP would refuse; Chromium keeps its compiled code.
    context.add_init_script(script=axe_source)
    yield Audit(context.new_page(), watch)
    context.close()


@pytest.mark.parametrize("state", STATES)
def test_axe_finds_nothing(audit: Audit, state_shims: dict[str, Shim], state: str) -> None:
    shim, page = state_shims[state], audit.page
    report: dict[str, Any] = {}
    found: list[str] = []
    texts: dict[str, int] = {}  # how many texts color-contrast checked on the English page
    assert ALL_LANGS[0] == "en"
    for lang in ALL_LANGS:
        # The header a browser set to this language sends: negotiation picks the page's language.
        page.context.set_extra_http_headers({"Accept-Language": BROWSER[lang][0]})
        page.emulate_media(color_scheme="light", reduced_motion="reduce")
        response = page.goto(f"{shim.url}/gallery?id=7")
        assert response is not None and response.status == 503
        assert page.get_attribute("html", "lang") == TAGS[lang]
        assert page.get_attribute("body", "data-state") == state
        assert page.inner_text("#message") == status(shim, lang)["message"]
        page.click("#languages summary")  # the list open, so that its 14 links are audited too
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme, reduced_motion="reduce")
            result = page.evaluate(RUN_AXE)
            report[f"{lang}-{scheme}"] = result
            found += [f"{lang} {scheme}: {v['id']} ({v['impact']}) {v['nodes']}" for v in result["violations"]]
            widths = overflow(page)
            assert widths[0] <= widths[1], f"{lang} {scheme} overflows at 360 px: {widths}"
            if lang == "en":
                texts[scheme] = page.evaluate(COUNT_CONTRAST)["checked"]
        if state == "stalled" and lang in ("ar", "th", "ko"):
            shot(page, f"page-{lang}-360-stalled-dark")
        if lang == "ar":
            page.evaluate(LATIN_STAND_IN)
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme, reduced_motion="reduce")
                contrast = page.evaluate(COUNT_CONTRAST)
                report[f"ar-latin-stand-in-{scheme}"] = contrast
                assert contrast["checked"] >= texts[scheme], (scheme, contrast, texts)
                found += [f"ar {scheme}: color-contrast {nodes}" for nodes in contrast["violations"]]
                assert contrast["incomplete"] == 0, contrast
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"axe-{state}.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    runs = {key: result for key, result in report.items() if "passes" in result}
    incomplete = sum(len(result["incomplete"]) for result in runs.values())
    passes = min(result["passes"] for result in runs.values())
    print(f"axe {AXE_VERSION}, {state}: {len(runs)} runs, {len(found)} violations, {incomplete} needing review, "
          f"at least {passes} rules passed in each; contrast of {texts} texts, Arabic's included")
    assert found == []
    assert audit.watch.errors == []
    origins = tuple(f"{other.url}/" for other in state_shims.values())
    assert [url for url in audit.watch.requests if not url.startswith(origins)] == [], "requests left the origin"


def test_axe_sees_a_fault(audit: Audit, state_shims: dict[str, Shim]) -> None:
    """The audit is live: the same page with its heading in light grey is a contrast violation."""
    page = audit.page
    page.context.set_extra_http_headers({"Accept-Language": "en-US"})
    page.emulate_media(color_scheme="light", reduced_motion="reduce")
    page.goto(f"{state_shims['unknown'].url}/")
    page.evaluate("document.querySelector('h1').style.color = '#c8c8c8'")
    assert [item["id"] for item in page.evaluate(RUN_AXE)["violations"]] == ["color-contrast"]


LOGO_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 150 32"><rect width="32" height="32" rx="7" '
    'fill="#0b6e4f"/><path d="M9 23l7-14 7 14" stroke="#fff" stroke-width="3" fill="none"/><text x="42" y="23" '
    'font-family="sans-serif" font-size="19" font-weight="600" fill="#0b6e4f">Acme AI</text></svg>'
)


def test_a_branded_page_passes_the_audit_too(audit: Audit, start_shim: ShimFactory, tmp_path: Path) -> None:
    """Display names, a logo, accent colours and a template override: still zero violations, inside the
    page's CSP (no violation reported), under 30 KB, nothing wider than the screen; screenshots."""
    brand = tmp_path / "brand"
    brand.mkdir()
    (brand / "logo.svg").write_text(LOGO_SVG)
    # The operator's own stylesheet: the built-in one, plus a rule of theirs.
    css = (Path(__file__).resolve().parents[2] / "app" / "web" / "templates" / "page.css").read_text()
    (brand / "page.css").write_text(css + "h1{letter-spacing:-.01em}")
    shim, _ = training_shim(start_shim, tmp_path, **{
        "MAINT_LANGUAGES": "en,ja,ar", "MAINT_LOGO": str(brand / "logo.svg"), "MAINT_LOGO_ALT": "Acme AI",
        "MAINT_ACCENT_COLOR": "#0b6e4f", "MAINT_ACCENT_COLOR_DARK": "#6fd6a8", "MAINT_TEMPLATE_DIR": str(brand),
        "MAINT_TIMEZONE": "Asia/Tokyo",
        "MAINT_SERVICE_studio_DISPLAY_NAME": "Acme Image Studio",
        "MAINT_SERVICE_studio_DISPLAY_NAME_JA": "Acme 画像スタジオ",
        "MAINT_SERVICE_studio_DISPLAY_NAME_AR": "استوديو الصور من Acme",
    })
    page = audit.page
    found: list[str] = []
    for lang, name in (("en", "Acme Image Studio"), ("ja", "Acme 画像スタジオ"), ("ar", "استوديو الصور من Acme")):
        page.context.set_extra_http_headers({"Accept-Language": BROWSER[lang][0]})
        for width in (1280, 360):
            page.set_viewport_size({"width": width, "height": 800})
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme, reduced_motion="reduce")
                response = page.goto(f"{shim.url}/")
                assert response is not None and response.status == 503
                assert len(response.body()) < 30 * 1024
                assert name in page.inner_text("h1")
                assert page.get_attribute("img.logo", "alt") == "Acme AI"
                accent = "rgb(11, 110, 79)" if scheme == "light" else "rgb(111, 214, 168)"
                assert page.evaluate("getComputedStyle(document.querySelector('.badge')).color") == accent
                result = page.evaluate(RUN_AXE)
                found += [f"{lang} {scheme} {width}: {v['id']} {v['nodes']}" for v in result["violations"]]
                widths = overflow(page)
                assert widths[0] <= widths[1], (lang, width, widths)
                if lang != "ar" or width == 360:
                    shot(page, f"branded-{lang}-{width}-{scheme}")
    page.set_viewport_size({"width": 360, "height": 800})
    assert found == []
    assert audit.watch.errors == [], audit.watch.errors  # CSP violations are reported as errors
