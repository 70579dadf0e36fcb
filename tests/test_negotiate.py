"""Negotiation is a pure function: table tests and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maintenance_shim.negotiate import (
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
