"""Real binaries no one here wrote: successive releases of a wheel full of large Windows DLLs.

The benchmark of the binary deltas (and any test that wants realistic, big, changed files) uses
the unpacked ``win_amd64`` wheels of successive pyarrow releases: about 82 MB and 816 files per
release, the largest ``arrow.dll`` at 21 MB, a dozen other DLLs and ``.pyd`` files of 1-14 MB,
headers, Python sources and Cython files. Every native file is rebuilt between releases, so
each pair has large changed files that are similar but not equal, as in a real program update.

The wheels come from the package registry through ``pip download`` and are kept, with their
unpacked trees, in ``~/.cache/opusi-updater/realbins/``; nothing is fetched twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from filelock import FileLock

PACKAGE = "pyarrow"
"""The package on PyPI whose wheels make the trees."""

RELEASES: tuple[str, ...] = ("25.0.0", "25.0.1", "26.0.0", "26.0.1")
"""Successive releases, oldest first: two patch updates around one major update."""

PLATFORM = "win_amd64"
PYTHON_VERSION = "3.11"

DEFAULT_CACHE = Path.home() / ".cache" / "opusi-updater" / "realbins"
"""Where the wheels and their trees are kept between runs."""

FORBIDDEN_NAMES = frozenset({"build"})
"""File names (compared case-insensitively) that a tree must not hold; such files are renamed."""

DOWNLOAD_TIMEOUT = 900.0
"""Seconds that one ``pip download`` may take."""


def _wheel_in(folder: Path, version: str) -> Path | None:
    """The ``win_amd64`` wheel of ``version`` in ``folder``, or None if there is none."""
    name = PACKAGE.replace("-", "_")
    found = sorted(folder.glob(f"{name}-{version}-*-{PLATFORM}.whl"))
    return found[0] if found else None


def download_wheel(version: str, cache: Path) -> Path:
    """The wheel of ``version`` in ``cache``, fetched with ``pip download`` if not there yet.

    pip writes into a fresh temporary folder first, so that a wheel in ``cache`` is whole.
    """
    wheel = _wheel_in(cache, version)
    if wheel is not None:
        return wheel
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--only-binary=:all:", "--platform", PLATFORM,
            "--python-version", PYTHON_VERSION, f"{PACKAGE}=={version}", "-d", tmp,
        ]  # fmt: skip
        subprocess.run(command, check=True, timeout=DOWNLOAD_TIMEOUT, stdin=subprocess.DEVNULL)
        fetched = _wheel_in(Path(tmp), version)
        if fetched is None:
            raise FileNotFoundError(f"pip download left no {PLATFORM} wheel of {version}")
        wheel = cache / fetched.name
        os.replace(fetched, wheel)
    return wheel


def _clean_tree(root: Path) -> None:
    """Drop symlinks and rename files with a forbidden name (``BUILD`` -> ``BUILD.orig``)."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if path.is_symlink():
                path.unlink()
            elif name.lower() in FORBIDDEN_NAMES:
                path.rename(path.with_name(name + ".orig"))


def unpack_wheel(wheel: Path, tree: Path) -> Path:
    """Unzip ``wheel`` into ``tree`` unless done before; return ``tree``.

    The files go to a temporary sibling folder that is renamed to ``tree`` when whole; the
    marker ``tree-<version>.done`` beside it says the tree is complete. A tree without its
    marker is the leftover of a stopped run and is unpacked anew.
    """
    done = tree.with_name(tree.name + ".done")
    if done.is_file() and tree.is_dir():
        return tree
    done.unlink(missing_ok=True)
    if tree.exists():
        shutil.rmtree(tree)
    tmp = Path(tempfile.mkdtemp(dir=tree.parent, prefix=f".{tree.name}-"))
    try:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(tmp)
        _clean_tree(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private
        os.replace(tmp, tree)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    done.write_text(f"{wheel.name}\n", encoding="utf-8")
    return tree


def release_trees(cache: Path | None = None) -> list[Path]:
    """The unpacked trees of :data:`RELEASES`, oldest first, downloading what is missing.

    ``cache`` defaults to :data:`DEFAULT_CACHE`. Processes sharing a cache take turns through
    a file lock in it. Each tree is ``<cache>/tree-<version>/``: the wheel's files only, no
    symlinks and no file named ``BUILD``.
    """
    root = DEFAULT_CACHE if cache is None else cache
    root.mkdir(parents=True, exist_ok=True)
    trees: list[Path] = []
    with FileLock(str(root / ".lock")):
        for version in RELEASES:
            wheel = download_wheel(version, root)
            trees.append(unpack_wheel(wheel, root / f"tree-{version}"))
    return trees


def tree_size(tree: Path) -> tuple[int, int]:
    """The number of files under ``tree`` and their total size in bytes."""
    count = total = 0
    for folder, _dirs, files in os.walk(tree):
        for name in files:
            count += 1
            total += (Path(folder) / name).stat().st_size
    return count, total


if __name__ == "__main__":
    for found in release_trees(Path(sys.argv[1]) if len(sys.argv) > 1 else None):
        files, size = tree_size(found)
        print(f"{found}  {files} files  {size / 2**20:.1f} MiB")
