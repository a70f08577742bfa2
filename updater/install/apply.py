"""The apply step: one build at a time, extracted into staging, checked, moved into place.

Reads a verified package and the build's signed manifest; writes the staging folder (inside the
updater's working folder, on the same file system as the install) and then the install, only
through :mod:`updater.shared.fileops`. ``BUILD`` is written last, when the build is complete.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from updater.core.builds import RemoteBuild
from updater.core.errors import OpusiError, PackageVerificationError, error_from_os
from updater.core.i18n import _
from updater.core.manifest import FileEntry
from updater.core.paths import BUILD_FILE, fold
from updater.core.plan import check_package, check_writable_paths
from updater.shared import fileops, package

log = logging.getLogger(__name__)

Advance = Callable[[int], None]


def package_names(
    pkg: Path, build: RemoteBuild, manifest: Mapping[str, FileEntry] | None = None
) -> tuple[str, ...]:
    """The files a package writes, after every check of its header.

    With the build's signed ``manifest``, every member must also be a file of the manifest
    with the size listed there, so a package that does not belong to its build is refused
    from its header alone, before anything is extracted.

    Raises:
        UnsafeArchiveError: See :func:`updater.core.plan.check_package`.
        PackageVerificationError: The package cannot be read, or its header does not match
            the manifest.
    """
    members = package.list_members(pkg)
    names = check_package(build, members)
    check_writable_paths(build.build, build.deleted)
    if manifest is not None:
        for member in members:
            entry = manifest.get(member.name)
            if entry is None or entry.size != member.size:
                raise PackageVerificationError(
                    _("Package {build} holds {name!r} ({size} bytes), which "
                      "is not a file of that size in the build's signed manifest.",
                      build=build.build, name=member.name, size=member.size)
                )
    return names


def stage_build(
    pkg: Path, build: RemoteBuild, manifest: Mapping[str, FileEntry], staging: Path
) -> dict[str, Path]:
    """Extract ``pkg`` into an empty ``staging`` folder and check every file against the manifest.

    The files are staged flat (numbered, no folders) and hashed while they are written.

    Returns:
        Each file's relative path in the install -> its staged file, in package order.

    Raises:
        UnsafeArchiveError, PackageVerificationError: The package is unsafe or corrupt, or a
            file does not match the build's signed manifest.
        DiskSpaceError, FileLockedError: The staging folder could not be written.
    """
    names = package_names(pkg, build, manifest)
    if staging.exists():
        fileops.rmtree(staging)
    fileops.makedirs(staging)
    try:
        staged = package.extract_to(pkg, staging, build.unpacked_size, flat=True)
    except OSError as e:  # disk full or not writable while unpacking: the product's error
        folder = e.filename or staging
        raise error_from_os(
            e, _("unpack build {build} into {folder}", build=build.build, folder=folder)) from e
    if set(staged) != set(names):
        raise PackageVerificationError(
            _("Package {build} unpacked to other files than it lists.", build=build.build)
        )
    for name in names:  # sizes and hashes taken while the files were written
        entry, written = manifest.get(name), staged[name]
        if entry is None or written.size != entry.size or written.sha256 != entry.sha256:
            raise PackageVerificationError(
                _("{name} of build {build} does not match the build's signed manifest.",
                  name=name, build=build.build)
            )
    return {name: staged[name].path for name in names}


def install_build(
    install: Path,
    staged: Mapping[str, Path],
    build: RemoteBuild,
    advance: Advance | None = None,
) -> None:
    """Delete the build's deleted paths, move its staged files into place, then write ``BUILD``.

    ``staged`` is :func:`stage_build`'s result: relative path in the install -> staged file.

    Raises:
        FileLockedError, DiskSpaceError: A file could not be replaced or deleted.
    """
    written = {fold(n) for n in staged}
    try:
        for rel in build.deleted:
            if fold(rel) not in written:  # a case-only rename: the new file replaces it
                _delete(install, rel)
        folders: set[Path] = set()  # made (or found) already: one makedirs per folder
        for rel, source in staged.items():
            target = install / rel
            if target.parent not in folders:
                fileops.makedirs(target.parent)
                folders.add(target.parent)
            fileops.replace(source, target)
            if advance:
                advance(1)
        # Each staged file's data was flushed when it was staged (shared/package.py), so each
        # rename moves durable data; the file systems keep their metadata (the renames, then
        # the journal's removal) in order. The caller syncs everything once more where the
        # platform can (sync() on POSIX) before it removes the journal.
        fileops.write_atomic(install / BUILD_FILE, f"{build.build}\n".encode("ascii"))
    except OpusiError:
        raise
    except OSError as e:
        where = e.filename2 or e.filename or install  # a replace's target, not its staged file
        raise error_from_os(e, _("put the files of build {build} in place ({where})",
                                 build=build.build, where=where)) from e
    log.info(
        "build %d applied: %d files written, %d deleted",
        build.build,
        len(staged),
        len(build.deleted),
    )


def _delete(install: Path, rel: str) -> None:
    path = install / rel
    if path.is_file() or path.is_symlink():
        fileops.unlink(path)
    folder = path.parent
    while folder != install and folder.is_dir() and not any(folder.iterdir()):
        fileops.rmdir(folder)
        folder = folder.parent


def tree_deviations(install: Path, manifest: Mapping[str, FileEntry]) -> list[str]:
    """Files of the build's manifest missing from the install or of another size.

    Such deviations were there before the update (a hand-changed install); they are logged,
    not treated as a failure of the update.
    """
    result = []
    for rel, entry in manifest.items():
        try:
            st = os.stat(install / rel)  # one call per file: this runs after every build
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            result.append(f"missing: {rel}")
        elif st.st_size != entry.size:
            result.append(f"size differs: {rel}")
    return result
