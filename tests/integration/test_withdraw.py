"""Withdrawing a build (``opusi-repo withdraw``): installs below, at and above it end where the
chain rules say, through the project's server on loopback; the bootstrap's check reports it;
bad input changes nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import (
    Vendor,
    make_install,
    make_vendor,
    program_files,
    run_logs,
    served,
    vendor_files,
)
from tests.integration.test_update import run
from updater.bootstrap.cli import main as bootstrap_main
from updater.publisher.cli import main as repo_main


@pytest.fixture
def wvendor(tmp_path: Path) -> Vendor:
    return make_vendor(tmp_path / "vendor")  # builds 1147, 1148, 1150, 1152, 1155


def _withdraw(vendor: Vendor, *args: str) -> int:
    return repo_main(["withdraw", "--repo", str(vendor.repo), "--keys", str(vendor.keys),
                      *args])


def _check(install: Path, vendor: Vendor, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert bootstrap_main(["check", "--install-dir", str(install), "--trusted-root",
                           str(vendor.root_file)]) == 0
    return dict(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))


def _at(vendor: Vendor, tmp_path: Path, url: str, build: int, name: str) -> Path:
    return make_install(tmp_path / name, vendor.trees[build], build, url)


def test_installs_below_at_and_above_a_withdrawn_build(
        wvendor: Vendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vendor = wvendor
    assert _withdraw(vendor, "--build", "1150", "--reason", "Druck von Rezepten fehlerhaft") == 0
    assert _withdraw(vendor, "--build", "1155", "--reason", "Abrechnung bricht ab") == 0
    with served(vendor) as url:
        below = _at(vendor, tmp_path, url, 1148, "below")
        report = _check(below, vendor, capsys)
        assert (report["pending"], report["target"]) == ([1150, 1152], 1152)  # through 1150
        assert report["withdrawn"] == [{"build": 1155, "reason": "Abrechnung bricht ab"}]
        assert run(below, vendor) == 0
        assert program_files(below) == vendor_files(vendor.trees[1152], 1152)

        at = _at(vendor, tmp_path, url, 1150, "at")
        assert run(at, vendor) == 0
        assert program_files(at) == vendor_files(vendor.trees[1152], 1152)

        newest = _at(vendor, tmp_path, url, 1152, "newest")
        report = _check(newest, vendor, capsys)
        assert (report["status"], report["pending"]) == ("up-to-date", [])
        assert run(newest, vendor) == 0  # nothing offered: stays, and says why
        assert program_files(newest) == vendor_files(vendor.trees[1152], 1152)
        assert "Build 1155 was withdrawn by the vendor and is not installed: Abrechnung " \
            "bricht ab" in run_logs(newest)

        above = _at(vendor, tmp_path, url, 1155, "above")  # already on the withdrawn build
        assert run(above, vendor) == 0
        assert program_files(above) == vendor_files(vendor.trees[1155], 1155)

        # the vendor takes a withdrawal back: offered again
        assert _withdraw(vendor, "--build", "1155", "--undo") == 0
        assert _check(newest, vendor, capsys)["pending"] == [1155]
        assert run(newest, vendor) == 0
        assert program_files(newest) == vendor_files(vendor.trees[1155], 1155)


def test_bad_withdrawals_change_nothing(wvendor: Vendor, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    vendor = wvendor

    def metadata() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in (vendor.repo / "metadata").iterdir()}

    before = metadata()
    other = make_vendor(tmp_path / "other", {})
    for args, code, message in [
        (["--build", "1149", "--reason", "x"], 31, "Build 1149 is not published"),
        (["--build", "1150", "--reason", "  "], 31, "needs a reason"),
        (["--build", "1150", "--reason", "x" * 501], 31, "longer than 500"),
        (["--build", "1150"], 10, "one of the arguments --reason --undo is required"),
    ]:
        assert _withdraw(vendor, *args) == code, args
        assert message in capsys.readouterr().err, args
        assert metadata() == before
    assert repo_main(["withdraw", "--repo", str(vendor.repo), "--keys", str(other.keys),
                      "--build", "1150", "--reason", "x"]) == 31
    assert "not the targets key" in capsys.readouterr().err
    assert _withdraw(vendor, "--build", "1150", "--undo") == 0  # not withdrawn: nothing to do
    assert metadata() == before
