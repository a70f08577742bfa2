"""Delta packages and the prepare run with the real Windows ``.exe`` under Wine.

The frozen Windows updater must carry zstd's patch-from (``backports.zstd``, brought by py7zr)
and rebuild files from the installed ones, and its ``--prepare`` must change no program file.
"""

from __future__ import annotations

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
    served,
    vendor_files,
)
from tests.integration.test_deltas import delta_builds
from tests.windows.conftest import Windows, update

pytestmark = [pytest.mark.windows]


@pytest.fixture(scope="module")
def deltas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Vendor, str]]:
    vendor = make_vendor(tmp_path_factory.mktemp("wine-deltas"), delta_builds())
    with served(vendor) as url:
        yield vendor, url


def test_prepare_then_update_by_deltas(windows: Windows, deltas: tuple[Vendor, str],
                                       tmp_path: Path) -> None:
    vendor, url = deltas
    install = make_install(tmp_path / "opusi", vendor.trees[1], 1, url)
    program, data = program_snapshot(install), data_snapshot(install)
    code, output = update(windows, install, "--prepare", vendor=vendor)
    assert code == 0, output
    assert "Prepared builds 2, 3" in output
    assert program_snapshot(install) == program and data_snapshot(install) == data
    code, output = update(windows, install, vendor=vendor)
    assert code == 0, output
    assert program_files(install) == vendor_files(vendor.trees[3], 3)
    assert data_snapshot(install) == data
    logs = run_logs(install)
    assert "build 2: delta package" in logs and "build 3: delta package" in logs
    assert "cannot be used" not in logs and "not using the prepared build" not in logs


def test_a_changed_base_file_falls_back(windows: Windows, deltas: tuple[Vendor, str],
                                        tmp_path: Path) -> None:
    vendor, url = deltas
    install = make_install(tmp_path / "opusi", vendor.trees[1], 1, url)
    (install / "lib" / "big.dll").write_bytes(b"changed by hand" * 100)
    code, output = update(windows, install, vendor=vendor)
    assert code == 0, output
    assert program_files(install) == vendor_files(vendor.trees[3], 3)
    assert "the delta package cannot be used" in run_logs(install)
