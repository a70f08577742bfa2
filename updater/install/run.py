"""The updater's workflow, as one straight line of steps.

config -> recover an interrupted run -> server and trust -> plan -> download -> backup ->
apply (journalled) -> on failure: restore -> result. Each step is a module of its own; this one
only calls them in order and holds no state between runs but the journal on disk.

Writes (through the steps) into the install and its working folder; returns an
:class:`UpdateResult` or raises one of the product's errors. Never prints, prompts or exits:
questions go through the ``confirm`` callback, progress through the reporter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from updater.core.errors import (
    OpusiError,
    RestoreFailedError,
    UpdateRestoredError,
)
from updater.core.paths import BACKUP_DIR, BUILD_FILE, LOG_DIR, WORK_DIR
from updater.core.plan import UpdatePlan, make_plan
from updater.install import apply, journal, preflight
from updater.install.backup import store as backup
from updater.shared import config, fileops, trust
from updater.shared.download import DownloadedBuild, download_builds, missing_bytes
from updater.shared.progress import Reporter
from updater.shared.transport import Fetcher, FolderFetcher, NetworkSettings

log = logging.getLogger(__name__)

HISTORY_FILE = "update-history.log"
_SPACE_MARGIN = 64 * 1024 * 1024


@dataclass(frozen=True)
class UpdateRequest:
    """Everything a run needs, after flags and update.ini were merged."""

    install: Path
    server_url: str
    network: NetworkSettings | None
    trusted_root: bytes
    offline_dir: Path | None = None
    wait_pid: int | None = None
    wait_seconds: float = 120.0
    keep_backups: int = 3
    check_only: bool = False
    allow_remote: bool = False


@dataclass(frozen=True)
class UpdateResult:
    """What a run did."""

    from_build: int
    to_build: int
    pending: tuple[int, ...]
    applied: tuple[int, ...] = ()
    backup: Path | None = None
    backup_created: bool = False
    recovered: bool = False
    seconds: float = 0.0


Confirm = Callable[[UpdatePlan], bool]


def work_dir(install: Path) -> Path:
    """The updater's own working folder in ``install``."""
    return install / WORK_DIR


def _source(request: UpdateRequest) -> tuple[str, Fetcher | FolderFetcher]:
    if request.offline_dir is not None:
        root = request.offline_dir.resolve()
        return root.as_uri(), FolderFetcher(root)
    assert request.network is not None
    return request.server_url, Fetcher(request.network)


def check(request: UpdateRequest) -> tuple[UpdatePlan, bool]:
    """Which builds are pending; changes nothing in the install (only the metadata cache).

    Returns:
        The plan, and whether an interrupted update waits to be restored.
    """
    plan, _ = _plan(request)
    return plan, journal.read_journal(request.install) is not None


def _plan(request: UpdateRequest) -> tuple[UpdatePlan, Fetcher | FolderFetcher]:
    """The installed build against the verified metadata; the fetcher that read it."""
    installed = config.read_install(request.install).build
    base, fetcher = _source(request)
    view = trust.read_view(
        base, work_dir(request.install) / "metadata", request.trusted_root, fetcher
    )
    return make_plan(installed, view), fetcher


def run_update(
    request: UpdateRequest, reporter: Reporter, confirm: Confirm | None = None
) -> UpdateResult:
    """Bring the install to the newest build it may have.

    Raises:
        OpusiError: Any failure, with its documented code; after a failed apply the backup
            has been restored (UpdateRestoredError) or could not be (RestoreFailedError).
    """
    started = time.monotonic()
    install = request.install
    preflight.check_local(install, request.allow_remote)
    if request.wait_pid:
        reporter.message(f"Waiting for the program (process {request.wait_pid}) to exit ...")
        preflight.wait_for_exit(request.wait_pid, request.wait_seconds)
    with preflight.install_lock(install):
        _remove_leftovers(install)
        recovered = recover(install, reporter)
        try:
            plan, fetcher = _plan(request)
            pending = tuple(b.build for b in plan.builds)
            if not plan.builds or (confirm is not None and not confirm(plan)):
                return UpdateResult(plan.installed, plan.installed, pending, recovered=recovered)
            result = _update(install, plan, fetcher, request, reporter)
        except OpusiError as e:
            if recovered:
                _tell_recovery(e, install)
            raise
    _write_history(install, result, "success")
    return UpdateResult(
        **{**result.__dict__, "recovered": recovered, "seconds": time.monotonic() - started}
    )


def _tell_recovery(error: OpusiError, install: Path) -> None:
    """Say in ``error``'s hint that this run rolled an interrupted update back before it failed
    (its own hint's "Nothing was changed" would otherwise be wrong)."""
    try:
        build = f"build {config.read_install(install).build}"
    except OpusiError:
        build = "the build it had before that update"
    error.hint = (
        f"An interrupted earlier update was rolled back from its backup first: the install is "
        f"at {build} again. "
        + error.hint.replace("Nothing was changed", "Apart from that, nothing was changed")
    ).strip()


def _update(
    install: Path,
    plan: UpdatePlan,
    fetcher: Fetcher | FolderFetcher,
    request: UpdateRequest,
    reporter: Reporter,
) -> UpdateResult:
    downloads_dir = work_dir(install) / "downloads"
    installed_size = sum(p.stat().st_size for p in backup.install_files(install).values())
    preflight.check_writable(install, [install, work_dir(install), install / BACKUP_DIR])
    preflight.check_space(
        install,
        missing_bytes(plan.builds, downloads_dir)
        + installed_size
        + max(b.unpacked_size for b in plan.builds)
        + _SPACE_MARGIN,
    )
    with reporter.phase("download", plan.download_bytes) as bar:
        downloads = download_builds(fetcher, plan.builds, downloads_dir, bar.advance)
    names = {d.build.build: apply.package_names(d.package, d.build, d.manifest) for d in downloads}
    with reporter.phase("backup", installed_size, build=plan.installed) as bar:
        saved, created = backup.ensure_backup(
            install, plan.installed, request.keep_backups, _as_increments(bar.advance)
        )
    touched = sorted(
        {BUILD_FILE} | {p for b in downloads for p in (*names[b.build.build], *b.build.deleted)}
    )
    record = journal.Journal(
        "applying", plan.installed, plan.target, saved.path.name, tuple(touched)
    )
    journal.write_journal(install, record)
    try:
        record = _apply_all(install, downloads, names, record, reporter)
        fileops.sync_all(install)  # every file and rename on disk before the journal goes
        journal.clear_journal(install)  # until it is gone, the next run would undo the update
    except BaseException as e:
        raise _restore_after_failure(install, saved, record, e, reporter) from e
    try:  # the update is complete; the downloads are only in the way now
        fileops.rmtree(downloads_dir)
    except OSError as e:
        log.warning("cannot remove the downloads folder %s: %s", downloads_dir, e)
    return UpdateResult(
        plan.installed, plan.target, record.applied, record.applied, saved.path, created
    )


def _as_increments(advance: Callable[[int], None]) -> Callable[[int, int], None]:
    """Adapt a (done, total) callback to a bar that advances by increments."""
    last = 0

    def report(done: int, total: int) -> None:
        nonlocal last
        advance(done - last)
        last = done

    return report


def _apply_all(
    install: Path,
    downloads: Sequence[DownloadedBuild],
    names: dict[int, tuple[str, ...]],
    record: journal.Journal,
    reporter: Reporter,
) -> journal.Journal:
    staging = work_dir(install) / "staging"
    for item in downloads:
        build = item.build.build
        with reporter.phase("apply", len(names[build]), build=build, unit="files") as bar:
            staged = apply.stage_build(item.package, item.build, item.manifest, staging)
            apply.install_build(install, staged, item.build, bar.advance)
        record = record.with_applied(build)
        journal.write_journal(install, record)
        for problem in apply.tree_deviations(install, item.manifest)[:20]:
            log.warning("build %d: install deviates from the vendor's tree: %s", build, problem)
    fileops.rmtree(staging)
    return record


def _restore_after_failure(
    install: Path,
    saved: backup.Backup,
    record: journal.Journal,
    error: BaseException,
    reporter: Reporter,
) -> UpdateRestoredError:
    """Restore the backup after a failed apply; return the error to report.

    Raises:
        RestoreFailedError: The restore failed too; the journal stays for the next run.
    """
    log.error(
        "update failed (%s: %s); restoring the backup %s", type(error).__name__, error, saved.path
    )
    reporter.message(f"The update failed; restoring the backup {saved.path.name} ...")
    try:  # the staged files are useless now; on a full disk, the restore needs their space
        fileops.rmtree(work_dir(install) / "staging")
    except (OpusiError, OSError) as e:
        log.warning("cannot remove the staging folder before restoring: %s", e)
    try:
        journal.write_journal(install, record.restoring())
        backup.restore_paths(saved, install, record.touched)
        journal.clear_journal(install)
    except (OpusiError, OSError) as e:
        _write_history(
            install, UpdateResult(record.from_build, record.from_build, ()), "RESTORE FAILED"
        )
        raise RestoreFailedError(
            f"The update failed ({error}) and restoring the backup failed too ({e}).",
            hint=f'Restore by hand: opusi-INSTALLUpdate --restore "{saved.path}". '
            "Please contact the vendor's support.",
        ) from e
    _write_history(install, UpdateResult(record.from_build, record.from_build, ()), "restored")
    detail = error.message if isinstance(error, OpusiError) else f"{type(error).__name__}: {error}"
    code = f" (error {error.exit_code})" if isinstance(error, OpusiError) else ""
    return UpdateRestoredError(
        f"The update to build {record.to_build} failed{code}: {detail}",
        hint=f"The installation was restored to build {record.from_build} from {saved.path.name}; "
        "nothing is lost. Start the update again later or contact the vendor's support.",
    )


def recover(install: Path, reporter: Reporter) -> bool:
    """Finish what an interrupted run left: restore its backup. Returns True if it did.

    Raises:
        RestoreFailedError: The backup is missing or could not be restored.
    """
    record = journal.read_journal(install)
    if record is None:
        return False
    reporter.message(
        f"An earlier update was interrupted; restoring build {record.from_build} "
        f"from {record.backup} ..."
    )
    zip_path = install / BACKUP_DIR / record.backup
    saved = backup.Backup(path=zip_path, build=record.from_build, files=0, size=0)
    if not zip_path.is_file():
        raise RestoreFailedError(
            f"An interrupted update must be undone, but its backup {zip_path} is missing.",
            hint="Please contact the vendor's support.",
        )
    try:
        journal.write_journal(install, record.restoring())
        backup.restore_paths(saved, install, record.touched)
        journal.clear_journal(install)
    except RestoreFailedError:
        raise
    except (OpusiError, OSError) as e:
        raise RestoreFailedError(
            f"An interrupted update must be undone, but that failed: {e}. The journal is kept; "
            "the next run tries again.",
            hint=f'Restore by hand: opusi-INSTALLUpdate --restore "{zip_path}". '
            "Please contact the vendor's support.",
        ) from e
    _write_history(install, UpdateResult(record.from_build, record.from_build, ()), "recovered")
    return True


def _remove_leftovers(install: Path) -> None:
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


def restore_by_hand(install: Path, zip_path: Path) -> backup.Backup:
    """``--restore ZIP``: bring the install back to a backup; clears an interrupted journal."""
    with preflight.install_lock(install):
        restored = backup.restore_full(zip_path, install)
        if journal.read_journal(install) is not None:
            journal.clear_journal(install)
    _write_history(
        install,
        UpdateResult(restored.build, restored.build, ()),
        f"restored by hand from {zip_path.name}",
    )
    return restored


def _write_history(install: Path, result: UpdateResult, outcome: str) -> None:
    """Append one line an admin can read to ``Logs/update-history.log``."""
    line = (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S}Z  build {result.from_build} -> {result.to_build}  "
        f"{outcome}  applied: {','.join(map(str, result.applied)) or '-'}  "
        f"backup: {result.backup.name if result.backup else '-'}\n"
    )
    try:
        folder = install / LOG_DIR
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / HISTORY_FILE).open("a", encoding="utf-8") as handle:
            handle.write(line)
    except OSError as e:
        log.warning("cannot write the update history: %s", e)
