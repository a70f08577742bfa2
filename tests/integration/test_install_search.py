"""Finding the install when the updater is not told where it is (no ``--install-dir``).

The real updater runs as its own process from a folder of the test's choosing (from source the
search starts at the working directory, as the frozen one starts at its own folder): inside the
install, in a "download folder" after the bootstrap recorded the install on this machine, with
several recorded installs, with a recorded install since deleted, and with nothing anywhere
(error 11 listing every place it looked, in English and German). The window's folder chooser is
tested in ``test_window.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Vendor, make_install
from updater.bootstrap.cli import main as bootstrap_main
from updater.core.i18n import _, tr, use
from updater.core.paths import BUILD_FILE, CONFIG_FILE
from updater.shared import installs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own record folder (the machine's, as the updater sees it)."""
    folder = tmp_path / "state"
    monkeypatch.setenv(installs.STATE_ENV, str(folder))
    return folder


def _check(cwd: Path, vendor: Vendor, *args: str,
           lang: str = "en") -> subprocess.CompletedProcess[str]:
    """``opusi-INSTALLUpdate --check`` started in ``cwd`` without ``--install-dir``."""
    env = {**os.environ, "LANG": "de_DE.UTF-8" if lang == "de" else "C.UTF-8"}
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "updater.install.cli", "--trusted-root", str(vendor.root_file),
         "--check", "--no-gui", "--timeout", "5", *args],
        cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def _record_by_bootstrap(install: Path, vendor: Vendor, capsys: pytest.CaptureFixture[str]) -> None:
    """What opus i does at start (option 53): the bootstrap checks, and records the install."""
    code = bootstrap_main(["check", "--install-dir", str(install), "--trusted-root",
                           str(vendor.root_file)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert json.loads(out)["pending"] == [1148, 1150, 1152, 1155]


def test_found_next_to_the_updater(install: Path, vendor: Vendor, state: Path) -> None:
    """Started inside the install (a folder below it): found, and recorded for next time."""
    done = _check(install / "Program", vendor)
    assert done.returncode == 0, done.stderr
    assert "Build 1147 installed; pending builds: 1148, 1150, 1152, 1155" in done.stdout
    assert installs.recorded() == [install.resolve()]


def test_found_where_the_bootstrap_recorded_it(install: Path, vendor: Vendor, state: Path,
                                               tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Downloaded from the customer area and started in the download folder: the install the
    bootstrap recorded on this machine is the one."""
    _record_by_bootstrap(install, vendor, capsys)
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    done = _check(downloads, vendor, "-v")
    assert done.returncode == 0, done.stderr
    assert "pending builds: 1148, 1150, 1152, 1155" in done.stdout
    assert f"install found where this machine recorded it: {install}" in done.stderr


def test_several_recorded_installs_are_not_guessed(install: Path, vendor: Vendor, state: Path,
                                                   tmp_path: Path, server_url: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Two installs recorded, one more recorded and deleted since: headless, error 11 names
    every place looked (the download folder and those above it, each recorded install and
    why it was not taken), and says what to do."""
    second = make_install(tmp_path / "zweite", vendor.trees[1150], 1150, server_url)
    gone = make_install(tmp_path / "alt", vendor.trees[1147], 1147, server_url)
    for each in (install, second, gone):
        _record_by_bootstrap(each, vendor, capsys) if each is not second else installs.record(
            each, "test")
    shutil.rmtree(gone)
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    done = _check(downloads, vendor)
    assert done.returncode == 11, done.stdout
    assert done.stderr.startswith("Error 11: installation or configuration not found"), done.stderr
    for line in (f"- {downloads}: no BUILD file in it", f"- {tmp_path}: no BUILD file in it",
                 f"- {gone}: recorded on this machine, but the folder does not exist",
                 f"- {install}: recorded on this machine; one of several, choose one",
                 f"- {second}: recorded on this machine; one of several, choose one",
                 "pass --install-dir"):
        assert line in done.stderr, (line, done.stderr)


def test_nothing_anywhere_in_german(vendor: Vendor, state: Path, tmp_path: Path) -> None:
    """No install near, none recorded: error 11 in German, listing where it looked."""
    folder = tmp_path / "Downloads" / "opus"
    folder.mkdir(parents=True)
    (folder / BUILD_FILE).write_text("kein Build\n")
    done = _check(folder, vendor, lang="de")
    assert done.returncode == 11
    assert done.stderr.startswith("Fehler 11:"), done.stderr
    assert "Es wurde keine opus i-Installation gefunden. Gesucht wurde hier:" in done.stderr
    assert f"- {folder}: seine Datei BUILD enthält keine Buildnummer" in done.stderr
    assert f"- {folder.parent}: keine Datei BUILD darin" in done.stderr
    assert not state.exists() or not list((state / "installs").glob("*.json"))


def test_what_is_an_install(tmp_path: Path, server_url: str, vendor: Vendor) -> None:
    """The rule the chooser and the search share: BUILD with a number, and update.ini."""
    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, server_url)
    assert installs.install_problem(install) is None
    cases = {
        tmp_path / "nirgends": "the folder does not exist",
        vendor.trees[1147]: "no BUILD file in it",
    }
    for folder, reason in cases.items():
        assert installs.install_problem(folder) == reason
    (install / CONFIG_FILE).unlink()
    assert installs.install_problem(install) == f"no {CONFIG_FILE} in it"
    use("de")
    try:
        assert tr(installs.install_problem(install)) == f"keine {CONFIG_FILE} darin"
        assert tr(_("{folder} is not an opus i installation: {reason}.", folder=install,
                    reason=installs.install_problem(install))).startswith(f"{install} ist keine")
    finally:
        use("en")


def test_recording_never_fails_a_run(install: Path, vendor: Vendor, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The record folder cannot be made (a file in its way): the bootstrap's check still
    answers, with a warning in the log; unreadable records are skipped."""
    blocker = tmp_path / "state"
    blocker.write_text("a file where the folder should be")
    monkeypatch.setenv(installs.STATE_ENV, str(blocker))
    code = bootstrap_main(["check", "--install-dir", str(install), "--trusted-root",
                           str(vendor.root_file)])
    assert code == 0, capsys.readouterr()
    assert installs.recorded() == []
    good = tmp_path / "good"
    monkeypatch.setenv(installs.STATE_ENV, str(good))
    installs.record(install, "test")
    (good / "installs" / "broken.json").write_text("{not json")
    assert installs.recorded() == [install]
