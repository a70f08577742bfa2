"""Where the opus i install is: next to the updater, recorded on this machine, or chosen.

An updater downloaded from the vendor's customer area and started from the download folder is
not inside the install it should update. The search, in this order:

1. the folder of the updater (or of the working directory when not frozen) and up to three
   folders above it (the updater inside the install, as opus i and its bootstrap put it);
2. the installs recorded on this machine: the bootstrap records the install each time opus i
   checks for or starts an update, and the updater each time it worked on one
   (:func:`record`; one small JSON file per install in :func:`record_folder`, so two users of
   one machine never write the same file);
3. in the window, a folder the admin chooses (:func:`install_problem` says why one is refused).

Exactly one valid recorded install is taken; with several, the admin chooses (headless: error
11 lists them). Every place looked at is kept with the reason it was passed over, so error 11
can list them all.

The record's folder is the one seam with the operating system here: Windows
``%ProgramData%\\opus i\\Update\\installs`` (per machine; confirmed under Wine), elsewhere
``$XDG_STATE_HOME/opusi-update/installs`` (``~/.local/state``); ``OPUSI_STATE_DIR`` overrides
both (tests). Recording is best effort: a failure is logged, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from updater.core.i18n import Text, _
from updater.core.paths import BUILD_FILE, CONFIG_FILE
from updater.shared.fsutil import atomic_write_bytes

log = logging.getLogger(__name__)
STATE_ENV = "OPUSI_STATE_DIR"
#: How many folders above the updater's own are looked at.
LEVELS_UP = 3


def record_folder() -> Path:
    """The per-machine folder of the install records (see the module's docstring)."""
    override = os.environ.get(STATE_ENV)
    if override:
        return Path(override) / "installs"
    if sys.platform == "win32":  # pragma: no cover - Windows (and Wine) only
        base = os.environ.get("PROGRAMDATA") or r"C:\ProgramData"
        return Path(base) / "opus i" / "Update" / "installs"
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "opusi-update" / "installs"


def install_problem(folder: Path) -> Text | None:
    """None when ``folder`` is an opus i install (``BUILD`` with a build number and
    ``update.ini``), else why it is not one, in words for the admin."""
    try:
        if not folder.is_dir():
            return _("the folder does not exist")
        build = folder / BUILD_FILE
        if not build.is_file():
            return _("no {file} file in it", file=BUILD_FILE)
        if not build.read_text("ascii", errors="replace").strip().isdigit():
            return _("its {file} file holds no build number", file=BUILD_FILE)
        if not (folder / CONFIG_FILE).is_file():
            return _("no {file} in it", file=CONFIG_FILE)
    except OSError as e:
        return _("it cannot be read ({e})", e=e)
    return None


def _key(root: Path) -> str:
    return hashlib.sha256(os.path.normcase(str(root)).encode("utf-8")).hexdigest()[:16]


def record(root: Path, by: str) -> None:
    """Note on this machine that ``root`` is an opus i install (best effort)."""
    folder = record_folder()
    entry = {"path": str(root), "recorded": time.strftime("%Y-%m-%dT%H:%M:%S"), "by": by}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / f"{_key(root)}.json", json.dumps(entry).encode("utf-8"))
    except OSError as e:
        log.warning("the install %s could not be recorded in %s: %s", root, folder, e)


def recorded() -> list[Path]:
    """The installs recorded on this machine, the most recently recorded first."""
    entries: list[tuple[str, Path]] = []
    try:
        files = sorted(record_folder().glob("*.json"))
    except OSError:
        return []
    for file in files:
        try:
            entry = json.loads(file.read_text("utf-8"))
            entries.append((str(entry["recorded"]), Path(str(entry["path"]))))
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("unreadable install record %s: %s", file, e)
    return [path for _when, path in sorted(entries, key=lambda e: e[0], reverse=True)]


@dataclass
class Search:
    """The outcome of a search: the install found (or None), and every place passed over."""

    found: Path | None = None
    looked: list[tuple[Path, Text]] = field(default_factory=list)
    #: Valid recorded installs when there was more than one (the admin has to choose).
    choices: list[Path] = field(default_factory=list)

    def places(self) -> list[Text]:
        """Each place looked at, with why it was passed over (for error 11 and the window)."""
        lines = [_("{path}: {reason}", path=path, reason=reason) for path, reason in self.looked]
        lines += [_("{path}: recorded on this machine; one of several, choose one", path=p)
                  for p in self.choices]
        return lines


def search(start: Path) -> Search:
    """Look for the install from the updater's folder ``start``; see the module's docstring."""
    result = Search()
    for candidate in (start, *start.parents[:LEVELS_UP]):
        problem = install_problem(candidate)
        if problem is None:
            result.found = candidate
            return result
        result.looked.append((candidate, problem))
    valid: list[Path] = []
    for path in recorded():
        problem = install_problem(path)
        if problem is None:
            if path not in valid:
                valid.append(path)
        else:
            result.looked.append((path, _("recorded on this machine, but {reason}",
                                          reason=problem)))
    if len(valid) == 1:
        result.found = valid[0]
        log.info("install found where this machine recorded it: %s", valid[0])
    else:
        result.choices = valid
    return result
