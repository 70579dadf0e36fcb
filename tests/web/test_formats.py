"""The response-format registry (app/web/formats/) and the request path's one cache policy (app/web/cache.py)."""

from __future__ import annotations

from maintenance_shim.web import formats
from maintenance_shim.web.cache import MAX_ENTRIES, MAX_KEY_LENGTH, BoundedCache
from maintenance_shim.web.negotiate import FORMATS, LocaleMatcher, choose_format, default_format, negotiate


def test_the_built_in_formats_and_what_asks_for_each() -> None:
    registry = formats.registry()
    assert list(registry) == ["html", "json", "problem", "text"] == list(FORMATS)
    table = formats.table()
    assert table.query == {
        "html": "html", "json": "json", "problem": "problem", "problem+json": "problem", "text": "text", "txt": "text",
    }
    assert table.by_kind == {"page": "html", "api": "json", "openai": "json"}
    assert (table.json_paths, table.last_resort) == ("json", "text")
    assert {name: fmt.content_type for name, fmt in registry.items()} == {
        "html": b"text/html; charset=utf-8",
        "json": b"application/json",
        "problem": b"application/problem+json",
        "text": b"text/plain; charset=utf-8",
    }
    assert [name for name, fmt in registry.items() if fmt.remembers_locale] == ["html"]
    assert default_format("page") == "html" and default_format("openai") == "json"


def test_negotiation_reads_the_registry() -> None:
    for fmt in formats.registry().values():
        for media in fmt.media_types:
            assert choose_format(media, "html") == fmt.name
        for value in fmt.query_values:
            choice = negotiate(
                json_path=False, params={"format": value.upper()}, accept=None, accept_language=None, cookie=None,
                matcher=LocaleMatcher(["en"], "en"), cookie_name="lang", default_format="html",
            )
            assert choice.format == fmt.name


def test_one_cache_policy() -> None:
    cache: BoundedCache[int, int] = BoundedCache()
    for index in range(3 * MAX_ENTRIES):
        assert cache.put(index, index) == index
        assert 0 < len(cache) <= MAX_ENTRIES
    cache.put(-1, -1, MAX_KEY_LENGTH + 1)  # answered, never remembered
    assert -1 not in cache
    cache.renew("snapshot 1")
    cache.put(1, 1)
    cache.renew("snapshot 1")
    assert cache == {1: 1}
    cache.renew("snapshot 2")
    assert cache == {}
