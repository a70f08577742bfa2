"""The backup step: the install's program files into a new, verified zip backup.

Reads every program file of the install (all files outside the customer-data folders, ``BUILD``
included) and writes them as one part per processor core (at most two), in parallel threads (the
Deflate engine, ISA-L through :mod:`.deflate`, compresses and checksums without holding the GIL),
the files spread over the parts by size so that the parts take about as long. Each part is
written under a temporary ``.opusi-backup-*.zip.part`` name, flushed and CRC-checked (each part
in its own thread too), then renamed (the later parts first, so a backup's name appears only once
all its parts are in place). Members that do not compress (already packed data) are stored.
Every write goes through :mod:`updater.shared.fileops`. A current backup of the same build is
reused instead (:func:`ensure_backup`).
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import secrets
import threading
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from updater.core.errors import NOTHING_CHANGED, DiskError, OpusiError, error_from_os
from updater.core.i18n import _
from updater.core.paths import BACKUP_DIR
from updater.install.backup import deflate
from updater.install.backup.store import (
    CHUNK,
    MAX_PARTS,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    Backup,
    BadBackup,
    Checked,
    Progress,
    Stopped,
    check_part,
    contents_of,
    discard,
    find_current_backup,
    install_files,
    part_paths,
    prune,
    run_parts,
)
from updater.shared import fileops

log = logging.getLogger(__name__)

#: Files from this size on are test-compressed (first 128 KiB) and stored if that saves < 3 %.
_SAMPLE_FROM, _SAMPLE, _STORE_RATIO = 256 << 10, 128 << 10, 0.97

def create_backup(install: Path, build: int, progress: Progress | None = None) -> Backup:
    """Zip the install's program files into a new, verified backup of one or more parts.

    Args:
        install: The install root.
        build: The installed build (goes into the name and the comment).
        progress: Called as ``progress(done_bytes, total_bytes)`` while writing (from the
            parts' threads, one call at a time).

    Returns:
        The new backup (its path is part 1).

    Raises:
        DiskSpaceError, FileLockedError, DiskError: A file could not be read, or the backup not
            written or verified (the error says nothing was changed).
    """
    deflate.use_in_zipfile()  # the backup's zips by ISA-L (not at import: see deflate)
    folder = install / BACKUP_DIR
    token = secrets.token_hex(6)
    tmps: list[Path] = []
    placed: list[Path] = []
    try:
        files = install_files(install)
        groups = split_parts({rel: p.lstat().st_size for rel, p in files.items()},
                             min(MAX_PARTS, os.cpu_count() or 1, max(len(files), 1)))
        tmps = [folder / f"{TEMP_PREFIX}{token}{'' if i == 1 else f'.part{i}'}{TEMP_SUFFIX}"
                for i in range(1, len(groups) + 1)]
        fileops.makedirs(folder)
        checked = _write_parts(tmps, [[(rel, files[rel]) for rel in g] for g in groups], build,
                               progress)
        backup = _verified(tmps, groups, checked)
        targets = part_paths(_free_name(folder, build, len(tmps)), len(tmps))
        for tmp, target in reversed(list(zip(tmps, targets, strict=True))):
            fileops.replace(tmp, target)
            placed.append(target)
        fileops.sync_dir(folder)
    except BaseException as e:
        complete = len(placed) == len(tmps) > 0  # part 1 is in place: a whole backup, kept
        for path in tmps + ([] if complete else placed):
            discard(path)
        if isinstance(e, OSError):
            raise error_from_os(e, _("write the backup in {folder}", folder=folder)).keeping(
                _("Nothing was changed. The incomplete backup was removed.")) from e
        if isinstance(e, OpusiError):
            e.keeping(NOTHING_CHANGED)
        raise
    log.info("Backup %s (%d parts, Deflate by %s): %d files, %d bytes", targets[0], len(targets),
             deflate.ENGINE.name, backup.files, backup.size)
    return Backup(targets[0], build, backup.files, backup.size)


def ensure_backup(install: Path, build: int, keep: int = 3,
                  progress: Progress | None = None) -> tuple[Backup, bool]:
    """Reuse the current backup of ``build`` or make one; then delete backups beyond ``keep``.

    Returns:
        The backup, and True when it was made now.

    Raises:
        DiskSpaceError, FileLockedError, DiskError: As :func:`create_backup`.
    """
    backup = find_current_backup(install, build)
    created = backup is None
    if backup is None:
        backup = create_backup(install, build, progress)
    prune(install, backup.path, keep)
    return backup, created


def split_parts(sizes: dict[str, int], count: int) -> list[list[str]]:
    """Spread files over ``count`` parts, biggest first onto the emptiest part (pure).

    Args:
        sizes: Relative path -> size in bytes.
        count: Number of parts (at least 1).

    Returns:
        ``count`` lists of relative paths, each sorted; together they hold every path once.
    """
    loads = [(0, i) for i in range(count)]
    groups: list[list[str]] = [[] for _ in range(count)]
    for rel in sorted(sizes, key=lambda r: (-sizes[r], r)):
        load, i = heapq.heappop(loads)
        groups[i].append(rel)
        heapq.heappush(loads, (load + sizes[rel], i))
    return [sorted(group) for group in groups]


@dataclass
class _Meter:
    total: int
    callback: Progress | None
    done: int = field(default=0)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, count: int) -> None:
        with self.lock:
            self.done += count
            if self.callback is not None:
                self.callback(self.done, self.total)


class _SeamWriter:
    """The zip's output file for :mod:`zipfile`, every write going through the fileops seam."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle

    def write(self, data: bytes) -> int:
        fileops.write_chunk(self._handle, data)
        return len(data)

    def tell(self) -> int:
        return self._handle.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._handle.seek(offset, whence)

    def seekable(self) -> bool:
        return True

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        """The real file is closed by whoever opened it."""


def _write_parts(tmps: list[Path], parts: list[list[tuple[str, Path]]], build: int,
                 progress: Progress | None) -> list[Checked]:
    """Write each part's zip and read it back (CRCs, comment, members), one thread per part.

    Returns:
        What :func:`check_part` found in each part, in part order.

    Raises:
        DiskError: A part was written but failed its check.
        OSError: A file could not be read or a part not written.

    Each part's thread writes in its own lane of the seam (``backup-1``, ``backup-2``), so
    the fault and crash suites reach the same operations in every run.
    """
    members = [m for part in parts for m in part]
    meter = _Meter(sum(path.lstat().st_size for _, path in members), progress)
    meter.add(0)
    created = datetime.now().astimezone().isoformat(timespec="seconds")
    comment = json.dumps({"build": build, "created": created, "files": len(members),
                          "parts": len(parts)}, sort_keys=True).encode()

    def job(index: int) -> Callable[[threading.Event], Checked]:
        def write_and_check(stop: threading.Event) -> Checked:
            with fileops.lane(f"backup-{index + 1}"):
                _write_zip(tmps[index], parts[index], comment if index == 0 else b"", meter,
                           stop)
            try:
                return check_part(tmps[index])
            except BadBackup as e:
                raise _check_failed(e) from e

        return write_and_check

    return run_parts([job(i) for i in range(len(parts))])


def _write_zip(tmp: Path, members: list[tuple[str, Path]], comment: bytes, meter: _Meter,
               stop: threading.Event) -> None:
    with fileops.open_write(tmp) as handle:
        with zipfile.ZipFile(_SeamWriter(handle), "w", zipfile.ZIP_DEFLATED, True, 1) as zf:
            for rel, path in members:
                _add_file(zf, rel, path, meter, stop)
            zf.comment = comment
        fileops.sync(handle)


def _add_file(zf: zipfile.ZipFile, rel: str, path: Path, meter: _Meter,
              stop: threading.Event) -> None:
    info = zipfile.ZipInfo.from_file(path, rel, strict_timestamps=False)
    with path.open("rb") as source:
        block = source.read(CHUNK)
        info.compress_type = _method_for(block, info.file_size)
        # The level lives in a private attribute up to Python 3.12 (an alias from 3.13 on).
        setattr(info, "_compresslevel", 1)  # noqa: B010
        with zf.open(info, "w") as member:
            while block:
                if stop.is_set():
                    raise Stopped
                member.write(block)
                meter.add(len(block))
                block = source.read(CHUNK)


def _method_for(first_block: bytes, size: int) -> int:
    """Deflate, unless a sample of a larger file shows it is already compressed."""
    if size < _SAMPLE_FROM:
        return zipfile.ZIP_DEFLATED
    sample = first_block[:_SAMPLE]
    packer = deflate.ENGINE.compressobj(1, zlib.DEFLATED, -15)
    packed = len(packer.compress(sample)) + len(packer.flush())
    return zipfile.ZIP_STORED if packed > len(sample) * _STORE_RATIO else zipfile.ZIP_DEFLATED


def _verified(tmps: list[Path], names: list[list[str]], checked: list[Checked]) -> Backup:
    """The new backup, if its checked parts hold exactly the files they should."""
    try:
        contents = contents_of(tmps, checked)
    except BadBackup as e:
        raise _check_failed(e) from e
    if [[i.filename for i in infos] for _, infos in contents.parts] != names:
        raise DiskError(_("The new backup does not hold the files it should."),
                        hint=_("Start the update again."))
    return contents.backup


def _check_failed(error: BadBackup) -> DiskError:
    return DiskError(_("The new backup failed its check: {problem}.", problem=error.message),
                     hint=_("Check the disk for errors and start the update again."))


def _free_name(folder: Path, build: int, parts: int) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target, n = folder / f"opusi-backup-build{build}-{stamp}.zip", 1
    while any(os.path.lexists(p) for p in part_paths(target, max(parts, MAX_PARTS))):
        n += 1
        target = folder / f"opusi-backup-build{build}-{stamp}-{n}.zip"
    return target
