"""``opusi-repo status`` on the request log of a real test run: several installs updating,
failing twice, only checking; the server's request log (``serve --request-log``) holds license
numbers and paths, never an address."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.conftest import (
    LICENSE,
    Vendor,
    make_install,
    make_vendor,
    program_files,
    served,
    vendor_files,
)
from tests.support.crash import read_ops, run_updater
from updater.bootstrap.cli import main as bootstrap_main
from updater.publisher.cli import main as repo_main
from updater.publisher.licenses import open_registry
from updater.publisher.serving import write_request_log

STUCK, CHECKER = "55555-STK", "77777-CHK"


@pytest.fixture
def svendor(tmp_path: Path) -> Vendor:
    vendor = make_vendor(tmp_path / "vendor")
    with open_registry(vendor.db) as registry:
        registry.add(STUCK, entitled_until=None)
        registry.add(CHECKER, entitled_until=None)
    return vendor


def _failing_points(vendor: Vendor, url: str, tmp_path: Path) -> tuple[str, str]:
    """Where a first update from 1147 and a second attempt after it (packages kept, manifests
    fetched again) write opusi.dll of build 1155: the operations to fail at."""
    probe = make_install(tmp_path / "probe", vendor.trees[1147], 1147, url)
    done = run_updater(probe, vendor.root_file, ops_file=tmp_path / "first.ops", timeout=120)
    assert done.returncode == 0, done.stderr
    ops = read_ops(tmp_path / "first.ops", probe)
    first = ops.ident(ops.number("replace opusi.dll"))
    probe = make_install(tmp_path / "probe-2", vendor.trees[1147], 1147, url)
    done = run_updater(probe, vendor.root_file, fault=f"once:{first}", timeout=120)
    assert done.returncode == 16, done.stderr
    done = run_updater(probe, vendor.root_file, ops_file=tmp_path / "again.ops", timeout=120)
    assert done.returncode == 0, done.stderr
    ops = read_ops(tmp_path / "again.ops", probe)
    return first, ops.ident(ops.number("replace opusi.dll"))


def test_status_from_the_request_log(svendor: Vendor, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    vendor, log_file = svendor, tmp_path / "requests.log"
    with served(vendor) as url:
        failing = _failing_points(vendor, url, tmp_path)
        handler = write_request_log(log_file)
        try:
            good = make_install(tmp_path / "good", vendor.trees[1147], 1147, url)
            assert run_updater(good, vendor.root_file, timeout=120).returncode == 0
            assert run_updater(good, vendor.root_file).returncode == 0  # up to date now

            stuck = make_install(tmp_path / "stuck", vendor.trees[1147], 1147, url, STUCK)
            for where in failing:
                done = run_updater(stuck, vendor.root_file, fault=f"once:{where}", timeout=120)
                assert done.returncode == 16, done.stderr
            assert program_files(stuck) == vendor_files(vendor.trees[1147], 1147)

            checker = make_install(tmp_path / "checker", vendor.trees[1152], 1152, url,
                                   CHECKER)
            assert bootstrap_main(["check", "--install-dir", str(checker), "--trusted-root",
                                   str(vendor.root_file)]) == 0
        finally:
            logging.getLogger("updater.publisher.app.requests").removeHandler(handler)
            handler.close()
    text = log_file.read_text("utf-8")
    assert "127.0.0.1" not in text and "license=" + STUCK in text
    capsys.readouterr()
    assert repo_main(["status", "--log", str(log_file), "--repo", str(vendor.repo),
                      "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by = {v["license"]: v for v in report["licenses"]}
    assert (by[LICENSE]["newest_build"], by[LICENSE]["attempts"], by[LICENSE]["runs"]) == \
        (1155, 1, 2)
    assert (by[STUCK]["newest_build"], by[STUCK]["attempts"], by[STUCK]["stuck"]) == \
        (1155, 2, True)
    assert (by[CHECKER]["newest_build"], by[CHECKER]["runs"]) == (None, 1)
    assert report["stuck"] == [STUCK]
    assert {(b["build"], b["licenses"]) for b in report["on_build"]} == {(None, 1), (1155, 2)}
    assert repo_main(["status", "--log", str(log_file)]) == 0
    out = capsys.readouterr().out
    assert "3 license(s) seen." in out and f"stuck: {STUCK} on build 1155, 2 attempts" in out
