"""The Windows programs, built from the project's spec, run as Windows programs under Wine.

The session builds ``opusi-INSTALLUpdate.exe`` and ``opusi-update.exe`` with ``scripts/windows``
(a Windows CPython under Wine, PyInstaller for Windows), with the root of a vendor repository
made for these tests built in, publishes the .exe for ``windows-x86_64`` and serves the
repository with the project's server on 127.0.0.1. The install is a real tree on this machine,
reached by the Windows program through Wine's ``Z:`` drive.

Each test names the Windows API its code path uses (as the product calls it; Wine implements
it). What Wine cannot show about real Windows is listed in the README ("confirmed under Wine"
versus "only real Windows can confirm").
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import (
    REVOKED,
    UNREGISTERED,
    Vendor,
    data_snapshot,
    make_install,
    make_vendor,
    program_files,
    vendor_files,
)
from tests.support.wine import build_windows, run_windows, stop_wineserver, win_path, wine
from updater.core.paths import BACKUP_DIR, LOG_DIR
from updater.install.backup.store import BACKUP_NAME
from updater.publisher import publish
from updater.publisher.serving import Server

pytestmark = [pytest.mark.windows]
OLD, NEW = 1147, 1155


@dataclass(frozen=True)
class Windows:
    """The Windows programs and the served vendor repository they were built for."""

    vendor: Vendor
    url: str
    updater: Path
    bootstrap: Path


@pytest.fixture(scope="module")
def windows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Windows]:
    if wine() is None:
        pytest.fail("wine is not installed: scripts/windows installs it (as root or with sudo)")
    base = tmp_path_factory.mktemp("windows")
    vendor = make_vendor(base, methods={1148: "lzma2", 1150: "zstd", 1155: "zstd"})
    updater_exe, bootstrap_exe = build_windows(vendor.root_file, base / "dist")
    publish.publish_updater(vendor.repo, vendor.keys, updater_exe, "windows-x86_64", "test")
    server = Server(vendor.repo, vendor.db, threads=8)
    server.start()
    try:
        yield Windows(vendor, f"http://127.0.0.1:{server.port}", updater_exe, bootstrap_exe)
    finally:
        server.stop()
        stop_wineserver()


def _update(windows: Windows, install: Path, *args: str) -> tuple[int, str]:
    """Run the Windows updater on ``install`` unattended; return its exit code and output."""
    done = run_windows(windows.updater, "--install-dir", win_path(install),
                       "--trusted-root", win_path(windows.vendor.root_file), "--yes",
                       "--progress", "none", "--timeout", "5", *args)
    return done.returncode, done.stdout + done.stderr


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
