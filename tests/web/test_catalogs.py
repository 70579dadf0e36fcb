"""The catalogs: messages.pot matches the code, and every .po entry is translated, not fuzzy, placeholder-true,
with CLDR's plural forms."""

from __future__ import annotations

import gettext
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from babel import Locale
from babel.messages.catalog import Catalog
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

from maintenance_shim.i18n import LOCALES_DIR, available_catalogs, load_translations
from maintenance_shim.settings.shim import Settings

ROOT = Path(__file__).resolve().parents[2]
LANGUAGES = ["en", "ja", "zh_Hans", "zh_Hant", "ko", "es", "fr", "de", "pt_BR", "ru", "id", "vi", "th", "ar"]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# Whole counts reaching every CLDR category these languages have: Arabic's "many" is 11-99, Russian's
# "one" 21 again, French, Spanish and Portuguese "many" a multiple of a million.
COUNTS = [*range(1001), 10**6, 2 * 10**6, 10**9]


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
        "messages.pot is stale: run the pybabel extract command in docs/design.md"
    )


def _plural(catalog: Catalog) -> Callable[[int], int]:
    """The catalog's own Plural-Forms expression: count -> index of the msgstr form."""
    return gettext.c2py(catalog.plural_expr)


@pytest.mark.parametrize("locale", LANGUAGES)
def test_po_is_complete(locale: str) -> None:
    template = _read(LOCALES_DIR / "messages.pot")
    catalog = _read(LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po", locale)
    assert _ids(catalog) == _ids(template), f"{locale}: run pybabel update"
    assert not catalog.obsolete
    assert catalog.locale_identifier == locale
    pick = _plural(catalog)
    for message in catalog:
        if not message.id:
            continue
        assert not message.fuzzy, f"{locale}: fuzzy {message.id!r}"
        strings = [message.string] if isinstance(message.string, str) else list(message.string)
        assert len(strings) == (1 if isinstance(message.id, str) else catalog.num_plurals)
        assert all(strings), f"{locale}: untranslated {message.id!r}"
        source = message.id if isinstance(message.id, str) else message.id[0]
        expected = set(PLACEHOLDER.findall(source))
        for index, text in enumerate(strings):
            found = set(PLACEHOLDER.findall(text))
            if isinstance(message.id, tuple) and len({n for n in COUNTS if pick(n) == index}) == 1:
                # A form for one count only may spell it out: Arabic's "خطوة واحدة" (one step), "خطوتان" (two).
                assert found <= expected, (locale, text)
            else:
                assert found == expected, (locale, text)
            assert "%" not in PLACEHOLDER.sub("", text), (locale, text)  # nothing else for %-formatting
            text % dict.fromkeys(expected, "x")  # formats without an error


@pytest.mark.parametrize("locale", LANGUAGES)
def test_plural_forms_are_cldrs(locale: str) -> None:
    """As many plural forms as CLDR has categories for whole numbers (Russian 3, Arabic 6), chosen alike.

    The page's script picks "N steps to go" by CLDR category (Intl.PluralRules), the server by the
    catalog's Plural-Forms expression: for every count both must land on the same form. CLDR here is
    Babel's locale data (CLDR 49), which gives Vietnamese two categories where Babel's gettext table
    still has one.
    """
    catalog = _read(LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po", locale)
    category = Locale.parse(locale).plural_form
    pick = _plural(catalog)
    categories = {category(n) for n in COUNTS}
    assert catalog.num_plurals == len(categories)
    pairs = {(pick(n), category(n)) for n in COUNTS}
    assert len(pairs) == len(categories) == len({index for index, _ in pairs}), sorted(pairs)
    # The compiled catalog the shim serves from uses the same expression.
    forms = next(m.string for m in catalog if isinstance(m.id, tuple))
    translations = load_translations(locale)
    for n in (0, 1, 2, 3, 5, 11, 21, 100, 101, 10**6):
        assert translations.ngettext("%(num)s step to go", "%(num)s steps to go", n) == forms[pick(n)]


def test_every_offered_language_has_a_catalog() -> None:
    assert Settings.model_fields["languages"].default_factory() == LANGUAGES  # type: ignore[call-arg,misc]
    assert set(LANGUAGES) <= available_catalogs()
