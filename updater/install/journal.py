"""The journal: a durable record of an update in progress, for recovery after a crash.

One small JSON file, ``<install>/Database/SystemFiles/SecuMax2/UpdateFiles/journal.json``,
written atomically and flushed (through :mod:`updater.shared.fileops`) *before* each step that
changes the install. While it exists, the install may be between builds; the next start of the
updater finds it and restores the backup it names before doing anything else.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from updater.core.errors import RestoreFailedError, error_from_os
from updater.core.i18n import _
from updater.core.paths import JOURNAL_FILE
from updater.shared import fileops

log = logging.getLogger(__name__)

Phase = Literal["applying", "restoring"]


@dataclass(frozen=True)
class Journal:
    """What an update run is doing to the install.

    Attributes:
        phase: ``applying`` builds, or ``restoring`` the backup.
        from_build: The build the install had before the run (the backup's build).
        to_build: The build the run is heading for.
        backup: File name of the backup in the backups folder.
        touched: Every path any build of the run writes or deletes: what a restore restores.
        applied: Builds completely applied so far.
    """

    phase: Phase
    from_build: int
    to_build: int
    backup: str
    touched: tuple[str, ...]
    applied: tuple[int, ...] = ()

    def with_applied(self, build: int) -> Journal:
        """This journal with ``build`` recorded as completely applied."""
        return replace(self, applied=(*self.applied, build))

    def restoring(self) -> Journal:
        """This journal switched to the restore phase."""
        return replace(self, phase="restoring")


def journal_path(install: Path) -> Path:
    """Where the journal of ``install`` lives."""
    return install / JOURNAL_FILE


def write_journal(install: Path, journal: Journal) -> None:
    """Record ``journal`` durably (atomic replace, flushed).

    Raises:
        DiskSpaceError, FileLockedError, DiskError: The journal could not be written.
    """
    path = journal_path(install)
    try:
        fileops.makedirs(path.parent)
        fileops.write_atomic(path, json.dumps(asdict(journal), indent=1).encode())
    except OSError as e:
        raise error_from_os(e, _("write the update journal {path}", path=path)) from e


def read_journal(install: Path) -> Journal | None:
    """The journal of an interrupted run, or None when the last run ended cleanly.

    Raises:
        RestoreFailedError: A journal exists but cannot be read; the install's state is unknown.
    """
    path = journal_path(install)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
        return Journal(
            phase=data["phase"],
            from_build=int(data["from_build"]),
            to_build=int(data["to_build"]),
            backup=str(data["backup"]),
            touched=tuple(data["touched"]),
            applied=tuple(int(b) for b in data["applied"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RestoreFailedError(
            _("The journal of an interrupted update ({path}) cannot be read: {e}.", path=path,
              e=e),
            hint=_("Restore the newest backup in Database/SystemFiles/Backups by hand with "
                   "'opusi-INSTALLUpdate --restore <zip>'."),
        ) from e


def clear_journal(install: Path) -> None:
    """Remove the journal: the install is consistent again.

    Raises:
        DiskSpaceError, FileLockedError, DiskError: The journal could not be removed (or its
            removal made durable).
    """
    path = journal_path(install)
    try:
        fileops.unlink(path)
        fileops.sync_dir(path.parent)
    except OSError as e:
        raise error_from_os(e, _("remove the update journal {path}", path=path)) from e
