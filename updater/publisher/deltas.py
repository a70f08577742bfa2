"""Delta packages: beside a build's full package, one whose large changed files are HDiffPatch
deltas against the previous build's version (:mod:`updater.shared.delta`).

The previous build's files come from the repository itself: each is taken from the newest
published package that holds it, and checked against the previous build's signed manifest.
A file gets a delta only where it is between :data:`delta.MIN_FILE` and :data:`delta.MAX_FILE`
bytes and its delta is clearly smaller than the file compressed on its own
(:data:`KEEP_RATIO`); every delta is applied once here and must give the new file exactly. The
package is kept only where it is clearly smaller than the full one (:data:`PACKAGE_RATIO`).
Writes only into the staging folder it is given.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from updater.core import manifest as mf
from updater.core.builds import DELTA_DIR, WHOLE_DIR, DeltaFile, DeltaInfo
from updater.core.errors import RepositoryError
from updater.publisher.repository import RepoState, target_file
from updater.shared import delta, package
from updater.shared.fsutil import sha256_file

log = logging.getLogger(__name__)

#: A file's delta is kept where it is at most this fraction of the file compressed alone.
KEEP_RATIO = 0.7
#: A delta package is published where it is at most this fraction of the full package
#: (tufup: 0.8; Velopack: when the deltas add up to less than the full package).
PACKAGE_RATIO = 0.8
#: Deltas made at once. HDiffPatch lets go of the GIL (two threads made two DLLs' deltas in 0.65
#: of the time); each takes about 10x its old file in memory, so at most 4 at once (a 128 MiB
#: file's delta alone takes about 1.3 GB).
DELTA_WORKERS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class DeltaPackage:
    """A delta package written into staging, with its signed record."""

    path: Path
    info: DeltaInfo
    seconds: float


def previous_files(repo: Path, state: RepoState, previous: int,
                   wanted: Mapping[str, mf.FileEntry], work: Path) -> dict[str, Path]:
    """The files ``wanted`` (as the previous build's manifest lists them), extracted from the
    newest published packages that hold them into ``work``.

    Raises:
        RepositoryError: A package cannot be read.
    """
    remaining, found = dict(wanted), {}
    for build, target in sorted(state.builds().items(), reverse=True):
        if not remaining:
            break
        if build > previous:
            continue
        pkg = target_file(repo, target)
        try:
            held = {m.name for m in package.list_members(pkg)} & set(remaining)
            if not held:
                continue
            dest = work / str(build)
            dest.mkdir(parents=True)
            package.extract_to(pkg, dest, state.build_info(build).unpacked_size + 1)
        except Exception as e:  # noqa: BLE001 - any unreadable package is the repository's fault
            raise RepositoryError(
                f"The package of build {build} ({pkg}) cannot be read: {e}") from e
        for rel in held:
            if sha256_file(dest / rel) == remaining[rel].sha256:
                found[rel] = dest / rel
                del remaining[rel]
    return found


def make_delta_package(tree: Path, written: tuple[str, ...], bases: Mapping[str, Path],
                       manifest: Mapping[str, mf.FileEntry], build: int, previous: int,
                       full_length: int, staging: Path, method: str) -> DeltaPackage | None:
    """The delta package of ``build`` in ``staging``, or None where it would not save enough.

    ``written`` are the files the full package holds, ``bases`` the previous build's version
    of those that had one.
    """
    start = time.monotonic()
    folder = staging / "delta-package"
    records: list[tuple[str, DeltaFile]] = []
    names: list[str] = []
    with ThreadPoolExecutor(DELTA_WORKERS) as pool:  # HDiffPatch lets go of the GIL
        patches = list(pool.map(lambda rel: _delta_of(bases.get(rel), tree / rel, manifest[rel]),
                                written))
    for rel, patch in zip(written, patches, strict=True):
        source, entry = tree / rel, manifest[rel]
        member = f"{DELTA_DIR if patch is not None else WHOLE_DIR}{rel}"
        out = folder / member
        out.parent.mkdir(parents=True, exist_ok=True)
        if patch is None:
            shutil.copy2(source, out)
        else:
            base = bases[rel]
            out.write_bytes(patch)
            shutil.copystat(source, out)  # the new file's time and mode, for the rebuilt file
            records.append((rel, DeltaFile(base.stat().st_size, sha256_file(base), entry.size,
                                           entry.sha256)))
        names.append(member)
    if not records:
        return None
    pkg = staging / f"{build}.delta.7z"
    package.write_package(pkg, folder, names, method)
    unpacked = sum((folder / n).stat().st_size for n in names)
    shutil.rmtree(folder)
    length = pkg.stat().st_size
    if length > PACKAGE_RATIO * full_length:
        log.info("build %d: delta package %d bytes, full %d: not published", build, length,
                 full_length)
        pkg.unlink()
        return None
    info = DeltaInfo(build, previous, tuple(sorted(records)), unpacked)
    return DeltaPackage(pkg, info, time.monotonic() - start)


def _delta_of(base: Path | None, source: Path, entry: mf.FileEntry) -> bytes | None:
    """The delta of ``source`` against ``base``, where it is worth shipping; else None."""
    if base is None or not delta.MIN_FILE <= entry.size <= delta.MAX_FILE:
        return None
    if os.stat(base).st_size > delta.MAX_FILE:
        return None
    old, new = base.read_bytes(), source.read_bytes()
    patch = delta.make(old, new)
    alone = delta.compressed_size(new)
    if len(patch) > KEEP_RATIO * alone:
        return None
    try:  # the updater's own code path; never publish a delta that does not give the file back
        delta.rebuild(old, patch, len(new), entry.sha256)
    except delta.DeltaError as e:
        raise RepositoryError(f"The delta of {source} does not give the file back: {e}") from e
    return patch
