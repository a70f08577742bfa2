"""The download step: every pending build's package and manifest, before the install is touched.

Writes into ``<install>/Database/SystemFiles/SecuMax2/UpdateFiles/downloads/``. Each file is
verified against its signed length and sha256; a partial download is resumed by the next run;
a file that fails verification is discarded and fetched once more, then the run stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from updater.core.builds import RemoteBuild, RemoteFile
from updater.core.errors import PackageVerificationError, error_from_os
from updater.core.i18n import _
from updater.core.manifest import FileEntry, manifest_from_json
from updater.shared import fileops
from updater.shared.fsutil import sha256_file

log = logging.getLogger(__name__)


class Downloader(Protocol):
    """What the download step needs of a fetcher (online or ``--offline`` folder)."""

    def download_package(
        self,
        url: str,
        dest: Path,
        *,
        length: int,
        sha256: str,
        progress: Callable[[int], None] | None = None,
    ) -> Path: ...


@dataclass(frozen=True)
class DownloadedBuild:
    """A build whose package (the delta package where smaller) and manifest are on disk and
    verified."""

    build: RemoteBuild
    package: Path
    manifest: dict[str, FileEntry]
    is_delta: bool = False


def package_path(folder: Path, build: RemoteBuild, remote: RemoteFile) -> Path:
    """Where a build's full or delta package is downloaded to."""
    return folder / f"{build.build}{'.7z' if remote is build.package else '.delta.7z'}"


def full_package(fetcher: Downloader, item: DownloadedBuild, folder: Path) -> DownloadedBuild:
    """The build of ``item`` with its full package, downloaded now (when its delta package
    cannot be used).

    Raises:
        As :func:`fetch_verified`.
    """
    build = item.build
    path = fetch_verified(fetcher, build.package, package_path(folder, build, build.package), None)
    return DownloadedBuild(build=build, package=path, manifest=item.manifest)


def fetch_verified(
    fetcher: Downloader, remote: RemoteFile, dest: Path, progress: Callable[[int], None] | None
) -> Path:
    """Download ``remote`` to ``dest`` unless a verified copy is there; one retry on mismatch.

    Raises:
        PackageVerificationError: The file failed verification twice.
        ConnectionFailedError, DiskSpaceError: From the fetcher.
        FileLockedError, DiskSpaceError: An old copy of ``dest`` could not be removed.
    """
    if (
        dest.is_file()
        and dest.stat().st_size == remote.length
        and sha256_file(dest) == remote.sha256
    ):
        if progress:
            progress(remote.length)
        return dest
    try:
        fileops.unlink(dest)
    except OSError as e:
        raise error_from_os(e, _("remove the old download {dest}", dest=dest)) from e
    try:
        return fetcher.download_package(
            remote.url, dest, length=remote.length, sha256=remote.sha256, progress=progress
        )
    except PackageVerificationError as e:
        log.warning("%s failed verification (%s); fetching it once more", remote.name, e)
        return fetcher.download_package(
            remote.url, dest, length=remote.length, sha256=remote.sha256
        )


def download_builds(
    fetcher: Downloader,
    builds: Sequence[RemoteBuild],
    folder: Path,
    progress: Callable[[int], None] | None = None,
) -> list[DownloadedBuild]:
    """Download and verify every build's package and manifest into ``folder``.

    Raises:
        PackageVerificationError: A file failed verification twice, or a manifest is invalid.
        ConnectionFailedError, DiskSpaceError, license errors: From the fetcher.
        FileLockedError: The downloads folder could not be made.
    """
    try:
        fileops.makedirs(folder)
    except OSError as e:
        raise error_from_os(e, _("create the downloads folder {folder}", folder=folder)) from e
    result = []
    for build in builds:
        manifest_path = fetch_verified(
            fetcher, build.manifest, folder / f"{build.build}.json", None
        )
        try:
            manifest = manifest_from_json(manifest_path.read_bytes())
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise PackageVerificationError(
                _("The manifest of build {build} is invalid: {e}", build=build.build, e=e)
            ) from e
        remote = build.fetch
        if remote is not build.package:
            log.info("build %d: delta package, %d bytes instead of %d", build.build,
                     remote.length, build.package.length)
        try:
            package = fetch_verified(fetcher, remote, package_path(folder, build, remote),
                                     progress)
        except PackageVerificationError as e:
            if remote is build.package:
                raise
            log.warning("build %d: the delta package cannot be used (%s); fetching the full "
                        "package instead", build.build, e)
            remote = build.package
            package = fetch_verified(fetcher, remote, package_path(folder, build, remote), None)
        result.append(DownloadedBuild(build, package, manifest, remote is not build.package))
    return result


def missing_bytes(builds: Sequence[RemoteBuild], folder: Path) -> int:
    """Bytes still to download into ``folder`` (for the disk-space check)."""
    total = 0
    for build in builds:
        done = package_path(folder, build, build.fetch)
        part = done.with_name(done.name + ".part")
        have = done.stat().st_size if done.exists() else part.stat().st_size if part.exists() else 0
        total += max(0, build.fetch.length - have) + build.manifest.length
    return total
