"""Pure rules about paths inside an install: which are customer data, which may be written.

No I/O here. Every path is a *relative POSIX path* of the install ("Program/opusi.exe").
The same rules run when the vendor publishes a build and again in the updater before a single
byte of a package is written, so a path the publisher accepts is one the updater accepts.

Windows semantics are the reference: names compare case-insensitively, and names Windows
cannot hold or would reinterpret (devices, streams, trailing dots) are refused everywhere.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from updater.core.errors import UnsafeArchiveError
from updater.core.i18n import _

#: Folders left out of the backup and never written by the updater (SPEC section 2).
EXCLUDED_DIRS: tuple[str, ...] = (
    "Help",
    "TakeIt",
    "Database/DBFilesHF",
    "Database/SystemFiles/Archives",
    "Database/SystemFiles/Backups",
    "Database/SystemFiles/Documents",
    "Database/SystemFiles/Logs",
    "Database/SystemFiles/LogsArchives",
    "Database/SystemFiles/Reports",
    "Database/SystemFiles/SecuMax",
    "Database/SystemFiles/SecuMax2/UpdateFiles",
    "Database/SystemFiles/SystemINI",
    "Database/SystemFiles/UserINI",
)

#: Files of the install the updater itself owns outside the excluded folders.
BUILD_FILE = "BUILD"
CONFIG_FILE = "Database/SystemFiles/SystemINI/update.ini"
BACKUP_DIR = "Database/SystemFiles/Backups"
LOG_DIR = "Database/SystemFiles/Logs"
WORK_DIR = "Database/SystemFiles/SecuMax2/UpdateFiles"
#: The updater's journal of a run in progress: while it exists, an update waits to be undone.
JOURNAL_FILE = f"{WORK_DIR}/journal.json"

_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"COM{i}" for i in "123456789¹²³"]
    + [f"LPT{i}" for i in "123456789¹²³"]
)
_FORBIDDEN_CHARS = re.compile(r'[<>:"|?*\\\x00-\x1f]')
_DRIVE = re.compile(r"^[A-Za-z]:")
MAX_PATH_LENGTH = 1024


def fold(path: str) -> str:
    """The form two paths are compared in on Windows: NFC, then case-folded."""
    return unicodedata.normalize("NFC", path).casefold()


def _likeness(first: str, second: str) -> str:
    """Why two paths that :func:`fold` to the same form are refused (message tail)."""
    if first.casefold() == second.casefold():
        # Translators: completes "Paths {first!r} and {second!r}"
        return _("differ only by case; Windows would hold them as one file.")
    return _("differ only in how their accented letters are encoded (Unicode NFC and NFD); they "
             "look the same, so they are refused as ambiguous.")


_EXCLUDED_FOLDED = tuple(fold(d) for d in EXCLUDED_DIRS)


def excluded_dir_of(path: str) -> str | None:
    """Return the excluded folder ``path`` lies in (as listed in EXCLUDED_DIRS), or None."""
    folded = fold(path)
    for name, folded_name in zip(EXCLUDED_DIRS, _EXCLUDED_FOLDED, strict=True):
        if folded == folded_name or folded.startswith(folded_name + "/"):
            return name
    return None


def is_excluded(path: str) -> bool:
    """True when ``path`` is inside (or is) one of the customer-data folders."""
    return excluded_dir_of(path) is not None


def path_problem(name: str) -> str | None:
    """Say why ``name`` may not be a file of an install, or None when it may.

    Args:
        name: A member name as stored in a package or manifest; must be relative POSIX.

    Returns:
        A short reason ("absolute path", "device name 'CON'", ...) or None.
    """
    if not name:
        return _("empty name")
    if len(name) > MAX_PATH_LENGTH:
        return _("longer than {limit} characters", limit=MAX_PATH_LENGTH)
    if name.startswith(("/", "\\")):
        return _("absolute path") if not name.startswith(("//", "\\\\")) else _("UNC path")
    if _DRIVE.match(name):
        return _("drive letter")
    if "\\" in name:
        return _("backslash in name (a separator on Windows)")
    for part in name.split("/"):
        problem = _component_problem(part)
        if problem:
            return problem
    return None


def _component_problem(part: str) -> str | None:
    if part in ("", "."):
        return _("empty path component")
    if part == "..":
        return _("leads out of the install ('..')")
    if ":" in part:
        return _("':' in name (drive or alternate data stream)")
    if _FORBIDDEN_CHARS.search(part):
        return _("character Windows does not allow in file names")
    if part.endswith((".", " ")):
        return _("trailing dot or space (Windows would strip it)")
    stem = part.split(".", 1)[0].rstrip(" ").upper()
    if stem in _DEVICE_NAMES:
        return _("device name {name!r}", name=stem)
    return None


def check_member_names(names: Iterable[str]) -> list[str]:
    """Check a whole set of names; raise on the first unsafe or colliding one.

    Args:
        names: Every file name of a package or tree.

    Returns:
        The names, in the order given.

    Raises:
        UnsafeArchiveError: A name is unsafe, or two names differ only by case or by Unicode
            normalization.
    """
    seen: dict[str, str] = {}
    result = []
    for name in names:
        problem = path_problem(name)
        if problem:
            raise UnsafeArchiveError(_("Unsafe path {name!r}: {problem}.", name=name,
                                       problem=problem))
        key = fold(name)
        if key in seen:
            likeness = _likeness(seen[key], name)
            raise UnsafeArchiveError(_("Paths {first!r} and {second!r} {likeness}",
                                       first=seen[key], second=name, likeness=likeness))
        seen[key] = name
        result.append(name)
    _check_file_dir_clash(seen)
    return result


def _check_file_dir_clash(folded: dict[str, str]) -> None:
    for key, name in folded.items():
        parts = key.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in folded:
                raise UnsafeArchiveError(
                    _("{file!r} is a file and also the folder of {name!r}.",
                      file=folded[parent], name=name)
                )
