"""The Windows .exe shows its window: the system's task dialog, under Wine on an Xvfb display.

The updater runs as Windows runs it from the host (``--gui``), in German (LANG, from which
Wine derives the UI language), with a display; keys as an admin would press them: Return is
the page's default button (start, close). Screenshots go to ``build/screenshots/``.

Wine draws the task dialog with its own comctl32: the layout and the buttons' look differ from
Windows' (only real Windows shows the real look); the pages, texts, progress and buttons are
the product's.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import (
    UNREGISTERED,
    data_snapshot,
    make_install,
    program_files,
    run_logs,
    vendor_files,
)
from tests.support.wine import kill_windows_processes, stop_wineserver, win_path, wine_env
from tests.support.xvfb import Display
from tests.windows.conftest import NEW, OLD, Windows

pytestmark = [pytest.mark.windows]






def _shows(install: Path, process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 120
    while f"window: showing {what}" not in run_logs(install):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"the window did not show {what}:\n{run_logs(install)}"
        time.sleep(0.2)
    time.sleep(1.0)  # drawn at the dialog's next timer tick


def _start(windows: Windows, display: Display, install: Path,
           *args: str) -> subprocess.Popen[str]:
    """The .exe with ``--gui`` on ``install``, in German, on the display."""
    # Wine's desktop belongs to the wineserver's session: one started by an earlier test
    # without a display has no screen, and a dialog there ends at once (the updater then goes
    # on without its window, as on a machine without a desktop). A fresh session gets one.
    stop_wineserver()
    env = {**wine_env(), "DISPLAY": display.name, "LANG": "de_DE.UTF-8"}
    return subprocess.Popen(
        ["wine", str(windows.updater), "--install-dir", win_path(install), "--trusted-root",
         win_path(windows.vendor.root_file), "--gui", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        text=True, errors="replace")


def _walk(display: Display, install: Path, process: subprocess.Popen[str],
          pages: list[tuple[str, str]]) -> tuple[int, str]:
    """Wait for each page, photograph it, press Return (its default button); return the exit
    code and stderr (the process killed if it hangs)."""
    try:
        for page, shot in pages:
            _shows(install, process, page)
            window = display.find("^opus i")
            display.screenshot(window, shot)
            display.key(window, "Return")
        _out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            kill_windows_processes(win_path(install))
    return process.returncode, err


def test_the_exe_shows_its_window_and_updates(windows: Windows, display: Display,
                                              tmp_path: Path) -> None:
    """Confirm page, start (Return), the result page, close (Return): exit 0, build 1155.

    Windows API: TaskDialogIndirect with TDF_CALLBACK_TIMER, TDM_NAVIGATE_PAGE,
    TDM_SET_PROGRESS_BAR_POS, TDM_SET_ELEMENT_TEXT; GetUserDefaultUILanguage."""
    install = make_install(tmp_path / "opusi", windows.vendor.trees[OLD], OLD, windows.url)
    data = data_snapshot(install)
    process = _start(windows, display, install)
    code, err = _walk(display, install, process,
                      [("confirm", "windows-1-bestaetigen"), ("success", "windows-2-fertig")])
    assert code == 0, err
    assert program_files(install) == vendor_files(windows.vendor.trees[NEW], NEW)
    assert data_snapshot(install) == data


def test_the_exe_shows_an_error_page(windows: Windows, display: Display, tmp_path: Path) -> None:
    """Error 7 (license not registered) on the task dialog's result page: the error icon, the
    number with the vendor's words, what to do, the log file (expanded information), "Protokoll
    öffnen" and "Schließen"; closed with Return: exit code 7, nothing changed.

    Windows API: TaskDialogIndirect (TD_ERROR_ICON, pszExpandedInformation, custom buttons)."""
    install = make_install(tmp_path / "opusi", windows.vendor.trees[OLD], OLD, windows.url,
                           license_number=UNREGISTERED)
    before = program_files(install)
    process = _start(windows, display, install, "--yes")
    code, err = _walk(display, install, process, [("error 7", "windows-6-fehler-7")])
    assert code == 7, err
    assert err.startswith("Fehler 7: Die Registrierung des Lizenznehmers fehlt."), err
    assert program_files(install) == before
