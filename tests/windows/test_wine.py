"""The Windows programs, built from the project's spec, run as Windows programs under Wine.

The update itself, its errors, ``--offline`` and ``--restore`` (the programs and the server are
``conftest.py``'s).

Each test names the Windows API its code path uses (as the product calls it; Wine implements
it). What Wine cannot show about real Windows is listed in the README ("confirmed under Wine"
versus "only real Windows can confirm").
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import (
    REVOKED,
    UNREGISTERED,
    data_snapshot,
    make_install,
    program_files,
    vendor_files,
)
from tests.support.wine import german_locale, run_windows, win_path
from tests.windows.conftest import NEW, OLD, Windows
from tests.windows.conftest import update as _update
from updater.core.paths import BACKUP_DIR, LOG_DIR
from updater.install.backup.store import BACKUP_NAME

pytestmark = [pytest.mark.windows]


def test_version_and_exit_code(windows: Windows) -> None:
    """The .exe starts without Python on the machine; ``--version`` exits 0.

    Windows API: the PyInstaller bootloader (CreateProcessW of itself, GetModuleFileNameW)."""
    done = run_windows(windows.updater, "--version")
    assert done.returncode == 0, done.stderr
    assert "opusi-INSTALLUpdate" in done.stdout + done.stderr


def test_full_update_then_up_to_date(windows: Windows, tmp_path: Path) -> None:
    """1147 -> 1155: program files byte for byte, customer data unchanged; then up to date.

    Windows API: CreateFileW/WriteFile/FlushFileBuffers (open, write, os.fsync), MoveFileExW
    with MOVEFILE_REPLACE_EXISTING (os.replace), DeleteFileW, RemoveDirectoryW, LockFileEx
    (msvcrt.locking through filelock), GetDiskFreeSpaceExW (shutil.disk_usage), GetDriveTypeW
    (network-drive check), Winsock (the download)."""
    install = make_install(tmp_path / "opusi", windows.vendor.trees[OLD], OLD, windows.url)
    data = data_snapshot(install)
    code, output = _update(windows, install)
    assert code == 0, output
    assert f"Updated from build {OLD} to {NEW}" in output
    assert program_files(install) == vendor_files(windows.vendor.trees[NEW], NEW)
    assert data_snapshot(install) == data
    logs = "".join(p.read_text("utf-8") for p in (install / LOG_DIR).glob("update-*.log"))
    assert "Deflate by isal" in logs, "the Windows .exe should carry ISA-L"
    code, output = _update(windows, install)
    assert code == 0, output
    assert "up to date" in output
    assert program_files(install) == vendor_files(windows.vendor.trees[NEW], NEW)


@pytest.mark.parametrize("license_number,code", [
    ("", 1), ("not a license!", 1), (REVOKED, 2), (UNREGISTERED, 7),
])
def test_license_errors_keep_their_codes(windows: Windows, tmp_path: Path, license_number: str,
                                         code: int) -> None:
    """Errors 1, 2 and 7 as the exit code of the Windows process; nothing changed.

    Windows API: ExitProcess with the code (through the bootloader's own exit)."""
    install = make_install(tmp_path / "opusi", windows.vendor.trees[OLD], OLD, windows.url,
                           license_number=license_number)
    before = program_files(install)
    got, output = _update(windows, install)
    assert got == code, output
    assert f"Error {code}" in output
    assert program_files(install) == before


def test_no_connection_is_error_6(windows: Windows, tmp_path: Path) -> None:
    """A server that refuses the connection: error 6, nothing changed.

    Windows API: Winsock connect() refused (WSAECONNREFUSED)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: the connection is refused
        down = f"http://127.0.0.1:{sock.getsockname()[1]}"
        install = make_install(tmp_path / "opusi", windows.vendor.trees[OLD], OLD, down)
        before = program_files(install)
        code, output = _update(windows, install)
    assert code == 6, output
    assert program_files(install) == before


def test_offline_update_from_a_folder(windows: Windows, tmp_path: Path) -> None:
    """``--offline`` with the repository on a local folder, verified as online.

    Windows API: file reads through Z: (the folder fetcher's paths as Windows paths)."""
    install = make_install(tmp_path / "opusi", windows.vendor.trees[OLD], OLD, windows.url)
    code, output = _update(windows, install, "--offline", win_path(windows.vendor.repo))
    assert code == 0, output
    assert program_files(install) == vendor_files(windows.vendor.trees[NEW], NEW)


def test_restore_by_hand(windows: Windows, tmp_path: Path) -> None:
    """After an update, ``--restore`` brings the install back to the backup's build exactly.

    Windows API: as the update, and ZIP reading through CreateFileW/ReadFile."""
    install = make_install(tmp_path / "opusi", windows.vendor.trees[OLD], OLD, windows.url)
    old = program_files(install)
    code, output = _update(windows, install)
    assert code == 0, output
    [backup] = [p for p in (install / BACKUP_DIR).iterdir() if BACKUP_NAME.match(p.name)]
    code, output = _update(windows, install, "--restore", win_path(backup))
    assert code == 0, output
    assert program_files(install) == old


def test_german_from_the_windows_ui_language(windows: Windows, tmp_path: Path) -> None:
    """A German Windows: the error in German with the vendor's words for error 7.

    Windows API: GetUserDefaultUILanguage (Wine derives it from LANG=de_DE.UTF-8: LANGID
    0x0407, primary language German), read by updater.shared.system.ui_language; the compiled
    German catalog inside the .exe."""
    if not german_locale():
        pytest.skip("no locale de_DE.UTF-8 on this machine (scripts/windows generates it as root)")
    install = make_install(tmp_path / "opusi", windows.vendor.trees[OLD], OLD, windows.url,
                           license_number=UNREGISTERED)
    got, output = _update(windows, install, env={"LANG": "de_DE.UTF-8"})
    assert got == 7, output
    assert "Fehler 7: Die Registrierung des Lizenznehmers fehlt." in output, output
    assert "Bitten Sie den Hersteller, Ihre Lizenz" in output, output
