"""The updater end to end, against the real server on loopback and real install trees."""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import (
    LICENSE,
    REVOKED,
    UNREGISTERED,
    Vendor,
    data_snapshot,
    make_install,
    program_files,
    program_snapshot,
    vendor_files,
)
from tests.support.relay import Relay
from tests.support.trees import snapshot
from updater.core.paths import BACKUP_DIR, BUILD_FILE, CONFIG_FILE, LOG_DIR, WORK_DIR
from updater.install.backup.store import BACKUP_NAME
from updater.install.cli import main
from updater.install.journal import journal_path
from updater.install.testhooks import FaultPlan
from updater.shared import fileops


def run(install: Path, vendor: Vendor, *extra: str) -> int:
    return main(
        [
            "--install-dir",
            str(install),
            "--trusted-root",
            str(vendor.root_file),
            "--yes",
            "--progress",
            "none",
            "--timeout",
            "5",
            *extra,
        ]
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_full_update_across_four_builds(
    install: Path, vendor: Vendor, capsys: pytest.CaptureFixture[str]
) -> None:
    data_before = data_snapshot(install)
    assert run(install, vendor) == 0
    assert program_files(install) == vendor_files(vendor.trees[1155], 1155)
    assert data_snapshot(install) == data_before
    assert not journal_path(install).exists()
    assert not (install / WORK_DIR / "downloads").exists()
    assert not (install / WORK_DIR / "staging").exists()
    backups = [p for p in (install / BACKUP_DIR).glob("*.zip") if BACKUP_NAME.match(p.name)]
    assert len(backups) == 1 and "build1147" in backups[0].name
    history = (install / LOG_DIR / "update-history.log").read_text()
    assert "build 1147 -> 1155  success  applied: 1148,1150,1152,1155" in history
    out = capsys.readouterr().out
    assert "Updated from build 1147 to 1155" in out
    # a second run finds nothing to do and changes nothing
    before = program_snapshot(install)
    assert run(install, vendor) == 0
    assert "up to date" in capsys.readouterr().out
    assert program_snapshot(install) == before


def test_check_changes_nothing(
    install: Path, vendor: Vendor, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {
        p: h
        for p, h in snapshot(install).items()
        if not p.startswith(WORK_DIR) and LOG_DIR not in p
    }
    assert run(install, vendor, "--check", "--progress", "json") == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["pending"] == [1148, 1150, 1152, 1155] and report["installed"] == 1147
    after = {
        p: h
        for p, h in snapshot(install).items()
        if not p.startswith(WORK_DIR) and LOG_DIR not in p
    }
    assert after == before


def test_offline_folder_is_verified(install: Path, vendor: Vendor, tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    shutil.copytree(vendor.repo, offline)
    package = next((offline / "targets" / "builds").glob("*.1150.7z"))
    good = package.read_bytes()
    package.write_bytes(good[:-10] + bytes(10))
    before = program_snapshot(install)
    assert run(install, vendor, "--offline", str(offline)) == 13
    assert program_snapshot(install) == before
    package.write_bytes(good)
    assert run(install, vendor, "--offline", str(offline)) == 0
    assert program_files(install) == vendor_files(vendor.trees[1155], 1155)


def test_json_progress_lines(
    install: Path, vendor: Vendor, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(install, vendor, "--progress", "json") == 0
    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    phases = {(line.get("phase"), line.get("build")) for line in lines if "phase" in line}
    assert ("download", None) in phases and ("backup", 1147) in phases
    assert {("apply", b) for b in (1148, 1150, 1152, 1155)} <= phases
    finals = [
        line for line in lines if line.get("phase") == "apply" and line["done"] == line["total"]
    ]
    assert len(finals) >= 3


# --- every error code, and nothing changed ---------------------------------------------------


def _set_ini(install: Path, **values: str) -> None:
    path = install / CONFIG_FILE
    text = path.read_text()
    for key, value in values.items():
        lines = [
            f"{key} = {value}" if line.startswith(f"{key} =") else line
            for line in text.splitlines()
        ]
        text = "\n".join(lines) + "\n"
    path.write_text(text)


@pytest.mark.parametrize(
    "license_number,code", [("", 1), ("bad number!", 1), (REVOKED, 2), (UNREGISTERED, 7)]
)
def test_license_errors(
    install: Path,
    vendor: Vendor,
    license_number: str,
    code: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _set_ini(install, license=license_number)
    before = program_snapshot(install)
    assert run(install, vendor) == code
    assert f"Error {code}" in capsys.readouterr().err
    assert program_snapshot(install) == before


def test_missing_license_is_error_1_before_any_traffic(install: Path, vendor: Vendor) -> None:
    relay = Relay(("127.0.0.1", _free_port()))
    try:
        _set_ini(install, license="", server=f"http://127.0.0.1:{relay.port}")
        assert run(install, vendor) == 1
        assert relay.sent == []
    finally:
        relay.close()


def test_server_down_is_error_6(install: Path, vendor: Vendor) -> None:
    _set_ini(install, server=f"http://127.0.0.1:{_free_port()}")
    before = program_snapshot(install)
    assert run(install, vendor) == 6
    assert program_snapshot(install) == before


def test_install_problems_are_error_11(tmp_path: Path, install: Path, vendor: Vendor) -> None:
    assert run(tmp_path / "nowhere", vendor) == 11
    (install / BUILD_FILE).write_text("eleven\n")
    assert run(install, vendor) == 11
    (install / BUILD_FILE).unlink()
    assert run(install, vendor) == 11


def test_bad_arguments_are_error_10(install: Path, vendor: Vendor) -> None:
    assert run(install, vendor, "--progress", "fancy") == 10


def test_foreign_root_is_error_12(install: Path, vendor: Vendor, tmp_path: Path) -> None:
    from updater.publisher import repository

    repository.init_repository(tmp_path / "other", tmp_path / "other-keys")
    before = program_snapshot(install)
    code = main(
        [
            "--install-dir",
            str(install),
            "--trusted-root",
            str(tmp_path / "other/metadata/1.root.json"),
            "--yes",
            "--progress",
            "none",
        ]
    )
    assert code == 12
    assert program_snapshot(install) == before


def test_unknown_installed_build_is_error_21(install: Path, vendor: Vendor) -> None:
    (install / BUILD_FILE).write_text("1149\n")
    before = program_snapshot(install)
    assert run(install, vendor) == 21
    assert program_snapshot(install) == before


def test_host_that_does_not_exit_is_error_19(install: Path, vendor: Vendor) -> None:
    host = subprocess.Popen(["sleep", "30"])
    try:
        before = program_snapshot(install)
        assert run(install, vendor, "--wait-pid", str(host.pid), "--wait-timeout", "1") == 19
        assert program_snapshot(install) == before
    finally:
        host.kill()
        host.wait()


def test_second_updater_is_error_18(install: Path, vendor: Vendor) -> None:
    lock = install / WORK_DIR / "update.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, filelock; l = filelock.FileLock(sys.argv[1]); l.acquire();"
            " print('held', flush=True); time.sleep(30)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = program_snapshot(install)
        assert run(install, vendor) == 18
        assert program_snapshot(install) == before
    finally:
        holder.kill()
        holder.wait()


def _ops_of_full_update(tmp_path: Path, vendor: Vendor, server_url: str) -> list[str]:
    probe = make_install(tmp_path / "probe", vendor.trees[1147], 1147, server_url)
    plan = FaultPlan(at=0)
    fileops.set_hook(plan)
    try:
        assert run(probe, vendor) == 0
    finally:
        fileops.set_hook(None)
    return plan.seen


def test_failure_in_second_of_four_builds_restores(
    install: Path,
    vendor: Vendor,
    server_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ops = _ops_of_full_update(tmp_path, vendor, server_url)
    # the replace of the file that only build 1150 adds: the middle of the second build
    at = next(
        i
        for i, op in enumerate(ops, 1)
        if op.startswith("replace") and op.endswith("/Program/empty2.cfg")
    )
    program_before, data_before = program_snapshot(install), data_snapshot(install)
    fileops.set_hook(FaultPlan(at=at))
    assert run(install, vendor) == 16
    fileops.set_hook(None)
    assert "restored to build 1147" in capsys.readouterr().err
    assert program_snapshot(install) == program_before
    assert data_snapshot(install) == data_before
    assert not journal_path(install).exists()
    assert run(install, vendor) == 0
    assert program_files(install) == vendor_files(vendor.trees[1155], 1155)


def test_failed_restore_is_error_17_and_next_run_recovers(
    install: Path, vendor: Vendor, server_url: str, tmp_path: Path
) -> None:
    ops = _ops_of_full_update(tmp_path, vendor, server_url)
    at = next(
        i
        for i, op in enumerate(ops, 1)
        if op.startswith("replace") and op.endswith("/Program/empty2.cfg")
    )
    program_before, data_before = program_snapshot(install), data_snapshot(install)
    fileops.set_hook(FaultPlan(at=at, every_after=True))
    assert run(install, vendor) == 17
    fileops.set_hook(None)
    assert journal_path(install).exists()
    assert run(install, vendor, "--check") == 0  # a check changes nothing, even now
    assert journal_path(install).exists()
    assert run(install, vendor) == 0
    assert program_files(install) == vendor_files(vendor.trees[1155], 1155)
    assert data_snapshot(install) == data_before
    history = (install / LOG_DIR / "update-history.log").read_text()
    assert "recovered" in history and "RESTORE FAILED" in history
    del program_before


def test_manual_restore(install: Path, vendor: Vendor) -> None:
    program_before = program_files(install)
    assert run(install, vendor) == 0
    assert program_files(install) != program_before
    assert run(install, vendor, "--restore") == 0
    assert program_files(install) == program_before


# --- the network: resume and privacy --------------------------------------------------------


def test_resume_after_connection_drop(install: Path, vendor: Vendor, server_url: str) -> None:
    port = int(server_url.rsplit(":", 1)[1])
    relay = Relay(("127.0.0.1", port), cut_package_after=12000)
    try:
        _set_ini(install, server=f"http://127.0.0.1:{relay.port}")
        before = program_snapshot(install)
        assert run(install, vendor) == 6
        assert relay.cuts == 1
        assert program_snapshot(install) == before
        parts = list((install / WORK_DIR / "downloads").glob("*.part"))
        assert parts and parts[0].stat().st_size > 0
        assert run(install, vendor) == 0
        assert any("Range: bytes=" in r and "If-Range:" in r for r in relay.requests())
        assert program_files(install) == vendor_files(vendor.trees[1155], 1155)
    finally:
        relay.close()


def test_requests_carry_only_the_license_and_build_numbers(
    vendor: Vendor, server_url: str, tmp_path: Path
) -> None:
    port = int(server_url.rsplit(":", 1)[1])
    relay = Relay(("127.0.0.1", port))
    install = make_install(tmp_path / "Praxis Dr Mustermann", vendor.trees[1147], 1147, server_url)
    try:
        _set_ini(install, server=f"http://127.0.0.1:{relay.port}")
        assert run(install, vendor) == 0
        requests = relay.requests()
    finally:
        relay.close()
    assert len(requests) >= 8
    allowed = {"host", "x-opusi-license", "user-agent", "accept-encoding", "range", "if-range"}
    secrets = [socket.gethostname(), str(install), "Mustermann", "Praxis", str(tmp_path)]
    user = getpass.getuser()
    for request in requests:
        line, *headers = request.split("\r\n")
        assert line.startswith("GET /metadata/") or line.startswith("GET /targets/"), line
        names = {h.split(":", 1)[0].lower() for h in headers}
        assert names <= allowed, names
        assert f"X-Opusi-License: {LICENSE}" in headers
        assert any(h.startswith("User-Agent: opusi-INSTALLUpdate/") for h in headers)
        for secret in secrets:
            assert secret not in request, (secret, request)
        assert all(user not in h for h in headers), (user, headers)


def test_list_package(vendor: Vendor, capsys: pytest.CaptureFixture[str]) -> None:
    pkg = next((vendor.repo / "targets" / "builds").glob("*.1150.7z"))
    assert main(["--list-package", str(pkg)]) == 0
    out = capsys.readouterr().out
    assert "Program/empty2.cfg" in out and "2 entries" in out
    assert main(["--list-package", str(vendor.root_file)]) == 13
