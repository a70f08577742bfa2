"""What makes an update durable, in the order the updater does it (every platform alike).

A power cut loses what is not on disk yet; a killed process does not. The rule that keeps an
install at the old or the new build through a power cut, on Windows too (where nothing like
``sync()`` follows): every file's data is flushed (``fsync``, on Windows ``FlushFileBuffers``)
before the file is renamed into the install, and ``BUILD`` and the journal are written
atomically and flushed; the file systems keep their metadata operations in order. This test
reads the operations of a real update (the file seam's record, ``OPUSI_OPS_FILE``) and checks
that order for every file; the power-cut suite shows what happens without it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.conftest import Vendor, make_install, program_files, vendor_files
from tests.support.crash import Ops, read_ops, run_updater
from updater.core.paths import BUILD_FILE, JOURNAL_FILE


def test_every_file_is_flushed_before_it_is_renamed_into_place(
        vendor: Vendor, server_url: str, tmp_path: Path) -> None:
    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, server_url)
    done = run_updater(install, vendor.root_file, ops_file=tmp_path / "ops", timeout=120)
    assert done.returncode == 0, done.stderr
    assert program_files(install) == vendor_files(vendor.trees[1155], 1155)
    run = read_ops(tmp_path / "ops", install)
    ops = [(ident, *op.partition(" ")[::2]) for ident, op in zip(run.ids, run.ops, strict=True)]
    program = [n for n, (ident, kind, path) in enumerate(ops) if ident.startswith("main#")
               and kind == "replace" and not path.startswith("Database/")]
    unflushed: set[str] = set()
    staged = 0
    for n, (ident, kind, path) in enumerate(ops):
        if ident.startswith("staging-") and kind == "open":
            unflushed.add(path)
            staged += 1
        elif ident.startswith("staging-") and kind == "fsync":
            unflushed.discard(path)
        elif n in program:
            assert not unflushed, f"{path} renamed into place while {unflushed} not flushed"
    assert len(program) >= 5 and staged >= 5, (program, staged)
    journal_gone = max(n for n, (_i, kind, path) in enumerate(ops)
                       if kind == "unlink" and path.endswith("journal.json"))
    assert journal_gone > max(program), "the journal goes after every file is in place"
    build_written = max(n for n, (_i, kind, path) in enumerate(ops)
                        if kind == "replace" and path == BUILD_FILE)
    assert any(kind == "fsync" and path.endswith(".tmp") and build_written - 3 < n < build_written
               for n, (_i, kind, path) in enumerate(ops)), "BUILD is flushed before its rename"


def test_a_restore_flushes_its_deletions_before_the_journal_goes(
        vendor: Vendor, server_url: str, tmp_path: Path) -> None:
    """The last build's apply fails, the backup is restored: files the update had added are
    deleted again, and each folder they were deleted from is flushed before the journal goes
    (on btrfs, without it, the power-cut suite saw a restored install keep an added file)."""
    run = _restored_after_a_fault(vendor, server_url, tmp_path,
                                  lambda clean: clean.number("replace opusi.dll"))  # in 1155
    journal_gone = max(n for n, op in enumerate(run.ops) if op == "unlink " + JOURNAL_FILE)
    added = "Program/Module/neu ñ/日本語.txt"  # added by 1148, not in the backup of 1147
    deleted = max(n for n, op in enumerate(run.ops) if op == f"unlink {added}")
    assert deleted < journal_gone
    # its folder became empty and was removed: the folder above it is flushed, with the
    # deletions (before the restored files are written, whose folders are flushed after them)
    written = next(n for n in range(deleted, journal_gone) if run.ops[n].startswith("replace "))
    assert "rmdir Program/Module/neu ñ" in run.ops[deleted:written]
    assert "fsync_dir Program/Module" in run.ops[deleted:written], run.ops[deleted:written + 1]


def test_a_restore_flushes_the_folders_it_makes_again(
        vendor: Vendor, server_url: str, tmp_path: Path) -> None:
    """Build 1148's apply removes old/ with its only file and fails right after: the restore
    makes old/ again, and flushes the folder holding its entry (the install's root, where
    nothing else changed: BUILD still says 1147) before the journal goes. On btrfs, a new
    folder whose parent was never flushed is lost with its files after a power cut, though the
    journal's later removal is kept: the power-cut suite saw build 1147 without
    old/obsolete.dll and no journal left to repair it."""
    def after_old_went(clean: Ops) -> int:
        removed = clean.ops.index("rmdir old")
        return next(n for n in range(removed, len(clean.ops))
                    if clean.ops[n].startswith("replace ")) + 1

    run = _restored_after_a_fault(vendor, server_url, tmp_path, after_old_went)
    journal_gone = max(n for n, op in enumerate(run.ops) if op == "unlink " + JOURNAL_FILE)
    made = run.ops.index("mkdir old")
    assert made < journal_gone
    assert "fsync_dir old" in run.ops[made:journal_gone]
    assert "fsync_dir ." in run.ops[made:journal_gone], run.ops[made:journal_gone]


def _restored_after_a_fault(vendor: Vendor, server_url: str, tmp_path: Path,
                            where: Callable[[Ops], int]) -> Ops:
    """The operations of an update from 1147 that fails at the operation ``where`` picks from
    a clean run's (numbered from 1) and is restored; the install checked to be 1147 again."""
    counted = make_install(tmp_path / "counted", vendor.trees[1147], 1147, server_url)
    done = run_updater(counted, vendor.root_file, ops_file=tmp_path / "counted.ops", timeout=120)
    assert done.returncode == 0, done.stderr
    clean = read_ops(tmp_path / "counted.ops", counted)
    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, server_url)
    done = run_updater(install, vendor.root_file, fault=f"once:{clean.ident(where(clean))}",
                       ops_file=tmp_path / "ops", timeout=120)
    assert done.returncode == 16, done.stderr
    assert program_files(install) == vendor_files(vendor.trees[1147], 1147)
    return read_ops(tmp_path / "ops", install)
