"""Recovery: the one way the updater puts an install back to the build it had before a run.

Three callers, one path (:func:`undo`): a run that finds the journal of an interrupted run
(:func:`recover`, before any network access), a run whose apply failed
(:func:`restore_after_failure`), and an administrator's ``--restore ZIP``
(:func:`restore_by_hand`). The journal is switched to ``restoring`` first and removed last, so a
crash in the middle of a restore is finished by the next start. What was kept safe is said by the
error's ``safe`` field, which the report renders.

Writes, through :mod:`updater.shared.fileops`: the journal, the program files a run touched, and
the temp files a killed run can leave (:func:`remove_leftovers`); a line of the update history.
"""

from __future__ import annotations

import logging
from pathlib import Path

from updater.core.errors import OpusiError, RestoreFailedError, UpdateRestoredError
from updater.core.i18n import Text, _
from updater.core.paths import BACKUP_DIR, BUILD_FILE, WORK_DIR
from updater.install import journal, preflight
from updater.install.backup.restore import restore_full, restore_paths
from updater.install.backup.store import Backup
from updater.install.history import write_history
from updater.shared import fileops
from updater.shared.progress import Reporter

log = logging.getLogger(__name__)


def undo(install: Path, record: journal.Journal, saved: Backup, what: str) -> None:
    """Put back every path the journalled run touched, as ``saved`` holds it; clear the journal.

    Args:
        install: The install root.
        record: The journal of the run to undo.
        saved: The backup the run made before it changed anything.
        what: What is being undone, to begin the message of a failure ("The update to build
            1155 failed (error 16: ...)").

    Raises:
        RestoreFailedError: The restore failed; the journal is kept, so the next start of the
            updater tries again.
    """
    try:
        journal.write_journal(install, record.restoring())
        restore_paths(saved, install, record.touched)
        fileops.sync_all(install)  # as after an update: everything on disk before the journal
        journal.clear_journal(install)
    except (OpusiError, OSError) as e:
        write_history(install, record.from_build, record.from_build, "RESTORE FAILED")
        detail = e.message if isinstance(e, OpusiError) else str(e)
        raise RestoreFailedError(
            # Translators: {what} is what failed first ("The update to build 1155 failed ...")
            _("{what}, and restoring the backup failed: {detail}", what=what, detail=detail),
            safe=_("The backup {backup} is kept, and so is the update journal: the next "
                   "start of the updater tries the restore again.", backup=saved.path.name),
            hint=_('Restore by hand: opusi-INSTALLUpdate --restore "{path}". '
                   "Please contact the vendor's support.", path=saved.path),
        ) from e


def recover(install: Path, reporter: Reporter) -> int | None:
    """Undo what an interrupted run left (its journal says what). Runs before any network access.

    Returns:
        The build the install was restored to, or None when there was nothing to undo.

    Raises:
        RestoreFailedError: The backup is missing, or the restore failed.
    """
    record = journal.read_journal(install)
    if record is None:
        return None
    reporter.message(
        _("An earlier update was interrupted; restoring build {build} from {backup} ...",
          build=record.from_build, backup=record.backup)
    )
    zip_path = install / BACKUP_DIR / record.backup
    if not zip_path.is_file():
        raise RestoreFailedError(
            _("An interrupted update must be undone, but its backup {zip} is missing.",
              zip=zip_path),
            hint=_("Please contact the vendor's support."),
        )
    saved = Backup(path=zip_path, build=record.from_build, files=0, size=0)
    undo(install, record, saved, _("An interrupted update had to be undone"))
    write_history(install, record.from_build, record.from_build, "recovered")
    return record.from_build


def recovered_safe(build: int) -> str:
    """What a run that recovered an interrupted update and then failed kept safe."""
    return _("An interrupted earlier update was rolled back from its backup first: the install "
             "is at build {build} again. Apart from that, nothing was changed.", build=build)


def _failed(build: int, error: BaseException, *, clause: bool = False) -> Text:
    """The message of a failed update: "The update to build 1155 failed (error 14): ...".

    With ``clause``, without its closing period, to be continued; the error's own words then
    stay English when they end with a period (a translated text cannot drop it).
    """
    detail: str = (error.message if isinstance(error, OpusiError)
                   else f"{type(error).__name__}: {error}")
    if clause and detail.endswith("."):
        detail = str(detail).rstrip(".")
    if isinstance(error, OpusiError):
        return _("The update to build {build} failed (error {code}): {detail}", build=build,
                 code=error.exit_code, detail=detail)
    if isinstance(error, KeyboardInterrupt):  # Ctrl+C, or Cancel in the window
        return _("The update to build {build} was cancelled while it was being applied.",
                 build=build)
    return _("The update to build {build} failed: {detail}", build=build, detail=detail)


def restore_after_failure(install: Path, saved: Backup, record: journal.Journal,
                          error: BaseException, reporter: Reporter) -> UpdateRestoredError:
    """Undo a failed apply from the backup made before it; return the error to report.

    Raises:
        RestoreFailedError: The restore failed too; the journal stays for the next run.
    """
    log.error("update failed (%s: %s); restoring the backup %s",
              type(error).__name__, error, saved.path)
    reporter.message(_("The update failed; restoring the backup {backup} ...",
                       backup=saved.path.name))
    try:  # the staged files are useless now; on a full disk, the restore needs their space
        fileops.rmtree(install / WORK_DIR / "staging")
    except (OpusiError, OSError) as e:
        log.warning("cannot remove the staging folder before restoring: %s", e)
    undo(install, record, saved, _failed(record.to_build, error, clause=True))
    write_history(install, record.from_build, record.from_build, "restored")
    return UpdateRestoredError(
        _failed(record.to_build, error),
        safe=_("The installation was restored to build {build} from {backup}; nothing is lost.",
               build=record.from_build, backup=saved.path.name),
        hint=_("Start the update again later or contact the vendor's support."),
    )


def restore_by_hand(install: Path, zip_path: Path) -> Backup:
    """``--restore ZIP``: bring the install back to a backup; clears an interrupted journal."""
    with preflight.install_lock(install):
        restored = restore_full(zip_path, install)
        if journal.read_journal(install) is not None:
            journal.clear_journal(install)
    write_history(install, restored.build, restored.build,
                  f"restored by hand from {zip_path.name}")
    return restored


def remove_leftovers(install: Path) -> None:
    """Delete the temp files a killed run can leave among the program files.

    They are the pre-flight's write probes (``.opusi-write-probe-<pid>``, in the working and
    backup folders or, before those exist, in a parent) and the temp file beside ``BUILD``
    (:func:`updater.shared.fileops.write_atomic`); no restore touches them, so a power loss at the
    wrong moment would leave them for good. Runs before any network access.
    """
    folders = {install} | {
        install / p for rel in (WORK_DIR, BACKUP_DIR) for p in (Path(rel), *Path(rel).parents)
    }
    found = [
        p
        for folder in sorted(folders)
        if folder.is_dir()
        for p in folder.glob(".opusi-write-probe-*")
    ]
    found += [p for p in (install / f".{BUILD_FILE}.tmp",) if p.exists()]
    for path in found:
        log.info("removing %s, left by an interrupted run", path)
        fileops.unlink(path)
