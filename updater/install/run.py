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
from dataclasses import dataclass, replace
from pathlib import Path

from updater.core.errors import (
    NOTHING_CHANGED,
    OpusiError,
    RestoreFailedError,
    UpdateRestoredError,
)
from updater.core.i18n import _
from updater.core.paths import BACKUP_DIR, BUILD_FILE, WORK_DIR
from updater.core.plan import UpdatePlan, make_plan
from updater.core.rollout import Client
from updater.install import apply, journal, preflight, recovery, stage
from updater.install.backup.store import install_files
from updater.install.backup.writer import ensure_backup
from updater.install.history import write_history
from updater.shared import config, fileops, trust
from updater.shared.download import DownloadedBuild, Downloader, missing_bytes
from updater.shared.offline import FolderFetcher
from updater.shared.progress import Reporter
from updater.shared.transport import Fetcher, NetworkSettings

log = logging.getLogger(__name__)

#: Free space kept beyond what a run needs.
SPACE_MARGIN = 64 * 1024 * 1024


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
    build: int | None = None  # --build N: end at this build, whatever the rollout says


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
    plan, _ = plan_update(request)
    return plan, journal.read_journal(request.install) is not None


def plan_update(request: UpdateRequest) -> tuple[UpdatePlan, Fetcher | FolderFetcher]:
    """The installed build against the verified metadata; the fetcher that read it."""
    install = config.read_install(request.install)
    base, fetcher = _source(request)
    view = trust.read_view(
        base, work_dir(request.install) / "metadata", request.trusted_root, fetcher
    )
    client = Client(install.ini.license_number, install.ini.channel)
    return make_plan(install.build, view, client, request.build), fetcher


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
    try:
        preflight.check_local(install, request.allow_remote)
        if request.wait_pid:
            reporter.message(_("Waiting for the program (process {pid}) to exit ...",
                               pid=request.wait_pid))
            preflight.wait_for_exit(request.wait_pid, request.wait_seconds)
        return _locked_run(request, reporter, confirm, started)
    except OpusiError as e:
        e.keeping(NOTHING_CHANGED)
        raise


def _locked_run(request: UpdateRequest, reporter: Reporter, confirm: Confirm | None,
                started: float) -> UpdateResult:
    """The run under the install's lock: recover, plan, update; what was kept safe on failure."""
    install = request.install
    with preflight.install_lock(install):
        recovery.remove_leftovers(install)
        recovered = recovery.recover(install, reporter)
        if recovered is not None:  # that attempt failed: the next one shows in the server's log
            try:
                stage.forget_manifests(install, strict=True)
            except OpusiError as e:
                e.safe = recovery.recovered_safe(recovered)
                raise
        try:
            plan, fetcher = plan_update(request)
            pending = tuple(b.build for b in plan.builds)
            for build, reason in plan.withdrawn:
                reporter.message(_("Build {build} was withdrawn by the vendor and is not "
                                   "installed: {reason}", build=build, reason=reason))
            if plan.held_back:
                reporter.message(_("Builds {builds} are not offered to this installation yet "
                                   "(the vendor releases them step by step).",
                                   builds=", ".join(map(str, plan.held_back))))
            if not plan.builds or (confirm is not None and not confirm(plan)):
                return UpdateResult(plan.installed, plan.installed, pending,
                                    recovered=recovered is not None)
            result = _update(install, plan, fetcher, request, reporter)
        except OpusiError as e:
            undone = isinstance(e, UpdateRestoredError | RestoreFailedError)
            if recovered is not None and not undone:
                e.safe = recovery.recovered_safe(recovered)
            stage.forget_manifests(install)
            raise
    write_history(install, result.from_build, result.to_build, "success", result.applied,
                  result.backup)
    return UpdateResult(**{**result.__dict__, "recovered": recovered is not None,
                           "seconds": time.monotonic() - started})


def _update(
    install: Path,
    plan: UpdatePlan,
    fetcher: Fetcher | FolderFetcher,
    request: UpdateRequest,
    reporter: Reporter,
) -> UpdateResult:
    downloads_dir = stage.downloads_dir(install)
    installed_size = sum(p.stat().st_size for p in install_files(install).values())
    preflight.check_writable(install, [install, work_dir(install), install / BACKUP_DIR])
    preflight.check_space(
        install,
        missing_bytes(plan.builds, downloads_dir)
        + installed_size
        + max(max(b.unpacked_size, b.fetch_unpacked) for b in plan.builds)
        + SPACE_MARGIN,
    )
    downloads, names = stage.fetch_all(install, plan, fetcher, reporter)
    with reporter.phase("backup", installed_size, build=plan.installed) as bar:
        saved, created = ensure_backup(
            install, plan.installed, request.keep_backups, as_increments(bar.advance)
        )
    touched = sorted(
        {BUILD_FILE} | {p for b in downloads for p in (*names[b.build.build], *b.build.deleted)}
    )
    record = journal.Journal(
        "applying", plan.installed, plan.target, saved.path.name, tuple(touched)
    )
    journal.write_journal(install, record)
    try:
        record = _apply_all(install, downloads, names, record, reporter, fetcher)
        fileops.sync_all(install)  # every file and rename on disk before the journal goes
        journal.clear_journal(install)  # until it is gone, the next run would undo the update
    except BaseException as e:
        raise recovery.restore_after_failure(install, saved, record, e, reporter) from e
    prepared = stage.prepared_dir(install)
    for folder in ([prepared] if prepared.exists() else []) + [downloads_dir]:
        try:  # the update is complete; the downloads are only in the way now
            fileops.rmtree(folder)
        except OSError as e:
            log.warning("cannot remove the folder %s: %s", folder, e)
    return UpdateResult(
        plan.installed, plan.target, record.applied, record.applied, saved.path, created
    )


def as_increments(advance: Callable[[int], None]) -> Callable[[int, int], None]:
    """Adapt a (done, total) callback to a bar that advances by increments."""
    last = 0

    def report(done: int, total: int) -> None:
        nonlocal last
        advance(done - last)
        last = done

    return report


def _stage(install: Path, item: DownloadedBuild, record: journal.Journal,
           fetcher: Downloader) -> tuple[dict[str, Path], journal.Journal]:
    """Stage one build (or take the one a prepare run staged); a build that writes more files
    than the journal names (a full package instead of a delta package) widens it first."""
    staged = stage.take_prepared(stage.prepared_dir(install) / str(item.build.build),
                                 item.manifest)
    if staged is None:
        staged = stage.stage(item, stage.staging_dir(install), lambda rel: install / rel,
                             fetcher)
    if not set(staged) <= set(record.touched):
        record = replace(record, touched=tuple(sorted({*record.touched, *staged})))
        journal.write_journal(install, record)
    return staged, record


def _apply_all(
    install: Path,
    downloads: Sequence[DownloadedBuild],
    names: dict[int, tuple[str, ...]],
    record: journal.Journal,
    reporter: Reporter,
    fetcher: Downloader,
) -> journal.Journal:
    for item in downloads:
        build = item.build.build
        with reporter.phase("apply", len(names[build]), build=build, unit="files") as bar:
            staged, record = _stage(install, item, record, fetcher)
            apply.install_build(install, staged, item.build, bar.advance)
        record = record.with_applied(build)
        journal.write_journal(install, record)
        for problem in apply.tree_deviations(install, item.manifest)[:20]:
            log.warning("build %d: install deviates from the vendor's tree: %s", build, problem)
    fileops.rmtree(stage.staging_dir(install))
    return record
