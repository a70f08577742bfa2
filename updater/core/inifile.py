"""``update.ini`` read the way Windows reads INI files (pure: bytes in, settings and warnings out).

Windows' own INI functions (``GetPrivateProfileStringW``), which opus i and the admin's editors
go by, compare section and key names without regard to case and read a file with a UTF-16
byte-order mark as UTF-16, one with a UTF-8 mark as UTF-8, and anything else in the system's
ANSI code page (cp1252 on German and English Windows). Here: the same, except that a file
without a mark is read as UTF-8 when it is valid UTF-8 (what newer editors write) and as cp1252
otherwise. A value where the updater does not look for it (a known key in another section or
before any section, an unknown key in ``[Update]``) is named in a warning with the file and the
section it belongs in, so that a missing license number is never the only thing the admin sees.
"""

from __future__ import annotations

import ast
import codecs
import configparser
from dataclasses import dataclass

from updater.core.i18n import _
from updater.core.install import IniSettings

UPDATE, GENERAL = "Update", "Allgemein"
#: The keys the updater reads, by section (``[Allgemein]`` is opus i's: other keys are its own).
UPDATE_KEYS = ("server", "license", "proxy", "keep_backups", "host_wait_seconds", "language",
               "channel", "allow_http")
GENERAL_KEYS = ("52", "53")
_TOP = "\x00top"  # the lines before the first section header


@dataclass(frozen=True)
class Decoded:
    """An INI file's text and the encoding it was read in."""

    text: str
    encoding: str


def decode_ini(data: bytes) -> Decoded:
    """Decode an INI file as Windows would: byte-order mark, else UTF-8 if valid, else cp1252.

    Never fails: cp1252's five unassigned bytes are read as the Latin-1 characters Windows
    maps them to.
    """
    if data.startswith(codecs.BOM_UTF8):
        return Decoded(data[len(codecs.BOM_UTF8):].decode("utf-8", "replace"), "utf-8-sig")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return Decoded(data.decode("utf-16", "replace"), "utf-16")
    try:
        return Decoded(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        return Decoded("".join(_cp1252(b) for b in data), "cp1252")


def _cp1252(byte: int) -> str:
    try:
        return bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:
        return chr(byte)  # 0x81, 0x8D, 0x8F, 0x90, 0x9D: as Windows' MultiByteToWideChar does


def parse_update_ini(text: str, source: str) -> IniSettings:
    """Read the updater's settings from the text of ``update.ini``.

    Args:
        text: The decoded file (:func:`decode_ini`).
        source: The file's name for warnings and errors.

    Returns:
        The settings; :attr:`IniSettings.warnings` names values the updater does not read.

    Raises:
        ValueError: A number that is not a number, or a line that is not INI syntax.
    """
    parser = configparser.ConfigParser(
        inline_comment_prefixes=(";", "#"), interpolation=None, strict=False,
        default_section="\x00none",
    )
    try:
        parser.read_string(f"[{_TOP}]\n{text}", source=source)
    except configparser.Error as e:
        raise ValueError(_syntax_error(e)) from e
    sections: dict[str, dict[str, str]] = {}
    spelled: dict[str, str] = {}
    for name in parser.sections():  # [Update] and [update] are one section, as on Windows
        key = name.strip().casefold()
        sections.setdefault(key, {}).update(parser[name])
        spelled.setdefault(key, name.strip())
    update = sections.get(UPDATE.casefold(), {})
    general = sections.get(GENERAL.casefold(), {})
    warnings = _misplaced(sections, spelled, source)
    return IniSettings(
        server_url=update.get("server") or None,
        license_number=(update.get("license") or "").strip() or None,
        proxy_url=update.get("proxy") or None,
        keep_backups=int(update.get("keep_backups", "3")),
        host_wait_seconds=float(update.get("host_wait_seconds", "120")),
        option_52=general.get("52", "0").strip() == "1",
        option_53=general.get("53", "0").strip() == "1",
        language=(update.get("language") or "").strip().lower() or None,
        channel=(update.get("channel") or "").strip().lower() or None,
        allow_http=update.get("allow_http", "0").strip() == "1",
        warnings=tuple(warnings),
    )


def _misplaced(sections: dict[str, dict[str, str]], spelled: dict[str, str],
               source: str) -> list[str]:
    """Warnings for known keys outside their section and unknown keys in ``[Update]``."""
    home = {key: UPDATE for key in UPDATE_KEYS} | {key: GENERAL for key in GENERAL_KEYS}
    warnings: list[str] = []
    for section, values in sections.items():
        for key in values:
            wanted = home.get(key)
            if section == UPDATE.casefold():
                if wanted is None:
                    warnings.append(_(
                        "{file}: the key {key!r} in [{section}] is not one the updater reads "
                        "(it reads {keys}).", file=source, key=key, section=UPDATE,
                        keys=", ".join(UPDATE_KEYS)))
                elif wanted != UPDATE:
                    warnings.append(_elsewhere(source, key, wanted, f"[{UPDATE}]"))
            elif section == GENERAL.casefold():
                if wanted == UPDATE:
                    warnings.append(_elsewhere(source, key, wanted, f"[{GENERAL}]"))
            elif wanted is not None:
                where = _("before the first section") if section == _TOP.casefold() \
                    else f"[{spelled[section]}]"
                warnings.append(_elsewhere(source, key, wanted, where))
    return warnings


def _elsewhere(source: str, key: str, wanted: str, where: str) -> str:
    return _("{file}: {key!r} stands {where}, where the updater does not read it; "
             "it belongs in [{section}].", file=source, key=key, where=where, section=wanted)


def _unrepr(line: str) -> str:
    """configparser keeps a bad line as its ``repr``: the line itself again."""
    try:
        value = ast.literal_eval(line)
    except (ValueError, SyntaxError):
        value = line
    return str(value).strip()


def _syntax_error(error: configparser.Error) -> str:
    """configparser's complaint, with the file's own line numbers (one line was put before)."""
    if isinstance(error, configparser.ParsingError):
        lines = "; ".join(f"line {number - 1}: {_unrepr(line)}" for number, line in error.errors)
        return f"lines that are not INI syntax ({lines})"
    lineno = getattr(error, "lineno", None)
    if isinstance(lineno, int):
        return f"{error.message.split(' [line')[0].split(': ')[-1]} (line {lineno - 1})"
    return error.message
