"""The backup's format and the backups folder: names, parts, checking, finding and pruning.

A backup is a set of zips (stdlib :mod:`zipfile`, Deflate, Zip64) in
``Database/SystemFiles/Backups/``: part 1 ``opusi-backup-build{N}-{YYYYmmdd-HHMMSS}.zip`` names
the backup, part *i* >= 2 ``opusi-backup-build{N}-{YYYYmmdd-HHMMSS}.part{i}.zip`` lies beside it.
Part 1's zip comment holds ``{"build": N, "created": iso, "files": n, "parts": k}`` (``files``
counts all parts; a backup without ``parts`` is a single zip). A backup with a part missing or
damaged is not used; deleting a backup deletes all its parts. :mod:`.writer` makes backups,
:mod:`.restore` puts them back; this module reads the folder and deletes what is no longer
needed (through :mod:`updater.shared.fileops`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import threading
import zipfile
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from updater.core.errors import error_from_os
from updater.core.i18n import _
from updater.core.paths import BACKUP_DIR, is_excluded
from updater.install.backup import deflate
from updater.shared import fileops

log = logging.getLogger(__name__)

TEMP_PREFIX, TEMP_SUFFIX = ".opusi-backup-", ".zip.part"

CHUNK = 1 << 20


BACKUP_NAME = re.compile(r"^opusi-backup-build(\d+)-(\d{8}-\d{6})(?:-(\d+))?\.zip$")


#: Part i >= 2 of a backup: its first part's name with ``.part{i}`` before ``.zip``.
PART_NAME = re.compile(r"^(opusi-backup-build\d+-\d{8}-\d{6}(?:-\d+)?)\.part(\d+)\.zip$")


#: Parts a backup is written in: one thread each (more than two did not pay on two cores).
MAX_PARTS = 2


_PARTS_LIMIT = 64  # a comment claiming more parts is not one of ours


ZIP_ERRORS: tuple[type[Exception], ...] = (OSError, zipfile.BadZipFile, *deflate.ERRORS,
                                            EOFError, NotImplementedError, ValueError)


Progress = Callable[[int, int], None]


_T = TypeVar("_T")


#: A part as :func:`check_part` read it: its comment and its members.
Checked = tuple[bytes, list[zipfile.ZipInfo]]


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


class BadBackup(Exception):
    """A zip that is not a usable backup (internal: callers ignore it or re-raise their own).

    ``message`` says why, marked for the catalog (the callers' errors show it translated).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Stopped(Exception):
    """A part's thread stopped because another part failed (internal)."""


@dataclass(frozen=True)
class Contents:
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


def fingerprint(files: dict[str, Path]) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Path -> (size, modification time as a zip stores it: 2-second steps, 1980-2107)."""
    result = {}
    for rel, path in files.items():
        info = zipfile.ZipInfo.from_file(path, rel, strict_timestamps=False)
        result[rel] = (info.file_size, dos_time(info.date_time))
    return result


def dos_time(date_time: tuple[int, ...]) -> tuple[int, ...]:
    return (*date_time[:5], date_time[5] // 2 * 2)


def run_parts(jobs: list[Callable[[threading.Event], _T]]) -> list[_T]:
    """Run one job per part, each in its own thread, and return their results in order.

    When one job fails, the others are told to stop (the event is set) and all are waited
    for; then the first part's own error (not a :class:`Stopped`) is raised.
    """
    stop = threading.Event()
    if len(jobs) < 2:
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
        raise next((e for e in errors if not isinstance(e, Stopped)), errors[0])
    return [f.result() for f in futures]


def discard(path: Path) -> None:
    if not os.path.lexists(path):
        return
    try:
        fileops.unlink(path)
    except OSError as e:
        log.warning("Could not remove %s: %s", path, e)


def read_backup(path: Path) -> Contents:
    """Open a backup (all its parts), check every member's CRC and read its comment.

    Raises:
        BadBackup: A part is missing, unreadable or damaged, or it is not made by the updater.
    """
    deflate.use_in_zipfile()  # the backup's zips by ISA-L (not at import: see deflate)
    try:
        with zipfile.ZipFile(path) as zf:
            comment = zf.comment
    except ZIP_ERRORS as e:
        raise BadBackup(_("unreadable or damaged ({e})", e=e)) from e
    return _check_parts(part_paths(path, _meta(comment)[1]))


def _meta(comment: bytes) -> tuple[int, int, int | None]:
    """(build, parts, files) from a first part's comment; ``files`` None if not given."""
    try:
        meta = json.loads(comment)
        build, parts, files = meta["build"], meta.get("parts", 1), meta.get("files")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise BadBackup(_("no build number in its comment: not made by the updater")) from e
    if not isinstance(build, int):
        raise BadBackup(_("no build number in its comment: not made by the updater"))
    if not isinstance(parts, int) or not 1 <= parts <= _PARTS_LIMIT:
        raise BadBackup(_("a comment that claims {parts!r} parts: not made by the updater",
                          parts=parts))
    return build, parts, files if isinstance(files, int) else None


def _check_parts(paths: list[Path]) -> Contents:
    """Test every part's CRCs (each in its own thread) and read part 1's comment.

    Raises:
        BadBackup: A part is missing, damaged, or the parts do not add up to the backup.
    """
    return contents_of(paths, run_parts([_checker(p) for p in paths]))


def contents_of(paths: list[Path], checked: list[Checked]) -> Contents:
    """The backup that checked parts (part 1's comment and every member) make up.

    Raises:
        BadBackup: Not made by the updater, or the parts do not add up to the backup.
    """
    build, parts, files = _meta(checked[0][0])
    infos = [i for _, part_infos in checked for i in part_infos]
    if parts != len(paths) or files not in (None, len(infos)):
        raise BadBackup(_("its {count} part(s) do not hold the {files} files it names",
                          count=len(paths), files=files))
    backup = Backup(paths[0], build, len(infos), sum(i.file_size for i in infos))
    return Contents(backup, [(p, part_infos) for p, (_, part_infos) in zip(paths, checked,
                                                                            strict=True)])


def _checker(path: Path) -> Callable[[threading.Event], Checked]:
    return lambda _stop: check_part(path)


def check_part(path: Path) -> Checked:
    """Test one part's CRCs; return its comment and members.

    Raises:
        BadBackup: It is missing, unreadable or damaged.
    """
    deflate.use_in_zipfile()  # the backup's zips by ISA-L (not at import: see deflate)
    try:
        with zipfile.ZipFile(path) as zf:
            bad, infos, comment = zf.testzip(), zf.infolist(), zf.comment
    except ZIP_ERRORS as e:
        raise BadBackup(_("unreadable or damaged ({e})", e=e)) from e
    if bad is not None:
        raise BadBackup(_("member {member!r} of {name} fails its CRC check", member=bad,
                          name=path.name))
    return comment, infos


def backups_in(install: Path) -> list[tuple[Path, int]]:
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
        DiskSpaceError, FileLockedError, DiskError: The install's files could not be listed.
    """
    try:
        current = fingerprint(install_files(install))
    except OSError as e:
        raise error_from_os(e, _("read the installation's files")) from e
    for path, named_build in backups_in(install):
        if named_build != build:
            continue
        try:
            contents = read_backup(path)
        except BadBackup as e:
            log.warning("Not using backup %s: %s", path, e)
            continue
        held = {i.filename: (i.file_size, dos_time(i.date_time)) for i in contents.infos}
        if contents.backup.build == build and held == current:
            return contents.backup
        log.info("Not using backup %s: the program files changed since it was made", path)
    return None


def prune(install: Path, kept: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest backups (never ``kept``), with all their parts, and
    abandoned temp files and parts whose backup is gone."""
    folder = install / BACKUP_DIR
    others = [path for path, _ in backups_in(install) if path != kept]
    leftovers = list(folder.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"))
    orphans = [path for path in folder.iterdir() if (match := PART_NAME.match(path.name))
               and not os.path.lexists(folder / f"{match[1]}.zip")]
    for path in others[max(keep - 1, 0):]:
        _delete_backup(path)
    for path in leftovers + orphans:
        log.info("Deleting abandoned backup file %s", path)
        discard(path)


def _delete_backup(path: Path) -> None:
    """Delete a backup: its first part ``path`` (so it is gone as a whole), then the others."""
    log.info("Deleting old backup %s", path)
    discard(path)
    for other in sorted(path.parent.iterdir()):
        match = PART_NAME.match(other.name)
        if match and match[1] == path.stem:
            discard(other)
