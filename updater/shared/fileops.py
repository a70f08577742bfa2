"""The seam over every file operation the updater performs on an install.

Backup, apply, restore and the journal change files only through these functions, so that
(1) Windows' behaviour (a file held open by a virus scanner or the host cannot be replaced
for a moment) is handled in one place: :func:`replace` retries; and (2) the fault suite can
make operation *k* fail, once or from then on, through :func:`set_fault_plan`, without
mocking any part of the updater. The default plan does nothing.

Fault injection is switched on from outside the process by ``OPUSI_FAULT_PLAN`` (read once at
import: ``"once:K"``, ``"from:K"``, or ``"count:0"`` to count only), so it also reaches the frozen
executable. A second test seam, ``OPUSI_KILL_AT=K`` (also read once at import), makes the process
kill itself with SIGKILL right before its operation number K (counting from 1, every operation of
this module, in the order the process runs them): the crash suite uses it to stop a real run at a
reproducible moment, as a power loss would. Unset (the default), both do nothing.

Operations may run in several threads (the backup writes its parts in parallel): counting and
checking an operation is done under one lock, so every operation gets its own number, but the
order of two threads' operations is not fixed. A run whose numbers must mean the same operation
in the next run (a seam set from the environment) asks :func:`order_matters` and then runs its
operations in one thread.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from updater.shared.fsutil import fsync_dir

#: How long :func:`replace` and :func:`unlink` keep retrying a file that is in use.
LOCK_RETRY_SECONDS = 10.0
_RETRY_PAUSE = 0.2


@dataclass
class FaultPlan:
    """Fail operation number ``at`` (counting from 1) once, or every operation from it on.

    ``at=0`` fails nothing and only counts; every operation is listed in ``seen``.
    """

    at: int
    every_after: bool = False
    count: int = 0
    seen: list[str] = field(default_factory=list)

    def check(self, op: str, path: Path) -> None:
        self.count += 1
        self.seen.append(f"{op} {path.as_posix()}")
        if self.at == 0:
            return
        if self.count == self.at or (self.every_after and self.count > self.at):
            raise OSError(errno.EIO, f"injected fault in {op} (operation {self.count})", str(path))


_plan: FaultPlan | None = None


def set_fault_plan(plan: FaultPlan | None) -> None:
    """Install (or remove, with None) the fault plan of the test suite."""
    global _plan
    _plan = plan


def operation_count() -> int:
    """How many operations ran under the current fault plan (0 without one)."""
    return _plan.count if _plan else 0


def _plan_from_environment() -> FaultPlan | None:
    text = os.environ.get("OPUSI_FAULT_PLAN", "")
    mode, _, number = text.partition(":")
    if mode in ("once", "from") and number.isdigit():
        return FaultPlan(at=int(number), every_after=mode == "from")
    if mode == "count":
        return FaultPlan(at=0)
    return None


_plan = _plan_from_environment()
_plan_from_env = _plan is not None


def _kill_at_from_environment() -> int:
    text = os.environ.get("OPUSI_KILL_AT", "")
    return int(text) if text.isdigit() else 0


_kill_at = _kill_at_from_environment()
_ops_run = 0
_count_lock = threading.Lock()


def order_matters() -> bool:
    """True when ``OPUSI_KILL_AT`` or ``OPUSI_FAULT_PLAN`` is set (test seams, see above).

    Their operation numbers are learned in one process and used in another, so the operations
    must then run in the same order every time: callers that would use threads run them one
    after another instead.
    """
    return bool(_kill_at) or _plan_from_env


def _op(name: str, path: Path) -> None:
    with _count_lock:
        if _kill_at:
            global _ops_run
            _ops_run += 1
            if _ops_run == _kill_at:
                os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
        if _plan is not None:
            _plan.check(name, path)


def _is_in_use(error: OSError) -> bool:
    """True for the errors Windows gives while another process holds a file (seam)."""
    return os.name == "nt" and (
        isinstance(error, PermissionError) or getattr(error, "winerror", 0) in (32, 33)
    )


def _retrying(action: Callable[[], None]) -> None:
    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    while True:
        try:
            action()
            return
        except OSError as e:
            if not _is_in_use(e) or time.monotonic() > deadline:
                raise
            time.sleep(_RETRY_PAUSE)


def replace(src: Path, dst: Path) -> None:
    """Move ``src`` over ``dst`` atomically (same file system), retrying while ``dst`` is in use."""
    _op("replace", dst)
    _retrying(lambda: os.replace(src, dst))


def unlink(path: Path) -> None:
    """Delete a file (missing is fine), retrying while it is in use."""
    _op("unlink", path)
    _retrying(lambda: path.unlink(missing_ok=True))


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
    """Open a new file for writing (truncating)."""
    _op("open", path)
    return path.open("wb")


def write_chunk(handle: BinaryIO, data: bytes) -> None:
    """Write one chunk of a file opened with :func:`open_write`."""
    _op("write", Path(handle.name))
    handle.write(data)


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
    """Make every write and rename so far durable, once, instead of file by file.

    POSIX: ``sync()``, which flushes the file systems (the install's among them). Windows has
    no such call for a volume without administrator rights; NTFS journals the renames, and the
    files' data is flushed by the system within seconds (to be confirmed on Windows).
    """
    _op("sync_all", path)
    if hasattr(os, "sync"):
        os.sync()


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data``: temp file beside it, flushed, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open_write(tmp) as handle:
        write_chunk(handle, data)
        sync(handle)
    replace(tmp, path)
    sync_dir(path.parent)
