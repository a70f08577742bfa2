"""Publishing: a vendor's build tree or frozen updater becomes signed targets of the repository.

Checks the tree against every rule the updater applies (paths, customer-data folders, ``BUILD``,
links), packs the added and changed files since the newest published build into a 7z, extracts
it again as a test, and adds package and manifest as targets of a new targets version, which
:func:`updater.publisher.repository.new_targets_version` signs and switches in atomically.
Writes only below the repository's staging folder until the switch; a failure removes what it
placed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.exceptions import RepositoryError as TufRepositoryError
from tuf.api.metadata import Metadata, TargetFile, Targets

from updater.core import manifest as mf
from updater.core.builds import BuildInfo, DeltaInfo, ManifestInfo, UpdaterInfo
from updater.core.errors import PublishRefusedError, RepositoryError, UnsafeArchiveError
from updater.core.paths import BUILD_FILE, check_member_names, excluded_dir_of, fold
from updater.publisher.deltas import make_delta_package, previous_files
from updater.publisher.repository import (
    PLATFORM_PATTERN,
    ROLES,
    STAGING_DIR,
    RepoState,
    cleanup_staging,
    load_role_signer,
    load_state,
    locked,
    new_targets_version,
    target_file,
)
from updater.publisher.trees import build_manifest, scan_tree
from updater.shared import package
from updater.shared.fsutil import fsync_dir, sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishResult:
    """What a publish did."""

    build: int
    previous: int | None
    package: Path
    package_size: int
    diff: mf.TreeDiff
    unpacked_size: int
    left_out: tuple[str, ...] = field(default=())
    delta: DeltaInfo | None = None
    delta_size: int = 0


@contextmanager
def _staging(repo: Path) -> Iterator[Path]:
    """A fresh staging folder inside the repository (same file system), removed afterwards."""
    base = repo / STAGING_DIR
    base.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # another command's staging may be in it
            base.rmdir()


def _scan_build_tree(tree: Path, ignore_excluded: bool) -> tuple[dict[str, Path], tuple[str, ...]]:
    """The files of a vendor's build tree, checked against every publishing rule."""
    if not tree.is_dir():
        raise PublishRefusedError(f"The build tree {tree} is not a folder.")
    scan = scan_tree(tree)
    if scan.links:
        raise PublishRefusedError(
            f"The build tree holds symbolic links, which a package cannot carry: "
            f"{', '.join(scan.links[:5])}.",
            hint="Replace them by the files they point to.",
        )
    if scan.specials:
        raise PublishRefusedError(
            f"The build tree holds special files: {', '.join(scan.specials[:5])}."
        )
    files, left_out = _drop_excluded(scan.files, ignore_excluded)
    if any(fold(p) == fold(BUILD_FILE) for p in files):
        raise PublishRefusedError(
            f"The build tree holds a {BUILD_FILE} file; only the updater writes it, "
            "once a build is completely applied.",
            hint="Remove it from the build tree.",
        )
    try:
        check_member_names(files)
    except UnsafeArchiveError as e:
        raise PublishRefusedError(e.message, hint="Rename the file in the build tree.") from e
    if not files:
        raise PublishRefusedError(f"The build tree {tree} holds no files.")
    return files, left_out


def _drop_excluded(files: dict[str, Path], ignore: bool) -> tuple[dict[str, Path], tuple[str, ...]]:
    excluded = [p for p in files if excluded_dir_of(p) is not None]
    if excluded and not ignore:
        raise PublishRefusedError(
            f"{len(excluded)} file(s) lie in folders the updater never writes (customer data), "
            f"e.g. {excluded[0]!r} in {excluded_dir_of(excluded[0])}/.",
            hint="Remove them from the build tree, or pass --ignore-excluded to leave them out.",
        )
    kept = {p: path for p, path in files.items() if p not in set(excluded)}
    return kept, tuple(excluded)


def _previous_manifest(repo: Path, state: RepoState, build: int | None) -> dict[str, mf.FileEntry]:
    if build is None:
        return {}
    entry = state.target(state.build_info(build).manifest)
    path = target_file(repo, entry)
    try:
        entry.verify_length_and_hashes(path.read_bytes())
        return mf.manifest_from_json(path.read_bytes())
    except (OSError, ValueError, TufRepositoryError) as e:
        raise RepositoryError(
            f"The manifest of build {build} ({path}) is missing or damaged: {e}"
        ) from e


def publish_build(
    repo: Path,
    keys: Path,
    build: int,
    tree: Path,
    *,
    ignore_excluded: bool = False,
    method: str = package.DEFAULT_METHOD,
    deltas: bool = True,
) -> PublishResult:
    """Publish the complete program tree of build ``build``.

    Writes ``builds/<build>.7z`` with the added and changed files since the newest published
    build, with ``deltas`` also ``deltas/<build>.7z`` (:mod:`updater.publisher.deltas`) where it
    saves enough, the build's manifest, and new signed metadata, switched atomically.

    Raises:
        PublishRefusedError: The build breaks a publishing rule; nothing was written.
        RepositoryError: The repository or keys are broken.
    """
    if method not in package.METHODS:
        raise PublishRefusedError(
            f"Unknown method {method!r}; choose from {list(package.METHODS)}."
        )
    with locked(repo):
        cleanup_staging(repo)
        state = load_state(repo)
        signers = {role: load_role_signer(repo, keys, role, state) for role in ROLES[1:]}
        previous = _check_build_number(state, build)
        files, left_out = _scan_build_tree(tree, ignore_excluded)
        new_manifest = build_manifest(files)
        old_manifest = _previous_manifest(repo, state, previous)
        diff = mf.diff_manifests(old_manifest, new_manifest)
        if diff.empty:
            raise PublishRefusedError(
                f"Build {build} is identical to build {previous}; nothing to publish."
            )
        with _staging(repo) as staging:
            new = _NewBuild(build, previous, tree, diff, new_manifest, method)
            bases: dict[str, Path] | None = None
            if deltas and previous is not None:
                wanted = {p: old_manifest[p] for p in diff.changed}
                bases = previous_files(repo, state, previous, wanted, staging / "previous")
            result = _stage_and_commit(repo, state, signers, staging, new, bases)
    return PublishResult(**{**result.__dict__, "left_out": left_out})


def _check_build_number(state: RepoState, build: int) -> int | None:
    if build < 1:
        raise PublishRefusedError(f"Build number {build} is not a positive number.")
    builds = state.builds()
    newest = max(builds) if builds else None
    if newest is not None and build <= newest:
        raise PublishRefusedError(
            f"Build {build} is not newer than the newest published build {newest}.",
            hint="Builds are published in ascending order; nothing was changed.",
        )
    return newest


@dataclass(frozen=True)
class _NewBuild:
    """A build that passed every check, ready to be packed and signed."""

    build: int
    previous: int | None
    tree: Path
    diff: mf.TreeDiff
    manifest: Mapping[str, mf.FileEntry]
    method: str

    @property
    def info(self) -> BuildInfo:
        """The build's record in the signed targets metadata."""
        return BuildInfo(
            build=self.build,
            previous=self.previous,
            deleted=self.diff.deleted,
            unpacked_size=sum(self.manifest[p].size for p in self.diff.written),
            files=len(self.diff.written),
            manifest=f"manifests/{self.build}.json",
        )


def _stage_and_commit(
    repo: Path, state: RepoState, signers: Mapping[str, Signer], staging: Path, new: _NewBuild,
    bases: Mapping[str, Path] | None,
) -> PublishResult:
    pkg = staging / f"{new.build}.7z"
    package.write_package(pkg, new.tree, new.diff.written, new.method)
    _test_extract(pkg, staging / "test", new.diff, new.manifest)
    deltas = None
    if bases is not None and new.previous is not None:
        deltas = make_delta_package(new.tree, new.diff.written, bases, new.manifest, new.build,
                                    new.previous, pkg.stat().st_size, staging, new.method)
    manifest_file = staging / f"{new.build}.json"
    manifest_file.write_bytes(mf.manifest_to_json(new.manifest))
    info = new.info
    with new_targets_version(repo, state, signers) as (targets, placed):
        _add_target(
            repo,
            targets,
            manifest_file,
            info.manifest,
            ManifestInfo(new.build).to_custom(),
            placed,
        )
        pkg_target = _add_target(repo, targets, pkg, f"builds/{new.build}.7z", info.to_custom(),
                                 placed)
        if deltas is not None:
            _add_target(repo, targets, deltas.path, f"deltas/{new.build}.7z",
                        deltas.info.to_custom(), placed)
    log.info(
        "published build %d (%d files, %d deleted, %s)",
        new.build,
        info.files,
        len(new.diff.deleted),
        new.method,
    )
    return PublishResult(
        build=new.build,
        previous=new.previous,
        package=target_file(repo, pkg_target),
        package_size=pkg_target.length,
        diff=new.diff,
        unpacked_size=info.unpacked_size,
        delta=deltas.info if deltas else None,
        delta_size=targets.signed.targets[f"deltas/{new.build}.7z"].length if deltas else 0,
    )


def _test_extract(
    pkg: Path, dest: Path, diff: mf.TreeDiff, manifest: Mapping[str, mf.FileEntry]
) -> None:
    """Extract the new package again and compare every file with the manifest."""
    dest.mkdir()
    package.extract_to(pkg, dest, max_size=sum(manifest[p].size for p in diff.written) + 1)
    found = {p for p in scan_tree(dest).files}
    if found != set(diff.written):
        raise RepositoryError(f"Test extraction of {pkg.name} gave other files than were packed.")
    for name in diff.written:
        if sha256_file(dest / name) != manifest[name].sha256:
            raise RepositoryError(f"Test extraction of {pkg.name}: {name} differs from the tree.")


def _add_target(
    repo: Path,
    targets: Metadata[Targets],
    staged: Path,
    name: str,
    custom: dict[str, Any],
    placed: list[Path],
) -> TargetFile:
    """Move a staged file into ``targets/`` under its hashed name and list it in ``targets``."""
    target = TargetFile.from_file(name, str(staged), ["sha256"])
    target.unrecognized_fields["custom"] = custom
    final = target_file(repo, target)
    if not final.exists():  # same name means same content: it is already in place
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
        fsync_dir(final.parent)
        placed.append(final)
    targets.signed.targets[name] = target
    return target


def publish_updater(
    repo: Path, keys: Path, exe: Path, platform: str, version: str = ""
) -> TargetFile:
    """Publish the frozen updater for ``platform``, replacing the one published before.

    Raises:
        PublishRefusedError: Bad platform name or not a regular file; nothing was written.
        RepositoryError: The repository or keys are broken.
    """
    if not PLATFORM_PATTERN.fullmatch(platform):
        raise PublishRefusedError(f"Bad platform name {platform!r} (e.g. windows-x86_64).")
    if exe.is_symlink() or not exe.is_file() or exe.stat().st_size == 0:
        raise PublishRefusedError(f"{exe} is not a regular, non-empty file.")
    with locked(repo):
        state = load_state(repo)
        signers = {role: load_role_signer(repo, keys, role, state) for role in ROLES[1:]}
        prefix = f"updater/{platform}/"
        custom = UpdaterInfo(platform, version).to_custom()
        with (
            _staging(repo) as staging,
            new_targets_version(repo, state, signers) as (targets, placed),
        ):
            for name in [n for n in targets.signed.targets if n.startswith(prefix)]:
                del targets.signed.targets[name]
            staged = staging / exe.name
            shutil.copyfile(exe, staged)
            target = _add_target(repo, targets, staged, prefix + exe.name, custom, placed)
    return target
