"""Withdrawing a build (``opusi-repo withdraw``) and a staged rollout (``opusi-repo rollout``):
installs below, at and above a withdrawn build, inside and outside a rollout, in a channel, and
one whose admin asks for a build, each end where the rules say, through the project's server on
loopback; the bootstrap's check reports it; bad input changes nothing."""

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
from updater.core.rollout import place
from updater.publisher.cli import main as repo_main
from updater.publisher.licenses import open_registry


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


def test_a_staged_rollout_and_asking_for_a_build(
        wvendor: Vendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Build 1155 to 30% of licenses and to the channel beta: a license inside updates, one
    outside stays at 1152 and is told why, until its admin asks for 1155; a beta practice
    gets it at 0% as well; raising to everyone reaches the rest."""
    vendor = wvendor
    numbers = [f"{n:05}-ROL" for n in range(200)]
    inside = next(n for n in numbers if place(n, 1155) < 30)
    outside = [n for n in numbers if place(n, 1155) >= 30][:2]
    with open_registry(vendor.db) as registry:
        for number in (inside, *outside):
            registry.add(number, entitled_until=None)
    assert repo_main(["rollout", "--repo", str(vendor.repo), "--keys", str(vendor.keys),
                      "--build", "1155", "--percent", "30", "--channel", "beta"]) == 0
    assert "offered to 30% of licenses and the channel(s) beta" in capsys.readouterr().out
    with served(vendor) as url:
        def at_1152(name: str, number: str, **ini: str) -> Path:
            return make_install(tmp_path / name, vendor.trees[1152], 1152, url, number, ini)

        yes, no, asked = (at_1152("in", inside), at_1152("out", outside[0]),
                          at_1152("asked", outside[1]))
        assert run(yes, vendor) == 0
        assert program_files(yes) == vendor_files(vendor.trees[1155], 1155)
        report = _check(no, vendor, capsys)
        assert (report["status"], report["held_back"]) == ("up-to-date", [1155])
        assert run(no, vendor) == 0
        assert program_files(no) == vendor_files(vendor.trees[1152], 1152)
        assert "Builds 1155 are not offered to this installation yet" in run_logs(no)
        assert run(asked, vendor, "--build", "1155") == 0
        assert program_files(asked) == vendor_files(vendor.trees[1155], 1155)

        assert repo_main(["rollout", "--repo", str(vendor.repo), "--keys", str(vendor.keys),
                          "--build", "1155", "--percent", "0", "--channel", "beta"]) == 0
        beta = at_1152("beta", outside[0], channel="beta")
        assert run(beta, vendor) == 0
        assert program_files(beta) == vendor_files(vendor.trees[1155], 1155)

        assert repo_main(["rollout", "--repo", str(vendor.repo), "--keys", str(vendor.keys),
                          "--build", "1155", "--everyone"]) == 0
        assert run(no, vendor) == 0
        assert program_files(no) == vendor_files(vendor.trees[1155], 1155)
    for args, message in [(["--percent", "101"], "from 0 to 100"),
                          (["--percent", "5", "--channel", "Beta Test"], "Bad channel name")]:
        assert repo_main(["rollout", "--repo", str(vendor.repo), "--keys", str(vendor.keys),
                          "--build", "1155", *args]) == 31
        assert message in capsys.readouterr().err
