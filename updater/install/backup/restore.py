"""The restore step: a backup's program files put back into the install.

Reads a backup (the members of all its parts) and writes program files of the install back:
only the paths an update touched (:func:`restore_paths`, after a failed update), or the whole
program part (:func:`restore_full`, an administrator's ``--restore ZIP``). Each file is written
beside its target, flushed and renamed over it, through :mod:`updater.shared.fileops`; nothing
in the customer-data folders is ever written or removed. Running it again finishes the job.
"""

from __future__ import annotations

import logging
import os
import stat
import zipfile
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

from updater.core.errors import OpusiError, RestoreFailedError
from updater.core.i18n import Text, _
from updater.core.paths import check_member_names, fold, is_excluded, path_problem
from updater.install.backup import deflate
from updater.install.backup.store import (
    CHUNK,
    ZIP_ERRORS,
    Backup,
    BadBackup,
    Contents,
    discard,
    install_files,
    read_backup,
)
from updater.shared import fileops

log = logging.getLogger(__name__)

_RESTORE_SUFFIX = ".opusi-restore"


_RESTORE_ERRORS: tuple[type[Exception], ...] = (BadBackup, *ZIP_ERRORS)


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
        contents = read_backup(backup.path)
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
        contents = read_backup(zip_path)
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
        problem = path_problem(rel) or (_("customer-data folder") if is_excluded(rel) else None)
        if problem:
            raise RestoreFailedError(
                _("Refusing to restore {path!r} from {zip}: {problem}. Nothing was restored.",
                  path=rel, zip=zip_path, problem=problem),
                hint=_admin_hint(zip_path),
            )
    return wanted


def _check_member_names(names: list[str], zip_path: Path) -> None:
    try:
        check_member_names(names)
    except OpusiError as e:
        raise RestoreFailedError(_("{zip} cannot be restored: {problem} Nothing was changed.",
                                   zip=zip_path, problem=e.message)) from e
    for name in names:
        if is_excluded(name):
            raise RestoreFailedError(_("{zip} cannot be restored: it holds {name!r} from a "
                                       "customer-data folder. Nothing was changed.",
                                       zip=zip_path, name=name))


def _folders_of(infos: Iterable[zipfile.ZipInfo]) -> set[str]:
    folders: set[str] = set()
    for info in infos:
        parts = info.filename.split("/")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return folders


def _delete_files(install: Path, paths: list[str], kept_folders: set[str]) -> None:
    """Delete ``paths`` (and a leftover restore temp file of each), then emptied folders; the
    folders they were deleted from are flushed (the deletions durable before the journal goes:
    btrfs, unlike ext4 and NTFS, does not keep them in order with a later flushed change)."""
    touched: set[Path] = set()
    for rel in paths:
        target = install / rel
        for path in (target, _temp_for(target)):
            if os.path.lexists(path):
                fileops.unlink(path)
                touched.add(path.parent)
        _remove_empty_parents(install, rel, kept_folders)
    for folder in sorted(touched):
        while not folder.is_dir() and folder != install:  # removed as empty: its parent
            folder = folder.parent
        fileops.sync_dir(folder)


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


def _write_members(contents: Contents, install: Path,
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
            discard(_temp_for(target))
            if not _matches(target, info):
                if not target.parent.is_dir():  # made now (the update had removed it): its
                    folders.update(target.parent.parents)  # entry is in the folder above
                _write_member(zf, info, target)
                folders.add(target.parent)
    for folder in sorted(f for f in folders if f == install or install in f.parents):
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
        discard(tmp)
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
        files = ", ".join(wrong[:5]) + (" ..." if len(wrong) > 5 else "")
        raise RestoreFailedError(
            _("After restoring from {zip}, {count} file(s) still differ from the backup: "
              "{files}.", zip=zip_path, count=len(wrong), files=files),
            hint=_admin_hint(zip_path),
        )


def _admin_hint(zip_path: Path) -> Text:
    return _("The backup is kept. Close every program using the installation, then restore by "
             'hand: opusi-INSTALLUpdate --restore "{zip}".', zip=zip_path)


def _restore_error(zip_path: Path, error: BaseException) -> RestoreFailedError:
    if isinstance(error, BadBackup):
        # Translators: {problem} says why ("unreadable or damaged (...)")
        what = _("the backup {zip} is {problem}", zip=zip_path, problem=error.message)
        hint = _("Restore the installation from another backup or reinstall the program.")
    else:
        what = _("restoring from the backup {zip} failed: {e}", zip=zip_path, e=error)
        hint = _admin_hint(zip_path)
    return RestoreFailedError(_("The installation may be partly restored: {what}.", what=what),
                              hint=hint)
