"""Backup and restore: the step before a build is applied, and the one after a failure.

Backup reads every program file of the install (all files outside the customer-data folders,
``BUILD`` included) and writes them as a set of zips (stdlib :mod:`zipfile`, Deflate level 1,
Zip64; ISA-L's Deflate through :mod:`updater.install.backup.deflate`) into
``Database/SystemFiles/Backups/``,
one part per processor core (at most two), written in parallel threads (the Deflate engine
compresses and checksums without holding the GIL), the files spread over the parts by size so
that the parts take about as long. Each part is written under a
temporary ``.opusi-backup-*.zip.part`` name, then, flushed and CRC-checked (each part in its own
thread too), renamed: part 1 to ``opusi-backup-build{N}-{YYYYmmdd-HHMMSS}.zip``, which names the
backup, part *i* >= 2 to ``opusi-backup-build{N}-{YYYYmmdd-HHMMSS}.part{i}.zip`` beside it (the
later parts first, so a backup's name appears only once all its parts are in place). Part 1's
zip comment holds ``{"build": N, "created": iso, "files": n, "parts": k}`` (``files`` counts all
parts; a backup without ``parts`` is a single zip). Members that do not compress (already packed
data) are stored, which keeps the backup fast on real program folders. A backup with a part
missing or damaged is not used; deleting a backup deletes all its parts.

Restore reads such a backup (the members of all its parts) and writes program files of the
install back: only the paths an update touched (:func:`restore_paths`, after a failed update),
or the whole program part (:func:`restore_full`, an administrator's ``--restore ZIP``). Every
write goes through :mod:`updater.shared.fileops`; nothing in the customer-data folders is ever
written or removed.
"""

from __future__ import annotations

import errno
import heapq
import json
import logging
import os
import re
import secrets
import stat
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, TypeVar

from updater.core.errors import DiskSpaceError, FileLockedError, OpusiError, RestoreFailedError
from updater.core.paths import BACKUP_DIR, check_member_names, fold, is_excluded, path_problem
from updater.install.backup import deflate
from updater.shared import fileops

log = logging.getLogger(__name__)
deflate.use_in_zipfile()

CHUNK = 1 << 20
BACKUP_NAME = re.compile(r"^opusi-backup-build(\d+)-(\d{8}-\d{6})(?:-(\d+))?\.zip$")
#: Part i >= 2 of a backup: its first part's name with ``.part{i}`` before ``.zip``.
PART_NAME = re.compile(r"^(opusi-backup-build\d+-\d{8}-\d{6}(?:-\d+)?)\.part(\d+)\.zip$")
#: Parts a backup is written in: one thread each (more than two did not pay on two cores).
MAX_PARTS = 2
_PARTS_LIMIT = 64  # a comment claiming more parts is not one of ours
_TEMP_PREFIX, _TEMP_SUFFIX = ".opusi-backup-", ".zip.part"
_RESTORE_SUFFIX = ".opusi-restore"
#: Files from this size on are test-compressed (first 128 KiB) and stored if that saves < 3 %.
_SAMPLE_FROM, _SAMPLE, _STORE_RATIO = 256 << 10, 128 << 10, 0.97
_ZIP_ERRORS: tuple[type[Exception], ...] = (OSError, zipfile.BadZipFile, *deflate.ERRORS,
                                            EOFError, NotImplementedError, ValueError)

Progress = Callable[[int, int], None]
_T = TypeVar("_T")
#: A part as :func:`_check_part` read it: its comment and its members.
_Checked = tuple[bytes, list[zipfile.ZipInfo]]


@dataclass(frozen=True)
class Backup:
    """One complete, CRC-checked zip backup of an install's program files.

    Attributes:
        path: The zip file.
        build: The build the install had when the backup was made.
        files: Number of files in the zip.
        size: Total uncompressed bytes.
    """

    path: Path
    build: int
    files: int
    size: int


class _BadBackup(Exception):
    """A zip that is not a usable backup (internal: callers ignore it or re-raise their own)."""


_RESTORE_ERRORS: tuple[type[Exception], ...] = (_BadBackup, *_ZIP_ERRORS)


class _Stopped(Exception):
    """A part's thread stopped because another part failed (internal)."""


@dataclass(frozen=True)
class _Contents:
    """A checked backup and the members of each of its parts, in part order."""

    backup: Backup
    parts: list[tuple[Path, list[zipfile.ZipInfo]]]

    @property
    def infos(self) -> list[zipfile.ZipInfo]:
        """Every member of every part, sorted by name."""
        return sorted((i for _, infos in self.parts for i in infos), key=lambda i: i.filename)


def part_paths(first: Path, count: int) -> list[Path]:
    """The files of a backup of ``count`` parts whose first part is ``first``."""
    return [first, *(first.with_name(f"{first.stem}.part{i}.zip") for i in range(2, count + 1))]


# --- what is backed up --------------------------------------------------------------------


def install_files(install: Path) -> dict[str, Path]:
    """Every regular file of the install outside the customer-data folders, sorted.

    Symbolic links are neither followed nor listed.

    Args:
        install: The install root.

    Returns:
        Relative POSIX path -> absolute path, ``BUILD`` included.

    Raises:
        OSError: A folder could not be listed.
    """
    result: dict[str, Path] = {}
    for folder, dirs, names in os.walk(install, onerror=_raise):
        base = Path(folder)
        rel_base = base.relative_to(install).as_posix()
        dirs[:] = [d for d in dirs if not is_excluded(_join(rel_base, d))]
        for name in names:
            rel = _join(rel_base, name)
            if not is_excluded(rel) and stat.S_ISREG((base / name).lstat().st_mode):
                result[rel] = base / name
    return dict(sorted(result.items()))


def _raise(error: OSError) -> None:
    raise error


def _join(base: str, name: str) -> str:
    return name if base == "." else f"{base}/{name}"


def _fingerprint(files: dict[str, Path]) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Path -> (size, modification time as a zip stores it: 2-second steps, 1980-2107)."""
    result = {}
    for rel, path in files.items():
        info = zipfile.ZipInfo.from_file(path, rel, strict_timestamps=False)
        result[rel] = (info.file_size, _dos_time(info.date_time))
    return result


def _dos_time(date_time: tuple[int, ...]) -> tuple[int, ...]:
    return (*date_time[:5], date_time[5] // 2 * 2)


# --- making a backup ----------------------------------------------------------------------


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
        DiskSpaceError: The disk became full; nothing was changed.
        FileLockedError: A file could not be read or the backup not written or verified.
    """
    folder = install / BACKUP_DIR
    token = secrets.token_hex(6)
    tmps: list[Path] = []
    placed: list[Path] = []
    try:
        files = install_files(install)
        groups = split_parts({rel: p.lstat().st_size for rel, p in files.items()},
                             min(MAX_PARTS, os.cpu_count() or 1, max(len(files), 1)))
        tmps = [folder / f"{_TEMP_PREFIX}{token}{'' if i == 1 else f'.part{i}'}{_TEMP_SUFFIX}"
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
            _discard(path)
        if isinstance(e, OSError):
            raise _backup_error(e, folder) from e
        raise
    log.info("Backup %s (%d parts, Deflate by %s): %d files, %d bytes", targets[0], len(targets),
             deflate.ENGINE.name, backup.files, backup.size)
    return Backup(targets[0], build, backup.files, backup.size)


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


def _run_parts(jobs: list[Callable[[threading.Event], _T]], sequential: bool) -> list[_T]:
    """Run one job per part, each in its own thread, and return their results in order.

    When one job fails, the others are told to stop (the event is set) and all are waited
    for; then the first part's own error (not a :class:`_Stopped`) is raised. ``sequential``
    runs them one after another in this thread instead.
    """
    stop = threading.Event()
    if sequential or len(jobs) < 2:
        return [job(stop) for job in jobs]
    with ThreadPoolExecutor(len(jobs), thread_name_prefix="opusi-backup") as pool:
        futures = [pool.submit(job, stop) for job in jobs]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            if not all(f.done() and f.exception() is None for f in futures):
                stop.set()
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    if errors:
        raise next((e for e in errors if not isinstance(e, _Stopped)), errors[0])
    return [f.result() for f in futures]


def _write_parts(tmps: list[Path], parts: list[list[tuple[str, Path]]], build: int,
                 progress: Progress | None) -> list[_Checked]:
    """Write each part's zip and read it back (CRCs, comment, members), one thread per part.

    Returns:
        What :func:`_check_part` found in each part, in part order.

    Raises:
        FileLockedError: A part was written but failed its check.
        OSError: A file could not be read or a part not written.

    Test-only concession: with ``OPUSI_KILL_AT`` or ``OPUSI_FAULT_PLAN`` set
    (:func:`updater.shared.fileops.order_matters`), the parts are written one after another, so that
    operation K of a counted run is operation K of the next run, which the crash and fault
    suites rely on. Unset (always, in real use), they are written in parallel.
    """
    members = [m for part in parts for m in part]
    meter = _Meter(sum(path.lstat().st_size for _, path in members), progress)
    meter.add(0)
    created = datetime.now().astimezone().isoformat(timespec="seconds")
    comment = json.dumps({"build": build, "created": created, "files": len(members),
                          "parts": len(parts)}, sort_keys=True).encode()

    def job(index: int) -> Callable[[threading.Event], _Checked]:
        def write_and_check(stop: threading.Event) -> _Checked:
            _write_zip(tmps[index], parts[index], comment if index == 0 else b"", meter, stop)
            try:
                return _check_part(tmps[index])
            except _BadBackup as e:
                raise _check_failed(e) from e

        return write_and_check

    return _run_parts([job(i) for i in range(len(parts))], fileops.order_matters())


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
                    raise _Stopped
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


def _verified(tmps: list[Path], names: list[list[str]], checked: list[_Checked]) -> Backup:
    """The new backup, if its checked parts hold exactly the files they should."""
    try:
        contents = _contents(tmps, checked)
    except _BadBackup as e:
        raise _check_failed(e) from e
    if [[i.filename for i in infos] for _, infos in contents.parts] != names:
        raise FileLockedError("The new backup does not hold the files it should.",
                              hint="Nothing was changed. Start the update again.")
    return contents.backup


def _check_failed(error: _BadBackup) -> FileLockedError:
    return FileLockedError(
        f"The new backup failed its check: {error}.",
        hint="Nothing was changed. Check the disk for errors and start the update again.",
    )


def _free_name(folder: Path, build: int, parts: int) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target, n = folder / f"opusi-backup-build{build}-{stamp}.zip", 1
    while any(os.path.lexists(p) for p in part_paths(target, max(parts, MAX_PARTS))):
        n += 1
        target = folder / f"opusi-backup-build{build}-{stamp}-{n}.zip"
    return target


def _discard(path: Path) -> None:
    if not os.path.lexists(path):
        return
    try:
        fileops.unlink(path)
    except OSError as e:
        log.warning("Could not remove %s: %s", path, e)


def _backup_error(error: OSError, folder: Path) -> OpusiError:
    if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return DiskSpaceError(
            f"The disk is full: the backup in {folder} could not be written.",
            hint="Nothing was changed and the incomplete backup was removed. "
            "Free some disk space and start the update again.",
        )
    return FileLockedError(
        f"The backup could not be made: {error}.",
        hint="Nothing was changed. Close the program and anything else using the installation's "
        "files, check the permissions, and start the update again.",
    )


# --- finding, reusing and pruning backups -------------------------------------------------


def _read_backup(path: Path) -> _Contents:
    """Open a backup (all its parts), check every member's CRC and read its comment.

    Raises:
        _BadBackup: A part is missing, unreadable or damaged, or it is not made by the updater.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            comment = zf.comment
    except _ZIP_ERRORS as e:
        raise _BadBackup(f"unreadable or damaged ({e})") from e
    return _check_parts(part_paths(path, _meta(comment)[1]))


def _meta(comment: bytes) -> tuple[int, int, int | None]:
    """(build, parts, files) from a first part's comment; ``files`` None if not given."""
    try:
        meta = json.loads(comment)
        build, parts, files = meta["build"], meta.get("parts", 1), meta.get("files")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise _BadBackup("no build number in its comment: not made by the updater") from e
    if not isinstance(build, int):
        raise _BadBackup("no build number in its comment: not made by the updater")
    if not isinstance(parts, int) or not 1 <= parts <= _PARTS_LIMIT:
        raise _BadBackup(f"a comment that claims {parts!r} parts: not made by the updater")
    return build, parts, files if isinstance(files, int) else None


def _check_parts(paths: list[Path]) -> _Contents:
    """Test every part's CRCs (each in its own thread) and read part 1's comment.

    Raises:
        _BadBackup: A part is missing, damaged, or the parts do not add up to the backup.
    """
    return _contents(paths, _run_parts([_checker(p) for p in paths], sequential=False))


def _contents(paths: list[Path], checked: list[_Checked]) -> _Contents:
    """The backup that checked parts (part 1's comment and every member) make up.

    Raises:
        _BadBackup: Not made by the updater, or the parts do not add up to the backup.
    """
    build, parts, files = _meta(checked[0][0])
    infos = [i for _, part_infos in checked for i in part_infos]
    if parts != len(paths) or files not in (None, len(infos)):
        raise _BadBackup(f"its {len(paths)} part(s) do not hold the {files} files it names")
    backup = Backup(paths[0], build, len(infos), sum(i.file_size for i in infos))
    return _Contents(backup, [(p, part_infos) for p, (_, part_infos) in zip(paths, checked,
                                                                            strict=True)])


def _checker(path: Path) -> Callable[[threading.Event], _Checked]:
    return lambda _stop: _check_part(path)


def _check_part(path: Path) -> _Checked:
    """Test one part's CRCs; return its comment and members.

    Raises:
        _BadBackup: It is missing, unreadable or damaged.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            bad, infos, comment = zf.testzip(), zf.infolist(), zf.comment
    except _ZIP_ERRORS as e:
        raise _BadBackup(f"unreadable or damaged ({e})") from e
    if bad is not None:
        raise _BadBackup(f"member {bad!r} of {path.name} fails its CRC check")
    return comment, infos


def _backups_in(install: Path) -> list[tuple[Path, int]]:
    """Every file named like a backup, newest first, with the build its name says."""
    folder = install / BACKUP_DIR
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = BACKUP_NAME.match(path.name)
        if match and path.is_file():
            key = (match[2], int(match[3] or 1), path.stat().st_mtime_ns)
            found.append((key, path, int(match[1])))
    found.sort(key=lambda item: item[0], reverse=True)
    return [(path, build) for _, path, build in found]


def find_current_backup(install: Path, build: int) -> Backup | None:
    """The newest intact backup of ``build`` that still matches the install's program files.

    A backup matches when its members have the names, sizes and modification times (as zip
    stores them) of :func:`install_files`; one made before files were changed is stale.

    Raises:
        FileLockedError: The install's files could not be listed.
    """
    try:
        current = _fingerprint(install_files(install))
    except OSError as e:
        raise FileLockedError(f"The installation's files could not be read: {e}.") from e
    for path, named_build in _backups_in(install):
        if named_build != build:
            continue
        try:
            contents = _read_backup(path)
        except _BadBackup as e:
            log.warning("Not using backup %s: %s", path, e)
            continue
        held = {i.filename: (i.file_size, _dos_time(i.date_time)) for i in contents.infos}
        if contents.backup.build == build and held == current:
            return contents.backup
        log.info("Not using backup %s: the program files changed since it was made", path)
    return None


def ensure_backup(install: Path, build: int, keep: int = 3,
                  progress: Progress | None = None) -> tuple[Backup, bool]:
    """Reuse the current backup of ``build`` or make one; then delete backups beyond ``keep``.

    Returns:
        The backup, and True when it was made now.

    Raises:
        DiskSpaceError: The disk became full while making it; nothing was changed.
        FileLockedError: Files could not be read, or the backup not written.
    """
    backup = find_current_backup(install, build)
    created = backup is None
    if backup is None:
        backup = create_backup(install, build, progress)
    _prune(install, backup.path, keep)
    return backup, created


def _prune(install: Path, kept: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest backups (never ``kept``), with all their parts, and
    abandoned temp files and parts whose backup is gone."""
    folder = install / BACKUP_DIR
    others = [path for path, _ in _backups_in(install) if path != kept]
    leftovers = list(folder.glob(f"{_TEMP_PREFIX}*{_TEMP_SUFFIX}"))
    orphans = [path for path in folder.iterdir() if (match := PART_NAME.match(path.name))
               and not os.path.lexists(folder / f"{match[1]}.zip")]
    for path in others[max(keep - 1, 0):]:
        _delete_backup(path)
    for path in leftovers + orphans:
        log.info("Deleting abandoned backup file %s", path)
        _discard(path)


def _delete_backup(path: Path) -> None:
    """Delete a backup: its first part ``path`` (so it is gone as a whole), then the others."""
    log.info("Deleting old backup %s", path)
    _discard(path)
    for other in sorted(path.parent.iterdir()):
        match = PART_NAME.match(other.name)
        if match and match[1] == path.stem:
            _discard(other)


# --- restoring ----------------------------------------------------------------------------


def restore_paths(backup: Backup, install: Path, paths: Iterable[str]) -> None:
    """Put back exactly ``paths`` as the backup holds them; delete those it does not hold.

    Folders that become empty and are not in the backup are removed. Running it again (after a
    crash or a failure) finishes the job; files already right are not rewritten.

    Args:
        backup: The backup made before the update.
        install: The install root.
        paths: Relative POSIX paths the update wrote or deleted.

    Raises:
        RestoreFailedError: A path is unsafe or in a customer-data folder, the backup is damaged,
            a file could not be written, or a restored file does not match the backup.
    """
    wanted = _checked_paths(paths, backup.path)
    try:
        contents = _read_backup(backup.path)
        members = {fold(i.filename): i for i in contents.infos}
        gone = [p for p in wanted if fold(p) not in members]
        back = [(p, members[fold(p)]) for p in wanted if fold(p) in members]
        _delete_files(install, gone, _folders_of(contents.infos))
        _write_members(contents, install, back)
    except _RESTORE_ERRORS as e:
        raise _restore_error(backup.path, e) from e
    _verify(install, backup.path, wanted, members)
    log.info("Restored %d paths from %s", len(wanted), backup.path)


def restore_full(zip_path: Path, install: Path) -> Backup:
    """Bring the install's program files back to exactly what a backup holds.

    Program files the backup does not hold are deleted, every member is written back (those
    already equal in size and CRC are left alone), and the result is verified.

    Returns:
        The backup restored.

    Raises:
        RestoreFailedError: The zip is damaged, not a backup, holds an unsafe name, or a file
            could not be written or does not match afterwards.
    """
    try:
        contents = _read_backup(zip_path)
        backup, infos = contents.backup, contents.infos
        _check_member_names([i.filename for i in infos], zip_path)
        members = {fold(i.filename): i for i in infos}
        names = {i.filename for i in infos}
        extra = [rel for rel in install_files(install) if rel not in names]
        _delete_files(install, extra, _folders_of(infos))
        _write_members(contents, install, [(i.filename, i) for i in infos])
        left = [rel for rel in install_files(install) if rel not in names]
    except _RESTORE_ERRORS as e:
        raise _restore_error(zip_path, e) from e
    _verify(install, zip_path, [*names, *extra, *left], members)
    log.info("Restored the whole program part from %s", zip_path)
    return backup


def _checked_paths(paths: Iterable[str], zip_path: Path) -> list[str]:
    wanted = list(dict.fromkeys(paths))
    for rel in wanted:
        problem = path_problem(rel) or ("customer-data folder" if is_excluded(rel) else None)
        if problem:
            raise RestoreFailedError(
                f"Refusing to restore {rel!r} from {zip_path}: {problem}. Nothing was restored.",
                hint=_ADMIN_HINT.format(zip=zip_path),
            )
    return wanted


def _check_member_names(names: list[str], zip_path: Path) -> None:
    try:
        check_member_names(names)
    except OpusiError as e:
        raise RestoreFailedError(f"{zip_path} cannot be restored: {e} Nothing was changed.") from e
    for name in names:
        if is_excluded(name):
            raise RestoreFailedError(f"{zip_path} cannot be restored: it holds {name!r} from a "
                                     "customer-data folder. Nothing was changed.")


def _folders_of(infos: Iterable[zipfile.ZipInfo]) -> set[str]:
    folders: set[str] = set()
    for info in infos:
        parts = info.filename.split("/")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return folders


def _delete_files(install: Path, paths: list[str], kept_folders: set[str]) -> None:
    """Delete ``paths`` (and a leftover restore temp file of each), then emptied folders."""
    for rel in paths:
        target = install / rel
        for path in (target, _temp_for(target)):
            if os.path.lexists(path):
                fileops.unlink(path)
        _remove_empty_parents(install, rel, kept_folders)


def _remove_empty_parents(install: Path, rel: str, kept_folders: set[str]) -> None:
    parts = rel.split("/")[:-1]
    while parts:
        folder = "/".join(parts)
        path = install / folder
        if folder in kept_folders or is_excluded(folder):
            return
        if os.path.lexists(path):  # a folder removed by an earlier, interrupted run is fine
            if not path.is_dir() or path.is_symlink() or any(path.iterdir()):
                return
            fileops.rmdir(path)
        parts.pop()


def _write_members(contents: _Contents, install: Path,
                   items: list[tuple[str, zipfile.ZipInfo]]) -> None:
    folders: set[Path] = set()
    part_of = {id(i): path for path, infos in contents.parts for i in infos}
    with ExitStack() as stack:
        opened: dict[Path, zipfile.ZipFile] = {}
        for rel, info in items:
            part = part_of[id(info)]
            if part not in opened:
                opened[part] = stack.enter_context(zipfile.ZipFile(part))
            zf = opened[part]
            target = install / info.filename
            other = install / rel
            if rel != info.filename and other.exists() and not _same_file(other, target):
                fileops.unlink(other)
            _discard(_temp_for(target))
            if not _matches(target, info):
                _write_member(zf, info, target)
                folders.add(target.parent)
    for folder in sorted(folders):
        fileops.sync_dir(folder)


def _write_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    """Write one member beside ``target``, flush it, and move it over ``target``."""
    tmp = _temp_for(target)
    fileops.makedirs(target.parent)
    try:
        with zf.open(info) as source, fileops.open_write(tmp) as out:
            while block := source.read(CHUNK):
                fileops.write_chunk(out, block)
            fileops.sync(out)
        fileops.replace(tmp, target)
    except BaseException:
        _discard(tmp)
        raise


def _temp_for(target: Path) -> Path:
    return target.with_name(f".{target.name}{_RESTORE_SUFFIX}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _matches(path: Path, info: zipfile.ZipInfo) -> bool:
    """True when ``path`` is a regular file with the member's size and CRC."""
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size != info.file_size:
            return False
        crc = 0
        with path.open("rb") as handle:
            while block := handle.read(CHUNK):
                crc = deflate.ENGINE.crc32(block, crc)
    except FileNotFoundError:
        return False
    return crc == info.CRC


def _verify(install: Path, zip_path: Path, paths: Iterable[str],
            members: dict[str, zipfile.ZipInfo]) -> None:
    wrong = []
    for rel in dict.fromkeys(paths):
        info = members.get(fold(rel))
        try:
            if info is None:
                ok = not os.path.lexists(install / rel)
            else:
                target = install / info.filename
                ok = _matches(target, info) and (
                    rel == info.filename or not os.path.lexists(install / rel)
                    or _same_file(install / rel, target))
        except OSError:
            ok = False
        if not ok:
            wrong.append(rel)
    if wrong:
        raise RestoreFailedError(
            f"After restoring from {zip_path}, {len(wrong)} file(s) still differ from the backup: "
            + ", ".join(wrong[:5]) + (" ..." if len(wrong) > 5 else "") + ".",
            hint=_ADMIN_HINT.format(zip=zip_path),
        )


_ADMIN_HINT = (
    "The backup is kept. Close every program using the installation, then restore by hand: "
    'opusi-INSTALLUpdate --restore "{zip}".'
)


def _restore_error(zip_path: Path, error: BaseException) -> RestoreFailedError:
    if isinstance(error, _BadBackup):
        what = f"the backup {zip_path} is {error}"
        hint = "Restore the installation from another backup or reinstall the program."
    else:
        what = f"restoring from the backup {zip_path} failed: {error}"
        hint = _ADMIN_HINT.format(zip=zip_path)
    return RestoreFailedError(f"The installation may be partly restored: {what}.", hint=hint)
