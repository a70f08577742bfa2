"""Build packages: 7z archives written by the vendor's tool and read by the updater.

The only module that imports py7zr. Packages hold regular files only (no folders, links or
empty-folder entries). The vendor chooses the method: ``zstd`` (the default: unpacks about three
times faster than LZMA2 at about the same size, but stock 7-Zip cannot open it; 7-Zip-zstd and
NanaZip can, and ``opusi-INSTALLUpdate --list-package`` lists one) or ``lzma2`` (every 7-Zip
reads it).

Reading never extracts straight into an install: :func:`list_members` gives the names and
sizes to check first, and :func:`extract_to` writes into a staging folder with the size limit
from the signed metadata (py7zr checks a file's CRC only after writing it), every file operation
through :mod:`updater.shared.fileops` (in the lanes ``staging-1`` and ``staging-2``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import stat
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import py7zr
import py7zr.exceptions
from py7zr.helpers import ArchiveTimestamp
from py7zr.io import Py7zIO, WriterFactory

from updater.core.builds import Member
from updater.core.errors import PackageVerificationError, UnsafeArchiveError
from updater.core.i18n import _
from updater.core.paths import path_problem
from updater.shared import fileops

log = logging.getLogger(__name__)

#: Compression methods the publisher offers, each one py7zr reads back.
METHODS: dict[str, list[dict[str, int]]] = {
    "zstd": [{"id": py7zr.FILTER_ZSTD, "level": 15}],
    "lzma2": [{"id": py7zr.FILTER_LZMA2, "preset": 5}],
}
DEFAULT_METHOD = "zstd"
_READ_ERRORS = (
    py7zr.exceptions.ArchiveError,
    py7zr.exceptions.PasswordRequired,
    ValueError,
    EOFError,
    KeyError,
    IndexError,
    TypeError,
)


def write_package(
    dest: Path, root: Path, names: Iterable[str], method: str = DEFAULT_METHOD
) -> None:
    """Write the files ``names`` (relative POSIX paths under ``root``) into a new 7z at ``dest``.

    Raises:
        OSError: A file cannot be read, or ``dest`` cannot be written.
        KeyError: ``method`` is not one of :data:`METHODS`.
    """
    with py7zr.SevenZipFile(dest, "w", filters=METHODS[method]) as archive:
        for name in names:
            archive.write(root / name, arcname=name)


def list_members(path: Path) -> list[Member]:
    """Read the header of a package.

    Raises:
        PackageVerificationError: The file is not a readable 7z archive.
    """
    try:
        with py7zr.SevenZipFile(path, "r") as archive:
            infos = archive.list()
    except (*_READ_ERRORS, OSError) as e:
        raise PackageVerificationError(
            _("Package {name} cannot be read: {e}", name=path.name, e=e)) from e
    return [
        Member(
            name=info.filename,
            size=int(info.uncompressed or 0),
            is_file=not info.is_directory and not info.is_symlink,
            is_link=bool(info.is_symlink),
        )
        for info in infos
    ]


@dataclass(frozen=True)
class Staged:
    """A file as it was written into staging: where, its size and SHA-256 (hex, while writing)."""

    path: Path
    size: int
    sha256: str


def extract_to(path: Path, dest: Path, max_size: int, *, flat: bool = False) -> dict[str, Staged]:
    """Extract every member of ``path`` into the (empty) staging folder ``dest``.

    The files go to their relative paths under ``dest``, or with ``flat`` into ``dest`` itself,
    numbered in package order (``000000``, ``000001``, ...): no folders to create, and later
    none to remove; the caller moves each file to its place by the returned mapping.

    The caller has checked the member names. Each file is written by this module (a py7zr
    writer factory) and hashed on the way, so the check against the signed manifest needs no
    second read; py7zr stops once more than ``max_size`` bytes were written and checks every
    file's CRC. Files keep the modification time (and, on POSIX, the mode) the package records,
    as py7zr's own extraction would set them.

    Returns:
        Relative path (``/``-separated, as in the package) -> what was written.

    Raises:
        UnsafeArchiveError: The package unpacks to more than ``max_size`` bytes.
        PackageVerificationError: The archive is corrupt (bad CRC, truncated, bad header).
        OSError: A staged file could not be written (disk full, not writable).
    """
    with _Sink() as sink:
        factory = _StagingWriters(dest, flat, sink)
        try:
            with py7zr.SevenZipFile(path, "r", max_extract_size=max_size) as archive:
                factory.props = {f.filename: f.file_properties() for f in archive.files}
                # No path: py7zr hands the factory each member's relative name (after its own
                # containment check) and has no folder of its own to create or resolve.
                archive.extractall(factory=factory)
            sink.finish()
        except py7zr.exceptions.DecompressionBombError as e:
            raise UnsafeArchiveError(
                _("Package {name} unpacks to more than its declared {size} bytes.",
                  name=path.name, size=max_size)
            ) from e
        except py7zr.exceptions.CrcError as e:
            raise PackageVerificationError(
                _("Package {name} failed its CRC check: {e}", name=path.name, e=e)
            ) from e
        except py7zr.exceptions.AbsolutePathError as e:
            raise UnsafeArchiveError(
                _("Package {name} holds an absolute path: {e}", name=path.name, e=e)) from e
        except _READ_ERRORS as e:
            raise PackageVerificationError(
                _("Package {name} is corrupt: {e}", name=path.name, e=e)) from e
        finally:
            factory.close_all()
    return factory.staged


class _Sink:
    """Threads that create, write, hash and close the staged files (file *n* in lane *n* mod 2).

    py7zr decompresses and checks CRCs in the calling thread while these do the file system's
    work and the SHA-256 (both let go of the interpreter lock). Each lane is one thread, so a
    file's operations run in the order they were handed over; at most :data:`_AHEAD` bytes of
    data wait at any time (the caller blocks beyond that), so memory stays bounded. The first
    error (a full disk) is raised to the caller at its next hand-over or at :meth:`finish`.
    """

    _AHEAD = 16 << 20
    LANES = 2

    def __init__(self) -> None:
        # each thread is a lane of the file seam too: its operations keep their numbers
        self._lanes = [ThreadPoolExecutor(max_workers=1, thread_name_prefix="opusi-stage",
                                          initializer=fileops.name_lane,
                                          initargs=(f"staging-{n + 1}",))
                       for n in range(self.LANES)]
        self._pending: deque[tuple[Future[None], int]] = deque()
        self._held = 0

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        for lane in self._lanes:
            lane.shutdown(wait=True, cancel_futures=True)

    def submit(self, work: Callable[[], None], lane: int, size: int = 0) -> None:
        while self._pending and (self._pending[0][0].done() or self._held + size > self._AHEAD):
            self._settle()
        self._pending.append((self._lanes[lane % len(self._lanes)].submit(work), size))
        self._held += size

    def finish(self) -> None:
        """Wait for everything handed over; raise the first error."""
        while self._pending:
            self._settle()

    def drain(self) -> None:
        """Wait for everything handed over, ignoring errors (after a failure)."""
        while self._pending:
            with contextlib.suppress(Exception):
                self._settle()

    def _settle(self) -> None:
        future, size = self._pending.popleft()
        self._held -= size
        future.result()


class _StagedFile(Py7zIO):
    """One file being extracted: created, written and hashed by the sink's thread."""

    def __init__(self, path: Path, rel: str, props: dict[str, Any], factory: _StagingWriters,
                 lane: int) -> None:
        self._path, self._rel, self._props, self._factory = path, rel, props, factory
        self._lane = lane
        self._file: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self._size = 0
        self._closed = False
        factory.sink.submit(self._open, lane)

    def write(self, s: bytes | bytearray) -> int:
        data = bytes(s)  # the thread may write it after py7zr reused its buffer
        self._size += len(data)
        self._factory.sink.submit(lambda: self._write(data), self._lane, len(data))
        return len(data)

    def read(self, size: int | None = None) -> bytes:
        raise io.UnsupportedOperation("staged files are write-only")

    def seek(self, offset: int, whence: int = 0) -> int:
        raise io.UnsupportedOperation("staged files are written in one pass")

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        """Written by the sink's thread; nothing to flush from here."""

    def size(self) -> int:
        return self._size

    def close(self) -> None:
        """py7zr calls this once a file is complete and its CRC matched."""
        if not self._closed:
            self._closed = True
            self._factory.sink.submit(self._finish, self._lane)

    # -- in the sink's thread ------------------------------------------------------------------

    def _open(self) -> None:
        self._file = fileops.open_new(self._path)

    def _write(self, data: bytes) -> None:
        assert self._file is not None
        fileops.write_chunk(self._file, data)
        self._hash.update(data)

    def _finish(self) -> None:
        assert self._file is not None
        # the data on disk before the file is renamed into the install: what makes a step
        # durable on every platform (FlushFileBuffers on Windows, where nothing like sync()
        # follows), in this lane's thread while the next file is decompressed
        fileops.sync(self._file)
        self._file.close()
        _set_properties(self._path, self._props)
        self._factory.staged[self._rel] = Staged(self._path, self._size, self._hash.hexdigest())

    def abandon(self) -> None:
        if self._file is not None:
            self._file.close()


class _StagingWriters(WriterFactory):
    """py7zr's writer factory for staging: creates each file (and its folders) under ``dest``."""

    def __init__(self, dest: Path, flat: bool, sink: _Sink) -> None:
        self._dest, self._flat, self.sink = dest, flat, sink
        self._folders: set[Path] = {dest}
        self._files: list[_StagedFile] = []
        self.props: dict[str, dict[str, Any]] = {}
        self.staged: dict[str, Staged] = {}

    def create(self, filename: str) -> Py7zIO:
        problem = path_problem(filename)  # checked before extraction too; py7zr named it so
        if problem:
            raise UnsafeArchiveError(
                _("Package member {name!r}: {problem}.", name=filename, problem=problem))
        target = self._dest / (f"{len(self._files):06d}" if self._flat else filename)  # n-th
        if target.parent not in self._folders:  # made here, before a lane opens a file in it
            fileops.makedirs(target.parent)
            self._folders.add(target.parent)
        writer = _StagedFile(target, filename, self.props.get(filename, {}), self,
                             len(self._files))
        self._files.append(writer)
        return writer

    def close_all(self) -> None:
        """After the sink is idle, close what an error left open (so staging can be removed,
        on Windows too)."""
        self.sink.drain()
        for writer in self._files:
            writer.abandon()
        self._files.clear()


def _set_properties(path: Path, props: dict[str, Any]) -> None:
    """The modification time and mode py7zr's own extraction would give the file."""
    written = props.get("lastwritetime")
    if isinstance(written, int):
        fileops.set_times(path, ArchiveTimestamp(written).totimestamp())
    mode = props.get("posix_mode")
    if os.name == "posix" and isinstance(mode, int):
        fileops.chmod(path, mode)
    elif props.get("readonly"):
        fileops.chmod(path, path.stat().st_mode & ~(stat.S_IWRITE | stat.S_IWGRP | stat.S_IWOTH))
