"""Every message the customer sees exists in German: translated, not fuzzy, same placeholders.

The messages are those marked ``_("...")`` in ``updater/{core,shared,install,bootstrap}`` and
argparse's own (extracted with Babel, as ``scripts/catalogs update`` does); the German catalog is
``updater/locale/de/LC_MESSAGES/opusi.po``.
"""

from __future__ import annotations

import importlib.util
import re
import string
import sys
from pathlib import Path
from types import ModuleType

import pytest

from updater.core import i18n
from updater.core.errors import LicenseMissingError, RegistrationMissingError
from updater.core.i18n import _, choose_language, language_of, tr
from updater.core.report import format_error

ROOT = Path(__file__).resolve().parents[2]


def _catalogs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("catalogs", ROOT / "build_spec" / "catalogs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("catalogs", module)
    spec.loader.exec_module(module)
    return module


def _fields(text: str | tuple[str, ...], percent: bool = False) -> list[str]:
    """The placeholders of a message: ``{name}`` (ours), ``%(name)s``/``%s`` (argparse's)."""
    if isinstance(text, tuple):  # a plural: the placeholders of all its forms
        return sorted({f for t in text for f in _fields(t, percent)})
    if percent:
        return sorted(m.group(0) for m in re.finditer(r"%(\(\w+\))?[sdr]", text))
    return sorted({field for _, field, _, _ in string.Formatter().parse(text)
                   if field is not None})


@pytest.mark.parametrize(("domain", "least"), [("opusi", 50), ("desk", 50)])
def test_every_marked_message_has_a_german_translation(domain: str, least: int) -> None:
    """``opusi``: the programs the customer sees; ``desk``: the support desk's pages."""
    catalogs = _catalogs()
    template = catalogs.extract(domain)
    [german_po] = [p for p in catalogs.po_files(domain) if p.parts[-3] == "de"]
    german = catalogs.read_catalog(german_po)
    problems = []
    for message in template:
        if not message.id:
            continue
        where = ", ".join(f"{f}:{n}" for f, n in message.locations)
        entry = german.get(message.id)
        percent = "python-format" in message.flags
        strings = entry.string if entry is not None and isinstance(entry.string, tuple) else (
            (entry.string,) if entry is not None else ())
        if entry is None or not all(strings):
            problems.append(f"untranslated ({where}): {message.id!r}")
        elif entry.fuzzy:
            problems.append(f"fuzzy ({where}): {message.id!r}")
        elif _fields(entry.string, percent) != _fields(message.id, percent):
            problems.append(f"placeholders differ ({where}): {message.id!r} -> {entry.string!r}")
    assert not problems, "scripts/catalogs update, then translate:\n" + "\n".join(problems)
    assert len(template) > least


@pytest.fixture
def german() -> object:
    assert i18n.use("de") == "de", "no compiled German catalog (scripts/catalogs)"
    yield
    i18n.use("en")


def test_the_vendors_words_for_errors_1_2_6_7(german: object) -> None:
    error = LicenseMissingError(_("No license number was given."))
    assert format_error(error).startswith("Fehler 1: Lizenzproblem.")
    assert format_error(error, localized=False).startswith("Error 1: license problem")
    assert tr(RegistrationMissingError.title) == "Die Registrierung des Lizenznehmers fehlt"


def test_text_is_english_and_knows_its_entry(german: object) -> None:
    text = _("Backup made: {backup}", backup="a.zip")
    assert text == "Backup made: a.zip" and str(text) == "Backup made: a.zip"
    assert tr(text) == "Sicherung angelegt: a.zip"
    assert tr("not marked") == "not marked"


@pytest.mark.parametrize("name,expected", [
    ("de_DE.UTF-8", "de"), ("de", "de"), ("de-AT", "de"), ("German_Germany.1252", "de"),
    ("en_US.UTF-8", "en"), ("C", None), ("POSIX", None), ("fr_FR", None), ("", None), (None, None),
])
def test_language_of(name: str | None, expected: str | None) -> None:
    assert language_of(name) == expected


def test_choice_order() -> None:
    assert choose_language("en", "de", "de") == "en"
    assert choose_language(None, "de", "en") == "de"
    assert choose_language(None, None, "de_DE.UTF-8") == "de"
    assert choose_language(None, None, "fr_FR") == "en"


def test_numbers_in_the_languages_way(german: object) -> None:
    """German shows a decimal comma (the symbol from CLDR, via the build's numbers.json); the
    English text (the log's) keeps the point; build numbers stay as they are."""
    text = _("{done:.1f} of {total:.1f} MB", done=1.25, total=1234.5)
    assert tr(text) == "1,2 von 1234,5 MB"
    assert str(text) == "1.2 of 1234.5 MB"
    assert tr(_("Build {build} ({index} of {count})", build=1150, index=2, count=4)) == (
        "Build 1150 (2 von 4)")
