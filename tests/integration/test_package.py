"""package.extract_to: the staging writer (hash while writing, flat layout, backpressure, errors).

Real 7z packages written by the publisher's own code, extracted into real folders and compared
file by file; the disk-full case uses a real tmpfs where the machine allows mounting one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from tests.support.trees import write_tree
from updater.core.errors import PackageVerificationError, UnsafeArchiveError
from updater.shared import package

MTIME = 1_600_000_000  # 2020-09-13: what the package records, and staging must keep


def _tree(root: Path) -> dict[str, bytes]:
    big = os.urandom(1 << 20) * 40  # 40 MiB: more than the 16 MiB the writer lets wait
    files = {
        "opusi.exe": b"MZ" + os.urandom(300_000),
        "Program/Module/Ä-Übersicht.xml": b"<x>" + b"y" * 50_000 + b"</x>",
        "Program/empty.ini": b"",
        "Program/deep/er/still/big.dll": big,
        **{f"Help/page{i:03d}.htm": f"<p>{i}</p>".encode() * (i + 1) for i in range(120)},
    }
    write_tree(root, files)
    for rel in files:
        os.utime(root / rel, (MTIME, MTIME))
    return files


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    base = tmp_path_factory.mktemp("pkg")
    files = _tree(base / "tree")
    pkg = base / "build.7z"
    package.write_package(pkg, base / "tree", sorted(files))
    return pkg, files


@pytest.mark.parametrize("flat", [False, True])
def test_extract_hashes_while_writing(
    packaged: tuple[Path, dict[str, bytes]], tmp_path: Path, flat: bool
) -> None:
    pkg, files = packaged
    out = tmp_path / "staging"
    out.mkdir()
    staged = package.extract_to(pkg, out, sum(map(len, files.values())), flat=flat)
    assert set(staged) == set(files)
    for rel, data in files.items():
        item = staged[rel]
        assert item.path.read_bytes() == data, rel
        assert item.size == len(data)
        assert item.sha256 == hashlib.sha256(data).hexdigest()
        assert int(item.path.stat().st_mtime) == MTIME, rel
        if flat:
            assert item.path.parent == out
        else:
            assert item.path == out / rel
    on_disk = sorted(p for p in out.rglob("*") if p.is_file())
    assert on_disk == sorted(s.path for s in staged.values())  # nothing else was written
    if flat:
        assert all(p.parent == out for p in out.rglob("*"))  # no folders at all


def test_extract_leaves_no_threads_behind(
    packaged: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    pkg, files = packaged
    before = {t.name for t in threading.enumerate()}
    package.extract_to(pkg, tmp_path, sum(map(len, files.values())), flat=True)
    assert {t.name for t in threading.enumerate()} - before == set()


def test_size_limit_stops_extraction(
    packaged: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    pkg, files = packaged
    with pytest.raises(UnsafeArchiveError, match="unpacks to more than"):
        package.extract_to(pkg, tmp_path, 1 << 20, flat=True)
    shutil.rmtree(tmp_path)  # every staged file was closed (a must on Windows)


def test_damaged_package_is_refused_and_files_closed(
    packaged: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    pkg, files = packaged
    data = bytearray(pkg.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    bad = tmp_path / "bad.7z"
    bad.write_bytes(bytes(data))
    out = tmp_path / "staging"
    out.mkdir()
    with pytest.raises(PackageVerificationError):
        package.extract_to(bad, out, sum(map(len, files.values())), flat=True)
    shutil.rmtree(out)


@pytest.mark.posix_only
def test_disk_full_while_staging_raises_oserror(
    packaged: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    pkg, files = packaged
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        with pytest.raises(OSError) as raised:
            package.extract_to(pkg, mount, sum(map(len, files.values())), flat=True)
        assert raised.value.errno == 28  # ENOSPC, which the apply step reports as error 14
    finally:
        subprocess.run(["umount", str(mount)], check=True)
