"""The vendor's update repository: signed TUF metadata plus build packages, as static files.

Layout of a repository folder (only ``metadata/`` and ``targets/`` are ever served)::

    metadata/1.root.json, N.root.json, root.json   trusted root (built into the updater)
    metadata/N.targets.json, N.snapshot.json       versioned (consistent snapshots)
    metadata/timestamp.json                        the one file replaced in place: the switch
    targets/builds/<sha256>.<build>.7z             a build's package (added and changed files)
    targets/manifests/<sha256>.<build>.json        the full tree of a build (path, size, sha256)
    targets/updater/<platform>/<sha256>.<exe>      the frozen updater per platform
    opusi-repo.json                                settings (expiry times), vendor side only
    .opusi-repo.lock                               one writer at a time

Writers stage new files first and switch by replacing ``timestamp.json`` last, so a failed or
interrupted command leaves what clients see exactly as it was. Keys live in a separate key
folder (``<role>.pem``, owner-only), never in the repository.

This module reads and writes the repository and key folders; the pure checks it relies on live
in :mod:`updater.core.paths` and :mod:`updater.core.manifest`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from filelock import FileLock, Timeout
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.exceptions import RepositoryError as TufRepositoryError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from updater.core import manifest as mf
from updater.core.errors import (
    PublishRefusedError,
    RepositoryError,
    UnsafeArchiveError,
)
from updater.core.paths import BUILD_FILE, check_member_names, excluded_dir_of, fold
from updater.shared import package
from updater.shared.fsutil import atomic_write_bytes, fsync_dir, sha256_file

log = logging.getLogger(__name__)

ROLES = ("root", "targets", "snapshot", "timestamp")
DEFAULT_EXPIRY_DAYS: dict[str, int] = {"root": 365, "targets": 365, "snapshot": 365, "timestamp": 7}
SETTINGS_FILE = "opusi-repo.json"
LOCK_FILE = ".opusi-repo.lock"
STAGING_DIR = ".staging"
PLATFORM_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_SERIALIZER = JSONSerializer(compact=False)


@dataclass(frozen=True)
class RepoState:
    """The metadata clients currently see."""

    root: Metadata[Root]
    targets: Metadata[Targets]
    snapshot: Metadata[Snapshot]
    timestamp: Metadata[Timestamp]

    def builds(self) -> dict[int, TargetFile]:
        """Published build packages by build number."""
        result = {}
        for target in self.targets.signed.targets.values():
            info = target.custom.get("opusi", {})
            if info.get("kind") == "build":
                result[int(info["build"])] = target
        return dict(sorted(result.items()))

    def target(self, name: str) -> TargetFile:
        """The signed entry of target ``name``.

        Raises:
            RepositoryError: No such target.
        """
        try:
            return self.targets.signed.targets[name]
        except KeyError as e:
            raise RepositoryError(f"The repository has no target {name!r}.") from e


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


# --- keys and settings ----------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def load_signer(key_file: Path) -> Signer:
    """Load a private key written by :func:`init_repository` as a signer.

    Raises:
        RepositoryError: The file is missing or is not a private key.
    """
    try:
        private = load_pem_private_key(key_file.read_bytes(), None)
        return CryptoSigner(private)
    except (OSError, ValueError, TypeError) as e:
        raise RepositoryError(f"Cannot load the key {key_file}: {e}") from e


def _write_private_key(path: Path, signer: CryptoSigner) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "wb") as handle:
        handle.write(signer.private_bytes)
        handle.flush()
        os.fsync(handle.fileno())


def read_settings(repo: Path) -> dict[str, Any]:
    """The repository's settings, with defaults for anything not set."""
    try:
        data = json.loads((repo / SETTINGS_FILE).read_text("utf-8"))
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError) as e:
        raise RepositoryError(f"Cannot read {repo / SETTINGS_FILE}: {e}") from e
    days = {**DEFAULT_EXPIRY_DAYS, **data.get("expiry_days", {})}
    return {"expiry_days": days}


def _expiry(repo: Path, role: str) -> datetime:
    return _now() + timedelta(days=int(read_settings(repo)["expiry_days"][role]))


# --- reading ------------------------------------------------------------------------------


def _read_metadata(path: Path) -> Metadata[Any]:
    try:
        return Metadata.from_file(str(path))
    except (OSError, DeserializationError) as e:
        raise RepositoryError(f"Cannot read the metadata {path}: {e}") from e


def _latest_root(meta_dir: Path) -> Path:
    versions = [int(p.name.split(".")[0]) for p in meta_dir.glob("*.root.json")]
    if not versions:
        raise RepositoryError(
            f"{meta_dir.parent} is not an update repository (no root metadata).",
            hint="Create one with 'opusi-repo init'.",
        )
    return meta_dir / f"{max(versions)}.root.json"


def load_state(repo: Path) -> RepoState:
    """Read the metadata clients currently see, starting from ``timestamp.json``.

    Raises:
        RepositoryError: The folder is no repository, or its metadata is broken.
    """
    meta = repo / "metadata"
    root = _read_metadata(_latest_root(meta))
    timestamp = _read_metadata(meta / "timestamp.json")
    snapshot = _read_metadata(meta / f"{timestamp.signed.snapshot_meta.version}.snapshot.json")
    targets_version = snapshot.signed.meta["targets.json"].version
    targets = _read_metadata(meta / f"{targets_version}.targets.json")
    return RepoState(root=root, targets=targets, snapshot=snapshot, timestamp=timestamp)


def load_role_signer(repo: Path, keys: Path, role: str, state: RepoState | None = None) -> Signer:
    """Load ``<keys>/<role>.pem`` and check that the root metadata trusts it for ``role``.

    Raises:
        RepositoryError: The key is missing or does not belong to this repository.
    """
    signer = load_signer(keys / f"{role}.pem")
    root = (state or load_state(repo)).root.signed
    if signer.public_key.keyid not in root.roles[role].keyids:
        raise RepositoryError(
            f"The key {keys / (role + '.pem')} is not the {role} key of the repository {repo}.",
            hint="Use the key folder created with this repository.",
        )
    return signer


@contextmanager
def locked(repo: Path, timeout: float = 60) -> Iterator[None]:
    """Hold the repository's writer lock.

    Raises:
        RepositoryError: Another writer held the lock for longer than ``timeout`` seconds.
    """
    try:
        with FileLock(str(repo / LOCK_FILE), timeout=timeout):
            yield
    except Timeout as e:
        raise RepositoryError(
            f"Another opusi-repo command is writing to {repo}.", hint="Try again when it ends."
        ) from e


# --- init ---------------------------------------------------------------------------------


def init_repository(repo: Path, keys: Path, expiry_days: Mapping[str, int] | None = None) -> None:
    """Create a new repository with fresh Ed25519 keys, one per role.

    Raises:
        RepositoryError: The repository or key folder already holds one.
    """
    if (repo / "metadata").exists():
        raise RepositoryError(f"{repo} already holds a repository; nothing was changed.")
    if any((keys / f"{role}.pem").exists() for role in ROLES):
        raise RepositoryError(
            f"{keys} already holds keys; nothing was changed.",
            hint="Keys are never overwritten: choose an empty key folder.",
        )
    days = {**DEFAULT_EXPIRY_DAYS, **(expiry_days or {})}
    for role, value in days.items():
        if role not in ROLES or int(value) < 1:
            raise RepositoryError(f"Bad expiry setting {role}={value}.")
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(keys, 0o700)
    signers = {role: CryptoSigner.generate_ed25519() for role in ROLES}
    for role, signer in signers.items():
        _write_private_key(keys / f"{role}.pem", signer)
    (repo / "metadata").mkdir(parents=True)
    (repo / "targets").mkdir()
    atomic_write_bytes(repo / SETTINGS_FILE, json.dumps({"expiry_days": days}, indent=2).encode())
    (repo / LOCK_FILE).touch()
    _write_initial_metadata(repo, signers)
    log.info("created repository %s with keys in %s", repo, keys)


def _write_initial_metadata(repo: Path, signers: Mapping[str, CryptoSigner]) -> None:
    root = Metadata(Root(expires=_expiry(repo, "root"), consistent_snapshot=True))
    for role, signer in signers.items():
        root.signed.add_key(signer.public_key, role)
    root.sign(signers["root"])
    meta = repo / "metadata"
    data = root.to_bytes(_SERIALIZER)
    atomic_write_bytes(meta / "1.root.json", data)
    atomic_write_bytes(meta / "root.json", data)
    targets = Metadata(Targets(expires=_expiry(repo, "targets")))
    _commit_targets(repo, targets, signers, snapshot_version=0, timestamp_version=0)


def _commit_targets(
    repo: Path,
    targets: Metadata[Targets],
    signers: Mapping[str, Signer],
    *,
    snapshot_version: int,
    timestamp_version: int,
) -> None:
    """Sign and write targets, then snapshot, then switch ``timestamp.json``."""
    meta = repo / "metadata"
    targets.signatures.clear()
    targets.sign(signers["targets"])
    atomic_write_bytes(
        meta / f"{targets.signed.version}.targets.json", targets.to_bytes(_SERIALIZER)
    )
    snapshot = Metadata(
        Snapshot(
            version=snapshot_version + 1,
            expires=_expiry(repo, "snapshot"),
            meta={"targets.json": MetaFile(version=targets.signed.version)},
        )
    )
    snapshot.sign(signers["snapshot"])
    atomic_write_bytes(
        meta / f"{snapshot.signed.version}.snapshot.json", snapshot.to_bytes(_SERIALIZER)
    )
    _write_timestamp(repo, signers["timestamp"], timestamp_version + 1, snapshot.signed.version)


def _write_timestamp(repo: Path, signer: Signer, version: int, snapshot_version: int) -> None:
    timestamp = Metadata(
        Timestamp(
            version=version,
            expires=_expiry(repo, "timestamp"),
            snapshot_meta=MetaFile(version=snapshot_version),
        )
    )
    timestamp.sign(signer)
    atomic_write_bytes(repo / "metadata" / "timestamp.json", timestamp.to_bytes(_SERIALIZER))


def refresh_timestamp(repo: Path, signer: Signer, *, min_remaining: timedelta) -> bool:
    """Re-sign ``timestamp.json`` when it expires within ``min_remaining`` (freeze protection).

    Returns:
        True when a new timestamp was written.

    Raises:
        RepositoryError: The repository is broken or ``signer`` is not its timestamp key.
    """
    with locked(repo):
        state = load_state(repo)
        if signer.public_key.keyid not in state.root.signed.roles["timestamp"].keyids:
            raise RepositoryError("The key given is not the repository's timestamp key.")
        current = state.timestamp.signed
        if current.expires - _now() > min_remaining:
            return False
        _write_timestamp(repo, signer, current.version + 1, current.snapshot_meta.version)
    log.info("re-signed timestamp.json (version %d)", current.version + 1)
    return True


# --- publishing ---------------------------------------------------------------------------


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
    scan = mf.scan_tree(tree)
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
    target = state.builds()[build]
    name = target.custom["opusi"]["manifest"]
    entry = state.target(name)
    path = repo / "targets" / _hashed_name(entry)
    try:
        entry.verify_length_and_hashes(path.read_bytes())
        return mf.manifest_from_json(path.read_bytes())
    except (OSError, ValueError, TufRepositoryError) as e:
        raise RepositoryError(
            f"The manifest of build {build} ({path}) is missing or damaged: {e}"
        ) from e


def _hashed_name(target: TargetFile) -> str:
    folder, _, base = target.path.rpartition("/")
    hashed = f"{target.hashes['sha256']}.{base}"
    return f"{folder}/{hashed}" if folder else hashed


def publish_build(
    repo: Path,
    keys: Path,
    build: int,
    tree: Path,
    *,
    ignore_excluded: bool = False,
    method: str = package.DEFAULT_METHOD,
) -> PublishResult:
    """Publish the complete program tree of build ``build``.

    Writes ``builds/<build>.7z`` with the added and changed files since the newest published
    build, the build's manifest, and new signed metadata, switched atomically.

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
        new_manifest = mf.build_manifest(files)
        diff = mf.diff_manifests(_previous_manifest(repo, state, previous), new_manifest)
        if diff.empty:
            raise PublishRefusedError(
                f"Build {build} is identical to build {previous}; nothing to publish."
            )
        with _staging(repo) as staging:
            new = _NewBuild(build, previous, tree, diff, new_manifest, method)
            result = _stage_and_commit(repo, state, signers, staging, new)
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
    def info(self) -> dict[str, Any]:
        """The build's record in the signed targets metadata."""
        return {
            "kind": "build",
            "build": self.build,
            "previous": self.previous,
            "deleted": list(self.diff.deleted),
            "unpacked_size": sum(self.manifest[p].size for p in self.diff.written),
            "files": len(self.diff.written),
            "manifest": f"manifests/{self.build}.json",
        }


def _stage_and_commit(
    repo: Path, state: RepoState, signers: Mapping[str, Signer], staging: Path, new: _NewBuild
) -> PublishResult:
    pkg = staging / f"{new.build}.7z"
    package.write_package(pkg, new.tree, new.diff.written, new.method)
    _test_extract(pkg, staging / "test", new.diff, new.manifest)
    manifest_file = staging / f"{new.build}.json"
    manifest_file.write_bytes(mf.manifest_to_json(new.manifest))
    info = new.info
    with _new_targets_version(repo, state, signers) as (targets, placed):
        _add_target(
            repo,
            targets,
            manifest_file,
            info["manifest"],
            {"kind": "manifest", "build": new.build},
            placed,
        )
        pkg_target = _add_target(repo, targets, pkg, f"builds/{new.build}.7z", info, placed)
    log.info(
        "published build %d (%d files, %d deleted, %s)",
        new.build,
        info["files"],
        len(new.diff.deleted),
        new.method,
    )
    return PublishResult(
        build=new.build,
        previous=new.previous,
        package=repo / "targets" / _hashed_name(pkg_target),
        package_size=pkg_target.length,
        diff=new.diff,
        unpacked_size=info["unpacked_size"],
    )


def _test_extract(
    pkg: Path, dest: Path, diff: mf.TreeDiff, manifest: Mapping[str, mf.FileEntry]
) -> None:
    """Extract the new package again and compare every file with the manifest."""
    dest.mkdir()
    package.extract_to(pkg, dest, max_size=sum(manifest[p].size for p in diff.written) + 1)
    found = {p for p in mf.scan_tree(dest).files}
    if found != set(diff.written):
        raise RepositoryError(f"Test extraction of {pkg.name} gave other files than were packed.")
    for name in diff.written:
        if sha256_file(dest / name) != manifest[name].sha256:
            raise RepositoryError(f"Test extraction of {pkg.name}: {name} differs from the tree.")


@contextmanager
def _new_targets_version(
    repo: Path, state: RepoState, signers: Mapping[str, Signer]
) -> Iterator[tuple[Metadata[Targets], list[Path]]]:
    """Yield the next targets metadata to fill; commit it, or undo every file placed.

    Until ``timestamp.json`` is replaced, clients see the old state; on any failure before
    that, the target files placed for the new version are removed again.
    """
    targets = state.targets
    targets.signed.version += 1
    targets.signed.expires = _expiry(repo, "targets")
    placed: list[Path] = []
    try:
        yield targets, placed
        _commit_targets(
            repo,
            targets,
            signers,
            snapshot_version=state.snapshot.signed.version,
            timestamp_version=state.timestamp.signed.version,
        )
    except BaseException:
        for path in placed:
            path.unlink(missing_ok=True)
        raise


def _add_target(
    repo: Path,
    targets: Metadata[Targets],
    staged: Path,
    name: str,
    info: dict[str, Any],
    placed: list[Path],
) -> TargetFile:
    """Move a staged file into ``targets/`` under its hashed name and list it in ``targets``."""
    target = TargetFile.from_file(name, str(staged), ["sha256"])
    target.unrecognized_fields["custom"] = {"opusi": info}
    final = repo / "targets" / _hashed_name(target)
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
        info = {"kind": "updater", "platform": platform, "version": version}
        with (
            _staging(repo) as staging,
            _new_targets_version(repo, state, signers) as (targets, placed),
        ):
            for name in [n for n in targets.signed.targets if n.startswith(prefix)]:
                del targets.signed.targets[name]
            staged = staging / exe.name
            shutil.copyfile(exe, staged)
            target = _add_target(repo, targets, staged, prefix + exe.name, info, placed)
    return target


def cleanup_staging(repo: Path) -> None:
    """Remove what an interrupted command left in the staging folder."""
    shutil.rmtree(repo / STAGING_DIR, ignore_errors=True)


def summarize(repo: Path) -> list[dict[str, Any]]:
    """One record per published target, for ``opusi-repo list``."""
    state = load_state(repo)
    rows = []
    for name, target in sorted(state.targets.signed.targets.items()):
        rows.append({"name": name, "length": target.length, **target.custom.get("opusi", {})})
    return rows
