"""Power loss at any moment: the real updater process is SIGKILLed, then run again.

SPEC section 4: killed at any moment, the next run leaves the install exactly at the old build or
exactly at the new one, byte for byte (folders included), and the customer-data folders
untouched. The moments are the updater's file operations (``OPUSI_KILL_AT``, see
:mod:`updater.install.testhooks`), learned from a counted run; downloads are also killed from
outside while a trickling relay slows them down.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import (
    Vendor,
    data_snapshot,
    make_install,
    program_files,
    program_snapshot,
    vendor_files,
)
from tests.support.crash import (
    KILLED,
    ROOT,
    Ops,
    TrickleRelay,
    read_ops,
    run_updater,
    spread,
    updater_args,
)
from tests.support.trees import snapshot
from updater.core.paths import LOG_DIR, WORK_DIR
from updater.install.journal import journal_path

OLD, NEW = 1147, 1155
#: ``OPUSI_CRASH_ALL=1`` kills at every operation instead of an evenly spread sample (minutes).
EVERY_MOMENT = os.environ.get("OPUSI_CRASH_ALL") == "1"


def _sample(ks: Sequence[int], count: int) -> list[int]:
    """The first and last three of ``ks`` and ``count`` evenly spread between (all, if asked)."""
    ks = sorted(ks)
    if EVERY_MOMENT or len(ks) <= count + 6:
        return ks
    step = (len(ks) - 1) / (count - 1)
    return sorted({*ks[:3], *ks[-3:], *(ks[round(i * step)] for i in range(count))})


def _moments(ops: Sequence[str], count: int, every: int = 8) -> list[int]:
    """Operations to kill at in a run of ``ops``: a sample of :func:`spread` (all, if asked)."""
    return list(range(1, len(ops) + 1)) if EVERY_MOMENT else _sample(spread(ops, every), count)


@dataclass(frozen=True)
class Reference:
    """A clean update's file operations and the exact program trees before and after it."""

    run: Ops
    before: dict[str, str]
    after: dict[str, str]
    data: dict[str, str]

    @property
    def ops(self) -> tuple[str, ...]:
        """The operations, as ``"<kind> <path in the install>"``."""
        return self.run.ops

    @property
    def journal_cleared(self) -> int:
        """The operation that removes the journal: from it on, the update is complete."""
        return next(i for i, op in enumerate(self.ops, 1)
                    if op.startswith("unlink") and op.endswith("/journal.json"))

    def op_number(self, op: str) -> int:
        """The number of ``op`` (``"<kind> <path in the install>"``) in the clean update."""
        return self.run.number(op)


@pytest.fixture(scope="module")
def reference(vendor: Vendor, server_url: str,
              tmp_path_factory: pytest.TempPathFactory) -> Reference:
    base = tmp_path_factory.mktemp("crash-reference")
    install = make_install(base / "opusi", vendor.trees[OLD], OLD, server_url)
    before, data = program_snapshot(install), data_snapshot(install)
    done = run_updater(install, vendor.root_file, ops_file=base / "ops.txt")
    assert done.returncode == 0, done.stderr
    assert program_files(install) == vendor_files(vendor.trees[NEW], NEW)
    return Reference(read_ops(base / "ops.txt", install), before, program_snapshot(install), data)


@pytest.fixture(scope="module")
def down_server() -> Iterator[str]:
    """A URL where nothing answers: a port bound, but not listening (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- checks shared by the cases --------------------------------------------------------------


def _state(install: Path, ref: Reference) -> str:
    """``OLD`` or ``NEW`` when the program part is exactly that build, else what differs."""
    now = program_snapshot(install)
    for name, tree in ((str(OLD), ref.before), (str(NEW), ref.after)):
        if now == tree:
            return name
    near = min((ref.before, ref.after), key=lambda tree: len(set(tree.items()) ^ set(now.items())))
    diff = sorted({p for p in set(now) | set(near) if now.get(p) != near.get(p)})
    return f"neither build: {diff[:6]}"


def _visible(install: Path) -> dict[str, str]:
    """Everything a --check must not change (its metadata cache and log files aside)."""
    cache, logs = f"{WORK_DIR}/metadata", LOG_DIR
    return {p: h for p, h in snapshot(install).items() if not p.startswith((cache, logs))}


def _expect(result: subprocess.CompletedProcess[str], code: int, what: str) -> None:
    assert result.returncode == code, (
        f"{what}: exit {result.returncode}, expected {code}\n"
        f"stdout: {result.stdout[-800:]}\nstderr: {result.stderr[-1500:]}")


def _ends_at(install: Path, ref: Reference, build: str, what: str, finished: bool = False) -> None:
    """Exactly ``build``, data untouched, no journal; after a finished update no staging either."""
    state = _state(install, ref)
    assert state == build, f"{what}: program files are {state}, expected exactly build {build}"
    assert data_snapshot(install) == ref.data, f"{what}: customer data changed"
    assert not journal_path(install).exists(), f"{what}: journal left behind"
    if finished:
        assert not (install / WORK_DIR / "staging").exists(), f"{what}: staging left behind"


def _run_cases(cases: Sequence[int], case: Callable[[int], str], title: str,
               capsys: pytest.CaptureFixture[str]) -> None:
    """Run ``case(k)`` for every k in parallel; print a summary; fail with every failure."""
    started = time.monotonic()
    outcomes: dict[int, str] = {}
    failures: list[str] = []

    def one(k: int) -> None:
        try:
            outcomes[k] = case(k)
        except AssertionError as e:
            failures.append(f"K={k}: {e}")

    # runs against the down server mostly wait (the fetcher's connect retries): more workers
    # than CPUs
    with ThreadPoolExecutor(max_workers=max(8, 2 * (os.cpu_count() or 2))) as pool:
        list(pool.map(one, cases))
    tally: dict[str, list[int]] = {}
    for k in sorted(outcomes):
        tally.setdefault(outcomes[k], []).append(k)
    with capsys.disabled():
        print(f"\n[crash] {title}: {len(cases)} kill points in {time.monotonic() - started:.1f} s, "
              f"{len(failures)} failed")
        for outcome, ks in tally.items():
            print(f"[crash]   {outcome}: K={_ranges(ks)}")
    assert not failures, "\n".join(sorted(failures))


def _ranges(ks: list[int]) -> str:
    parts: list[str] = []
    for k in ks:
        if parts and "-" not in parts[-1].split(",")[-1] and int(parts[-1]) + 1 == k:
            parts[-1] = f"{parts[-1]}-{k}"
        elif parts and "-" in parts[-1] and int(parts[-1].split("-")[1]) + 1 == k:
            parts[-1] = f"{parts[-1].split('-')[0]}-{k}"
        else:
            parts.append(str(k))
    return ",".join(parts)


def _killed(install: Path, vendor: Vendor, at: str, *extra: str,
            fault: str | None = None) -> None:
    result = run_updater(install, vendor.root_file, *extra, kill_at=at, fault=fault)
    _expect(result, KILLED, f"run killed at operation {at}")


# --- kill at every kind of moment of an update ---------------------------------------------


def test_counted_update_is_a_clean_update(reference: Reference) -> None:
    assert len(reference.ops) > 50
    assert reference.ops[-1].startswith("rmtree") and reference.ops[-1].endswith("downloads")
    assert reference.before != reference.after


def test_kill_then_check_then_update(vendor: Vendor, server_url: str, reference: Reference,
                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Killed at K; ``--check`` changes nothing; the next run recovers and reaches NEW exactly."""

    def case(k: int) -> str:
        install = make_install(tmp_path / f"k{k}", vendor.trees[OLD], OLD, server_url)
        _killed(install, vendor, reference.run.ident(k))
        interrupted = journal_path(install).exists()
        seen = _visible(install)
        _expect(run_updater(install, vendor.root_file, "--check"), 0, "--check after the kill")
        assert _visible(install) == seen, "--check after the kill changed the install"
        done = run_updater(install, vendor.root_file)
        _expect(done, 0, "the run after the kill")
        _ends_at(install, reference, str(NEW), "the run after the kill", finished=True)
        undone = "undone" in done.stdout
        assert undone == interrupted, f"journal left: {interrupted}, recovery reported: {undone}"
        if k > reference.journal_cleared:
            assert "up to date" in done.stdout, "a completed update ran again"
        return "recovered, then updated" if undone else "nothing to recover, updated" \
            if k <= reference.journal_cleared else "already complete"

    _run_cases(_moments(reference.ops, 14), case,
               f"kill during update (N={len(reference.ops)})", capsys)


def test_kill_then_recovery_without_server(vendor: Vendor, server_url: str, down_server: str,
                                           reference: Reference, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """After the kill the server is down: the install is still recovered (before any network
    access), exactly to OLD (or stays exactly at NEW once complete), then error 6."""

    def case(k: int) -> str:
        install = make_install(tmp_path / f"k{k}", vendor.trees[OLD], OLD, server_url)
        _killed(install, vendor, reference.run.ident(k))
        interrupted = journal_path(install).exists()
        down = run_updater(install, vendor.root_file, "--server", down_server)
        _expect(down, 6, "the run with the server down")
        build = str(NEW) if k > reference.journal_cleared else str(OLD)
        _ends_at(install, reference, build, "the run with the server down")
        if interrupted:  # the message tells of the roll-back, not that nothing was changed
            assert f"rolled back from its backup first: the install is at build {OLD}" \
                in down.stderr, down.stderr
            assert "Apart from that, nothing was changed" in down.stderr, down.stderr
        else:
            assert "rolled back" not in down.stderr, down.stderr
        return f"server down: exactly {build}, error 6"

    # and every moment a temp file of the updater exists among the program files
    temps = [k for k in range(2, len(reference.ops) + 1)
             if reference.ops[k - 2].startswith("open ") and "/" not in reference.ops[k - 2]]
    assert temps, "no temp file among the program files: the seam's operations changed"
    cases = sorted({*_moments(reference.ops, 8, every=16), *temps})
    _run_cases(cases, case, "kill, then server down", capsys)


# --- kill while a failed update restores, and while a run recovers ---------------------------


@pytest.mark.parametrize("failing", ["replace Program/empty2.cfg", "replace opusi.dll"])
def test_kill_during_restore_after_failure(vendor: Vendor, server_url: str, down_server: str,
                                           reference: Reference, tmp_path: Path, failing: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    fault = reference.op_number(failing)
    once = f"once:{reference.run.ident(fault)}"
    counted = make_install(tmp_path / "counted", vendor.trees[OLD], OLD, server_url)
    restored = run_updater(counted, vendor.root_file, fault=once, ops_file=tmp_path / "ops.txt")
    _expect(restored, 16, f"the update failing at operation {fault}")
    _ends_at(counted, reference, str(OLD), "the restore after the failure")
    ops = read_ops(tmp_path / "ops.txt", counted)
    assert len(ops.ids) > fault + 5, "no restore operations after the fault"

    def case(k: int) -> str:
        install = make_install(tmp_path / f"k{k}", vendor.trees[OLD], OLD, server_url)
        _killed(install, vendor, ops.ident(k), fault=once)
        _expect(run_updater(install, vendor.root_file, "--server", down_server), 6,
                "the run with the server down")
        _ends_at(install, reference, str(OLD), "the recovery of the killed restore")
        _expect(run_updater(install, vendor.root_file), 0, "the run with the server back")
        _ends_at(install, reference, str(NEW), "the run with the server back", finished=True)
        return f"restore killed: recovered exactly {OLD}, then {NEW}"

    _run_cases(_sample(range(fault + 1, len(ops.ids) + 1), 3), case,
               f"kill during the restore after a fault at operation {fault} ({failing})", capsys)


def test_kill_during_recovery(vendor: Vendor, server_url: str, down_server: str,
                              reference: Reference, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """Killed in the middle of the second build; the recovering run is killed too, at each step."""
    first = reference.op_number("replace Program/empty2.cfg")
    counted = make_install(tmp_path / "counted", vendor.trees[OLD], OLD, server_url)
    _killed(counted, vendor, reference.run.ident(first))
    recovering = run_updater(counted, vendor.root_file, "--server", down_server,
                             ops_file=tmp_path / "ops.txt")
    _expect(recovering, 6, "the recovering run with the server down")
    ops = read_ops(tmp_path / "ops.txt", counted)
    assert any(op.startswith("replace") and "opusi.exe" in op for op in ops.ops), ops

    def case(k: int) -> str:
        install = make_install(tmp_path / f"k{k}", vendor.trees[OLD], OLD, server_url)
        _killed(install, vendor, reference.run.ident(first))
        _killed(install, vendor, ops.ident(k), "--server", down_server)
        _expect(run_updater(install, vendor.root_file, "--server", down_server), 6,
                "the third run, server down")
        _ends_at(install, reference, str(OLD), "the third run")
        return f"recovery killed: recovered exactly {OLD}"

    _run_cases(_sample(range(1, len(ops.ids) + 1), 4), case,
               f"kill during recovery (after a kill at operation {first})", capsys)


# --- kill while downloading ----------------------------------------------------------------


def _partial(name: str, at_least: int) -> Callable[[Path], bool]:
    def reached(install: Path) -> bool:
        part = install / WORK_DIR / "downloads" / name
        return part.is_file() and part.stat().st_size >= at_least
    return reached


@pytest.mark.parametrize("moment,reached", [
    ("metadata cached", lambda install: (install / WORK_DIR / "metadata/timestamp.json").is_file()),
    ("first manifest", _partial("1148.json", 1)),
    ("1155.7z.part", _partial("1155.7z.part", 1024)),
    ("1155.7z.part", _partial("1155.7z.part", 20 * 1024)),
])
def test_kill_during_download(vendor: Vendor, server_url: str, reference: Reference, tmp_path: Path,
                              moment: str, reached: Callable[[Path], bool]) -> None:
    relay = TrickleRelay(("127.0.0.1", int(server_url.rsplit(":", 1)[1])))
    install = make_install(tmp_path / "opusi", vendor.trees[OLD], OLD, server_url)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "updater.install.cli",
             *updater_args(install, vendor.root_file, "--server", f"http://127.0.0.1:{relay.port}")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not reached(install) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(getattr(signal, "SIGKILL", signal.SIGTERM))
        assert proc.wait(timeout=10) == KILLED, f"the run ended by itself before '{moment}'"
    finally:
        relay.close()
    assert _state(install, reference) == str(OLD), "a download changed the program files"
    if moment.endswith(".part"):
        full = next((vendor.repo / "targets" / "builds").glob(f"*.{NEW}.7z")).stat().st_size
        part = install / WORK_DIR / "downloads" / moment
        assert 0 < part.stat().st_size < full, "the kill did not hit the middle of the download"
    done = run_updater(install, vendor.root_file)
    _expect(done, 0, f"the run after a kill at '{moment}'")
    _ends_at(install, reference, str(NEW), f"the run after a kill at '{moment}'")
