"""I/O faults: operation k of the updater's file operations fails, once or from then on.

Through the test hook on the seam of :mod:`updater.shared.fileops` (``OPUSI_FAULT_PLAN=once:ID``
or ``from:ID``, see :mod:`updater.install.testhooks`; the frozen executable reads it too), for
every operation k of a full update over all pending builds (1147 -> 1148, 1150, 1152, 1155),
the backup's parallel parts, the staging lanes and the downloads included, and every operation k
of a run that restores an interrupted update (the restore that also follows a failed apply). The
operations are learned from a counted run (:func:`tests.faults.kills.learn`). The injected error
is EIO, an I/O error of the disk.

What each failure must give (:func:`expected`):

- before the first byte of the install changes (write probes, the downloads, the backup zip, the
  first journal): error 25 (a disk error; nothing changed), the install exactly at 1147;
- from the apply of the first build up to the removal of the journal: the backup is restored,
  error 16, exactly 1147; when every operation from k on fails, the restore fails too: error 17;
- the removal of the downloads after the journal is gone: harmless, exit 0 at exactly 1155;
- an operation of a recovering run (killed in the second build, server down): error 17 (once:
  if the failed operation cannot be done without), the journal kept; except the removal of the
  downloaded manifests after the restore succeeded (so that each new attempt shows in the
  vendor's request log): error 25 (a disk error), the install exactly at 1147.

After a run ended with 17, and after every ``from:K`` run, a clean run must recover and complete
at exactly 1155. A ``from:K`` run may leave its own temp file it could not delete (a write probe)
among the program files, or a half-restored install when it says 17: the clean run after it
must then bring the install to exactly 1155.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from tests.faults import Before, Outcome, Suite, outcome, own_temps_only
from tests.faults.kills import (
    NEW,
    OLD,
    RECOVER_AFTER,
    Reference,
    down_server,
    fresh,
    learn,
    parallel,
    recovery_ops,
    sample,
    start,
)
from tests.support.crash import KILLED

KLASS = "I/O faults"


def expected(ref: Reference, k: int, every_after: bool) -> tuple[tuple[int, ...], int]:
    """The exit codes a failure of operation k of the clean update must give, and the build."""
    first_journal = next(i for i, op in enumerate(ref.ops, 1) if op.endswith("/.journal.json.tmp"))
    apply_from = first_journal + 5  # open, write, fsync, replace, fsync_dir of the journal
    cleared = ref.journal_cleared + 1  # the journal's unlink and the fsync of its folder
    if k < apply_from:
        return (25,), OLD
    if k <= cleared:
        return ((17,) if every_after else (16,)), OLD
    return (0,), NEW


def judge(
    suite: Suite,
    case: str,
    install: Path,
    before: Before,
    faulted: subprocess.CompletedProcess[str],
    codes: Sequence[int],
    build: int,
    every_after: bool,
) -> Outcome:
    """Judge a faulted run, and the clean run after it where one is due."""
    first = outcome(KLASS, case, install, suite.vendor, before, faulted, codes, [build])
    rerun_due = every_after or faulted.returncode == 17 or not first.consistent
    if not rerun_due:
        shutil.rmtree(install, ignore_errors=True)
        return first
    leftovers = not first.consistent and own_temps_only(install, suite.vendor, OLD)
    rerun = start(suite, install)
    after = outcome(KLASS, case, install, suite.vendor, before, rerun, [0], [NEW])
    shutil.rmtree(install, ignore_errors=True)
    excused = faulted.returncode == 17 or leftovers
    consistent = (first.consistent or excused) and after.consistent
    detail = f"{first.detail}; clean run after it: {after.detail}"
    if leftovers:
        detail += " (its own temp files were left, removed by the clean run)"
    return Outcome(KLASS, case, consistent, first.code_ok and after.code_ok, detail)


def update_case(suite: Suite, ref: Reference, k: int, every_after: bool) -> Outcome:
    mode = "from" if every_after else "once"
    install = fresh(suite, f"io-{mode}-{k}")
    before = Before.of(install)
    faulted = start(suite, install, fault=f"{mode}:{ref.ident(k)}")
    codes, build = expected(ref, k, every_after)
    return judge(
        suite,
        f"update, {mode}:{k} ({ref.ident(k)} {ref.ops[k - 1]})",
        install,
        before,
        faulted,
        codes,
        build,
        every_after,
    )


def recovery_case(
    suite: Suite, first: str, k: str, op: str, every_after: bool, down: str
) -> Outcome:
    """Killed at ``first``; the recovering run (server down) has operation ``k`` failing."""
    mode = "from" if every_after else "once"
    install = fresh(suite, f"io-recovery-{mode}-{k}")
    before = Before.of(install)
    killed = start(suite, install, kill_at=first)
    faulted = start(suite, install, "--server", down, fault=f"{mode}:{k}")
    after_restore = re.fullmatch(r"unlink .*/downloads/[0-9]+\.json", op) is not None
    result = judge(
        suite,
        f"recovery after a kill at {first}, {mode}:{k} ({op})",
        install,
        before,
        faulted,
        (25,) if after_restore else (17,),
        OLD,
        True,
    )
    if killed.returncode == KILLED:
        return result
    return Outcome(
        KLASS,
        result.case,
        result.consistent,
        False,
        f"the run to be killed exited {killed.returncode}; {result.detail}",
    )


def run(suite: Suite) -> list[Outcome]:
    """The I/O faults of ``suite``'s configuration."""
    ref = learn(suite)
    every_k = list(range(1, len(ref.ops) + 1))
    ks = sample(every_k, 40) if suite.quick else every_k
    cases: list[Callable[[], Outcome]] = [
        partial(update_case, suite, ref, k, every) for every in (False, True) for k in ks
    ]
    with down_server() as down:
        first = ref.ident(ref.number(RECOVER_AFTER))
        recovering = recovery_ops(suite, first, down)
        chosen = sample(recovering, 6) if suite.quick else recovering
        cases += [
            partial(recovery_case, suite, first, k, op, every, down)
            for every in (False, True)
            for k, op in chosen
        ]
        return parallel(cases)
