"""The Windows updater killed at spread-out moments; the next run ends exactly at the new build.

As the crash suite does on Linux (tests/faults/test_crash.py), a counted run of the .exe writes
down its file operations (``OPUSI_OPS_FILE``), and each case kills a fresh run right before one
of them (``OPUSI_KILL_AT``: the test hook calls ``os.kill`` on its own process, which on Windows
is ``TerminateProcess``: no ``finally``, no flush, no handler runs). The next run must recover
from the journal and finish: every program file byte for byte the new build's, the customer data
unchanged, no journal left.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import data_snapshot, make_install, program_files, vendor_files
from tests.support.crash import read_ops, spread
from tests.support.wine import kill_windows_processes, win_path
from tests.windows.conftest import NEW, OLD, Windows, update
from updater.install.journal import journal_path

pytestmark = [pytest.mark.windows]
CASES = 24
RUN_SECONDS = 60  # a run takes 3-9 s under Wine


def _seen(ops_file: Path, install: Path) -> tuple[str, ...]:
    """The identities of the operations a run of the .exe wrote down (Windows paths)."""
    return read_ops(ops_file, Path("Z:" + str(install.resolve()))).ids if ops_file.exists() \
        else ()


def test_killed_at_24_moments_next_run_ends_at_the_new_build(
        windows: Windows, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """At least 20 kills spread over the whole update (download, backup, staging, apply, the
    journal's end, clean-up); each next run ends at exactly build 1155.

    Windows API: TerminateProcess (the kill); then the journal read back, MoveFileExW and
    DeleteFileW of the recovery, LockFileEx of the install lock left by a killed process."""
    vendor = windows.vendor
    counted = make_install(tmp_path / "counted", vendor.trees[OLD], OLD, windows.url)
    code, output = update(windows, counted, env={"OPUSI_OPS_FILE": win_path(tmp_path / "ops")})
    assert code == 0, output
    run = read_ops(tmp_path / "ops", Path("Z:" + str(counted.resolve())))
    moments = spread(run.ops)
    step = (len(moments) - 1) / (CASES - 1)
    chosen = sorted({moments[round(i * step)] for i in range(CASES)})
    assert len(chosen) >= 20, (len(run.ops), moments)
    new_files = vendor_files(vendor.trees[NEW], NEW)

    def run_through_hangs(install: Path, what: str, ops: Path | None = None,
                          **env: str) -> tuple[int, str, int]:
        """One run; if Wine hangs it (seen in CI, under load: once at start-up before any
        Python ran, once in a TerminateProcess of itself), its processes are killed from
        outside (a kill as good as any) and the run is made again, once."""
        for attempt in (1, 2):
            extra = dict(env, **({"OPUSI_OPS_FILE": win_path(ops)} if ops else {}))
            try:
                code, output = update(windows, install, timeout=RUN_SECONDS, env=extra)
                return code, output, attempt - 1
            except subprocess.TimeoutExpired:
                kill_windows_processes(win_path(install))
                if ops and _seen(ops, install)[-1:] == (env.get("OPUSI_KILL_AT"),):
                    return -9, "(killed from outside at the operation)", attempt
        raise AssertionError(f"{what}: Wine hung the run twice")

    def case(k: int) -> str:
        ident = run.ident(k)
        install = make_install(tmp_path / f"k{k}", vendor.trees[OLD], OLD, windows.url)
        data = data_snapshot(install)
        ops = tmp_path / f"k{k}.ops"
        code, output, hangs = run_through_hangs(install, f"K={k} kill run", ops,
                                                OPUSI_KILL_AT=ident)
        seen = _seen(ops, install)
        assert code != 0 and seen and seen[-1] == ident, \
            f"K={k} ({ident}): not killed there (exit {code}, last {seen[-1:]})\n{output[-600:]}"
        interrupted = journal_path(install).exists()
        code, output, more = run_through_hangs(install, f"K={k} next run")
        assert code == 0, f"K={k} ({ident} {run.ops[k - 1]}): next run exit {code}\n{output}"
        assert program_files(install) == new_files, f"K={k}: not exactly build {NEW}"
        assert data_snapshot(install) == data, f"K={k}: customer data changed"
        assert not journal_path(install).exists(), f"K={k}: journal left behind"
        outcome = "journal left, recovered" if interrupted else "no journal"
        return outcome + (" (after a Wine hang)" if hangs + more else "")

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = dict(zip(chosen, pool.map(case, chosen), strict=True))
    with capsys.disabled():
        print(f"\n[windows] {len(chosen)} kills of the .exe among {len(run.ops)} operations "
              f"in {time.monotonic() - started:.0f} s: "
              + ", ".join(f"{sum(1 for o in outcomes.values() if o == what)} {what}"
                          for what in sorted(set(outcomes.values()))))
