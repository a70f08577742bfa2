"""Getting builds ready to apply: downloaded and checked, then staged from the delta package
(falling back to the full one) or the full package; and builds staged ahead of time by a
prepare run (``--prepare``), kept in the working folder until a run applies them.

Writes only into the updater's working folder (downloads, staging, prepared builds); reads the
install for the base files of deltas.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from updater.core.errors import error_from_os
from updater.core.i18n import _
from updater.core.manifest import FileEntry
from updater.core.paths import WORK_DIR
from updater.core.plan import UpdatePlan
from updater.install import apply, rebuild
from updater.shared import fileops
from updater.shared.download import DownloadedBuild, Downloader, download_builds, full_package
from updater.shared.fsutil import sha256_file
from updater.shared.progress import Reporter

log = logging.getLogger(__name__)

#: The file a prepared build's folder holds once it is complete: relative path -> staged name.
PREPARED_INDEX = "prepared.json"

Base = Callable[[str], Path]


def downloads_dir(install: Path) -> Path:
    """Where the packages are downloaded to."""
    return install / WORK_DIR / "downloads"


def staging_dir(install: Path) -> Path:
    """Where a build is staged just before it is applied."""
    return install / WORK_DIR / "staging"


def prepared_dir(install: Path) -> Path:
    """Where a prepare run stages the builds, one folder per build."""
    return install / WORK_DIR / "prepared"


def forget_manifests(install: Path, *, strict: bool = False) -> None:
    """Drop the downloaded manifests after a run that did not complete. The packages stay for
    the next attempt (no byte twice over the practice's line); the small manifests are fetched
    again, so that the vendor's request log shows each attempt at a build (``opusi-repo
    status``: repeated attempts at the same build) without anything new leaving the machine.

    Raises:
        DiskError and friends: With ``strict``, a manifest could not be removed (a failing
        disk stops the run as any other write does); else that is only logged.
    """
    folder = downloads_dir(install)
    manifests = [p for p in folder.glob("*.json") if p.stem.isdigit()] if folder.is_dir() else []
    for path in sorted(manifests):  # <build>.json; not a download's ETag (<name>.part.json)
        try:
            fileops.unlink(path)
        except OSError as e:
            if strict:
                raise error_from_os(e, _("remove the downloaded manifest {path}",
                                         path=path)) from e
            log.warning("cannot remove %s: %s", path, e)


def fetch_all(install: Path, plan: UpdatePlan, fetcher: Downloader, reporter: Reporter,
              ready: Callable[[DownloadedBuild], None] | None = None,
              ) -> tuple[list[DownloadedBuild], dict[int, tuple[str, ...]]]:
    """Download every pending build and check each package's header.

    Args:
        ready: Called with each build as soon as it is downloaded and checked, in order (a
            prepare run stages it while the next ones download).

    Returns:
        The downloaded builds (a delta package whose header is unusable already replaced by
        the full package), and the files each build writes.

    Raises:
        As :func:`updater.shared.download.download_builds` and
        :func:`updater.install.apply.package_names`.
    """
    folder = downloads_dir(install)
    downloads, names = [], {}
    with reporter.phase("download", plan.download_bytes) as bar:
        for build in plan.builds:
            item = download_builds(fetcher, [build], folder, bar.advance)[0]
            try:
                names[build.build] = (
                    rebuild.delta_names(item.package, item.build, item.manifest)
                    if item.is_delta
                    else apply.package_names(item.package, item.build, item.manifest))
            except rebuild.DeltaUnusable as e:
                item = without_delta(fetcher, item, e)
                names[build.build] = apply.package_names(item.package, item.build,
                                                         item.manifest)
            downloads.append(item)
            if ready is not None:
                ready(item)
    return downloads, names


def without_delta(fetcher: Downloader, item: DownloadedBuild,
                  problem: Exception) -> DownloadedBuild:
    """The build with its full package instead of its delta package, which cannot be used."""
    log.warning("build %d: the delta package cannot be used (%s); fetching the full package "
                "(%d bytes) instead", item.build.build, problem, item.build.package.length)
    return full_package(fetcher, item, item.package.parent)


def stage(item: DownloadedBuild, folder: Path, base: Base,
          fetcher: Downloader) -> dict[str, Path]:
    """Stage one build into ``folder``: from its delta package (the base files from ``base``),
    or from its full package, also when the delta package fails.

    Returns:
        Each file's relative path in the install -> its staged file.

    Raises:
        As :func:`updater.install.apply.stage_build`; ConnectionFailedError and friends when
        the full package must be fetched.
    """
    if item.is_delta:
        try:
            return rebuild.stage_delta_build(item.package, item.build, item.manifest, folder,
                                             base)
        except rebuild.DeltaUnusable as e:
            item = without_delta(fetcher, item, e)
    return apply.stage_build(item.package, item.build, item.manifest, folder)


def write_prepared(folder: Path, staged: Mapping[str, Path]) -> None:
    """Mark the build staged in ``folder`` as complete (its index written last, durably)."""
    index = {rel: path.name for rel, path in staged.items()}
    fileops.write_atomic(folder / PREPARED_INDEX, json.dumps(index).encode())


def take_prepared(folder: Path, manifest: Mapping[str, FileEntry]) -> dict[str, Path] | None:
    """The files of a build a prepare run staged in ``folder``, each checked once more against
    the build's signed manifest (size and sha256); None when there is no complete, intact one.
    """
    try:
        index = json.loads((folder / PREPARED_INDEX).read_bytes())
        staged = {str(rel): folder / str(name) for rel, name in index.items()}
        for rel, path in staged.items():
            entry = manifest[rel]
            if path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
                raise ValueError(f"{rel} changed since it was prepared")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as e:
        log.warning("not using the prepared build in %s: %s", folder, e)
        return None
    return staged


def overlay_base(install: Path, downloads: Sequence[DownloadedBuild],
                 staged: Mapping[int, Mapping[str, Path]]) -> Base:
    """The base files for the next build's deltas: the newest staged version of each file
    among ``staged`` builds (in ``downloads`` order), else the install's file."""
    newest: dict[str, Path] = {}
    for item in downloads:
        files = staged.get(item.build.build)
        if files is None:
            break
        for rel in item.build.deleted:
            newest.pop(rel, None)
        newest.update(files)
    return lambda rel: newest.get(rel, install / rel)
