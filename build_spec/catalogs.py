"""The message catalogs at build time, with Babel: extract, update the .po files, compile .mo.

    python build_spec/catalogs.py compile   # .po -> .mo where the .mo is missing or older
    python build_spec/catalogs.py update    # the messages marked _("...") in the programs the
                                            # customer sees, and argparse's own
                                            # -> updater/locale/*/opusi.po (new ones
                                            # untranslated, gone ones dropped)

``scripts/catalogs`` runs ``compile`` (``scripts/_venv.sh`` does it for every script); the
translations themselves are written in the .po files. The .mo files are build output (ignored
by git) and go into the frozen programs with the rest of the package.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
LOCALE = ROOT / "updater" / "locale"
DOMAIN = "opusi"
#: The programs the customer sees; the vendor's tools (updater/publisher) stay English.
SOURCES = ("core", "shared", "install", "bootstrap")


def po_files() -> list[Path]:
    """Every language's catalog source."""
    return sorted(LOCALE.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def read_catalog(path: Path) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=path.parents[1].name, domain=DOMAIN)


def extract() -> Catalog:
    """Every message marked with ``_("...")`` in :data:`SOURCES`, with where it stands."""
    template = Catalog(domain=DOMAIN, project="opus i Internet update", charset="utf-8")
    for folder in SOURCES:
        base = ROOT / "updater" / folder
        for filename, lineno, message, comments, context in extract_from_dir(
            base, method_map=[("**.py", "python")], keywords={"_": None},
            comment_tags=("Translators:",), strip_comment_tags=True,
        ):
            template.add(message, locations=[(f"updater/{folder}/{filename}", lineno)],
                         auto_comments=comments, context=context, flags=("python-brace-format",))
    # argparse's own words (usage, options, its errors): marked for gettext in its source;
    # updater.core.report points argparse at this catalog. The Python that runs this decides
    # which of them are listed (they differ a little between versions).
    version = f"Python {sys.version_info.major}.{sys.version_info.minor}"
    for lineno, message, comments, context in extract_from_file(
        "python", argparse.__file__, keywords={"_": None, "ngettext": (1, 2)},
    ):
        template.add(message, locations=[(f"argparse.py ({version})", lineno)],
                     auto_comments=comments, context=context, flags=("python-format",))
    return template


def update() -> None:
    """Bring every .po file up to the messages in the sources."""
    template = extract()
    for path in po_files():
        catalog = read_catalog(path)
        catalog.update(template, no_fuzzy_matching=True)
        with path.open("wb") as handle:
            write_po(handle, catalog, width=100, omit_header=False, ignore_obsolete=True)
        print(f"{path.relative_to(ROOT)}: {len(catalog)} messages")


def write_numbers(language: str, target: Path) -> None:
    """The language's number symbols from CLDR (Babel): decimal "," and group "." for German.

    The frozen programs carry these two characters, not Babel and its locale data.
    """
    from babel.numbers import get_decimal_symbol, get_group_symbol

    symbols = {"decimal": get_decimal_symbol(language), "group": get_group_symbol(language)}
    target.write_text(json.dumps(symbols, ensure_ascii=False) + "\n", "utf-8")


def compile_all(force: bool = False) -> list[Path]:
    """Compile each .po to its .mo where the .mo is missing or older; return those written.
    Beside each, ``numbers.json`` (:func:`write_numbers`) where it is missing."""
    written = []
    for path in po_files():
        numbers = path.with_name("numbers.json")
        if force or not numbers.exists():
            write_numbers(path.parents[1].name, numbers)
            written.append(numbers)
        target = path.with_suffix(".mo")
        if not force and target.exists() and target.stat().st_mtime >= path.stat().st_mtime:
            continue
        catalog = read_catalog(path)
        with target.open("wb") as handle:
            write_mo(handle, catalog, use_fuzzy=False)
        written.append(target)
    return written


def main(argv: list[str]) -> int:
    if argv == ["compile"]:
        for path in compile_all():
            print(f"compiled {path.relative_to(ROOT)}", file=sys.stderr)
        return 0
    if argv == ["update"]:
        update()
        return 0
    print(__doc__, file=sys.stderr)
    return 10


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
