"""Downloads to disk: resumable, verified, every write through the file seam.

:func:`download` fetches a package into a ``.part`` file next to its destination, resuming one
an earlier run left (``Range`` + ``If-Range`` with the ETag kept in ``.part.json``), hashes it
while it is written, and renames it to the destination only when it has exactly the signed
length and sha256. :func:`copy_verified` does the same for a file of a local repository copy
(``--offline``). Each download's writes run in a lane of their own of
:mod:`updater.shared.fileops` (``download-<name>``), so the number of write batches, which
depends on the network's timing, never shifts the numbers of the run's other operations.

Knows nothing of HTTP: the fetcher it is handed opens the request and yields the body.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from updater.core.errors import PackageVerificationError, error_from_os
from updater.core.i18n import _
from updater.shared import fileops
from updater.shared.fsutil import iter_file, sha256_of

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


class Source(Protocol):
    """What :func:`download` needs of a fetcher: a GET whose answer has ``status`` and
    ``headers``, and its body in chunks."""

    def open(self, url: str, headers: dict[str, str] | None = None) -> Any: ...

    def chunks(self, response: Any, url: str) -> Iterator[bytes]: ...


def download(source: Source, url: str, dest: Path, *, length: int, sha256: str,
             progress: Progress | None = None) -> Path:
    """Download ``url`` to ``dest``, resuming a ``.part`` file left by an earlier run.

    The file is complete only when it has exactly ``length`` bytes with hash ``sha256``;
    then it is renamed to ``dest``. A ``.part`` that cannot be resumed starts over.

    Raises:
        ConnectionFailedError: The connection failed (the ``.part`` is kept for resuming).
        PackageVerificationError: The server sent more than ``length`` bytes, or the
            complete file does not match ``sha256`` (the ``.part`` is deleted).
        DiskSpaceError, FileLockedError, DiskError: The file could not be written.
    """
    part = dest.with_name(dest.name + ".part")
    try:
        with fileops.lane(f"download-{dest.name}"):
            digest = _fetch_part(source, url, part, length, sha256, progress)
            if digest is not None:  # None: a complete part of an earlier run, verified already
                _verify_file(part, length, sha256, url, digest)
        fileops.replace(part, dest)
        _PartState(part, 0, None).forget()
    except OSError as e:
        raise error_from_os(e, _("write the download {part}", part=part)) from e
    return dest


def _fetch_part(source: Source, url: str, part: Path, length: int, sha256: str,
                progress: Progress | None) -> hashlib._Hash | None:
    """Bring ``part`` to ``length`` bytes; return its digest (None: complete from an earlier
    run, verified here)."""
    state = _PartState.load(part)
    if state.size == length:  # complete already (a run stopped before the rename)
        try:
            _verify_file(part, length, sha256, url)
        except PackageVerificationError:
            state = _PartState.load(part)  # it was discarded: start over
        else:
            log.info("%s: the complete download from an earlier run is used", part.name)
            if progress:
                progress(length)
            return None
    headers = {}
    if state.size and state.etag and state.size < length:
        headers = {"Range": f"bytes={state.size}-", "If-Range": state.etag}
    elif state.size:
        state = state.restart()
    response = source.open(url, headers)
    resumed = response.status == 206 and _range_start(response) == state.size
    if not resumed:
        state = state.restart()
    state = state.with_etag(response.headers.get("ETag"))
    return _write_body(source, response, url, state, length, progress)


def _write_body(source: Source, response: Any, url: str, state: _PartState, length: int,
                progress: Progress | None) -> hashlib._Hash:
    """Append the body to the ``.part``, hashing as it goes (a resumed part is hashed first).

    The hash runs in a second thread, overlapping the network and the disk (hashlib lets go
    of the interpreter lock). The file is not fsynced: a download is verified again before
    it is used, so a torn one after a power loss is only fetched anew.
    """
    size, part = state.size, state.part
    if progress and size:
        progress(size)
    digest = sha256_of(part) if size else hashlib.sha256()
    try:
        opened = fileops.open_append(part) if size else fileops.open_write(part)
        with opened as handle, _Hasher(digest) as hasher:
            for batch in _batches(source.chunks(response, url)):
                received = sum(map(len, batch))
                size += received
                if size > length:
                    raise PackageVerificationError(
                        _("The server sent more than the signed {length} bytes of {url}.",
                          length=length, url=url)
                    )
                fileops.write_chunks(handle, batch)  # no joining: one copy less per byte
                hasher.update(batch)
                if progress:
                    progress(received)
    except PackageVerificationError:
        state.discard()
        raise
    return digest


def copy_verified(source: Path, dest: Path, *, url: str, length: int, sha256: str,
                  progress: Progress | None = None) -> Path:
    """Copy ``source`` to ``dest`` (through a ``.part``) and verify it like a download.

    Raises:
        PackageVerificationError: It does not match its signed length and hash.
        DiskSpaceError, FileLockedError, DiskError: The copy could not be written.
    """
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with fileops.lane(f"download-{dest.name}"), fileops.open_write(part) as handle:
            for block in iter_file(source):
                fileops.write_chunk(handle, block)
                digest.update(block)
                if progress:
                    progress(len(block))
        _verify_file(part, length, sha256, url, digest)
        fileops.replace(part, dest)
    except OSError as e:
        raise error_from_os(e, _("write the download {part}", part=part)) from e
    return dest


@dataclass(frozen=True)
class _PartState:
    """A partial download on disk and the ETag it was begun with (kept in ``.part.json``)."""

    part: Path
    size: int
    etag: str | None

    @property
    def meta(self) -> Path:
        return _meta_of(self.part)

    @classmethod
    def load(cls, part: Path) -> _PartState:
        try:
            etag = json.loads(_meta_of(part).read_text("utf-8"))["etag"]
            return cls(part, part.stat().st_size, str(etag) if etag else None)
        except (OSError, ValueError, KeyError, TypeError):
            return cls(part, part.stat().st_size if part.exists() else 0, None)

    def restart(self) -> _PartState:
        fileops.unlink(self.part)
        return _PartState(self.part, 0, None)

    def with_etag(self, etag: str | None) -> _PartState:
        if etag and etag != self.etag:
            with fileops.open_write(self.meta) as handle:
                fileops.write_chunk(handle, json.dumps({"etag": etag}).encode())
        return _PartState(self.part, self.size, etag)

    def discard(self) -> None:
        self.restart()
        self.forget()

    def forget(self) -> None:
        fileops.unlink(self.meta)


def _meta_of(part: Path) -> Path:
    """Where the ETag a ``.part`` was begun with is kept: ``<name>.part.json``."""
    return part.with_name(part.name + ".json")


def _range_start(response: Any) -> int | None:
    value = response.headers.get("Content-Range", "")
    try:
        unit, _, rest = value.partition(" ")
        return int(rest.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None


def _batches(
    chunks: Iterator[bytes], size: int = 1 << 20, every: float = 0.25
) -> Iterator[list[bytes]]:
    """Group the socket's chunks into batches of about ``size`` bytes (fewer hand-offs), but
    pass on what arrived at least every ``every`` seconds, so a slow download still grows on
    disk. The chunks are not joined (that would copy every byte once more)."""
    pending: list[bytes] = []
    held = 0
    since = time.monotonic()
    try:
        for chunk in chunks:
            pending.append(chunk)
            held += len(chunk)
            if held >= size or time.monotonic() - since >= every:
                yield pending
                pending, held, since = [], 0, time.monotonic()
    except Exception:  # not GeneratorExit: then the consumer itself stopped reading
        if pending:  # what arrived before the failure is kept, so the download can resume
            yield pending
        raise
    if pending:
        yield pending


class _Hasher:
    """Feeds a digest from a background thread, up to ``ahead`` batches behind the caller.

    A queue of a few batches (not one) lets the hashing thread catch up after the scheduler
    gave the core to the receiving thread or the server for a while, instead of stalling the
    download each time: measured on two cores, the waits for the hash fell from 0.12 s to
    almost nothing per 500 MB.
    """

    def __init__(self, digest: hashlib._Hash, ahead: int = 8) -> None:
        self._digest = digest
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opusi-hash")
        self._pending: deque[Future[None]] = deque()
        self._ahead = ahead

    def update(self, batch: list[bytes]) -> None:
        while len(self._pending) >= self._ahead:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._hash_all, batch))

    def _hash_all(self, batch: list[bytes]) -> None:
        for chunk in batch:
            self._digest.update(chunk)

    def __enter__(self) -> _Hasher:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _verify_file(
    path: Path, length: int, sha256: str, url: str, digest: hashlib._Hash | None = None
) -> None:
    """Check length and hash (``digest``: hashed while written); discard the file on mismatch."""
    size = path.stat().st_size
    digest = digest or sha256_of(path)
    if size != length or digest.hexdigest() != sha256:
        fileops.unlink(path)
        fileops.unlink(_meta_of(path))
        raise PackageVerificationError(
            _("{url} does not match its signed length and hash "
              "({size} bytes received, {length} expected); it was discarded.",
              url=url, size=size, length=length)
        )
