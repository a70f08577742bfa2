"""The repository's keys: list them, replace the key of any role, add a root key and raise the
root threshold, re-sign a role with a new expiry.

Key folders hold at most one key per role, as ``<role>.pem`` (owner-only). The online keys
(targets, snapshot, timestamp) usually share the folder ``publish`` is given; root keys can
each live in a folder of their own (two USB sticks), each given with ``--keys``. A command finds
every role's keys among the folders it is given; the first folder is the one whose key a
rotation replaces.

Every change of a key is a new root version N+1 (``metadata/N+1.root.json``, kept for good: an
updater that carries root 1 walks every version up to the newest), signed by a threshold of
root N's keys and a threshold of its own (TUF 5.3.4). The roles whose key changed are then
signed anew. So that no client ever sees a state it cannot verify, the new versions of those
roles are signed by the old and the new key alike and switched in (``timestamp.json`` last)
*before* the new root is written: clients still on root N trust them by the old key, clients on
N+1 by the new one. Later versions carry the new key's signature only.

The new key is written first, as ``<role>.next.pem``; once the new root trusts it, the old file
becomes ``<role>.retired-<keyid>.pem`` (kept, never used again) and the new one ``<role>.pem``.
A command killed midway leaves a repository every client can still use; running it again
finishes the job with the same new key.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata, Root

from updater.core.errors import RepositoryError
from updater.publisher.repository import (
    ROLES,
    RepoState,
    _now,
    _write_private_key,
    expiry,
    load_signer,
    load_state,
    locked,
    write_root,
    write_signed,
    write_snapshot,
    write_timestamp,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoleKeys:
    """One role as the current root describes it, and its current metadata."""

    role: str
    keyids: tuple[str, ...]
    threshold: int
    version: int
    expires: datetime
    files: tuple[Path, ...]  # the key files among the folders given that the root trusts

    def as_json(self) -> dict[str, Any]:
        return {"role": self.role, "keyids": list(self.keyids), "threshold": self.threshold,
                "version": self.version, "expires": self.expires.isoformat(),
                "files": [str(f) for f in self.files]}


def list_keys(repo: Path, folders: Sequence[Path] = ()) -> list[RoleKeys]:
    """Each role's key ids, threshold, current version and expiry; the key files found."""
    state = load_state(repo)
    found = _found(state, folders)
    meta: dict[str, Metadata[Any]] = {"root": state.root, "targets": state.targets,
                                      "snapshot": state.snapshot, "timestamp": state.timestamp}
    rows = []
    for role in ROLES:
        spec = state.root.signed.roles[role]
        rows.append(RoleKeys(role, tuple(spec.keyids), spec.threshold,
                             meta[role].signed.version, meta[role].signed.expires,
                             tuple(path for path, _ in found.get(role, []))))
    return rows


def rotate(repo: Path, role: str, folders: Sequence[Path], days: int | None = None) -> str:
    """Replace the key of ``role`` held in ``folders[0]`` by a new one; return its key id.

    Raises:
        RepositoryError: No such role, the first folder holds no current key of the role, the
            root keys given do not meet the root threshold, a key of another role needed to
            re-sign is missing; the repository is unchanged.
    """
    _check_role(role)
    home = _folders(folders)[0]
    with locked(repo):
        state = load_state(repo)
        done = _finished(home, role, state)
        if done is not None:  # a killed run had switched already: only the files are left
            return done
        old = _current_key(state, home, role)
        signers = _role_signers(state, folders)
        for name in {"root", role}:  # before a new key is made
            _enough(signers.get(name, []), state, name)
        new = _next_key(home, role, state)
        root = _next_root(state)
        root.signed.revoke_key(old.public_key.keyid, role)
        root.signed.add_key(new.public_key, role)
        _switch(repo, state, root, role, signers, extra=new, days=days)
        _retire(home, role, old)
    log.info("replaced the %s key %s by %s", role, old.public_key.keyid, new.public_key.keyid)
    return str(new.public_key.keyid)


def add_root_key(repo: Path, folders: Sequence[Path], new_folder: Path,
                 threshold: int) -> str:
    """Add a root key, written to ``new_folder/root.pem``, and set the root threshold.

    Raises:
        RepositoryError: ``new_folder`` already holds a root key, the threshold is below 1 or
            above the number of root keys then, the root keys given do not meet the current
            threshold; the repository is unchanged.
    """
    _folders(folders)
    if (new_folder / "root.pem").exists():
        raise RepositoryError(f"{new_folder} already holds a root key; nothing was changed.",
                              hint="Give an empty folder (e.g. on a second USB stick).")
    with locked(repo):
        state = load_state(repo)
        pending = new_folder / "root.next.pem"
        if pending.exists() and (key := load_signer(pending).public_key.keyid) in \
                state.root.signed.roles["root"].keyids:  # a killed run had switched already
            pending.replace(new_folder / "root.pem")
            return str(key)
        count = len(state.root.signed.roles["root"].keyids) + 1
        if not 1 <= threshold <= count:
            raise RepositoryError(f"A root threshold of {threshold} cannot be met by {count} "
                                  "root keys; nothing was changed.")
        signers = _role_signers(state, folders)
        _enough(signers.get("root", []), state, "root")  # before a new key is made
        new_folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        new = _next_key(new_folder, "root", state)
        root = _next_root(state)
        root.signed.add_key(new.public_key, "root")
        root.signed.roles["root"].threshold = threshold
        _switch(repo, state, root, "root", signers, extra=new)
        (new_folder / "root.next.pem").replace(new_folder / "root.pem")
    log.info("added the root key %s; root threshold %d", new.public_key.keyid, threshold)
    return str(new.public_key.keyid)


def resign(repo: Path, role: str, folders: Sequence[Path], days: int | None = None) -> int:
    """Sign ``role`` anew with a fresh expiry (``days``, else the repository's setting), and
    the roles after it; return the new version of ``role``.

    Raises:
        RepositoryError: A key needed is missing or the root keys do not meet the threshold.
    """
    _check_role(role)
    _folders(folders)
    with locked(repo):
        state = load_state(repo)
        signers = _role_signers(state, folders)
        root = _next_root(state, days) if role == "root" else None
        version = _switch(repo, state, root, role, signers, days=days)
    log.info("re-signed %s (version %d)", role, version)
    return version


# --- the switch ---------------------------------------------------------------------------


def _switch(repo: Path, state: RepoState, root: Metadata[Root] | None, role: str,
            signers: dict[str, list[Signer]], *, extra: Signer | None = None,
            days: int | None = None) -> int:
    """Sign the changed role (and the ones after it) with the current keys and ``extra``, write
    them with timestamp.json last, then the new root; return ``role``'s new version."""
    both = {r: [*signers.get(r, []), *([extra] if extra and r == role else [])] for r in ROLES}
    order = ROLES[ROLES.index(role):] if role != "root" else ()
    for name in order:  # every key at hand before anything is written
        _enough(both[name], state, name)
    if root is not None:
        _sign_root(root, state, signers.get("root", []), extra)
    version = 0
    targets_version = state.targets.signed.version
    snapshot_version = state.snapshot.signed.version
    expires = _now() + timedelta(days=days) if days else None  # else the repository's setting
    if "targets" in order:
        targets = Metadata.from_bytes(state.targets.to_bytes())
        targets_version = version = targets_version + 1
        targets.signed.version = targets_version
        targets.signed.expires = expires or expiry(repo, "targets")
        write_signed(repo, targets, both["targets"], f"{targets_version}.targets.json")
    if "snapshot" in order:
        snapshot_version += 1
        write_snapshot(repo, both["snapshot"], snapshot_version, targets_version, expires)
        version = version or snapshot_version
    if "timestamp" in order:
        stamp = state.timestamp.signed.version + 1
        write_timestamp(repo, both["timestamp"], stamp, snapshot_version, expires)
        version = version or stamp
    if root is not None:
        write_root(repo, root)
        version = version or root.signed.version
    return version


def _enough(signers: list[Signer], state: RepoState, role: str) -> None:
    spec = state.root.signed.roles[role]
    trusted = [s for s in signers if s.public_key.keyid in spec.keyids]
    if role == "root" and len(trusted) < spec.threshold:
        raise RepositoryError(
            f"The new root must be signed by {spec.threshold} of the current root keys; "
            f"{len(trusted)} found in the key folders given. Nothing was changed.",
            hint="Give each folder holding a root key (root.pem) with --keys.")
    if len(trusted) < spec.threshold:
        raise RepositoryError(
            f"Signing {role} needs {spec.threshold} of its current keys; {len(trusted)} found "
            "in the key folders given. Nothing was changed.",
            hint=f"Give the folder holding {role}.pem with --keys.")


def _sign_root(root: Metadata[Root], state: RepoState, old: list[Signer],
               extra: Signer | None) -> None:
    """Sign root N+1 by a threshold of root N's keys and of its own (TUF 5.3.4)."""
    _enough(old, state, "root")
    spec = root.signed.roles["root"]
    candidates = {s.public_key.keyid: s for s in [*old, *([extra] if extra else [])]}
    by_new = [s for k, s in candidates.items() if k in spec.keyids]
    if len(by_new) < spec.threshold:
        raise RepositoryError(
            f"The new root must be signed by {spec.threshold} of its own keys; only "
            f"{len(by_new)} are at hand. Nothing was changed.",
            hint="Give each folder holding a root key (root.pem) with --keys.")
    root.signatures.clear()
    for signer in candidates.values():
        root.sign(signer, append=True)


def _next_root(state: RepoState, days: int | None = None) -> Metadata[Root]:
    root: Metadata[Root] = Metadata.from_bytes(state.root.to_bytes())
    root.signed.version += 1
    root.signed.expires = _now() + timedelta(days=days) if days else root.signed.expires
    return root


# --- key files ----------------------------------------------------------------------------


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise RepositoryError(f"No role {role!r}; the roles are {', '.join(ROLES)}.")


def _folders(folders: Sequence[Path]) -> list[Path]:
    if not folders:
        raise RepositoryError("Give the key folder(s) with --keys.")
    for folder in folders:
        if not folder.is_dir():
            raise RepositoryError(f"The key folder {folder} does not exist; nothing was changed.",
                                  hint="Is the USB stick plugged in?")
    return list(folders)


def _found(state: RepoState, folders: Sequence[Path]) -> dict[str, list[tuple[Path, Signer]]]:
    """The keys in ``folders`` the current root trusts, per role (next/retired files ignored)."""
    found: dict[str, list[tuple[Path, Signer]]] = {}
    for folder in folders:
        for role in ROLES:
            path = folder / f"{role}.pem"
            if not path.exists():
                continue
            signer = load_signer(path)
            if signer.public_key.keyid in state.root.signed.roles[role].keyids:
                found.setdefault(role, []).append((path, signer))
    return found


def _role_signers(state: RepoState, folders: Sequence[Path]) -> dict[str, list[Signer]]:
    found = _found(state, folders)
    return {role: list({s.public_key.keyid: s for _, s in items}.values())
            for role, items in found.items()}


def _current_key(state: RepoState, home: Path, role: str) -> Signer:
    path = home / f"{role}.pem"
    if not path.exists():
        raise RepositoryError(f"{home} holds no {role} key ({path.name}); nothing was changed.",
                              hint="The first --keys folder is the one whose key is replaced.")
    signer = load_signer(path)
    if signer.public_key.keyid not in state.root.signed.roles[role].keyids:
        raise RepositoryError(f"{path} is not a {role} key of this repository; nothing was "
                              "changed.", hint="Use the key folder made for this repository.")
    return signer


def _next_key(folder: Path, role: str, state: RepoState) -> Signer:
    """The key a rotation moves to: ``<role>.next.pem``, made now or left by a killed run."""
    path = folder / f"{role}.next.pem"
    if path.exists():
        signer = load_signer(path)
        log.info("going on with the new %s key %s left by an interrupted command", role,
                 signer.public_key.keyid)
        return signer
    new = CryptoSigner.generate_ed25519()
    _write_private_key(path, new)
    return new


def _finished(folder: Path, role: str, state: RepoState) -> str | None:
    """Where a killed rotation had written the new root already: retire the old key file, make
    the next one current, and return its key id; else None."""
    path = folder / f"{role}.next.pem"
    if not path.exists():
        return None
    new = load_signer(path)
    if new.public_key.keyid not in state.root.signed.roles[role].keyids:
        return None
    _retire(folder, role, load_signer(folder / f"{role}.pem"))
    return str(new.public_key.keyid)


def _retire(folder: Path, role: str, old: Signer) -> None:
    current = folder / f"{role}.pem"
    current.replace(folder / f"{role}.retired-{old.public_key.keyid[:16]}.pem")
    (folder / f"{role}.next.pem").replace(current)
