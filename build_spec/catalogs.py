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
#: The programs the customer sees; the vendor's command line tools (updater/publisher) stay
#: English.
SOURCES = ("core", "shared", "install", "bootstrap")
#: The support desk's web pages (updater/publisher/desk): its own catalog, so the frozen
#: programs do not carry the desk's words. Python: ``N_("...")`` and ``ctx._("...")``;
#: templates: ``_("...")`` (Jinja2's i18n extension, ``%(name)s`` placeholders).
DESK = "desk"
DESK_SOURCES = ROOT / "updater" / "publisher" / "desk"
DOMAINS = (DOMAIN, DESK)


def po_files(domain: str = DOMAIN) -> list[Path]:
    """Every language's catalog source of ``domain``."""
    return sorted(LOCALE.glob(f"*/LC_MESSAGES/{domain}.po"))


def read_catalog(path: Path) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=path.parents[1].name, domain=path.stem)


def extract_desk() -> Catalog:
    """The desk's messages: ``N_``/``_`` in its Python files, ``_`` in its templates."""
    template = Catalog(domain=DESK, project="opus i update desk", charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
        DESK_SOURCES, method_map=[("**.py", "python"), ("templates/**.html",
                                                       "jinja2.ext:babel_extract")],
        keywords={"_": None, "N_": None}, comment_tags=("Translators:",),
        strip_comment_tags=True, options_map={"templates/**.html": {"extensions":
                                                                    "jinja2.ext.i18n"}},
    ):
        template.add(message, locations=[(f"updater/publisher/desk/{filename}", lineno)],
                     auto_comments=comments, context=context, flags=("python-format",))
    return template


def extract(domain: str = DOMAIN) -> Catalog:
    """Every message marked with ``_("...")`` in :data:`SOURCES`, with where it stands (of the
    desk: :func:`extract_desk`)."""
    if domain == DESK:
        return extract_desk()
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
    """Bring every .po file up to the messages in the sources (a missing German desk catalog
    is made)."""
    for domain in DOMAINS:
        template = extract(domain)
        paths = po_files(domain)
        german = LOCALE / "de" / "LC_MESSAGES" / f"{domain}.po"
        if german not in paths:
            german.write_bytes(b"")
            paths.append(german)
        for path in paths:
            catalog = read_catalog(path) if path.stat().st_size else Catalog(
                locale=path.parents[1].name, domain=domain, charset="utf-8")
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
    for path in [p for domain in DOMAINS for p in po_files(domain)]:
        numbers = path.with_name("numbers.json")
        if path.stem == DOMAIN and (force or not numbers.exists()):
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
