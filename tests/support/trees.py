"""Helpers for tests: real program trees on disk, and their (path -> sha256) snapshots."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path


def write_tree(root: Path, files: Mapping[str, bytes]) -> Path:
    """Create ``root`` holding exactly ``files`` (relative POSIX path -> content)."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``: path -> sha256 (folders -> "dir", links -> target)."""
    result: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        base = Path(folder)
        for name in dirs:
            rel = (base / name).relative_to(root).as_posix()
            result[rel + "/"] = "dir"
        for name in files:
            path = base / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                result[rel] = "link:" + os.readlink(path)
            else:
                result[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def program_builds() -> dict[int, dict[str, bytes]]:
    """Five builds of a small program: adds, changes, deletes, nesting, non-ASCII, empty files."""
    b1147 = {
        "opusi.exe": b"MZ" + b"\x00" * 4000 + b"1147",
        "opusi.dll": os.urandom(20000),
        "Program/Module/Ä-Übersicht.xml": "<x>Größe</x>".encode(),
        "Program/Module/deep/er/still/file.txt": b"deep 1147",
        "Program/empty.cfg": b"",
        "Database/SystemFiles/Templates/brief.dot": b"template 1",
        "README.txt": b"readme 1147",
        "old/obsolete.dll": b"old",
    }
    b1148 = dict(b1147)
    b1148["opusi.exe"] = b"MZ" + b"\x00" * 4000 + b"1148"
    b1148["Program/Module/neu ñ/日本語.txt"] = b"neu"
    del b1148["old/obsolete.dll"]
    b1150 = dict(b1148)
    b1150["Program/empty2.cfg"] = b""
    b1150["Program/Module/deep/er/still/file.txt"] = b"deep 1150"
    del b1150["README.txt"]
    b1152 = dict(b1150)
    b1152["Program/Module/neu ñ/日本語.txt"] = b"neu 1152"
    b1152["Program/Plugins/plugin.dll"] = os.urandom(5000)
    del b1152["Program/empty.cfg"]
    b1155 = dict(b1152)
    b1155["opusi.dll"] = os.urandom(30000)
    b1155["Program/Module/Ä-Übersicht.xml"] = "<x>Größe 2</x>".encode()
    b1155["README.txt"] = b"readme is back"
    return {1147: b1147, 1148: b1148, 1150: b1150, 1152: b1152, 1155: b1155}
