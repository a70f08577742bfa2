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

This module reads the repository, writes its keys and metadata, and keeps one writer at a time;
:mod:`updater.publisher.publish` adds builds and updaters to it. The signed records it lists are
those of :mod:`updater.core.builds`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from filelock import FileLock, Timeout
from securesystemslib.signer import CryptoSigner, Signer
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

from updater.core.builds import BuildInfo, hashed_path, kind_of
from updater.core.errors import (
    RepositoryError,
)
from updater.shared.fsutil import atomic_write_bytes

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
            if kind_of(target.custom) == "build":
                result[BuildInfo.from_custom(target.custom).build] = target
        return dict(sorted(result.items()))

    def build_info(self, build: int) -> BuildInfo:
        """The signed record of a published build."""
        return BuildInfo.from_custom(self.builds()[build].custom)

    def target(self, name: str) -> TargetFile:
        """The signed entry of target ``name``.

        Raises:
            RepositoryError: No such target.
        """
        try:
            return self.targets.signed.targets[name]
        except KeyError as e:
            raise RepositoryError(f"The repository has no target {name!r}.") from e


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


def expiry(repo: Path, role: str) -> datetime:
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
    root = Metadata(Root(expires=expiry(repo, "root"), consistent_snapshot=True))
    for role, signer in signers.items():
        root.signed.add_key(signer.public_key, role)
    root.sign(signers["root"])
    write_root(repo, root)
    targets = Metadata(Targets(expires=expiry(repo, "targets")))
    commit_targets(repo, targets, signers, snapshot_version=0, timestamp_version=0)


def commit_targets(
    repo: Path,
    targets: Metadata[Targets],
    signers: Mapping[str, Signer],
    *,
    snapshot_version: int,
    timestamp_version: int,
) -> None:
    """Sign and write targets, then snapshot, then switch ``timestamp.json``."""
    write_signed(repo, targets, [signers["targets"]], f"{targets.signed.version}.targets.json")
    write_snapshot(repo, [signers["snapshot"]], snapshot_version + 1, targets.signed.version)
    write_timestamp(repo, [signers["timestamp"]], timestamp_version + 1, snapshot_version + 1)


@contextmanager
def new_targets_version(
    repo: Path, state: RepoState, signers: Mapping[str, Signer]
) -> Iterator[tuple[Metadata[Targets], list[Path]]]:
    """Yield the next targets metadata to fill; commit it, or undo every file placed.

    Until ``timestamp.json`` is replaced, clients see the old state; on any failure before
    that, the target files placed for the new version are removed again.
    """
    targets = state.targets
    targets.signed.version += 1
    targets.signed.expires = expiry(repo, "targets")
    placed: list[Path] = []
    try:
        yield targets, placed
        commit_targets(
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


def write_signed(repo: Path, md: Metadata[Any], signers: Sequence[Signer], name: str) -> None:
    """Sign ``md`` by each of ``signers`` (instead of its signatures so far) and write it as
    ``metadata/<name>``, atomically."""
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)
    atomic_write_bytes(repo / "metadata" / name, md.to_bytes(_SERIALIZER))


def write_snapshot(repo: Path, signers: Sequence[Signer], version: int, targets_version: int,
                   expires: datetime | None = None) -> None:
    """Write snapshot ``version`` naming targets ``targets_version`` (expiry: ``expires``, else
    the repository's setting)."""
    snapshot = Metadata(Snapshot(version=version, expires=expires or expiry(repo, "snapshot"),
                                 meta={"targets.json": MetaFile(version=targets_version)}))
    write_signed(repo, snapshot, signers, f"{version}.snapshot.json")


def write_timestamp(repo: Path, signers: Sequence[Signer], version: int, snapshot_version: int,
                    expires: datetime | None = None) -> None:
    """Switch ``timestamp.json`` to ``version``, naming snapshot ``snapshot_version``: what
    clients see changes here."""
    timestamp = Metadata(Timestamp(version=version,
                                   expires=expires or expiry(repo, "timestamp"),
                                   snapshot_meta=MetaFile(version=snapshot_version)))
    write_signed(repo, timestamp, signers, "timestamp.json")


def write_root(repo: Path, root: Metadata[Root]) -> None:
    """Write root version N as ``N.root.json`` (kept for good: clients walk every version)
    and as ``root.json``."""
    data = root.to_bytes(_SERIALIZER)
    atomic_write_bytes(repo / "metadata" / f"{root.signed.version}.root.json", data)
    atomic_write_bytes(repo / "metadata" / "root.json", data)


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
        write_timestamp(repo, [signer], current.version + 1, current.snapshot_meta.version)
    log.info("re-signed timestamp.json (version %d)", current.version + 1)
    return True


def target_file(repo: Path, target: TargetFile) -> Path:
    """Where a signed target's file lies in the repository (its hashed name)."""
    return repo / "targets" / hashed_path(target.path, target.hashes["sha256"])


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
