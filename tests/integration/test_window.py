"""The updater's window, for real: Tk on an Xvfb display, driven by keys as an admin would.

The updater (from source) runs as its own process with ``--gui`` (or with no terminal, as
when started from the desktop), in German (``LANG=de_DE.UTF-8``). The test waits for what the
log file says the window shows ("window: showing ..."), takes a screenshot of the window
(Pillow, from the X display) into ``build/screenshots/``, and presses keys with xdotool: Return
is the screen's main button, Escape cancels. The test hook's pause (``OPUSI_PAUSE_AT``) holds a
run inside a phase for the screenshot, or for a cancel while builds are applied.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import (
    REVOKED,
    UNREGISTERED,
    Frozen,
    Vendor,
    data_snapshot,
    make_install,
    program_files,
    run_logs,
    vendor_files,
)
from tests.support.crash import hook_env, read_ops, run_updater
from tests.support.xvfb import Display

ROOT = Path(__file__).resolve().parents[2]
TITLE = "^opus i"  # the window title in either language






def _wait(what: str, test: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not test():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


class Window:
    """The updater with its window, as a process on the display."""

    def __init__(self, display: Display, install: Path, vendor: Vendor, *args: str,
                 env: dict[str, str] | None = None) -> None:
        self.display, self.install = display, install
        environment = {**hook_env(), "DISPLAY": display.name, "LANG": "de_DE.UTF-8",
                       **(env or {})}
        for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
            environment.pop(name, None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "updater.install.cli", "--install-dir", str(install),
             "--trusted-root", str(vendor.root_file), "--timeout", "5", *args],
            cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.id = ""

    def shows(self, what: str, seconds: float = 60) -> None:
        _wait(f"the window to show {what}", lambda: f"window: showing {what}" in run_logs(
            self.install) or self.process.poll() is not None, seconds)
        assert self.process.poll() is None, self.process.communicate()
        if not self.id:
            self.id = self.display.find(TITLE)
        time.sleep(0.4)  # the next poll of the window draws it

    def screenshot(self, name: str) -> Path:
        return self.display.screenshot(self.id, name)

    def key(self, key: str) -> None:
        self.display.key(self.id, key)

    def ends(self, seconds: float = 60) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=seconds)
        return self.process.returncode, out, err


def _counted(vendor: Vendor, server_url: str, tmp_path: Path) -> list[tuple[str, str]]:
    """A clean text-mode run's operations: (identity, "kind path")."""
    install = make_install(tmp_path / "counted", vendor.trees[1147], 1147, server_url)
    done = run_updater(install, vendor.root_file, ops_file=tmp_path / "ops", timeout=120)
    assert done.returncode == 0, done.stderr
    run = read_ops(tmp_path / "ops", install)
    return list(zip(run.ids, run.ops, strict=True))


def _first(ops: list[tuple[str, str]], lane: str, kind: str) -> str:
    return next(i for i, op in ops if i.startswith(lane) and op.startswith(kind))


def test_confirm_phases_success(display: Display, vendor: Vendor, server_url: str,
                                tmp_path: Path) -> None:
    """Confirm, download, backup, apply, success: each screen reached and photographed."""
    ops = _counted(vendor, server_url, tmp_path)
    pauses = [_first(ops, "download-", "write"), _first(ops, "backup-1", "write"),
              next(i for i, op in ops if i.startswith("main#") and op.startswith("replace ")
                   and "SecuMax2" not in op and "Backups" not in op)]
    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, server_url)
    data = data_snapshot(install)
    hold = tmp_path / "hold"
    hold.mkdir()
    window = Window(display, install, vendor, "--gui",
                    env={"OPUSI_PAUSE_AT": ",".join(pauses) + f"={hold}"})
    window.shows("confirm")
    window.screenshot("1-bestaetigen")
    window.key("Return")
    for ident, name in zip(pauses, ("2-download", "3-sicherung", "4-einspielen"), strict=True):
        marker = ident.replace("#", "_")
        _wait(f"the pause at {ident}", lambda m=marker: (hold / f"{m}.paused").exists())
        time.sleep(0.5)
        window.screenshot(name)
        (hold / f"{marker}.go").touch()
    window.shows("success")
    window.screenshot("5-fertig")
    window.key("Return")
    code, out, err = window.ends()
    assert code == 0, err
    assert program_files(install) == vendor_files(vendor.trees[1155], 1155)
    assert data_snapshot(install) == data
    log = run_logs(install)
    for screen in ("confirm", "progress: Downloading the builds", "progress: Making the backup",
                   "progress: Applying the builds", "success"):
        assert f"window: showing {screen}" in log, screen


def test_cancel_while_applying_restores_exactly(display: Display, vendor: Vendor,
                                                server_url: str, tmp_path: Path) -> None:
    """Escape while a build is being applied: the backup is restored, exactly; the window
    says so with the error's number (the exit code is Ctrl+C's: 16, restored)."""
    ops = _counted(vendor, server_url, tmp_path)
    replaces = [i for i, op in ops if i.startswith("main#") and op.startswith("replace ")
                and "SecuMax2" not in op and "Backups" not in op]
    pause = replaces[len(replaces) // 2]
    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, server_url)
    before, data = program_files(install), data_snapshot(install)
    hold = tmp_path / "hold"
    hold.mkdir()
    window = Window(display, install, vendor, "--gui", "--yes",
                    env={"OPUSI_PAUSE_AT": f"{pause}={hold}"})
    marker = pause.replace("#", "_")
    _wait("the pause while applying", lambda: (hold / f"{marker}.paused").exists())
    window.shows("progress: Applying the builds")
    window.key("Escape")
    _wait("the cancel", lambda: "window: the administrator cancelled" in run_logs(install))
    (hold / f"{marker}.go").touch()
    window.shows("error 16")
    window.screenshot("6-abgebrochen-wiederhergestellt")
    window.key("Return")
    code, out, err = window.ends()
    assert code == 16, err
    assert program_files(install) == before
    assert data_snapshot(install) == data


@pytest.mark.parametrize("license_number,url,code,shot", [
    ("", None, 1, "7-fehler-1"),
    (REVOKED, None, 2, "7-fehler-2"),
    ("DEMO-1147", "http://127.0.0.1:9", 6, "8-fehler-6"),
    (UNREGISTERED, None, 7, "8-fehler-7"),
])
def test_errors_shown_in_the_window(display: Display, vendor: Vendor, server_url: str,
                                    tmp_path: Path, license_number: str, url: str | None,
                                    code: int, shot: str) -> None:
    """Started with no terminal (as from the desktop): the window opens by itself and shows
    the error with its number, the vendor's words, and what the admin can do."""
    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, url or server_url,
                           license_number=license_number)
    window = Window(display, install, vendor)  # stdin is not a terminal: the window
    window.shows(f"error {code}")
    window.screenshot(shot)
    window.key("Return")
    got, out, err = window.ends()
    assert got == code
    assert err.startswith(f"Fehler {code}:"), err


@pytest.mark.frozen
def test_the_frozen_updater_shows_its_window(display: Display, frozen: Frozen,
                                             tmp_path: Path) -> None:
    """The frozen program (Tk inside it), an empty environment plus DISPLAY and LANG: the
    window opens, shows the update through to its end, and closes on Return."""
    install = make_install(tmp_path / "opusi", frozen.vendor.trees[1147], 1147, frozen.url)
    process = subprocess.Popen(
        ["env", "-i", f"DISPLAY={display.name}", "LANG=de_DE.UTF-8",
         f"OPUSI_STATE_DIR={os.environ['OPUSI_STATE_DIR']}", str(frozen.updater),
         "--install-dir", str(install), "--gui", "--yes"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait("the frozen updater's window", lambda: "window: showing success" in run_logs(install)
          or process.poll() is not None, 180)
    assert process.poll() is None, process.communicate()
    window = display.find(TITLE)
    time.sleep(0.4)
    display.screenshot(window, "frozen-fertig")
    display.key(window, "Return")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert program_files(install) == vendor_files(frozen.vendor.trees[1155], 1155)


def test_choose_the_install_in_the_window(display: Display, vendor: Vendor, server_url: str,
                                          tmp_path: Path) -> None:
    """Started from a download folder, nothing recorded on this machine: the window asks for
    the program folder; a folder that is no install is refused with the reason; the install
    chosen is updated."""
    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, server_url)
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    said = tmp_path / "stderr.txt"
    env = {**os.environ, "DISPLAY": display.name, "LANG": "de_DE.UTF-8",
           "OPUSI_STATE_DIR": str(tmp_path / "state")}
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        env.pop(name, None)
    with said.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "updater.install.cli", "--gui", "-v", "--trusted-root",
             str(vendor.root_file), "--timeout", "5"],
            cwd=downloads, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=stderr, text=True)

    def shows(what: str) -> str:
        _wait(what, lambda: f"window: showing {what}" in said.read_text("utf-8")
              or process.poll() is not None)
        assert process.poll() is None, said.read_text("utf-8")
        time.sleep(0.4)
        return display.find(TITLE)

    def choose(window: str, folder: Path) -> None:
        display.key(window, "Return")  # "Ordner wählen ..."
        dialog = display.find("^Wo ist opus i installiert")
        display.type(dialog, str(folder))
        display.key(dialog, "Return")  # takes it, or (Tk) first goes into it
        time.sleep(0.5)
        if display.xdotool("search", "--onlyvisible", "--name", "^Wo ist opus i installiert"):
            display.key(dialog, "Return")

    window = shows("choose")
    display.screenshot(window, "9-installation-waehlen")
    choose(window, downloads)
    window = shows("choose: refused")
    display.screenshot(window, "10-ordner-abgelehnt")
    assert f"{downloads} refused: no BUILD file in it" in said.read_text("utf-8")
    choose(window, install)
    window = shows("confirm")
    display.key(window, "Return")
    window = shows("success")
    display.key(window, "Return")
    process.communicate(timeout=60)
    assert process.returncode == 0, said.read_text("utf-8")
    assert program_files(install) == vendor_files(vendor.trees[1155], 1155)
