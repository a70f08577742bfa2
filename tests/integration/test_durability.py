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

from pathlib import Path

from tests.conftest import Vendor, make_install, program_files, vendor_files
from tests.support.crash import read_ops, run_updater
from updater.core.paths import BUILD_FILE


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
