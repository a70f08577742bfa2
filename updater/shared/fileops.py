"""The seam over every file operation the updater performs on an install and its working folder.

Backup, staging, downloads, apply, restore and the journal change files only through these
functions, so that (1) Windows' behaviour (a file held open by a virus scanner or the host cannot
be replaced for a moment; a read-only file cannot be replaced at all) is handled in one place:
:func:`replace` and :func:`unlink` retry, and take a read-only attribute off; and
(2) the fault and crash suites can fail or stop the updater at any one operation, through the
one hook :func:`set_hook` (installed only by :mod:`updater.install.testhooks`, from the test
environment). Without a hook, an operation costs one attribute test.

Operations may run in several threads (the backup's parts, the staging lanes, a download). Each
thread that does file work names its *lane* (:func:`lane`); an operation's identity is its lane
and its number within the lane (``main#12``, ``backup-2#40``), which is the same in every run
whatever the order of two lanes' operations. The hook gets every operation with that identity.

Left outside the seam: python-tuf writes its own metadata cache (atomically, in the working
folder), :mod:`filelock` creates ``update.lock``, and the records of a run (the log file and the
update history in ``Logs/``) are written directly, so that they tell what happened even when the
seam's operations fail. None of them is a program file, and none is restored.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from updater.shared.fsutil import fsync_dir

#: How long :func:`replace` and :func:`unlink` keep retrying a file that is in use.
LOCK_RETRY_SECONDS = 10.0
_RETRY_PAUSE = 0.2
MAIN_LANE = "main"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Operation:
    """One file operation as the hook sees it.

    Attributes:
        lane: The lane (thread of work) it runs in.
        number: Its number within the lane, from 1.
        kind: ``open``, ``write``, ``replace``, ``unlink``, ``mkdir``, ...
        path: The file or folder it works on.
    """

    lane: str
    number: int
    kind: str
    path: Path

    @property
    def ident(self) -> str:
        """``lane#number``: the same operation in every run of the same update."""
        return f"{self.lane}#{self.number}"


Hook = Callable[[Operation], None]
_hook: Hook | None = None
_local = threading.local()
_counts: dict[str, int] = {}
_count_lock = threading.Lock()


def set_hook(hook: Hook | None) -> None:
    """Install (or, with None, remove) the one hook that sees every operation; resets the
    lanes' counts."""
    global _hook
    with _count_lock:
        _counts.clear()
    _hook = hook


@contextmanager
def lane(name: str) -> Iterator[None]:
    """Run the ``with`` block's file operations in the lane ``name`` (this thread only)."""
    outer = getattr(_local, "lane", MAIN_LANE)
    _local.lane = name
    try:
        yield
    finally:
        _local.lane = outer


def name_lane(name: str) -> None:
    """Put this thread in the lane ``name`` for good (a worker thread's initializer)."""
    _local.lane = name


def _op(kind: str, path: Path) -> None:
    hook = _hook
    if hook is None:
        return
    name = getattr(_local, "lane", MAIN_LANE)
    with _count_lock:
        number = _counts[name] = _counts.get(name, 0) + 1
    hook(Operation(name, number, kind, path))


def _is_in_use(error: OSError) -> bool:
    """True for the errors Windows gives while another process holds a file (seam)."""
    return os.name == "nt" and (
        isinstance(error, PermissionError) or getattr(error, "winerror", 0) in (32, 33)
    )


def _clear_read_only(path: Path) -> bool:
    """Windows: take the read-only attribute off ``path``; True when there was one (seam).

    Windows refuses to delete a read-only file, or to move another file over it
    (``ERROR_ACCESS_DENIED``), where POSIX only asks whether the folder is writable. A program
    file can be read-only when it was copied from a CD or set so by hand; the update replaces
    it all the same, and the new file has the build's attributes.
    """
    if os.name != "nt":
        return False
    try:
        attributes = getattr(os.lstat(path), "st_file_attributes", 0)  # Windows only
        if not attributes & stat.FILE_ATTRIBUTE_READONLY:
            return False
        os.chmod(path, stat.S_IWRITE)  # Python on Windows: SetFileAttributesW without READONLY
    except OSError:
        return False
    log.info("%s was read-only; the attribute was taken off to replace or delete it", path)
    return True


def _retrying(action: Callable[[], None], target: Path) -> None:
    """Run ``action`` on ``target``; while Windows says the file is in use, try again for
    :data:`LOCK_RETRY_SECONDS` (a read-only ``target`` first loses that attribute)."""
    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    waiting = False
    while True:
        try:
            action()
            return
        except OSError as e:
            if not _is_in_use(e):
                raise
            if isinstance(e, PermissionError) and _clear_read_only(target):
                continue
            if time.monotonic() > deadline:
                raise
            if not waiting:
                waiting = True
                log.warning("%s is in use by another program (%s); trying again for up to %.0f s",
                            target, e.strerror, LOCK_RETRY_SECONDS)
            time.sleep(_RETRY_PAUSE)


def replace(src: Path, dst: Path) -> None:
    """Move ``src`` over ``dst`` atomically (same file system), retrying while ``dst`` is in use."""
    _op("replace", dst)
    _retrying(lambda: os.replace(src, dst), dst)


def unlink(path: Path) -> None:
    """Delete a file (missing is fine), retrying while it is in use."""
    _op("unlink", path)
    _retrying(lambda: path.unlink(missing_ok=True), path)


def makedirs(path: Path) -> None:
    """Create a folder and its parents (existing is fine)."""
    if path.is_dir():
        return
    _op("mkdir", path)
    path.mkdir(parents=True, exist_ok=True)


def rmdir(path: Path) -> None:
    """Remove an empty folder."""
    _op("rmdir", path)
    path.rmdir()


def rmtree(path: Path) -> None:
    """Remove a folder of the updater's own working state with everything in it."""
    _op("rmtree", path)
    if path.exists():
        shutil.rmtree(path)


def open_write(path: Path) -> BinaryIO:
    """Open a file for writing (truncating)."""
    _op("open", path)
    return path.open("wb")


def open_new(path: Path) -> BinaryIO:
    """Create a file that must not exist yet, for writing."""
    _op("open", path)
    return path.open("xb")


def open_append(path: Path) -> BinaryIO:
    """Open a file for appending (created if missing)."""
    _op("open", path)
    return path.open("ab")


def write_chunk(handle: BinaryIO, data: bytes) -> None:
    """Write one chunk of a file opened with :func:`open_write`."""
    _op("write", Path(handle.name))
    handle.write(data)


def write_chunks(handle: BinaryIO, chunks: Iterable[bytes]) -> None:
    """Write several chunks as one operation (a download's batch), without joining them."""
    _op("write", Path(handle.name))
    handle.writelines(chunks)


def set_times(path: Path, mtime: float) -> None:
    """Set a file's access and modification time."""
    _op("utime", path)
    os.utime(path, times=(mtime, mtime))


def chmod(path: Path, mode: int) -> None:
    """Set a file's permission bits (on Windows only the read-only flag counts)."""
    _op("chmod", path)
    path.chmod(mode)


def sync(handle: BinaryIO) -> None:
    """Flush a file to disk."""
    _op("fsync", Path(handle.name))
    handle.flush()
    os.fsync(handle.fileno())


def sync_dir(path: Path) -> None:
    """Make renames in a folder durable."""
    _op("fsync_dir", path)
    fsync_dir(path)


def sync_all(path: Path) -> None:
    """Flush the file systems once more before the journal goes (belt and braces).

    What makes an update durable is the same on every platform: each file's data is flushed
    when it is written (:func:`sync`: ``fsync``, on Windows ``FlushFileBuffers``), before it
    is renamed into place; the file systems (ext4's journal, NTFS's log) keep the metadata
    operations in order, so once the journal's removal is on disk, so are the renames before
    it. POSIX adds ``sync()`` here; Windows has no such call without administrator rights
    (a power cut with this step left out is the power-cut suite's Windows-like mode).
    """
    _op("sync_all", path)
    if hasattr(os, "sync") and _global_sync:
        os.sync()


_global_sync = True


def set_global_sync(enabled: bool) -> None:
    """Switch :func:`sync_all`'s ``sync()`` off: the power-cut suite's Windows-like mode
    (through the test hook ``OPUSI_SYNC_ALL=off``; never in real use)."""
    global _global_sync
    _global_sync = enabled


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data``: temp file beside it, flushed, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open_write(tmp) as handle:
        write_chunk(handle, data)
        sync(handle)
    replace(tmp, path)
    sync_dir(path.parent)
