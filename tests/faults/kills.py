"""Hard kills: the updater SIGKILLed at many distinct moments, then started again.

The moments are the updater's file operations (``OPUSI_KILL_AT=ID``, see
:mod:`updater.install.testhooks`: the process kills itself right before its operation ``ID``,
``lane#number``), learned once from a counted run of the updater under test itself
(``OPUSI_OPS_FILE``); an operation has the same identity in every run, also where the backup's
parts and the staging lanes run in parallel, which :func:`learn` checks (killed at the last
operation, clean past it). Phases:

- **update**: killed at operation K of a clean update from 1147 over every build to 1155
  (write probes, backup zip, journal, the apply of each build, the clean-up), then run again:
  exit 0, exactly 1155.
- **server down**: the same kill, then the server is down: the run recovers first (before any
  network access), exactly 1147 (or 1155 once the journal was cleared), then exit 6.
- **restore**: operation F of the apply fails once (``OPUSI_FAULT_PLAN=once:ID``), and the run is
  killed at an operation of the restore that follows; the next run: exit 0, exactly 1155.
- **recovery**: killed in the middle of the second build, then the recovering run (server down)
  is killed too, at an operation of its restore; the next run: exit 0, exactly 1155.
- **download**: killed from outside while a trickling relay slows the metadata, manifests and
  packages down, when a chosen file reached a chosen size; the killed run must leave the install
  exactly at 1147 (but for a write probe of its own when the kill falls while one exists, which
  the next run removes first); the next run: exit 0, exactly 1155.

Every case passes when the killed run ended by SIGKILL, the install is exactly at 1147 or 1155
with the data folders unchanged after the run that follows, and that run exits as documented.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import count
from pathlib import Path
from typing import TypeVar

from tests.conftest import make_install
from tests.faults import Before, Outcome, Suite, ended_at, outcome, own_temps_only
from tests.support.crash import KILLED, Ops, TrickleRelay, hook_env, read_ops, spread, updater_args
from updater.core.paths import WORK_DIR

KLASS = "hard kills"
OLD, NEW = 1147, 1155
#: The operations of a clean update whose failure makes the run restore (one per build).
RESTORE_AFTER = (
    "replace Program/Module/neu ñ/日本語.txt",
    "replace Program/empty2.cfg",
    "replace opusi.dll",
)
#: The operation of the second build a recovering run is killed after.
RECOVER_AFTER = "replace Program/empty2.cfg"
_folders = count()
T = TypeVar("T")


# --- running the updater ----------------------------------------------------------------------


def start(
    suite: Suite, install: Path, *args: str, kill_at: str | None = None, fault: str | None = None,
    ops_file: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``suite.updater`` on ``install`` with the test hook switched on as asked."""
    return suite.run(install, *args, env=hook_env(kill_at, fault, ops_file), timeout=180)


def counted_ops(suite: Suite, install: Path, *args: str, kill_at: str | None = None,
                fault: str | None = None) -> Ops:
    """Run ``suite.updater`` on ``install``; return its file operations, install-relative."""
    ops_file = install.with_name(install.name + ".ops")
    ops_file.unlink(missing_ok=True)
    start(suite, install, *args, kill_at=kill_at, fault=fault, ops_file=ops_file)
    return read_ops(ops_file, install)


def fresh(suite: Suite, name: str) -> Path:
    """A new install of 1147 in the suite's folder, unique among all cases."""
    folder = suite.base / "kills" / f"{next(_folders)}-{name}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    return make_install(folder, suite.vendor.trees[OLD], OLD, suite.url)


@contextmanager
def down_server() -> Iterator[str]:
    """A URL where nothing answers: a port bound, but not listening (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- the operations of a clean update, learned once ---------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A clean update's file operations, in the order they happened."""

    run: Ops

    @property
    def ops(self) -> tuple[str, ...]:
        """Each operation as ``"<kind> <install-relative path>"``."""
        return self.run.ops

    def number(self, op: str) -> int:
        """The 1-based number of ``op`` in the clean update."""
        return self.run.number(op)

    def ident(self, k: int) -> str:
        """The identity (``lane#number``) of operation ``k``."""
        return self.run.ident(k)

    @property
    def journal_cleared(self) -> int:
        """The operation that removes the journal: from it on, the update is complete."""
        return next(
            i
            for i, op in enumerate(self.ops, 1)
            if op.startswith("unlink") and op.endswith("/journal.json")
        )


_learned: dict[tuple[str, tuple[str, ...]], Reference] = {}
_learning = threading.Lock()


def learn(suite: Suite) -> Reference:
    """The operations of a clean update of ``suite``, counted once (both classes use them)."""
    with _learning:
        key = (str(suite.base), suite.updater)
        if key not in _learned:
            _learned[key] = _count(suite)
        return _learned[key]


def _count(suite: Suite) -> Reference:
    """Count a clean update's operations; check the updater under test does the same number.

    Raises:
        RuntimeError: The counted run failed, or ``suite.updater`` performs another number of
            operations (it is then not killed at N, or killed at N + 1).
    """
    install = fresh(suite, "counted")
    run = counted_ops(suite, install)
    if not run.ops or not run.ops[-1].startswith("rmtree"):
        raise RuntimeError(f"the counted update did not complete: {run.ops[-3:]}")
    for kill_at, expected in ((run.beyond(), 0), (run.ids[-1], KILLED)):
        probe = fresh(suite, f"probe-{kill_at}")
        result = start(suite, probe, kill_at=kill_at)
        if result.returncode != expected:
            raise RuntimeError(
                f"{suite.updater[0]} with OPUSI_KILL_AT={kill_at}: exit "
                f"{result.returncode}, expected {expected}: the updater under test "
                f"does not perform the {len(run.ops)} operations of the counted run"
            )
        shutil.rmtree(probe, ignore_errors=True)
    shutil.rmtree(install, ignore_errors=True)
    return Reference(run)


def sample(items: Sequence[T], size: int) -> list[T]:
    """``size`` of ``items`` evenly spread, the first and last included (all when few enough)."""
    if len(items) <= size:
        return list(items)
    step = (len(items) - 1) / (size - 1)
    return [items[i] for i in sorted({round(i * step) for i in range(size)})]


def parallel(cases: Sequence[Callable[[], Outcome]], workers: int = 2) -> list[Outcome]:
    """Run the cases, ``workers`` at a time (each has its own install; the server is shared)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda case: case(), cases))


# --- the cases ----------------------------------------------------------------------------------


def judged(
    suite: Suite,
    case: str,
    install: Path,
    before: Before,
    killed: Sequence[int],
    rerun: subprocess.CompletedProcess[str],
    codes: Sequence[int],
    builds: Sequence[int] = (OLD, NEW),
) -> Outcome:
    """The outcome of kill(s) and the run after: killed by SIGKILL, then consistent, code ok."""
    judged = outcome(KLASS, case, install, suite.vendor, before, rerun, codes, builds)
    not_killed = [code for code in killed if code != KILLED]
    shutil.rmtree(install, ignore_errors=True)
    if not not_killed:
        return judged
    return Outcome(
        KLASS,
        case,
        judged.consistent,
        False,
        f"the run to be killed exited {not_killed[0]}; {judged.detail}",
    )


def kill_then_update(suite: Suite, ref: Reference, k: int) -> Outcome:
    install = fresh(suite, f"update-{k}")
    before = Before.of(install)
    killed = start(suite, install, kill_at=ref.ident(k))
    rerun = start(suite, install)
    return judged(
        suite,
        f"update: killed at {k} ({ref.ident(k)} {ref.ops[k - 1]}), run again",
        install,
        before,
        [killed.returncode],
        rerun,
        [0],
        [NEW],
    )


def kill_then_server_down(suite: Suite, ref: Reference, k: int, down: str) -> Outcome:
    install = fresh(suite, f"down-{k}")
    before = Before.of(install)
    killed = start(suite, install, kill_at=ref.ident(k))
    rerun = start(suite, install, "--server", down)
    build = NEW if k > ref.journal_cleared else OLD
    return judged(
        suite,
        f"server down: killed at {k} ({ref.ident(k)} {ref.ops[k - 1]}), recovered",
        install,
        before,
        [killed.returncode],
        rerun,
        [6],
        [build],
    )


def kill_during_restore(suite: Suite, fault: str, k: str, op: str) -> Outcome:
    install = fresh(suite, f"restore-{fault}-{k}")
    before = Before.of(install)
    killed = start(suite, install, kill_at=k, fault=f"once:{fault}")
    rerun = start(suite, install)
    return judged(
        suite,
        f"restore after a fault at {fault}: killed at {k} ({op}), run again",
        install,
        before,
        [killed.returncode],
        rerun,
        [0],
        [NEW],
    )


def kill_during_recovery(suite: Suite, first: str, k: str, op: str, down: str) -> Outcome:
    install = fresh(suite, f"recovery-{k}")
    before = Before.of(install)
    killed = start(suite, install, kill_at=first)
    recovering = start(suite, install, "--server", down, kill_at=k)
    rerun = start(suite, install)
    return judged(
        suite,
        f"recovery after a kill at {first}: killed at {k} ({op}), run again",
        install,
        before,
        [killed.returncode, recovering.returncode],
        rerun,
        [0],
        [NEW],
    )


def restore_ops(suite: Suite, ref: Reference, fault: str) -> list[tuple[str, str]]:
    """The operations after ``fault`` of a run whose operation ``fault`` fails once, as
    (identity, operation)."""
    install = fresh(suite, f"counted-restore-{fault}")
    run = counted_ops(suite, install, fault=f"once:{fault}")
    shutil.rmtree(install, ignore_errors=True)
    after = run.ids.index(fault) + 1
    return list(zip(run.ids, run.ops, strict=True))[after:]


def recovery_ops(suite: Suite, first: str, down: str) -> list[tuple[str, str]]:
    """The operations of a run (server down) recovering from a kill at ``first``, as
    (identity, operation)."""
    install = fresh(suite, "counted-recovery")
    start(suite, install, kill_at=first)
    run = counted_ops(suite, install, "--server", down)
    shutil.rmtree(install, ignore_errors=True)
    return list(zip(run.ids, run.ops, strict=True))


# --- kills during the download ------------------------------------------------------------------


def _reached(name: str, size: int) -> Callable[[Path], bool]:
    def reached(install: Path) -> bool:
        path = install / WORK_DIR / name
        try:
            return path.stat().st_size >= size
        except OSError:
            return False

    return reached


#: Moments of the download: a file (in the working folder) reaching a size.
DOWNLOAD_MOMENTS: tuple[tuple[str, int], ...] = (
    ("metadata/timestamp.json", 1),
    ("metadata/snapshot.json", 1),
    ("metadata/targets.json", 1),
    ("downloads/1148.json", 1),
    ("downloads/1148.7z", 1),
    ("downloads/1150.json", 1),
    ("downloads/1155.json", 1),
    ("downloads/1155.7z.part", 1),
    ("downloads/1155.7z.part", 4096),
    ("downloads/1155.7z.part", 8192),
    ("downloads/1155.7z.part", 12288),
    ("downloads/1155.7z.part", 16384),
    ("downloads/1155.7z.part", 20480),
    ("downloads/1155.7z.part", 24576),
)
QUICK_DOWNLOAD_MOMENTS = (DOWNLOAD_MOMENTS[0], DOWNLOAD_MOMENTS[3], DOWNLOAD_MOMENTS[10])


def kill_during_download(suite: Suite, name: str, size: int) -> Outcome:
    install = fresh(suite, "download")
    before = Before.of(install)
    relay = TrickleRelay(("127.0.0.1", int(suite.url.rsplit(":", 1)[1])), piece=256, pause=0.02)
    reached = _reached(name, size)
    command = [
        *suite.updater,
        *updater_args(
            install, suite.vendor.root_file, "--server", f"http://127.0.0.1:{relay.port}"
        ),
    ]
    try:
        # A session of its own: the frozen one-file updater is two processes (the bootloader
        # and the program it unpacked); a power loss takes both, so the kill goes to the group.
        proc = subprocess.Popen(
            command,
            env=hook_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not reached(install) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        code = proc.wait(timeout=30)
    finally:
        relay.close()
    untouched = ended_at(install, suite.vendor, before, [OLD]) == OLD
    # a kill while a write probe exists leaves it (nothing else); the next run removes it first
    leftovers = not untouched and own_temps_only(install, suite.vendor, OLD)
    rerun = start(suite, install)
    result = judged(
        suite,
        f"download: killed when {name} reached {size} bytes, run again",
        install,
        before,
        [code],
        rerun,
        [0],
        [NEW],
    )
    if untouched:
        return result
    if leftovers:
        detail = f"{result.detail} (the killed run left its own temp file, removed by the rerun)"
        return Outcome(KLASS, result.case, result.consistent, result.code_ok, detail)
    return Outcome(
        KLASS,
        result.case,
        False,
        result.code_ok,
        f"the killed download changed the install; {result.detail}",
    )


# --- the class ----------------------------------------------------------------------------------


def cases(suite: Suite, ref: Reference, down: str) -> list[Callable[[], Outcome]]:
    """Every case of the configuration (quick: about 30, full: all moments, well over 200)."""
    quick, n = suite.quick, len(ref.ops)
    moments = sample(spread(ref.ops), 12) if quick else list(range(1, n + 1))
    # and every moment a temp file of the updater exists among the program files
    temps = [
        k
        for k in range(2, n + 1)
        if ref.ops[k - 2].startswith("open ") and "/" not in ref.ops[k - 2].removeprefix("open ")
    ]
    downs = sample([*spread(ref.ops, 16), *temps], 5 if quick else 40)
    result: list[Callable[[], Outcome]] = [
        *(partial(kill_then_update, suite, ref, k) for k in moments),
        *(partial(kill_then_server_down, suite, ref, k, down) for k in downs),
    ]
    for op in RESTORE_AFTER[1:] if quick else RESTORE_AFTER:
        fault = ref.ident(ref.number(op))
        after = restore_ops(suite, ref, fault)
        chosen = sample(after, 3) if quick else after
        result += [partial(kill_during_restore, suite, fault, k, o) for k, o in chosen]
    first = ref.ident(ref.number(RECOVER_AFTER))
    recovering = recovery_ops(suite, first, down)
    chosen = sample(recovering, 3) if quick else recovering
    result += [partial(kill_during_recovery, suite, first, k, o, down) for k, o in chosen]
    moments_dl = QUICK_DOWNLOAD_MOMENTS if quick else DOWNLOAD_MOMENTS
    result += [partial(kill_during_download, suite, m, size) for m, size in moments_dl]
    return result


def run(suite: Suite) -> list[Outcome]:
    """The hard kills of ``suite``'s configuration."""
    ref = learn(suite)
    with down_server() as down:
        return parallel(cases(suite, ref, down))
