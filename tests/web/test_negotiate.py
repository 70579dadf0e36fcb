"""Negotiation is a pure function: table tests and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maintenance_shim.web.negotiate import (
    FORMATS,
    LocaleMatcher,
    choose_format,
    cookie_value,
    negotiate,
    parse_qvalues,
    query_params,
)

MATCHER = LocaleMatcher(["en", "ja", "zh_Hans"], "en")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("a;q=0.5, b", [("b", 1.0), ("a", 0.5)]),
        ("a, b", [("a", 1.0), ("b", 1.0)]),
        ("a;q=2, b;q=-1, c;q=nan, d;q=x, e", [("e", 1.0)]),
        ("A;Q=0.3", [("a", 0.3)]),
        (",,;,", []),
    ],
)
def test_parse_qvalues(header: str, expected: list[tuple[str, float]]) -> None:
    assert parse_qvalues(header) == expected


@pytest.mark.parametrize(
    ("accept", "default", "expected"),
    [
        (None, "html", "html"),
        ("*/*", "json", "json"),
        ("text/*", "html", "html"),
        ("text/*", "json", "html"),
        ("application/*", "html", "json"),
        ("application/problem+json, application/json;q=0.9", "html", "problem"),
        ("text/plain;q=0.9, text/html;q=0.1", "html", "text"),
        ("image/webp", "html", "text"),
        ("text/html;q=0", "html", "text"),
    ],
)
def test_choose_format(accept: str | None, default: str, expected: str) -> None:
    assert choose_format(accept, default) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("ja", "ja"),
        ("ja-JP", "ja"),
        ("JA-jp", "ja"),
        ("zh-CN", "zh_Hans"),
        ("zh-SG", "zh_Hans"),
        ("zh-Hans-CN", "zh_Hans"),
        ("zh_Hans", "zh_Hans"),
        ("zh", "zh_Hans"),
        ("zh-TW", None),
        ("zh-Hant", None),
        ("en-GB", "en"),
        ("fr", None),
        ("*", None),
        ("", None),
        ("i-klingon", None),
        ("<script>", None),
    ],
)
def test_locale_matcher(tag: str, expected: str | None) -> None:
    assert MATCHER.match(tag) == expected


OFFERED = ["en", "ja", "zh_Hans", "zh_Hant", "ko", "es", "fr", "de", "pt_BR", "ru", "id", "vi", "th", "ar"]
ALL = LocaleMatcher(OFFERED, "en")


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        # Chinese by script: Traditional for Taiwan, Hong Kong, Macao (and zh-Hant anywhere), never Simplified.
        ("zh-TW", "zh_Hant"),
        ("zh-HK", "zh_Hant"),
        ("zh-MO", "zh_Hant"),
        ("zh-Hant", "zh_Hant"),
        ("zh-Hant-TW", "zh_Hant"),
        ("zh-Hant-CN", "zh_Hant"),
        ("zh_Hant_HK", "zh_Hant"),
        ("cmn-Hant-TW", "zh_Hant"),
        ("zh", "zh_Hans"),
        ("zh-CN", "zh_Hans"),
        ("zh-SG", "zh_Hans"),
        ("zh-MY", "zh_Hans"),
        ("zh-Hans", "zh_Hans"),
        ("zh-Hans-HK", "zh_Hans"),
        ("zh-Latn", None),
        # Korean
        ("ko", "ko"),
        ("ko-KR", "ko"),
        ("ko-KP", "ko"),
        ("ko-Kore-KR", "ko"),
        # Spanish: Spain, Latin America (419) and its countries, the US
        ("es", "es"),
        ("es-ES", "es"),
        ("es-419", "es"),
        ("es-MX", "es"),
        ("es-AR", "es"),
        ("es-CO", "es"),
        ("es-US", "es"),
        # French
        ("fr", "fr"),
        ("fr-FR", "fr"),
        ("fr-CA", "fr"),
        ("fr-BE", "fr"),
        ("fr-CH", "fr"),
        # German
        ("de", "de"),
        ("de-DE", "de"),
        ("de-AT", "de"),
        ("de-CH", "de"),
        ("de-DE-1996", "de"),
        # Portuguese: any region gets the Brazilian catalog, the only one
        ("pt", "pt_BR"),
        ("pt-BR", "pt_BR"),
        ("pt-PT", "pt_BR"),
        ("pt-AO", "pt_BR"),
        ("pt-MZ", "pt_BR"),
        ("pt_BR", "pt_BR"),
        # Russian
        ("ru", "ru"),
        ("ru-RU", "ru"),
        ("ru-UA", "ru"),
        ("ru-KZ", "ru"),
        # Indonesian, and its old code
        ("id", "id"),
        ("id-ID", "id"),
        ("in", "id"),
        ("in-ID", "id"),
        # Vietnamese
        ("vi", "vi"),
        ("vi-VN", "vi"),
        # Thai, also with a Unicode extension
        ("th", "th"),
        ("th-TH", "th"),
        ("th-TH-u-nu-thai", "th"),
        # Arabic: Egypt, Saudi Arabia, Morocco, the Emirates, and Modern Standard Arabic (ar-001)
        ("ar", "ar"),
        ("ar-EG", "ar"),
        ("ar-SA", "ar"),
        ("ar-MA", "ar"),
        ("ar-AE", "ar"),
        ("ar-001", "ar"),
        # The first three, unchanged
        ("en-GB", "en"),
        ("en-IN", "en"),
        ("ja-JP", "ja"),
        # Not offered
        ("he", None),
        ("nb-NO", None),
        ("sr-Latn", None),
        ("yue-HK", None),
    ],
)
def test_every_offered_language_and_region(tag: str, expected: str | None) -> None:
    assert ALL.match(tag) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("zh-TW,zh;q=0.9,en-US;q=0.8,en;q=0.7", "zh_Hant"),
        ("zh-HK,zh-TW;q=0.9,en;q=0.5", "zh_Hant"),
        ("ko-KR,ko;q=0.9,en-US;q=0.8", "ko"),
        ("es-419,es;q=0.9", "es"),
        ("es-MX,es;q=0.9,en;q=0.8", "es"),
        ("fr-CA,fr;q=0.9,en-CA;q=0.8,en;q=0.7", "fr"),
        ("de-CH,de;q=0.9,fr;q=0.8", "de"),
        ("pt-PT,pt;q=0.9,en;q=0.8", "pt_BR"),
        ("pt-BR,pt;q=0.9,en-US;q=0.8", "pt_BR"),
        ("ru-RU,ru;q=0.9,en-US;q=0.8", "ru"),
        ("id-ID,id;q=0.9,en-US;q=0.8", "id"),
        ("vi-VN,vi;q=0.9,fr-FR;q=0.8", "vi"),
        ("th-TH,th;q=0.9", "th"),
        ("ar-EG,ar;q=0.9,en-US;q=0.8", "ar"),
        ("ar-SA;q=0.8, fr;q=0.9", "fr"),
        ("he-IL,he;q=0.9,ar;q=0.5", "ar"),
        ("nb-NO,nn;q=0.9,de;q=0.1", "de"),
        ("zh-Hant;q=0, zh-CN;q=0.5", "zh_Hans"),
    ],
)
def test_accept_language_headers(header: str, expected: str) -> None:
    assert ALL.best(header) == expected


@given(st.from_regex(r"\A(zh|cmn)([-_](Hant|HANT|hant))?([-_](TW|HK|MO|tw|hk|mo))?([-_][0-9][a-z0-9]{0,7}){0,3}\Z"))
def test_traditional_chinese_never_gets_simplified(tag: str) -> None:
    """Whatever follows (variants start with a digit here), a Traditional script or region is Traditional."""
    if "hant" in tag.lower() or any(region in tag.lower() for region in ("-tw", "-hk", "-mo", "_tw", "_hk", "_mo")):
        assert ALL.match(tag) == "zh_Hant"
        assert MATCHER.match(tag) is None  # with only Simplified offered: no Chinese at all


def test_the_match_cache_stays_bounded() -> None:
    matcher = LocaleMatcher(OFFERED, "en")
    for index in range(10_000):
        matcher.match(f"zh-Hant-x-{index}")
    assert len(matcher._cache) <= 4097


def test_cookie_and_query_parsing_never_raise() -> None:
    assert cookie_value("a=1; lang=ja; b", "lang") == "ja"
    assert cookie_value('lang="zh_Hans"', "lang") == "zh_Hans"
    assert cookie_value(";;;=;lang", "lang") is None
    assert query_params(b"lang=ja&lang=en&format=json") == {"lang": "ja", "format": "json"}
    assert query_params(b"%ff%fe=%zz&x") == {"\ufffd\ufffd": "%zz", "x": ""}


@given(
    json_path=st.booleans(),
    query=st.binary(max_size=100),
    accept=st.none() | st.text(max_size=200),
    language=st.none() | st.text(max_size=200),
    cookie=st.none() | st.text(max_size=200),
)
def test_negotiate_is_total(
    json_path: bool, query: bytes, accept: str | None, language: str | None, cookie: str | None
) -> None:
    choice = negotiate(
        json_path=json_path,
        params=query_params(query),
        accept=accept,
        accept_language=language,
        cookie=cookie,
        matcher=MATCHER,
        cookie_name="lang",
        default_format="html",
    )
    assert choice.locale in {"en", "ja", "zh_Hans"}
    assert choice.format in FORMATS
