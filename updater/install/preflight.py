"""The pre-flight step: checks that run before a single file of the install is touched.

Waits for the host program to exit, takes the one-run-per-install lock, and refuses early when
the install is reached over the network, its drive is too full, or a folder cannot be written.
Reads the process table, the mount table and free space (through :mod:`updater.shared.system`).
Writes only ``<install>/<WORK_DIR>/update.lock`` (kept between runs; the OS lock on it is what
counts) and, for a moment, one probe file per checked folder, which it removes again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock

from updater.core.errors import (
    NOTHING_CHANGED,
    AlreadyRunningError,
    ConfigError,
    DiskSpaceError,
    HostStillRunningError,
    RemoteInstallError,
    error_from_os,
)
from updater.core.i18n import _
from updater.core.paths import WORK_DIR
from updater.shared import fileops
from updater.shared.system import free_bytes, network_location, process_alive

log = logging.getLogger(__name__)

LOCK_NAME = "update.lock"
_MB = 1024 * 1024


def wait_for_exit(pid: int, timeout: float, poll: float = 0.2) -> None:
    """Wait until process ``pid`` (the host program) has exited.

    Args:
        pid: The host's process id.
        timeout: Seconds to wait at most.
        poll: Seconds between two looks.

    Raises:
        HostStillRunningError: The process still runs after ``timeout`` seconds.
    """
    log.info("Waiting up to %.0f s for process %d to exit", timeout, pid)
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() >= deadline:
            raise HostStillRunningError(
                _("The program to be updated (process {pid}) was still running after "
                  "{seconds:.0f} seconds of waiting.", pid=pid, seconds=timeout),
                hint=_("Close the program (on a server: the clients on all workstations too) "
                       "and start the update again."),
                safe=NOTHING_CHANGED,
            )
        time.sleep(poll)
    log.info("Process %d has exited", pid)


@contextmanager
def install_lock(install: Path) -> Iterator[None]:
    """Hold the install's update lock for the duration of the ``with`` block.

    The lock is an OS lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows) on
    ``<install>/<WORK_DIR>/update.lock``: the OS drops it when the process dies, so a killed
    run never leaves a stale lock. The file itself stays.

    Args:
        install: The install root.

    Raises:
        AlreadyRunningError: Another updater holds the lock.
        DiskSpaceError, FileLockedError, DiskError: The working folder or the lock file cannot
            be created.
    """
    folder = install / WORK_DIR
    try:
        fileops.makedirs(folder)
        lock = filelock.FileLock(str(folder / LOCK_NAME), timeout=0)
        lock.acquire()
    except filelock.Timeout as e:
        raise AlreadyRunningError(
            _("Another update is running on this installation ({install}).", install=install),
            hint=_("Wait for it to finish, then start the update again if needed."),
            safe=NOTHING_CHANGED,
        ) from e
    except OSError as e:
        raise error_from_os(e, _("create the update lock in {folder}", folder=folder)).keeping(
            NOTHING_CHANGED) from e
    try:
        yield
    finally:
        lock.release()


def check_space(install: Path, needed: int) -> None:
    """Refuse when the install's drive has less than ``needed`` bytes free.

    Args:
        install: The install root (its drive holds backups, downloads and staging).
        needed: Bytes the whole run needs.

    Raises:
        DiskSpaceError: Fewer than ``needed`` bytes are free.
        ConfigError: The drive's free space cannot be read.
    """
    try:
        free = free_bytes(install)
    except OSError as e:
        reason = e.strerror or e
        raise ConfigError(
            _("Cannot read the free space of the drive of {install}: {reason}.",
              install=install, reason=reason),
            safe=NOTHING_CHANGED,
            hint=_("Check that the installation folder is reachable."),
        ) from e
    log.info("Free space on the install's drive: %d bytes, needed: %d", free, needed)
    if free < needed:
        needed_mb, free_mb = -(-needed // _MB), free // _MB
        missing_mb = needed_mb - free_mb
        raise DiskSpaceError(
            _("The update needs {needed} MB of free space on the drive of {install}, "
              "but only {free} MB are free.", needed=needed_mb, install=install, free=free_mb),
            hint=_("Free at least {missing} MB on that drive (for instance old "
                   "backups in Database/SystemFiles/Backups) and start the update again.",
                   missing=missing_mb),
            safe=NOTHING_CHANGED,
        )


def check_writable(install: Path, folders: Iterable[Path]) -> None:
    """Check that each folder can take a new file, by creating and removing a probe file.

    A folder that does not exist yet is checked at its nearest existing parent inside the
    install (the update will create it there). No folder is created.

    Args:
        install: The install root.
        folders: Folders relative to ``install`` (absolute ones inside it work too).

    Raises:
        DiskSpaceError, FileLockedError, DiskError: A folder does not accept a new file.
    """
    for folder in folders:
        target = _nearest_existing(install, install / folder)
        try:
            _write_probe(target / f".opusi-write-probe-{os.getpid()}")
        except OSError as e:
            doing = _("write a test file into the folder {folder}", folder=target)
            raise error_from_os(e, doing).keeping(
                NOTHING_CHANGED) from e


def _write_probe(probe: Path) -> None:
    try:
        with fileops.open_write(probe) as handle:
            fileops.write_chunk(handle, b"probe")
    finally:
        fileops.unlink(probe)


def _nearest_existing(install: Path, folder: Path) -> Path:
    while not folder.is_dir() and folder != install and folder.parent != folder:
        folder = folder.parent
    return folder


def check_local(install: Path, allow_remote: bool) -> None:
    """Refuse an install reached over the network unless ``allow_remote`` is set.

    Args:
        install: The install root.
        allow_remote: The administrator's ``--allow-remote``: go on anyway, with a warning.

    Raises:
        RemoteInstallError: The install is on a network share, drive or file system.
    """
    where = network_location(install)
    if where is None:
        return
    if allow_remote:
        log.warning("Installation %s is on %s; updating anyway (--allow-remote)", install, where)
        return
    raise RemoteInstallError(
        # Translators: {where} is "the network share ...", "the network drive Z:" or "a network
        # file system (nfs4 at /mnt/opus)"
        _("The installation {install} is on {where}.", install=install, where=where),
        hint=_("The update belongs on the server itself: run opusi-INSTALLUpdate.exe there, "
               "or pass --allow-remote to update over the network anyway."),
        safe=NOTHING_CHANGED,
    )
