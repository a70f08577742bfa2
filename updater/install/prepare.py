"""The prepare run (``--prepare``): everything of an update that can happen while opus i still
runs, so the practice waits only for the apply when the update starts.

Downloads and checks every pending build (delta packages where smaller), stages each one into
the working folder (deltas rebuilt from the installed files, or from the previous build as it
was just staged) and checks it against the signed manifest, and meanwhile, in a thread of its
own (the line, not the disk, is the bottleneck), makes the backup of the
installed build. A later run finds all of it ready: the downloads verified again, each prepared
build's files checked once more against the manifest (:func:`updater.install.stage.take_prepared`),
the backup reused only while every program file still has the size and modification time it
was backed up with (:func:`updater.install.backup.store.find_current_backup`), else made anew.

Never changes a program file or a customer-data folder: it writes only into the working folder
and the backups folder. Safe to stop at any moment and to start again (it goes on where it
stopped: downloads resume, prepared builds are kept).
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from updater.core.errors import NOTHING_CHANGED, OpusiError
from updater.core.i18n import _
from updater.core.paths import BACKUP_DIR
from updater.install import journal, preflight, stage
from updater.install.backup.store import Backup, install_files
from updater.install.backup.writer import ensure_backup
from updater.install.run import (
    SPACE_MARGIN,
    UpdateRequest,
    plan_update,
    work_dir,
)
from updater.shared import fileops
from updater.shared.download import DownloadedBuild, Downloader, missing_bytes
from updater.shared.progress import Reporter


@dataclass(frozen=True)
class PrepareResult:
    """What a prepare run did."""

    installed: int
    target: int
    pending: tuple[int, ...]
    prepared: tuple[int, ...] = ()
    backup: Path | None = None
    interrupted: bool = False
    seconds: float = 0.0


def prepare(request: UpdateRequest, reporter: Reporter) -> PrepareResult:
    """Download, stage and back up what the next update needs; change no program file.

    Raises:
        OpusiError: Any failure, with its documented code; the install is as it was.
    """
    started, install = time.monotonic(), request.install
    try:
        preflight.check_local(install, request.allow_remote)
        with preflight.install_lock(install):
            if journal.read_journal(install) is not None:
                reporter.message(_("An interrupted update waits to be completed; it is "
                                   "completed when the update starts. Nothing was prepared."))
                return PrepareResult(0, 0, (), interrupted=True)
            plan, fetcher = plan_update(request)
            pending = tuple(b.build for b in plan.builds)
            _drop_stale(install, pending)
            if not plan.builds:
                return PrepareResult(plan.installed, plan.installed, ())
            installed_size = sum(p.stat().st_size for p in install_files(install).values())
            preflight.check_writable(install, [work_dir(install), install / BACKUP_DIR])
            preflight.check_space(
                install, missing_bytes(plan.builds, stage.downloads_dir(install))
                + installed_size + sum(max(b.unpacked_size, b.fetch_unpacked)
                                       for b in plan.builds) + SPACE_MARGIN)
            # The line is the bottleneck: the backup (it needs only the installed files) is
            # made, and each build staged as soon as it is downloaded, while the builds
            # download. (Should the download fail, the backup is still finished: the next run
            # reuses it.)
            with ThreadPoolExecutor(1, thread_name_prefix="backup") as pool, \
                    _Stager(install, fetcher) as stager:
                backup = pool.submit(_backup, install, plan.installed, request.keep_backups)
                _downloads, names = stage.fetch_all(install, plan, fetcher, reporter, stager.add)
                staged = stager.results(names, reporter)
                with reporter.phase("backup", installed_size, build=plan.installed) as bar:
                    saved = backup.result()
                    bar.advance(installed_size)
    except OpusiError as e:
        e.keeping(NOTHING_CHANGED)
        raise
    return PrepareResult(plan.installed, plan.target, pending, tuple(staged), saved.path,
                         seconds=time.monotonic() - started)


def _backup(install: Path, build: int, keep: int) -> Backup:
    """The backup of the installed build (made or reused), in a lane of its own."""
    with fileops.lane("backup"):
        return ensure_backup(install, build, keep)[0]


class _Stager:
    """Stages each build in a thread of its own (lane ``stage``) as soon as it is downloaded,
    one after the other: a build's deltas apply to the files the build before it staged. A
    build staged by an earlier prepare is taken as it is (checked once more)."""

    def __init__(self, install: Path, fetcher: Downloader) -> None:
        self.install, self.fetcher = install, fetcher
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="stage")
        self.downloads: list[DownloadedBuild] = []
        self.jobs: list[tuple[int, Future[dict[str, Path]]]] = []
        self.staged: dict[int, dict[str, Path]] = {}

    def __enter__(self) -> _Stager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def add(self, item: DownloadedBuild) -> None:
        """Queue ``item``, the next build downloaded, for staging."""
        self.downloads.append(item)
        job = self.pool.submit(self._stage, item, list(self.downloads))
        self.jobs.append((item.build.build, job))

    def results(self, names: dict[int, tuple[str, ...]],
                reporter: Reporter) -> dict[int, dict[str, Path]]:
        """Wait for every build's staging (the first failure raised); the staged files."""
        for build, job in self.jobs:
            with reporter.phase("prepare", len(names[build]), build=build, unit="files") as bar:
                bar.advance(len(job.result()))
        return self.staged

    def _stage(self, item: DownloadedBuild, downloads: list[DownloadedBuild]) -> dict[str, Path]:
        build = item.build.build
        if len(self.staged) < len(downloads) - 1:  # an earlier build failed: results() says so
            raise RuntimeError(f"build {build} not staged: an earlier build failed")
        with fileops.lane("stage"):
            folder = stage.prepared_dir(self.install) / str(build)
            files = stage.take_prepared(folder, item.manifest)
            if files is None:
                base = stage.overlay_base(self.install, downloads, self.staged)
                files = stage.stage(item, folder, base, self.fetcher)
                stage.write_prepared(folder, files)
        self.staged[build] = files
        return files


def _drop_stale(install: Path, pending: tuple[int, ...]) -> None:
    """Remove builds prepared earlier that are no longer pending."""
    folder, keep = stage.prepared_dir(install), {str(b) for b in pending}
    for old in folder.iterdir() if folder.is_dir() else ():
        if old.name in keep:
            continue
        if old.is_dir():
            fileops.rmtree(old)
        else:
            fileops.unlink(old)
