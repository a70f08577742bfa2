"""Backup and restore on real install trees: what is backed up, reuse, pruning, faults."""

from __future__ import annotations

import errno
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.trees import program_builds, snapshot, write_tree
from updater.core.errors import DiskError, DiskSpaceError, RestoreFailedError
from updater.core.paths import BACKUP_DIR, BUILD_FILE, EXCLUDED_DIRS, is_excluded
from updater.install.backup.restore import restore_full, restore_paths
from updater.install.backup.store import (
    BACKUP_NAME,
    PART_NAME,
    Backup,
    find_current_backup,
    install_files,
    part_paths,
)
from updater.install.backup.writer import create_backup, ensure_backup, split_parts
from updater.install.testhooks import FaultPlan
from updater.shared import fileops

#: Customer data with the casing a practice might really have on a case-insensitive disk.
ODD_CASING = {
    "help/x.htm": b"<html>help</html>",
    "DATABASE/SystemFiles/logs/a.log": b"log line\n" * 10,
    "takeit/Ü/scan.pdf": b"%PDF" + bytes(range(256)) * 4,
    "Database/systemfiles/SECUMAX2/updatefiles/state.json": b"{}",
}


@pytest.fixture(autouse=True)
def _reset_fault_plan() -> Iterator[None]:
    fileops.set_hook(None)
    yield
    fileops.set_hook(None)


def _customer_data() -> dict[str, bytes]:
    files = dict(ODD_CASING)
    for i, folder in enumerate(EXCLUDED_DIRS):
        files[f"{folder}/data-{i}.bin"] = os.urandom(300) * (i + 1)
        files[f"{folder}/sub/ordner ä/{i}.txt"] = f"more {i}".encode()
    return files


def _program() -> dict[str, bytes]:
    """The program part of the test install (the same bytes on every call)."""
    return PROGRAM


def _make_program() -> dict[str, bytes]:
    files = dict(program_builds()[1147])
    files[BUILD_FILE] = b"1147\n"
    files["Program/packed.cab"] = os.urandom(600_000)  # incompressible: stored, not deflated
    files["Program/big.log"] = b"line of text 0123456789\n" * 50_000
    return files


PROGRAM = _make_program()


def _install(root: Path) -> Path:
    return write_tree(root, {**_program(), **_customer_data()})


def _backups(install: Path) -> list[str]:
    """Names in the backup folder, without the customer data the fixture put there."""
    folder = install / BACKUP_DIR
    names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    return sorted(n for n in names if n != "sub" and not n.startswith("data-"))


def _parts(first: Path) -> list[Path]:
    """Every part of the backup whose first part is ``first``, as its comment counts them."""
    with zipfile.ZipFile(first) as zf:
        return part_paths(first, json.loads(zf.comment).get("parts", 1))


def _names(*firsts: Path) -> list[str]:
    return sorted(path.name for first in firsts for path in _parts(first))


def _members(first: Path) -> dict[str, tuple[zipfile.ZipInfo, bytes]]:
    """Member name -> (info, content) over all parts of a backup."""
    result = {}
    for path in _parts(first):
        with zipfile.ZipFile(path) as zf:
            result.update({i.filename: (i, zf.read(i)) for i in zf.infolist()})
    return result


def _corrupt(path: Path) -> None:
    """Flip 64 bytes in the middle (one flipped bit can land where Deflate ignores it)."""
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2 - 32, len(data) // 2 + 32):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _simulate_update(install: Path) -> list[str]:
    """Change, delete and add files (new nested folders too), as a build would; return paths."""
    (install / "opusi.exe").write_bytes(b"MZ new build" * 1000)
    (install / "Program/Module/Ä-Übersicht.xml").write_bytes(b"<x>changed</x>")
    (install / "README.txt").unlink()
    (install / "old/obsolete.dll").unlink()
    (install / "old").rmdir()
    write_tree(install, {"Program/Neu/tief/unten/x.dll": b"new", "Neu2/a.txt": b"new too",
                         BUILD_FILE: b"1148\n"})
    return ["opusi.exe", "Program/Module/Ä-Übersicht.xml", "README.txt", "old/obsolete.dll",
            "Program/Neu/tief/unten/x.dll", "Neu2/a.txt", BUILD_FILE]


# --- making a backup ----------------------------------------------------------------------


def test_backup_holds_program_files_and_build_but_no_customer_data(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    calls: list[tuple[int, int]] = []
    backup = create_backup(install, 1147, progress=lambda done, total: calls.append((done, total)))

    assert BACKUP_NAME.match(backup.path.name) and "build1147" in backup.path.name
    assert backup.path.parent == install / BACKUP_DIR
    assert _backups(install) == _names(backup.path)  # no temp file left behind
    assert len(_parts(backup.path)) == min(2, os.cpu_count() or 1)
    program = _program()
    members = _members(backup.path)
    assert sorted(members) == sorted(program)
    assert all(members[name][1] == data for name, data in program.items())
    assert not any(is_excluded(name) for name in members)
    assert members["Program/packed.cab"][0].compress_type == zipfile.ZIP_STORED
    assert members["Program/big.log"][0].compress_type == zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(backup.path) as zf:
        meta = json.loads(zf.comment)
    assert meta["build"] == 1147 and meta["files"] == len(program) and meta["created"]
    assert meta["parts"] == len(_parts(backup.path))
    total = sum(len(d) for d in program.values())
    assert backup == Backup(backup.path, 1147, len(program), total)
    assert calls[0] == (0, total) and calls[-1] == (total, total)


def test_install_files_excludes_every_customer_folder_in_any_casing(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    assert sorted(install_files(install)) == sorted(_program())


@pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks")
def test_install_files_does_not_follow_links(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    outside = write_tree(tmp_path / "outside", {"secret.txt": b"not ours"})
    (install / "link-dir").symlink_to(outside, target_is_directory=True)
    (install / "link.txt").symlink_to(outside / "secret.txt")
    assert sorted(install_files(install)) == sorted(_program())


@pytest.mark.parametrize("at", [1, 2, 3, 5, 8])
def test_disk_full_while_backing_up_leaves_no_temp_file(tmp_path: Path, at: int) -> None:
    install = _install(tmp_path / "opusi")
    before = snapshot(install)
    fileops.set_hook(FaultPlan(at=at, error=errno.ENOSPC))  # as a full disk would
    with pytest.raises(DiskSpaceError, match="disk is full") as caught:
        create_backup(install, 1147)
    fileops.set_hook(None)
    assert "Nothing was changed" in str(caught.value)
    assert _backups(install) == []
    assert snapshot(install) == before


def test_an_io_error_is_a_disk_error_and_leaves_no_temp_file(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    fileops.set_hook(FaultPlan(at=4))  # EIO, as a failing disk gives
    with pytest.raises(DiskError) as caught:
        create_backup(install, 1147)
    assert caught.value.exit_code == 25 and "Nothing was changed" in caught.value.safe
    assert _backups(install) == []



# --- reuse and pruning --------------------------------------------------------------------


def test_current_backup_is_reused(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    first, created = ensure_backup(install, 1147)
    again, created_again = ensure_backup(install, 1147)
    assert created and not created_again
    assert again == first
    assert find_current_backup(install, 1148) is None  # another build's backup never counts


def test_backup_is_stale_after_a_program_file_changed(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    old = create_backup(install, 1147)
    (install / "opusi.dll").write_bytes(b"patched by hand")
    assert find_current_backup(install, 1147) is None
    new, created = ensure_backup(install, 1147)
    assert created and new.path != old.path


def test_backup_is_stale_after_a_same_size_change(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    create_backup(install, 1147)
    path = install / "README.txt"
    path.write_bytes(path.read_bytes().upper())
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + 10))
    assert find_current_backup(install, 1147) is None


def test_backup_is_stale_when_a_file_was_added(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    create_backup(install, 1147)
    write_tree(install, {"Program/plugin.dll": b"added by hand"})
    assert find_current_backup(install, 1147) is None


def test_corrupt_backup_is_not_reused(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    backup = create_backup(install, 1147)
    _corrupt(backup.path)
    assert find_current_backup(install, 1147) is None
    new, created = ensure_backup(install, 1147)
    assert created and new.path != backup.path


def test_customer_data_changes_do_not_make_a_backup_stale(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    backup = create_backup(install, 1147)
    write_tree(install, {"Database/SystemFiles/Logs/new.log": b"x", "Help/new.htm": b"y"})
    assert find_current_backup(install, 1147) == backup


def test_pruning_keeps_the_newest(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    old = [create_backup(install, build).path for build in (1140, 1141, 1142, 1143)]
    folder = install / BACKUP_DIR
    (folder / "notes.txt").write_bytes(b"an admin's file")
    (folder / ".opusi-backup-dead.zip.part").write_bytes(b"left by a killed run")
    (folder / ".opusi-backup-dead.part2.zip.part").write_bytes(b"left by a killed run")
    (folder / "opusi-backup-build1139-20200101-000000.part2.zip").write_bytes(b"orphaned part")
    backup, created = ensure_backup(install, 1147, keep=2)
    assert created
    assert _backups(install) == sorted([*_names(backup.path, old[-1]), "notes.txt"])
    again, created = ensure_backup(install, 1147, keep=1)
    assert not created and again == backup
    assert _backups(install) == sorted([*_names(backup.path), "notes.txt"])


# --- restoring the paths an update touched ------------------------------------------------


def test_restore_paths_returns_the_install_to_its_snapshot(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    backup = create_backup(install, 1147)
    before = snapshot(install)
    touched = _simulate_update(install)
    assert snapshot(install) != before
    restore_paths(backup, install, touched)
    assert snapshot(install) == before


def test_restore_paths_twice_is_idempotent(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    backup = create_backup(install, 1147)
    before = snapshot(install)
    touched = _simulate_update(install)
    restore_paths(backup, install, touched)
    counter = FaultPlan(at=0)  # only counts operations
    fileops.set_hook(counter)
    restore_paths(backup, install, touched)
    assert counter.count == 0  # nothing left to do: nothing written
    assert snapshot(install) == before


def test_restore_paths_matches_names_case_insensitively(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    backup = create_backup(install, 1147)
    before = snapshot(install)
    (install / "opusi.exe").unlink()
    (install / "OPUSI.EXE").write_bytes(b"written with other casing")
    restore_paths(backup, install, ["OPUSI.EXE"])
    assert snapshot(install) == before


@pytest.mark.parametrize("path", ["Help/x.htm", "database/systemfiles/LOGS/a.log", "../evil",
                                  "C:/Windows/x", "Program/CON.txt"])
def test_restore_paths_refuses_customer_data_and_unsafe_paths(tmp_path: Path, path: str) -> None:
    install = _install(tmp_path / "opusi")
    backup = create_backup(install, 1147)
    touched = _simulate_update(install)
    changed = snapshot(install)
    with pytest.raises(RestoreFailedError, match="Refusing"):
        restore_paths(backup, install, [*touched, path])
    assert snapshot(install) == changed


def test_restore_paths_survives_a_fault_at_every_operation(tmp_path: Path) -> None:
    counting = _install(tmp_path / "count")
    backup = create_backup(counting, 1147)
    touched = _simulate_update(counting)
    counter = FaultPlan(at=0)
    fileops.set_hook(counter)
    restore_paths(backup, counting, touched)
    operations = counter.count
    assert operations > 10
    for k in range(1, operations + 1):
        install = _install(tmp_path / f"k{k}")
        backup = create_backup(install, 1147)
        before = snapshot(install)
        _simulate_update(install)
        fileops.set_hook(FaultPlan(at=k))
        with pytest.raises(RestoreFailedError, match="--restore") as caught:
            restore_paths(backup, install, touched)
        fileops.set_hook(None)
        assert backup.path.name in str(caught.value)
        restore_paths(backup, install, touched)
        assert snapshot(install) == before, f"fault at operation {k}"


def test_restore_paths_refuses_a_damaged_backup_before_writing(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    backup = create_backup(install, 1147)
    touched = _simulate_update(install)
    _corrupt(backup.path)
    changed = snapshot(install)
    with pytest.raises(RestoreFailedError, match="partly restored"):
        restore_paths(backup, install, touched)
    assert snapshot(install) == changed


# --- restoring a whole backup by hand -----------------------------------------------------


def test_restore_full_repairs_arbitrary_damage(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    backup = create_backup(install, 1147)
    before = snapshot(install)
    _simulate_update(install)
    (install / "Program/Module/deep/er/still/file.txt").unlink()
    (install / "Program/empty.cfg").unlink()
    write_tree(install, {"Program/empty.cfg/now-a-folder.txt": b"x", "zzz/y/z.bin": b"junk",
                         "opusi.dll": b"truncated"})
    assert restore_full(backup.path, install) == backup
    assert snapshot(install) == before


def test_restore_full_leaves_equal_files_alone(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    backup = create_backup(install, 1147)
    before = snapshot(install)
    counter = FaultPlan(at=0)
    fileops.set_hook(counter)
    restore_full(backup.path, install)
    assert counter.count == 0
    assert snapshot(install) == before


@pytest.mark.parametrize("name", ["../outside.txt", "Help/x.htm", "Program/AUX", "a/../../b",
                                  "Database/SystemFiles/UserINI/u.ini", "OPUSI.exe"])
def test_restore_full_refuses_unsafe_members_before_writing(tmp_path: Path, name: str) -> None:
    install = _install(tmp_path / "opusi")
    _simulate_update(install)
    before = snapshot(install)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("opusi.exe", b"MZ evil")
        zf.writestr(name, b"evil")
        zf.comment = json.dumps({"build": 1147, "created": "x", "files": 2}).encode()
    with pytest.raises(RestoreFailedError, match="cannot be restored"):
        restore_full(evil, install)
    assert snapshot(install) == before


def test_restore_full_refuses_a_zip_not_made_by_the_updater(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    before = snapshot(install)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("opusi.exe", b"MZ")
    with pytest.raises(RestoreFailedError, match="not made by the updater"):
        restore_full(other, install)
    (tmp_path / "garbage.zip").write_bytes(b"PK not really")
    with pytest.raises(RestoreFailedError):
        restore_full(tmp_path / "garbage.zip", install)
    assert snapshot(install) == before


# --- a backup in parallel parts -----------------------------------------------------------


def _mixed_install(root: Path) -> Path:
    """A few big files and many small ones, as a real program folder has."""
    files = {f"bin/big{i}.dll": bytes([i]) * (400_000 * (i + 1)) for i in range(3)}
    files.update({f"help/{i // 20}/p{i}.htm": b"<p>page</p>" * (i % 37 + 1) for i in range(120)})
    files[BUILD_FILE] = b"1147\n"
    return write_tree(root, files)


def _part_holding(backup: Backup, name: str) -> int:
    """The 1-based number of the part that holds member ``name``."""
    for number, path in enumerate(_parts(backup.path), 1):
        with zipfile.ZipFile(path) as zf:
            if name in zf.namelist():
                return number
    raise AssertionError(f"{name} is in no part")


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one part on one core")
def test_backup_is_written_in_two_balanced_parts(tmp_path: Path) -> None:
    install = _mixed_install(tmp_path / "opusi")
    backup = create_backup(install, 1147)
    parts = _parts(backup.path)
    assert [p.name for p in parts] == [backup.path.name, backup.path.stem + ".part2.zip"]
    assert PART_NAME.match(parts[1].name) and not BACKUP_NAME.match(parts[1].name)
    sizes = []
    for path in parts:
        with zipfile.ZipFile(path) as zf:
            sizes.append(sum(i.file_size for i in zf.infolist()))
            assert zf.namelist() == sorted(zf.namelist()) and zf.namelist()
    assert sum(sizes) == backup.size and abs(sizes[0] - sizes[1]) <= 0.1 * backup.size
    assert backup.files == len(install_files(install))
    assert find_current_backup(install, 1147) == backup


def test_split_parts_balances_by_size() -> None:
    sizes = {"a": 50, "b": 40, "c": 30, "d": 20, "e": 10, "f": 10}
    groups = split_parts(sizes, 2)
    assert sorted(n for g in groups for n in g) == sorted(sizes)
    assert [sum(sizes[n] for n in g) for g in groups] == [80, 80]
    assert split_parts(sizes, 1) == [sorted(sizes)]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one part on one core")
@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_backup_with_a_bad_second_part_is_not_current(tmp_path: Path, damage: str) -> None:
    install = _mixed_install(tmp_path / "opusi")
    backup = create_backup(install, 1147)
    second = _parts(backup.path)[1]
    if damage == "missing":
        second.unlink()
    else:
        _corrupt(second)
    assert find_current_backup(install, 1147) is None
    new, created = ensure_backup(install, 1147)
    assert created and new.path != backup.path
    with pytest.raises(RestoreFailedError, match="partly restored"):
        restore_paths(backup, install, ["bin/big0.dll"])


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one part on one core")
def test_restore_reads_members_from_every_part(tmp_path: Path) -> None:
    install = _mixed_install(tmp_path / "opusi")
    backup = create_backup(install, 1147)
    before = snapshot(install)
    in_second = [n for n in install_files(install) if _part_holding(backup, n) == 2]
    in_first = [n for n in install_files(install) if _part_holding(backup, n) == 1]
    assert in_second and in_first
    for rel in (in_first[0], *in_second[:3]):
        (install / rel).write_bytes(b"damaged")
    restore_paths(backup, install, [in_first[0], *in_second[:3]])
    assert snapshot(install) == before
    for rel in in_second:
        (install / rel).unlink()
    write_tree(install, {"bin/extra.dll": b"not in the backup"})
    assert restore_full(backup.path, install) == backup
    assert snapshot(install) == before


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one part on one core")
def test_pruning_deletes_every_part_of_a_backup(tmp_path: Path) -> None:
    install = _mixed_install(tmp_path / "opusi")
    old = create_backup(install, 1146)
    assert len(_parts(old.path)) == 2
    backup, _ = ensure_backup(install, 1147, keep=1)
    assert _backups(install) == _names(backup.path)


def test_a_single_zip_backup_of_an_earlier_version_is_still_used(tmp_path: Path) -> None:
    install = _install(tmp_path / "opusi")
    folder = install / BACKUP_DIR
    old = folder / "opusi-backup-build1147-20250101-120000.zip"
    with zipfile.ZipFile(old, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, path in install_files(install).items():
            zf.write(path, rel)
        zf.comment = json.dumps({"build": 1147, "created": "x", "files": len(_program())}).encode()
    found = find_current_backup(install, 1147)
    assert found is not None and found.path == old and found.files == len(_program())
    before = snapshot(install)
    _simulate_update(install)
    assert restore_full(old, install) == found
    assert snapshot(install) == before
