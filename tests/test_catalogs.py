"""The catalogs: messages.pot matches the code, and every .po entry is translated, not fuzzy, placeholder-true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

from maintenance_shim.i18n import LOCALES_DIR, available_catalogs

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ["en", "ja", "zh_Hans"]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _ids(catalog: Catalog) -> set[tuple[str, ...]]:
    return {(m.id,) if isinstance(m.id, str) else tuple(m.id) for m in catalog if m.id}


def _read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=locale)


def test_pot_matches_the_code(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.pot"
    CommandLineInterface().run(
        ["pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"), "-o", str(fresh),
         "--sort-output", "--no-location", str(ROOT)]
    )
    committed = _read(LOCALES_DIR / "messages.pot")
    extracted = _read(fresh)
    assert _ids(extracted) == _ids(committed), (
        "messages.pot is stale: run the pybabel extract command in the README"
    )


@pytest.mark.parametrize("locale", LANGUAGES)
def test_po_is_complete(locale: str) -> None:
    template = _read(LOCALES_DIR / "messages.pot")
    catalog = _read(LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po", locale)
    assert _ids(catalog) == _ids(template), f"{locale}: run pybabel update"
    assert not catalog.obsolete
    for message in catalog:
        if not message.id:
            continue
        assert not message.fuzzy, f"{locale}: fuzzy {message.id!r}"
        strings = [message.string] if isinstance(message.string, str) else list(message.string)
        assert len(strings) == (1 if isinstance(message.id, str) else catalog.num_plurals)
        assert all(strings), f"{locale}: untranslated {message.id!r}"
        source = message.id if isinstance(message.id, str) else message.id[0]
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(source)), (locale, text)


def test_every_offered_language_has_a_catalog() -> None:
    assert set(LANGUAGES) <= available_catalogs()
