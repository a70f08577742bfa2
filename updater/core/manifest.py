"""Manifests of complete program trees, and the pure difference between two of them.

A manifest maps every file of a build's full tree (relative POSIX path) to its size and
sha256. The vendor's publishing tool keeps one per published build, as a signed target,
so the next build can be diffed against it and the updater can check a tree after applying.

Pure: the vendor's tools read trees from disk (:mod:`updater.publisher.trees`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class FileEntry:
    """One file of a tree."""

    size: int
    sha256: str


Manifest = Mapping[str, FileEntry]


@dataclass(frozen=True)
class TreeDiff:
    """What changed from one manifest to the next."""

    added: tuple[str, ...]
    changed: tuple[str, ...]
    deleted: tuple[str, ...]

    @property
    def written(self) -> tuple[str, ...]:
        """Files a package must carry: added and changed, sorted."""
        return tuple(sorted(self.added + self.changed))

    @property
    def empty(self) -> bool:
        """True when nothing changed at all."""
        return not (self.added or self.changed or self.deleted)


def diff_manifests(old: Manifest, new: Manifest) -> TreeDiff:
    """The files added, changed (by content) and deleted from ``old`` to ``new``."""
    added = tuple(p for p in new if p not in old)
    changed = tuple(p for p in new if p in old and old[p] != new[p])
    deleted = tuple(sorted(p for p in old if p not in new))
    return TreeDiff(added=added, changed=changed, deleted=deleted)


def manifest_to_json(manifest: Manifest) -> bytes:
    """Serialize a manifest deterministically."""
    body = {p: [e.size, e.sha256] for p, e in sorted(manifest.items())}
    return json.dumps({"format": 1, "files": body}, ensure_ascii=False, indent=0).encode()


def manifest_from_json(data: bytes) -> dict[str, FileEntry]:
    """Parse a manifest written by :func:`manifest_to_json`.

    Raises:
        ValueError: The data is not such a manifest.
    """
    body = json.loads(data.decode("utf-8"))
    if not isinstance(body, dict) or body.get("format") != 1:
        raise ValueError("not a manifest of format 1")
    try:
        return {p: FileEntry(size=int(s), sha256=str(h)) for p, (s, h) in body["files"].items()}
    except (KeyError, AttributeError, TypeError) as e:  # no or misshapen "files"
        raise ValueError(f"a manifest of format 1 without a valid file list ({e!r})") from e
