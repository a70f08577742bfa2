"""Windows processes around the update: the bootstrap's detached start, the host it waits for,
and a program file another Windows process holds open.

The host (opus i) and the virus scanner are played by ``holdfile.exe`` (tests/windows/holdfile.c),
a real Windows process that holds one program file open for reading without write or delete
sharing, as a running program or a scanner does, until the test releases it.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import data_snapshot, make_install, program_files, run_logs, vendor_files
from tests.support.wine import HeldFile, run_windows, win_path, wine_env
from tests.windows.conftest import NEW, OLD, Windows, update
from updater.core.paths import LOG_DIR
from updater.install.history import HISTORY_FILE

pytestmark = [pytest.mark.windows]
HELD = "opusi.exe"  # changed by build 1148: the update must replace it


def _wait_for(what: str, test: object, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not test():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)




def _history(install: Path) -> str:
    path = install / LOG_DIR / HISTORY_FILE
    return path.read_text("utf-8") if path.exists() else ""


def _start(windows: Windows, *args: str) -> tuple[int, dict[str, object]]:
    """Run ``opusi-update.exe`` with ``args``; return its exit code and its JSON line.

    Reads the one line and waits for the process to exit, not for the end of its output:
    Wine hands the Unix ends of the bootstrap's pipes on to the detached updater it starts
    (Windows does not: DETACHED_PROCESS, NUL as standard handles, no inherited handles), so
    the output ends only when the updater does.
    """
    process = subprocess.Popen(["wine", str(windows.bootstrap), *args], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               env=wine_env(), text=True, errors="replace")
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        code = process.wait(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()  # type: ignore[union-attr]
    return code, json.loads(line)


def test_bootstrap_check_then_detached_start_waits_for_the_host(
        windows: Windows, holdfile: Path, tmp_path: Path) -> None:
    """``opusi-update.exe check`` reports the pending builds; ``start`` downloads the signed
    updater, starts it detached and returns; the updater waits until the host (a Windows
    process holding ``opusi.exe``) exits, then updates to the newest build.

    Windows API: CreateProcessW with DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP (the start),
    OpenProcess(SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION) and WaitForSingleObject (the
    wait for the host's pid)."""
    install = make_install(tmp_path / "opusi", windows.vendor.trees[OLD], OLD, windows.url)
    data = data_snapshot(install)
    root = win_path(windows.vendor.root_file)
    check = run_windows(windows.bootstrap, "check", "--install-dir", win_path(install),
                        "--trusted-root", root)
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)
    assert report["status"] == "pending" and report["installed"] == OLD, report
    assert report["target"] == NEW and report["updater_available"] is True, report

    with HeldFile(holdfile, install / HELD, tmp_path) as host:
        code, started = _start(windows, "start", "--admin", "--host-pid", str(host.pid),
                               "--install-dir", win_path(install), "--trusted-root", root,
                               "--download-dir", win_path(tmp_path / "download"))
        assert code == 0, started
        assert started["status"] == "started" and started["log"] is None, started
        assert (tmp_path / "download" / "opusi-INSTALLUpdate.exe").read_bytes() \
            == windows.updater.read_bytes()
        _wait_for("the updater to wait for the host",
                  lambda: f"process {host.pid}" in run_logs(install), 120)
        time.sleep(1.0)  # still waiting: nothing changed while the host runs
        assert program_files(install) == vendor_files(windows.vendor.trees[OLD], OLD)
        assert _history(install) == ""
    _wait_for("the update to finish", lambda: _history(install))
    assert f"build {OLD} -> {NEW}" in _history(install), _history(install)
    assert program_files(install) == vendor_files(windows.vendor.trees[NEW], NEW)
    assert data_snapshot(install) == data


def test_host_that_never_exits_is_error_19(windows: Windows, holdfile: Path,
                                          tmp_path: Path) -> None:
    """``--wait-pid`` of a Windows process that keeps running: error 19, nothing changed.

    Windows API: OpenProcess and WaitForSingleObject(0) on a running process (WAIT_TIMEOUT)."""
    install = make_install(tmp_path / "opusi", windows.vendor.trees[OLD], OLD, windows.url)
    before = program_files(install)
    with HeldFile(holdfile, install / HELD, tmp_path) as host:
        code, output = update(windows, install, "--wait-pid", str(host.pid),
                              "--wait-timeout", "3")
    assert code == 19, output
    assert program_files(install) == before


def test_held_file_released_within_the_retry_window(windows: Windows, holdfile: Path,
                                                    tmp_path: Path) -> None:
    """A program file held by another process when the update wants to replace it: the
    updater keeps trying; released within its retry window, the update completes.

    Windows API: MoveFileExW(MOVEFILE_REPLACE_EXISTING) onto a file open without
    FILE_SHARE_DELETE fails with ERROR_ACCESS_DENIED (5) under Wine, as on Windows; the
    updater's retry (fileops._retrying) takes that as "in use"."""
    install = make_install(tmp_path / "opusi", windows.vendor.trees[OLD], OLD, windows.url)
    data = data_snapshot(install)
    with HeldFile(holdfile, install / HELD, tmp_path) as scanner:
        running = subprocess.Popen(
            ["wine", str(windows.updater), "--install-dir", win_path(install), "--trusted-root",
             win_path(windows.vendor.root_file), "--yes", "--progress", "none"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=wine_env(), text=True, errors="replace")
        try:
            _wait_for("the updater to find the file in use",
                      lambda: "is in use by another program" in run_logs(install), 120)
            time.sleep(1.0)
            scanner.release()
            output = running.communicate(timeout=300)[0]
        finally:
            if running.poll() is None:
                running.kill()
    assert running.returncode == 0, output
    assert program_files(install) == vendor_files(windows.vendor.trees[NEW], NEW)
    assert data_snapshot(install) == data


def test_held_file_never_released_restores_exactly(windows: Windows, holdfile: Path,
                                                   tmp_path: Path) -> None:
    """Held for longer than the retry window: the update stops, the install is restored from
    its backup exactly, and the exit code is 16 (update failed, old build restored).

    Windows API: as above, then the restore's MoveFileExW/DeleteFileW of the files already
    replaced (the held one was never changed)."""
    install = make_install(tmp_path / "opusi", windows.vendor.trees[OLD], OLD, windows.url)
    before, data = program_files(install), data_snapshot(install)
    with HeldFile(holdfile, install / HELD, tmp_path):
        code, output = update(windows, install)
    assert code == 16, output
    assert f"in place ({win_path(install / HELD)})" in output, output  # the file, not staging
    assert program_files(install) == before
    assert data_snapshot(install) == data
