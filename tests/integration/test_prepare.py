"""The prepare run (``--prepare``) while opus i still runs, then the update that only applies.

Real server on loopback, real packages (delta and full), real install trees; the prepare run
never changes a program file or the customer data, whatever moment it is killed at.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    Vendor,
    data_snapshot,
    make_install,
    make_vendor,
    program_files,
    program_snapshot,
    run_logs,
    vendor_files,
)
from tests.faults.kills import sample
from tests.integration.test_deltas import delta_builds
from tests.integration.test_update import run
from tests.support.crash import KILLED, read_ops, run_updater
from updater.core.paths import CONFIG_FILE
from updater.install.backup.store import backups_in
from updater.install.stage import PREPARED_INDEX, prepared_dir
from updater.publisher.serving import Server


@pytest.fixture(scope="module")
def pvendor(tmp_path_factory: pytest.TempPathFactory) -> Vendor:
    return make_vendor(tmp_path_factory.mktemp("prepare"), delta_builds())


class Serving:
    """The project's server for ``pvendor``'s repository, stopped and started by a test."""

    def __init__(self, vendor: Vendor) -> None:
        self.vendor, self.server = vendor, Server(vendor.repo, vendor.db, threads=4)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}"

    def stop(self) -> None:
        if self.url:
            self.server.stop()
            self.url = ""


@pytest.fixture
def serving(pvendor: Vendor) -> Iterator[Serving]:
    served = Serving(pvendor)
    yield served
    served.stop()


def _install(tmp_path: Path, vendor: Vendor, url: str) -> Path:
    return make_install(tmp_path / "opusi", vendor.trees[1], 1, url)


def _backups(install: Path) -> list[Path]:
    return sorted(path for path, _build in backups_in(install))


def test_prepare_changes_nothing_then_the_update_only_applies(
        tmp_path: Path, pvendor: Vendor, serving: Serving) -> None:
    install = _install(tmp_path, pvendor, serving.url)
    program, data = program_snapshot(install), data_snapshot(install)
    assert run(install, pvendor, "--prepare") == 0
    assert program_snapshot(install) == program and data_snapshot(install) == data
    assert sorted(p.name for p in prepared_dir(install).iterdir()) == ["2", "3"]
    assert all((prepared_dir(install) / b / PREPARED_INDEX).is_file() for b in ("2", "3"))
    [backup] = _backups(install)
    logs = run_logs(install)
    # build 3's delta of lib/big.dll applies to build 2's big.dll, staged, not yet installed
    assert "cannot be used" not in logs
    # a second prepare finds everything ready
    assert run(install, pvendor, "--prepare") == 0
    assert program_snapshot(install) == program
    # the update: nothing more to download or stage, the backup reused
    assert run(install, pvendor) == 0
    assert program_files(install) == vendor_files(pvendor.trees[3], 3)
    assert data_snapshot(install) == data
    assert _backups(install) == [backup]
    last = run_logs(install).split("opusi-INSTALLUpdate")[-1]
    assert "not using the prepared build" not in last
    assert not prepared_dir(install).exists()


def test_start_after_prepare_needs_only_the_metadata(
        tmp_path: Path, pvendor: Vendor, serving: Serving) -> None:
    install = _install(tmp_path, pvendor, serving.url)
    data = data_snapshot(install)
    assert run(install, pvendor, "--prepare") == 0
    program = program_snapshot(install)
    # the server gone: the signed metadata cannot be checked -> error 6, nothing changed
    old_url = serving.url
    serving.stop()
    assert run(install, pvendor) == 6
    assert program_snapshot(install) == program and data_snapshot(install) == data
    # the metadata there, but every package gone from the server: prepared is enough
    moved = tmp_path / "packages"
    shutil.copytree(pvendor.repo / "targets", moved)
    for folder in ("builds", "deltas"):
        shutil.rmtree(pvendor.repo / "targets" / folder)
    try:
        again = Serving(pvendor)
        try:
            ini = (install / CONFIG_FILE).read_text()
            (install / CONFIG_FILE).write_text(ini.replace(old_url, again.url))
            data = data_snapshot(install)  # update.ini is one of the customer's files
            assert run(install, pvendor) == 0
        finally:
            again.stop()
    finally:
        for folder in ("builds", "deltas"):
            shutil.copytree(moved / folder, pvendor.repo / "targets" / folder)
    assert program_files(install) == vendor_files(pvendor.trees[3], 3)
    assert data_snapshot(install) == data


def test_changes_after_prepare_are_noticed(tmp_path: Path, pvendor: Vendor,
                                           serving: Serving) -> None:
    """A prepared file damaged and a program file changed after the prepare: the build is
    staged again and a new backup made (of the program as it is now), the result exact."""
    install = _install(tmp_path, pvendor, serving.url)
    assert run(install, pvendor, "--prepare") == 0
    [first] = _backups(install)
    staged = next(p for p in (prepared_dir(install) / "3").iterdir() if p.name != PREPARED_INDEX)
    staged.write_bytes(b"damaged")
    time.sleep(2.1)  # the zip's times have 2 s steps
    (install / "README.txt").write_bytes(b"readme 1 (edited by hand, same length!)"[:8])
    assert run(install, pvendor) == 0
    assert program_files(install) == vendor_files(pvendor.trees[3], 3)
    backups = _backups(install)
    assert len(backups) == 2 and first in backups
    logs = run_logs(install)
    assert "not using the prepared build" in logs and "changed since it was prepared" in logs


def test_prepare_killed_at_its_file_operations(tmp_path: Path, pvendor: Vendor,
                                               serving: Serving) -> None:
    """Killed (SIGKILL, the test hook) right before operations spread over a whole prepare run,
    then run again: the program files and data never change; the update then ends exactly at
    the newest build."""
    counted = _install(tmp_path / "counted", pvendor, serving.url)
    done = run_updater(counted, pvendor.root_file, "--prepare", ops_file=tmp_path / "ops")
    assert done.returncode == 0, done.stderr
    ops = read_ops(tmp_path / "ops", counted)
    moments = sample(range(1, len(ops.ops) + 1), 6)
    for i, k in enumerate(moments):
        install = _install(tmp_path / str(k), pvendor, serving.url)
        program, data = program_snapshot(install), data_snapshot(install)
        killed = run_updater(install, pvendor.root_file, "--prepare", kill_at=ops.ident(k))
        assert killed.returncode == KILLED, (k, ops.ops[k - 1], killed.stderr[-500:])
        assert program_snapshot(install) == program and data_snapshot(install) == data
        again = run_updater(install, pvendor.root_file, "--prepare")
        assert again.returncode == 0, again.stderr
        assert program_snapshot(install) == program and data_snapshot(install) == data
        if i == len(moments) // 2:
            assert run(install, pvendor) == 0
            assert program_files(install) == vendor_files(pvendor.trees[3], 3)
            assert data_snapshot(install) == data
