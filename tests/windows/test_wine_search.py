"""The Windows .exe finds the install it is not inside: recorded in ProgramData, or chosen.

An admin downloads ``opusi-INSTALLUpdate.exe`` and starts it from the download folder. The
bootstrap recorded the install when opus i checked for updates (``%ProgramData%\\opus i\\Update\\
installs``, in Wine's prefix here); the updater finds it there. With nothing recorded, its
window (the task dialog) asks for the folder with the system's folder chooser.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_install, program_files, vendor_files
from tests.support.wine import (
    PREFIX,
    add_local_drive,
    kill_windows_processes,
    remove_drive,
    run_windows,
    stop_wineserver,
    win_path,
    wine_env,
)
from tests.support.xvfb import Display
from tests.windows.conftest import NEW, OLD, Windows

pytestmark = [pytest.mark.windows]
RECORDS = PREFIX / "drive_c" / "ProgramData" / "opus i" / "Update" / "installs"


@pytest.fixture()
def no_records() -> Iterator[None]:
    """The prefix's ProgramData without install records, before and after the test."""
    shutil.rmtree(RECORDS, ignore_errors=True)
    yield
    shutil.rmtree(RECORDS, ignore_errors=True)


def test_the_install_the_bootstrap_recorded(windows: Windows, tmp_path: Path,
                                            no_records: None) -> None:
    """``opusi-update.exe check`` records the install in ProgramData; the updater started
    from a download folder, without ``--install-dir``, finds it there. With the record gone,
    error 11 lists the places it looked.

    Windows API: the ProgramData folder (``%PROGRAMDATA%``), GetModuleFileNameW (the frozen
    program's own folder, where the search starts)."""
    install = make_install(tmp_path / "opusi", windows.vendor.trees[OLD], OLD, windows.url)
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    updater = downloads / windows.updater.name
    shutil.copy2(windows.updater, updater)
    check = run_windows(windows.bootstrap, "check", "--install-dir", win_path(install),
                        "--trusted-root", win_path(windows.vendor.root_file))
    assert check.returncode == 0, check.stdout + check.stderr
    records = [json.loads(p.read_text("utf-8")) for p in RECORDS.glob("*.json")]
    assert [r["path"] for r in records] == [win_path(install)], records

    done = run_windows(updater, "--trusted-root", win_path(windows.vendor.root_file),
                       "--check", "--no-gui", "--timeout", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Build {OLD} installed; pending builds: 1148, 1150, 1152, {NEW}" in done.stdout

    shutil.rmtree(install)
    done = run_windows(updater, "--trusted-root", win_path(windows.vendor.root_file),
                       "--check", "--no-gui", "--timeout", "5")
    assert done.returncode == 11, done.stdout + done.stderr
    for line in (f"- {win_path(downloads)}: no BUILD file in it",
                 f"- {win_path(install)}: recorded on this machine, but the folder does not "
                 "exist"):
        assert line in done.stderr, (line, done.stderr)


def test_the_folder_chooser(windows: Windows, display: Display, tmp_path: Path,
                            no_records: None) -> None:
    """Two installs recorded on this machine: the updater does not guess; its window (the task
    dialog) asks, and "Ordner wählen ..." opens the system's folder chooser at the install
    recorded last. The admin first picks the download folder (refused: no BUILD in it, the
    page says so), then the install: the update runs to its end.

    Windows API: SHBrowseForFolderW (BIF_NEWDIALOGSTYLE, BFFM_SETSELECTIONW from its
    callback), SHGetPathFromIDListEx, TaskDialogIndirect (TDM_NAVIGATE_PAGE).

    Wine differs from Windows: its chooser returns the folder selected in the tree, not a path
    typed into the edit box (BIF_EDITBOX), so the test moves in the tree with the arrow keys;
    and it opens reliably at a folder only near a drive's root (deeper, it stopped at the
    drive or at another folder), so the test's folders are on a drive of their own, O:.
    """
    drive = add_local_drive("o", tmp_path)
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    other = make_install(tmp_path / "zweite", windows.vendor.trees[OLD], OLD, windows.url)
    install = make_install(tmp_path / "opusi", windows.vendor.trees[OLD], OLD, windows.url)
    for when, each in (("2026-12-01T08:00:00", other), ("2026-12-02T08:00:00", install)):
        RECORDS.mkdir(parents=True, exist_ok=True)
        (RECORDS / f"{each.name}.json").write_text(json.dumps(
            {"path": f"{drive}\\{each.name}", "recorded": when, "by": "test"}), "utf-8")
    updater = downloads / windows.updater.name
    shutil.copy2(windows.updater, updater)
    stop_wineserver()  # a fresh Wine session with this display (see test_wine_window.py)
    env = {**wine_env(), "DISPLAY": display.name, "LANG": "de_DE.UTF-8"}
    # stdout and stderr are pipes: under Wine 8, a regular file as a standard handle makes
    # the frozen Python's start fail ("init_sys_streams: ... WinError 6"); Windows takes one
    process = subprocess.Popen(
        ["wine", str(updater), "--trusted-root", win_path(windows.vendor.root_file),
         "--gui", "--yes", "-v"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        text=True, errors="replace")
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(process.stdout or ()), daemon=True)
    reader.start()

    def shows(what: str) -> None:
        deadline = time.monotonic() + 120
        while not any(f"window: showing {what}" in line for line in said):
            assert process.poll() is None, "".join(said)
            assert time.monotonic() < deadline, "".join(said)
            time.sleep(0.2)
        time.sleep(1.0)

    def choose(window: str, key: str, shot: str) -> None:
        display.key(window, "Return")  # "Ordner wählen ..."
        chooser = display.find("^Verzeichnis auswählen")  # Wine's German caption
        time.sleep(3.0)  # it fills the tree down to the folder it opens at
        display.screenshot(chooser, shot)
        display.key(chooser, key)  # from the folder it opened at to its neighbour
        display.key(chooser, "Return")

    try:
        shows("choose")
        window = display.find("^opus i")
        display.screenshot(window, "windows-3-installation-waehlen")
        choose(window, "Up", "windows-ordnerauswahl-1")  # opened at opusi; Up is Downloads
        shows("choose: refused")
        display.screenshot(window, "windows-4-ordner-abgelehnt")
        choose(window, "Down", "windows-ordnerauswahl-2")  # opened at Downloads; Down is opusi
        shows("success")
        display.screenshot(window, "windows-5-fertig")
        display.key(window, "Return")
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            kill_windows_processes(win_path(updater))
        remove_drive("o")
    log = "".join(said)
    assert f"window: {drive}\\Downloads refused: no BUILD file in it" in log, log
    assert f"window: the administrator chose {drive}\\opusi" in log, log
    assert process.returncode == 0, log
    assert program_files(install) == vendor_files(windows.vendor.trees[NEW], NEW)
    assert program_files(other) == vendor_files(windows.vendor.trees[OLD], OLD)
