"""German and English: messages that know their catalog entry, and the language they are shown in.

A message is written in English where it arises, marked for the catalog with :func:`_`::

    raise ConnectionFailedError(_("The update server {host} could not be reached.", host=host))

:func:`_` returns a :class:`Text`: a ``str`` holding the English text (what the log file and
the vendor's support read), which also keeps its catalog entry (``msgid``) and arguments, so
the screen can show it in the admin's language when it is shown (:func:`tr`). Placeholders
are ``str.format`` fields; an argument that is itself a :class:`Text` is translated too.

The catalogs are standard gettext: ``updater/locale/<lang>/LC_MESSAGES/opusi.po`` are the
sources (translated there), compiled to ``.mo`` at build time (Babel, ``scripts/catalogs``),
read at run time by the standard library's :mod:`gettext`. A missing catalog means English.

The language: ``--lang``, else ``[Update] language`` of update.ini, else the system's UI
language (:func:`updater.shared.system.ui_language`), else English (:func:`choose_language`).
"""

from __future__ import annotations

import gettext
import importlib.resources
import json
import logging
import string
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

DOMAIN = "opusi"
LANGUAGES = ("de", "en")
DEFAULT = "en"


class Text(str):
    """An English message that can be shown in another language (see :func:`tr`)."""

    msgid: str
    args: Mapping[str, object]

    def __new__(cls, msgid: str, args: Mapping[str, object] | None = None) -> Text:
        args = dict(args or {})
        self = super().__new__(cls, msgid.format(**args) if args else msgid)
        self.msgid, self.args = msgid, args
        return self

    def __reduce__(self) -> tuple[object, ...]:  # pickles (and copies) keep the catalog entry
        return (Text, (self.msgid, dict(self.args)))


def _(msgid: str, /, **args: object) -> Text:
    """Mark ``msgid`` for the catalog; the English text with ``args`` filled in, translatable."""
    return Text(msgid, args)


def lines(items: Sequence[object], bullet: str = "- ") -> Text:
    """Several messages as one, one per line after ``bullet``, each translated when shown."""
    args = {f"line{i}": item for i, item in enumerate(items)}
    return Text("\n".join(bullet + "{" + name + "}" for name in args), args)


_translations: gettext.NullTranslations = gettext.NullTranslations()
_language = DEFAULT


class _Formatter(string.Formatter):
    """``str.format`` with the language's decimal and group symbols for numbers: "{mb:.1f}"
    is "1.5" in English, "1,5" in German (the symbols come from CLDR, written beside the
    catalog at build time: ``numbers.json``)."""

    def __init__(self, symbols: dict[int, str]) -> None:
        super().__init__()
        self.symbols = symbols

    def format_field(self, value: object, format_spec: str) -> str:
        text = str(super().format_field(value, format_spec))
        if isinstance(value, int | float) and not isinstance(value, bool):
            return text.translate(self.symbols)
        return text


_formatter = _Formatter({})


def use(language: str) -> str:
    """Show messages in ``language`` from now on ("de" or "en"); returns the language in use.

    A language without a compiled catalog falls back to English (logged).
    """
    global _translations, _language, _formatter
    _translations, _language, _formatter = gettext.NullTranslations(), DEFAULT, _Formatter({})
    if language == DEFAULT or language not in LANGUAGES:
        return _language
    folder = importlib.resources.files("updater") / "locale"
    try:
        with importlib.resources.as_file(folder) as localedir:
            _translations = gettext.translation(DOMAIN, localedir, languages=[language])
            numbers = json.loads(
                (localedir / language / "LC_MESSAGES" / "numbers.json").read_text("utf-8"))
        _language = language
        _formatter = _Formatter(str.maketrans({".": numbers["decimal"], ",": numbers["group"]}))
    except (OSError, ValueError, KeyError):
        log.warning("no compiled catalog for %r (scripts/catalogs builds it): English", language)
        _translations, _language = gettext.NullTranslations(), DEFAULT
    return _language


def translate(message: str) -> str:
    """``message`` (a catalog entry) in the language in use: for code that marks its own
    words for gettext, like argparse (see :mod:`updater.core.report`)."""
    return _translations.gettext(message)


def translate_plural(singular: str, plural: str, n: int) -> str:
    """The plural-aware :func:`translate`."""
    return _translations.ngettext(singular, plural, n)


def language() -> str:
    """The language messages are shown in."""
    return _language


def tr(text: object) -> str:
    """``text`` in the language in use: a :class:`Text` translated, anything else as is."""
    if not isinstance(text, Text):
        return str(text)
    translated = _translations.gettext(text.msgid)
    if not text.args:
        return translated
    args = {k: tr(v) if isinstance(v, Text) else v for k, v in text.args.items()}
    try:
        return _formatter.format(translated, **args)
    except (KeyError, IndexError, ValueError):  # a broken translation must not hide the message
        return str(text)


def language_of(name: str | None) -> str | None:
    """The language of a locale or language name, if it is one we have (pure).

    ``de_DE.UTF-8``, ``de``, ``German_Germany.1252`` (Windows' spelling), ``de-AT`` -> "de";
    ``en_US`` -> "en"; ``C``, ``POSIX``, empty, or another language -> None.
    """
    if not name:
        return None
    head = name.strip().replace("-", "_").split(".")[0].split("_")[0].lower()
    head = {"german": "de", "deutsch": "de", "english": "en"}.get(head, head)
    return head if head in LANGUAGES else None


def choose_language(flag: str | None, ini: str | None, system: str | None) -> str:
    """``--lang``, else update.ini's ``language``, else the system's language, else English."""
    for candidate in (flag, ini, system):
        chosen = language_of(candidate)
        if chosen:
            return chosen
    return DEFAULT
