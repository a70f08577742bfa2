"""Windows paths: a network drive, paths longer than 260 characters, names differing only by
case, umlauts and read-only program files.

Wine lays a Windows file system over this machine's: names are looked up without regard to
case (as NTFS does), the read-only attribute is the file's missing write permission, and a
drive letter can be typed as a network drive.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    Vendor,
    data_snapshot,
    make_install,
    make_vendor,
    program_files,
    vendor_files,
)
from tests.support.wine import add_network_drive, remove_drive, win_path
from tests.windows.conftest import NEW, OLD, Windows, update
from updater.core.paths import BACKUP_DIR
from updater.install.backup.store import BACKUP_NAME
from updater.publisher.serving import Server

pytestmark = [pytest.mark.windows]

#: Five folders of 46 characters and a long file name: with the install's own path, well over
#: the 260 characters (MAX_PATH) Windows programs were once limited to.
LONG = "/".join(f"Unterordner mit einem recht langen Namen Nr. {i}" for i in range(5)) \
    + "/Brief an die Krankenkasse mit einem langen Dateinamen.dot"
CASE_OLD, CASE_NEW = "Hilfe/Readme.TXT", "Hilfe/README.txt"
UMLAUT = "Formulare/Überweisung Größe ß.rtf"
READ_ONLY_CHANGED = "Formulare/schreibgeschützt.dll"
READ_ONLY_DELETED = "Formulare/alt schreibgeschützt.rtf"


def _names_builds() -> dict[int, dict[str, bytes]]:
    old = {
        "opusi.exe": b"MZ" + b"\x00" * 2000 + b"1147",
        LONG: b"long 1147",
        CASE_OLD: b"readme 1147",
        UMLAUT: "Größe 1147".encode(),
        READ_ONLY_CHANGED: b"read-only 1147",
        READ_ONLY_DELETED: b"read-only, deleted by 1148",
    }
    new = {
        "opusi.exe": b"MZ" + b"\x00" * 2000 + b"1148",
        LONG: b"long 1148",
        CASE_NEW: b"readme 1148",
        UMLAUT: "Größe 1148".encode(),
        READ_ONLY_CHANGED: b"read-only 1148",
    }
    return {1147: old, 1148: new}


@pytest.fixture(scope="module")
def names(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Vendor, str]]:
    """A vendor whose two builds hold the names Windows treats specially, served."""
    vendor = make_vendor(tmp_path_factory.mktemp("names"), builds=_names_builds())
    server = Server(vendor.repo, vendor.db, threads=4)
    server.start()
    try:
        yield vendor, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def _folded(files: dict[str, str]) -> dict[str, str]:
    return {name.casefold(): digest for name, digest in files.items()}


def test_long_paths_case_only_rename_umlauts_read_only(windows: Windows, names: tuple[Vendor, str],
                                                       tmp_path: Path) -> None:
    """1147 -> 1148 and back with ``--restore``, on the names Windows treats specially.

    - a path of more than 260 characters (the .exe's manifest declares longPathAware;
      CreateFileW/MoveFileExW with the long path);
    - ``Readme.TXT`` becoming ``README.txt``: one file on a case-insensitive file system, so
      the update must replace it, not write the new name and then delete the old one (which
      is the same file);
    - umlauts and ß in names (the UTF-16 "W" functions throughout);
    - read-only program files, one changed and one deleted by the build: DeleteFileW of a
      read-only file fails with ERROR_ACCESS_DENIED (as under Wine); the updater takes the
      attribute off (SetFileAttributesW) and goes on. Windows also refuses MoveFileExW onto a
      read-only file; Wine allows that, so here only the delete shows the difference.

    Where Wine differs: replacing ``Readme.TXT`` by ``README.txt`` keeps the old spelling under
    Wine (it renames onto the Unix name it found); NTFS gives the file the new spelling. The
    comparison is therefore without regard to case for that one file, byte for byte for all.
    """
    vendor, url = names
    old_tree, new_tree = vendor.trees[1147], vendor.trees[1148]
    install = make_install(tmp_path / "opusi", old_tree, 1147, url)
    assert len(str(install / LONG)) + len("Z:") > 260
    for name in (READ_ONLY_CHANGED, READ_ONLY_DELETED):
        (install / name).chmod(stat.S_IREAD | stat.S_IRGRP | stat.S_IROTH)  # Wine: READONLY
    before, data = program_files(install), data_snapshot(install)

    code, output = update(windows, install, vendor=vendor)
    assert code == 0, output
    got, want = program_files(install), vendor_files(new_tree, 1148)
    assert _folded(got) == _folded(want), output
    assert set(got) ^ set(want) <= {CASE_OLD, CASE_NEW}, set(got) ^ set(want)
    assert not (install / READ_ONLY_DELETED).exists()
    assert data_snapshot(install) == data

    [backup] = [p for p in (install / BACKUP_DIR).iterdir() if BACKUP_NAME.match(p.name)]
    code, output = update(windows, install, "--restore", win_path(backup), vendor=vendor)
    assert code == 0, output
    restored = program_files(install)
    assert _folded(restored) == _folded(before)
    assert set(restored) ^ set(before) <= {CASE_OLD, CASE_NEW}, set(restored) ^ set(before)
    assert data_snapshot(install) == data


@pytest.fixture
def network_drive(tmp_path: Path) -> Iterator[str]:
    """Drive N: onto ``tmp_path/share``, typed as a network drive (see add_network_drive)."""
    share = tmp_path / "share"
    share.mkdir()
    drive = add_network_drive("n", share)
    try:
        yield drive
    finally:
        remove_drive("n")


def test_network_drive_is_error_20_unless_allowed(windows: Windows, network_drive: str,
                                                  tmp_path: Path) -> None:
    """An install on a drive Windows reports as a network drive: error 20, nothing changed;
    with ``--allow-remote`` the update goes on and completes.

    Windows API: GetDriveTypeW("N:\\\\") == DRIVE_REMOTE (Wine answers from its drive
    configuration, as Windows does for a mapped network share)."""
    install = make_install(tmp_path / "share" / "opusi", windows.vendor.trees[OLD], OLD,
                           windows.url)
    before, data = program_files(install), data_snapshot(install)
    where = f"{network_drive}\\opusi"
    code, output = update(windows, where)
    assert code == 20, output
    assert "network drive N:" in output, output
    assert program_files(install) == before

    code, output = update(windows, where, "--allow-remote")
    assert code == 0, output
    assert program_files(install) == vendor_files(windows.vendor.trees[NEW], NEW)
    assert data_snapshot(install) == data
