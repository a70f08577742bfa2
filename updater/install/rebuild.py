"""Staging a build from its delta package: files rebuilt from the installed ones, checked.

A delta package (:class:`updater.core.builds.DeltaInfo`) holds each file the build writes:
under ``delta/`` as an HDiffPatch delta against the previous build's file, under ``whole/`` as
it is. A delta is applied only to a base file whose size and sha256 are the ones the signed
record names, into staging; every file, rebuilt or whole, must match the build's signed manifest
before anything moves into the install. Any problem with the delta package raises
:class:`DeltaUnusable`: the caller stages the build from its full package instead. The install
is only read here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from updater.core.builds import DELTA_DIR, WHOLE_DIR, DeltaFile, RemoteBuild
from updater.core.errors import PackageVerificationError, UnsafeArchiveError, error_from_os
from updater.core.i18n import _
from updater.core.manifest import FileEntry
from updater.core.paths import check_member_names
from updater.core.plan import check_writable_paths
from updater.shared import delta, fileops, package

log = logging.getLogger(__name__)


class DeltaUnusable(Exception):
    """The delta package cannot give this build (damaged, a changed base file, a wrong result)."""


def _split(name: str) -> tuple[str, str]:
    for folder in (DELTA_DIR, WHOLE_DIR):
        if name.startswith(folder):
            return folder, name[len(folder):]
    raise DeltaUnusable(f"member {name!r} lies neither under {DELTA_DIR} nor {WHOLE_DIR}")


def delta_names(pkg: Path, build: RemoteBuild,
                manifest: Mapping[str, FileEntry]) -> tuple[str, ...]:
    """The files a delta package gives, after every check of its header.

    Raises:
        DeltaUnusable: The package cannot be read, does not belong to its build, or names an
            unsafe path (the full package is checked on its own).
    """
    assert build.delta is not None
    bases = dict(build.delta.files)
    try:
        members = package.list_members(pkg)
    except PackageVerificationError as e:
        raise DeltaUnusable(str(e)) from e
    names = []
    for member in members:
        folder, rel = _split(member.name)
        entry = manifest.get(rel)
        if member.is_link or not member.is_file or entry is None:
            raise DeltaUnusable(f"{member.name!r} is not a file of the build's manifest")
        if folder == WHOLE_DIR and member.size != entry.size:
            raise DeltaUnusable(f"{member.name!r} has another size than the manifest says")
        if folder == DELTA_DIR and (rel not in bases or (bases[rel].size, bases[rel].sha256)
                                    != (entry.size, entry.sha256)):
            raise DeltaUnusable(f"{member.name!r} is not a delta the signed record names")
        names.append(rel)
    try:
        check_member_names(names)
        check_writable_paths(build.build, names)
    except UnsafeArchiveError as e:
        raise DeltaUnusable(str(e)) from e
    return tuple(names)


def stage_delta_build(pkg: Path, build: RemoteBuild, manifest: Mapping[str, FileEntry],
                      staging: Path, base: Callable[[str], Path]) -> dict[str, Path]:
    """Extract ``pkg`` into an empty ``staging`` folder and rebuild its deltas from the files
    ``base`` gives for each relative path (the install's, at the build before this one, or
    the previous build's as a prepare run staged it).

    Returns:
        Each file's relative path in the install -> its staged file, in package order.

    Raises:
        DeltaUnusable: Stage the build from its full package instead.
        DiskSpaceError, FileLockedError: The staging folder could not be written.
    """
    assert build.delta is not None
    delta_names(pkg, build, manifest)
    if staging.exists():
        fileops.rmtree(staging)
    fileops.makedirs(staging)
    try:
        staged = package.extract_to(pkg, staging, build.delta.unpacked_size, flat=True)
    except (PackageVerificationError, UnsafeArchiveError) as e:
        raise DeltaUnusable(str(e)) from e
    except OSError as e:
        raise error_from_os(e, _("unpack build {build} into {folder}", build=build.build,
                                 folder=e.filename or staging)) from e
    bases = dict(build.delta.files)
    result: dict[str, Path] = {}
    for member, written in staged.items():
        folder, rel = _split(member)
        entry = manifest[rel]
        if folder == DELTA_DIR:
            result[rel] = _rebuild(base(rel), written.path, bases[rel], rel)
        elif (written.size, written.sha256) == (entry.size, entry.sha256):
            result[rel] = written.path
        else:
            raise DeltaUnusable(f"{rel} does not match the build's signed manifest")
    return result


def _rebuild(base: Path, patch: Path, record: DeltaFile, rel: str) -> Path:
    """The file ``rel`` rebuilt from ``base`` and the staged delta ``patch``, which it replaces."""
    try:
        if os.stat(base).st_size != record.base_size:
            raise DeltaUnusable(f"{rel} in the install is not the file the delta applies to "
                                f"(changed locally?)")
        old = base.read_bytes()
    except OSError as e:
        raise DeltaUnusable(f"{rel} in the install cannot be read: {e}") from e
    if hashlib.sha256(old).hexdigest() != record.base_sha256:
        raise DeltaUnusable(f"{rel} in the install is not the file the delta applies to "
                            f"(changed locally?)")
    try:
        new = delta.rebuild(old, patch.read_bytes(), record.size, record.sha256)
    except delta.DeltaError as e:
        raise DeltaUnusable(f"{rel}: {e}") from e
    del old
    out = patch.with_name(patch.name + ".new")
    info = patch.stat()
    with fileops.open_new(out) as handle:
        fileops.write_chunk(handle, new)
        fileops.sync(handle)  # durable before it is renamed into the install
    fileops.set_times(out, info.st_mtime)
    if os.name == "posix":
        fileops.chmod(out, stat.S_IMODE(info.st_mode))
    fileops.unlink(patch)
    return out
