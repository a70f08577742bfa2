"""Small durable file operations shared by the vendor tools and the updater.

Writes go to a temporary file in the target's own folder, are flushed to disk, and are then
moved over the target with ``os.replace``, so a reader or a crash sees the old file or the new
one, never half of one. POSIX also needs the folder itself synced for the rename to be durable;
Windows has no such call (NTFS journals the rename), which :func:`fsync_dir` hides.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 20


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where the OS cannot, i.e. Windows)."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` by ``data`` atomically and durably, with permissions ``mode``.

    Raises:
        OSError: The folder is missing or not writable, or the disk is full.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        if os.name != "nt":
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def iter_file(path: Path, chunk: int = CHUNK) -> Iterator[bytes]:
    """Yield the bytes of ``path`` in chunks."""
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            yield block


def sha256_of(path: Path) -> hashlib._Hash:
    """A running sha256 over the bytes of ``path``, read in constant memory (may be extended)."""
    digest = hashlib.sha256()
    for block in iter_file(path):
        digest.update(block)
    return digest


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in constant memory."""
    return sha256_of(path).hexdigest()
