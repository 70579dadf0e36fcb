"""The operator's brand: display names per language, logo, accent colours, template override, time zone.
Every bad value stops start-up with one line naming it (exit 2); the page in Chromium is in test_a11y.py."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from maintenance_shim.web.branding import MAX_LOGO_BYTES, BrandError, contrast_ratio, load_logo, mix, parse_colour
from tests.support import InProcess, clean_env, request

LOGO_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 120 32"><rect width="32" height="32" rx="6" '
    'fill="#0b6e4f"/><text x="40" y="23" font-family="sans-serif" font-size="18" fill="#0b6e4f">Acme</text></svg>'
)


def test_colours_and_contrast() -> None:
    assert parse_colour("#0B6", "X") == "#00bb66"
    assert parse_colour(" #0b6e4f ", "X") == "#0b6e4f"
    for bad in ("0b6e4f", "#12345", "green", "#ggg"):
        with pytest.raises(BrandError, match=r"^X: "):
            parse_colour(bad, "X")
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21)
    assert contrast_ratio("#2458c6", "#ffffff") == pytest.approx(6.39, abs=0.01)  # the page's own accent
    assert mix("#000000", "#ffffff", 0.5) == "#808080"


def test_logo_files(tmp_path: Path) -> None:
    svg = tmp_path / "logo.svg"
    svg.write_text(LOGO_SVG)
    assert load_logo(svg).startswith("data:image/svg+xml;base64,")
    png = tmp_path / "logo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    assert load_logo(png).startswith("data:image/png;base64,")
    big = tmp_path / "big.svg"
    big.write_text(LOGO_SVG + " " * MAX_LOGO_BYTES)
    with pytest.raises(BrandError, match="at most 6,144"):
        load_logo(big)
    text = tmp_path / "logo.txt"
    text.write_text("hello")
    with pytest.raises(BrandError, match="neither an SVG"):
        load_logo(text)


def _check(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "check"], env=clean_env(env), cwd=tmp_path,
        capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [
        ("MAINT_LOGO", "missing.svg", "MAINT_LOGO: cannot read"),
        ("MAINT_ACCENT_COLOR", "yellow", "MAINT_ACCENT_COLOR: 'yellow' is not a colour"),
        ("MAINT_ACCENT_COLOR", "#ffd400", "MAINT_ACCENT_COLOR: #ffd400 has a contrast of 1.4:1"),
        ("MAINT_ACCENT_COLOR_DARK", "#202020", "MAINT_ACCENT_COLOR_DARK: #202020 has a contrast of 1.0:1"),
        ("MAINT_TIMEZONE", "Mars/Olympus", "MAINT_TIMEZONE: 'Mars/Olympus' is not a time zone"),
        ("MAINT_TEMPLATE_DIR", "nowhere", "MAINT_TEMPLATE_DIR: nowhere is not a directory"),
        ("MAINT_SERVICE_studio_DISPLAY_NAME_NB", "Studio", "MAINT_SERVICE_studio_DISPLAY_NAME_NB: 'nb' is not in"),
    ],
)
@pytest.mark.e2e
def test_a_bad_brand_setting_stops_start_up_naming_it(tmp_path: Path, setting: str, value: str, words: str) -> None:
    done = _check(tmp_path, {setting: value})
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.e2e
def test_a_logo_needs_its_alt_text(tmp_path: Path) -> None:
    (tmp_path / "logo.svg").write_text(LOGO_SVG)
    done = _check(tmp_path, {"MAINT_LOGO": str(tmp_path / "logo.svg")})
    assert done.returncode == 2 and "MAINT_LOGO_ALT: a logo needs its text" in done.stderr


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{% extends 'base/page.html' %}{% block nothing %}", "page.html:1: Unexpected end of template"),
        ("<p>{{ no_such_value }}</p>", "page.html does not render (en): 'no_such_value' is undefined"),
    ],
)
@pytest.mark.e2e
def test_a_broken_template_stops_start_up(tmp_path: Path, template: str, words: str) -> None:
    (tmp_path / "brand").mkdir()
    (tmp_path / "brand" / "page.html").write_text(template)
    done = _check(tmp_path, {"MAINT_TEMPLATE_DIR": str(tmp_path / "brand")})
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "MAINT_TEMPLATE_DIR: " in done.stderr and words in done.stderr, done.stderr
    served = subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "serve", "--listen", "127.0.0.1:1=studio"],
        env=clean_env({"MAINT_TEMPLATE_DIR": str(tmp_path / "brand"), "MAINT_ADMIN_LISTEN": "off"}),
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert served.returncode == 2 and words in served.stderr and "Traceback" not in served.stderr


def _branded(tmp_path: Path, **extra: str) -> InProcess:
    return InProcess({
        "MAINT_LANGUAGES": "en,ja,ar", "MAINT_ETA": "3h", "MAINT_TIMEZONE": "Asia/Tokyo",
        "MAINT_SERVICE_studio_DISPLAY_NAME": "Acme Image Studio",
        "MAINT_SERVICE_studio_DISPLAY_NAME_JA": "Acme 画像スタジオ",
        **extra,
    })


def test_display_names_per_language_and_the_tag_in_json(tmp_path: Path) -> None:
    app = _branded(tmp_path)
    _, _, en = request(app, "GET", "/api/x", {"Accept-Language": "en"})
    _, _, ja = request(app, "GET", "/api/x", {"Accept-Language": "ja"})
    _, _, ar = request(app, "GET", "/", {"Accept-Language": "ar", "Accept": "text/plain"})
    en_data, ja_data = json.loads(en), json.loads(ja)
    assert en_data["detail"].startswith("Acme Image Studio is paused")
    assert "Acme 画像スタジオ" in ja_data["detail"]
    assert en_data["maintenance"]["service"] == ja_data["maintenance"]["service"] == "studio"  # the id
    assert "Acme Image Studio" in ar.decode()  # no Arabic variant: the plain display name
    _, _, page = request(app, "GET", "/", {"Accept-Language": "en", "Accept": "text/html"})
    assert "<title>Acme Image Studio will be back soon</title>" in page.decode()


def test_server_rendered_times_are_in_the_display_time_zone(tmp_path: Path) -> None:
    app = _branded(tmp_path, MAINT_ETA="3h")
    _, _, body = request(app, "GET", "/api/x", {"Accept-Language": "en"})
    data = json.loads(body)
    at = datetime.fromisoformat(data["maintenance"]["eta"]["at"])
    assert at.tzinfo is not None and at.utcoffset() == timedelta(0)  # machine-readable time stays UTC
    tokyo = at.astimezone(ZoneInfo("Asia/Tokyo"))
    # JSON carries plain spaces (SDKs print it verbatim); the page keeps Babel's narrow no-break space.
    assert "\u202f" not in data["detail"], data["detail"]
    shown = re.search(r"around (\d{1,2}):(\d\d) ([AP]M) JST\)", data["detail"])
    assert shown is not None, data["detail"]
    assert (int(shown[1]) % 12, int(shown[2]), shown[3]) == (tokyo.hour % 12, tokyo.minute, tokyo.strftime("%p"))
    utc = InProcess({"MAINT_LANGUAGES": "en", "MAINT_ETA": "30m", "MAINT_TIMEZONE": "UTC"})
    _, _, body = request(utc, "GET", "/api/x")
    assert re.search(r"around \d{1,2}:\d\d [AP]M UTC\)", json.loads(body)["detail"])


def test_template_override_keeps_the_csp_hashes(tmp_path: Path) -> None:
    brand = tmp_path / "brand"
    brand.mkdir()
    (brand / "page.css").write_text("body{font-family:Georgia,serif}h1{letter-spacing:.01em}")
    (brand / "page.html").write_text(
        "{% extends 'base/page.html' %}"
    )
    app = _branded(tmp_path, MAINT_TEMPLATE_DIR=str(brand), MAINT_ACCENT_COLOR="#0b6e4f")
    status, headers, body = request(app, "GET", "/", {"Accept": "text/html"})
    assert status == 503
    page = body.decode()
    assert "body{font-family:Georgia,serif}" in page and "--accent:#0b6e4f" in page
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in headers["content-security-policy"]
