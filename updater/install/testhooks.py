"""The fault and crash suites' machinery: one hook on the file-operation seam, and nothing else.

The suites run the real updater (from source or frozen, the very executable customers get) and
make it fail or stop at one chosen file operation. Nothing here changes which code path the
updater takes (but for ``OPUSI_SYNC_ALL``, below): the hook only watches
:mod:`updater.shared.fileops`, and when its operation comes it raises the error a failing disk
would raise, or kills the process as a power cut would.

Switched on only when the updater's entry point finds one of these in the environment
(:func:`activate_from_environment`); unset, as in every real use, this module installs nothing:

- ``OPUSI_FAULT_PLAN=once:ID`` or ``from:ID``: operation ``ID`` fails with EIO, once, or it and
  every operation after it (in any lane);
- ``OPUSI_KILL_AT=ID``: the process SIGKILLs itself right before operation ``ID``;
- ``OPUSI_OPS_FILE=PATH``: every operation is appended to ``PATH`` as it happens, one line
  ``ID KIND PATH`` (the suites learn a run's operations from it);
- ``OPUSI_PAUSE_AT=ID[,ID...]=FOLDER``: right before operation ``ID`` the run creates
  ``FOLDER/<ID>.paused`` (``#`` written as ``_``) and waits (at most two minutes) until
  ``FOLDER/<ID>.go`` exists: a test can look at the window in the middle of a phase, or
  cancel there;
- ``OPUSI_SYNC_ALL=off``: the one switch of a code path: the final ``sync()`` before the
  journal goes is left out, as on Windows, which has no such call (the power-cut suite's
  Windows-like mode).

``ID`` is an operation's identity, ``lane#number`` (:attr:`updater.shared.fileops.Operation.ident`),
the same in every run of the same update even where lanes run in parallel.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from updater.shared import fileops

ENVIRONMENT = ("OPUSI_FAULT_PLAN", "OPUSI_KILL_AT", "OPUSI_OPS_FILE", "OPUSI_PAUSE_AT",
               "OPUSI_SYNC_ALL")


@dataclass
class FaultPlan:
    """The hook: fail, or kill at, one operation; record what was seen.

    Attributes:
        at: The operation to fail: an identity (``"main#12"``), or the n-th operation of all
            lanes together (a number; which one that is may vary where lanes run in parallel);
            0 fails nothing.
        every_after: Fail every operation after ``at`` too.
        kill_at: The operation to SIGKILL the process before (same forms as ``at``), or None.
        error: The errno of the injected failure.
        record: A stream each operation is written to as it happens (``ID KIND PATH``).
        seen: Every operation so far, as ``"KIND PATH"``; ``idents`` their identities.
    """

    at: str | int = 0
    every_after: bool = False
    kill_at: str | int | None = None
    error: int = errno.EIO
    record: TextIO | None = None
    count: int = 0
    seen: list[str] = field(default_factory=list)
    idents: list[str] = field(default_factory=list)
    tripped: bool = False
    pause_at: tuple[str, ...] = ()
    pause_folder: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, op: fileops.Operation) -> None:
        if self.pause_folder is not None and op.ident in self.pause_at:
            _pause(self.pause_folder, op.ident.replace("#", "_"))
        with self._lock:
            self.count += 1
            self.seen.append(f"{op.kind} {op.path.as_posix()}")
            self.idents.append(op.ident)
            if self.record is not None:
                self.record.write(f"{op.ident} {op.kind} {op.path.as_posix()}\n")
                self.record.flush()
            if self.kill_at is not None and self._is(op, self.kill_at):
                os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
            hit = bool(self.at) and self._is(op, self.at)
            if not (hit or (self.every_after and self.tripped)):
                return
            self.tripped = True
        raise OSError(self.error, f"injected fault in {op.kind} (operation {op.ident})",
                      str(op.path))

    def _is(self, op: fileops.Operation, target: str | int) -> bool:
        return op.ident == target if isinstance(target, str) else self.count == target


def _pause(folder: Path, name: str) -> None:
    """Say "paused" (``folder/name.paused``) and wait until ``folder/name.go`` exists."""
    (folder / f"{name}.paused").touch()
    deadline = time.monotonic() + 120
    while not (folder / f"{name}.go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def plan_from(environ: Mapping[str, str]) -> FaultPlan | None:
    """The plan the environment asks for, or None (the normal case).

    Raises:
        ValueError: A variable is set but malformed (a test's mistake, never a user's).
    """
    if not any(environ.get(name) for name in ENVIRONMENT):
        return None
    plan = FaultPlan()
    fault = environ.get("OPUSI_FAULT_PLAN", "")
    if fault:
        mode, _, ident = fault.partition(":")
        if mode not in ("once", "from") or "#" not in ident:
            raise ValueError(f"OPUSI_FAULT_PLAN={fault!r}: expected once:LANE#N or from:LANE#N")
        plan.at, plan.every_after = ident, mode == "from"
    kill = environ.get("OPUSI_KILL_AT", "")
    if kill:
        if "#" not in kill:
            raise ValueError(f"OPUSI_KILL_AT={kill!r}: expected LANE#N")
        plan.kill_at = kill
    pause = environ.get("OPUSI_PAUSE_AT", "")
    if pause:
        idents, _, folder = pause.partition("=")
        if "#" not in idents or not folder:
            raise ValueError(f"OPUSI_PAUSE_AT={pause!r}: expected LANE#N[,LANE#N...]=FOLDER")
        plan.pause_at, plan.pause_folder = tuple(idents.split(",")), Path(folder)
    ops_file = environ.get("OPUSI_OPS_FILE", "")
    if ops_file:
        plan.record = Path(ops_file).open("a", encoding="utf-8")  # noqa: SIM115 - for the run
    return plan


def activate_from_environment() -> FaultPlan | None:
    """Install the plan the environment asks for as the seam's hook (none: nothing happens)."""
    if os.environ.get("OPUSI_SYNC_ALL") == "off":
        fileops.set_global_sync(False)
    plan = plan_from(os.environ)
    if plan is not None:
        fileops.set_hook(plan)
    return plan
