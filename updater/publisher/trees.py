"""Program trees on disk, as the vendor's publisher reads them: files, links, specials, hashes.

Reads a tree (never follows links); the manifest it builds is the pure record of
:mod:`updater.core.manifest`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from updater.core.manifest import FileEntry
from updater.shared.fsutil import sha256_file


@dataclass(frozen=True)
class TreeScan:
    """What a walk of a program tree found.

    Attributes:
        files: Every regular file, by relative POSIX path.
        links: Relative paths of symbolic links (files or folders) found, not followed.
        specials: Relative paths of anything neither file, folder nor link (FIFOs, devices).
    """

    files: dict[str, Path]
    links: tuple[str, ...]
    specials: tuple[str, ...]


def scan_tree(root: Path) -> TreeScan:
    """Walk ``root`` without following links.

    Raises:
        OSError: The tree cannot be read.
    """
    files: dict[str, Path] = {}
    links: list[str] = []
    specials: list[str] = []
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(folder)
        for name in sorted(dirnames):
            if (base / name).is_symlink():
                links.append((base / name).relative_to(root).as_posix())
        for name in sorted(filenames):
            path = base / name
            rel = path.relative_to(root).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                links.append(rel)
            elif stat.S_ISREG(mode):
                files[rel] = path
            else:
                specials.append(rel)
    return TreeScan(files=files, links=tuple(links), specials=tuple(specials))


def build_manifest(files: Mapping[str, Path]) -> dict[str, FileEntry]:
    """Hash every file; the result is sorted by path."""
    return {
        rel: FileEntry(size=files[rel].stat().st_size, sha256=sha256_file(files[rel]))
        for rel in sorted(files)
    }
