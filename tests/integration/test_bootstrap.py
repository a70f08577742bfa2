"""The bootstrap (``opusi-update check|start``) against the real server, real installs, and a
real updater started detached that really updates the install."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    REVOKED,
    UNREGISTERED,
    Vendor,
    make_install,
    make_vendor,
    program_files,
    program_snapshot,
    vendor_files,
)
from tests.support.trees import snapshot
from updater.bootstrap.api import check_for_updates, updater_command
from updater.bootstrap.cli import main
from updater.bootstrap.spawn import spawn_detached
from updater.core.errors import RefusedByPolicyError
from updater.core.paths import BUILD_FILE, CONFIG_FILE
from updater.install.cli import main as updater_main
from updater.publisher import publish
from updater.publisher.serving import Server
from updater.shared.system import process_alive

PLATFORM = "linux-x86_64"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _set_ini(install: Path, **values: str) -> None:
    """Set ``key = value`` lines of update.ini (keys of [Update] or [Allgemein] alike)."""
    path = install / CONFIG_FILE
    lines = path.read_text().splitlines()
    for key, value in values.items():
        lines = [
            f"{key} = {value}" if line.split("=")[0].strip() == key else line for line in lines
        ]
    path.write_text("\n".join(lines) + "\n")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    """Run ``opusi-update``; return its code, the one JSON object on stdout, and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    return code, json.loads(lines[0]), err


def _check(
    capsys: pytest.CaptureFixture[str], install: Path, vendor: Vendor, *extra: str
) -> tuple[int, dict[str, Any], str]:
    return _run(
        capsys,
        "check",
        "--install-dir",
        str(install),
        "--trusted-root",
        str(vendor.root_file),
        *extra,
    )


def _start(
    capsys: pytest.CaptureFixture[str], install: Path, vendor: Vendor, *extra: str
) -> tuple[int, dict[str, Any], str]:
    return _run(
        capsys,
        "start",
        "--install-dir",
        str(install),
        "--trusted-root",
        str(vendor.root_file),
        *extra,
    )


def _approved(downloads: Path, *extra: str) -> tuple[str, ...]:
    """``start``'s arguments as a host app passes them once an admin approved: this process is
    the host, ``downloads`` the download folder."""
    return ("--admin", "--host-pid", str(os.getpid()), "--download-dir", str(downloads), *extra)


# --- check ------------------------------------------------------------------------------------


def test_check_reports_pending_builds_and_changes_nothing(
    install: Path, vendor: Vendor, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(install)
    code, report, _ = _check(capsys, install, vendor)
    assert code == 0
    assert report["status"] == "pending"
    assert report["installed"] == 1147 and report["pending"] == [1148, 1150, 1152, 1155]
    assert report["target"] == 1155 and report["download_bytes"] > 0
    assert report["updater_available"] is False and report["interrupted"] is False
    assert snapshot(install) == before  # not even the metadata cache


def test_check_reuses_the_updaters_cache_without_writing_it(
    install: Path, vendor: Vendor, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        updater_main(
            [
                "--install-dir",
                str(install),
                "--trusted-root",
                str(vendor.root_file),
                "--check",
                "--progress",
                "none",
            ]
        )
        == 0
    )
    capsys.readouterr()
    before = snapshot(install)
    assert any(p.endswith("metadata/timestamp.json") for p in before)
    code, report, _ = _check(capsys, install, vendor)
    assert (code, report["pending"]) == (0, [1148, 1150, 1152, 1155])
    assert snapshot(install) == before


def test_check_up_to_date(
    tmp_path: Path, vendor: Vendor, server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    install = make_install(tmp_path / "opusi", vendor.trees[1155], 1155, server_url)
    code, report, _ = _check(capsys, install, vendor)
    assert code == 0
    assert report == {
        "status": "up-to-date",
        "installed": 1155,
        "pending": [],
        "target": 1155,
        "download_bytes": 0,
        "updater_available": False,
        "interrupted": False,
        "withdrawn": [],
        "held_back": [],
    }


def test_check_at_startup(
    install: Path, vendor: Vendor, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, err = _check(capsys, install, vendor, "--at-startup")
    assert (code, report["status"], report["code"]) == (24, "refused", 24)
    assert "needs build 1190" in report["message"] and "Error 24" in err
    code, report, _ = _check(capsys, install, vendor, "--at-startup", "--min-build-startup", "1147")
    assert (code, report["status"], report["pending"]) == (0, "pending", [1148, 1150, 1152, 1155])


@pytest.mark.parametrize(
    "setup,extra,phrase",
    [
        ({"52": "0"}, (), "set option Allgemein 52"),
        ({"53": "0"}, ("--at-startup", "--min-build-startup", "1147"), "set option Allgemein 53"),
        ({"BUILD": "1100"}, (), "needs build 1147 or newer"),
        ({"BUILD": "1100"}, ("--min-build", "1000", "--at-startup"), "needs build 1190 or newer"),
    ],
)
def test_check_refusals_come_before_any_traffic(
    install: Path,
    vendor: Vendor,
    capsys: pytest.CaptureFixture[str],
    setup: dict[str, str],
    extra: tuple[str, ...],
    phrase: str,
) -> None:
    if "BUILD" in setup:
        (install / BUILD_FILE).write_text(setup.pop("BUILD") + "\n")
    _set_ini(install, server=f"http://127.0.0.1:{_free_port()}", **setup)  # traffic would be 6
    before = snapshot(install)
    code, report, err = _check(capsys, install, vendor, *extra)
    assert code == 24 and report["status"] == "refused" and report["code"] == 24
    assert phrase in report["message"] and phrase in err
    assert snapshot(install) == before


def test_lower_min_build_lets_an_old_install_through(
    install: Path, vendor: Vendor, capsys: pytest.CaptureFixture[str]
) -> None:
    (install / BUILD_FILE).write_text("1100\n")
    code, report, _ = _check(capsys, install, vendor, "--min-build", "1000")
    assert code == 21 and report["status"] == "error"  # past the rule: the server knows no 1100


@pytest.mark.parametrize(
    "license_number,code", [("", 1), ("bad number!", 1), (REVOKED, 2), (UNREGISTERED, 7)]
)
def test_check_license_errors(
    install: Path,
    vendor: Vendor,
    capsys: pytest.CaptureFixture[str],
    license_number: str,
    code: int,
) -> None:
    _set_ini(install, license=license_number)
    before = snapshot(install)
    got, report, err = _check(capsys, install, vendor)
    assert (got, report["status"], report["code"]) == (code, "error", code)
    assert report["message"] and f"Error {code}" in err
    assert snapshot(install) == before


def test_check_no_connection_is_6(
    install: Path, vendor: Vendor, capsys: pytest.CaptureFixture[str]
) -> None:
    _set_ini(install, server=f"http://127.0.0.1:{_free_port()}")
    code, report, _ = _check(capsys, install, vendor)
    assert (code, report["status"], report["code"]) == (6, "error", 6)


def test_check_bad_arguments_are_json_too(capsys: pytest.CaptureFixture[str]) -> None:
    code, report, _ = _run(capsys, "check")
    assert (code, report["status"], report["code"]) == (10, "error", 10)


def test_python_api(install: Path, vendor: Vendor) -> None:
    result = check_for_updates(install, trusted_root=vendor.root_file)
    assert (result.installed, result.pending, result.target) == (
        1147,
        (1148, 1150, 1152, 1155),
        1155,
    )
    assert result.status == "pending" and not result.updater_available
    with pytest.raises(RefusedByPolicyError, match="1190"):
        check_for_updates(install, trusted_root=vendor.root_file, at_startup=True)


# --- start: refusals --------------------------------------------------------------------------


def test_start_without_admin_is_refused(
    install: Path, vendor: Vendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, _ = _start(
        capsys,
        install,
        vendor,
        "--host-pid",
        str(os.getpid()),
        "--download-dir",
        str(tmp_path / "dl"),
    )
    assert (code, report["status"], report["code"]) == (24, "refused", 24)
    assert "administrator must approve the update in opus i" in report["message"]
    assert not (tmp_path / "dl").exists()


@pytest.mark.parametrize(
    "setup,phrase", [({"52": "0"}, "Allgemein 52"), ({"BUILD": "1100"}, "1147")]
)
def test_start_follows_the_rules(
    install: Path,
    vendor: Vendor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    setup: dict[str, str],
    phrase: str,
) -> None:
    if "BUILD" in setup:
        (install / BUILD_FILE).write_text(setup.pop("BUILD") + "\n")
    _set_ini(install, **setup)
    code, report, _ = _start(capsys, install, vendor, *_approved(tmp_path / "dl"))
    assert (code, report["status"]) == (24, "refused") and phrase in report["message"]
    assert not (tmp_path / "dl").exists()


def test_start_refuses_a_download_dir_in_the_install(
    install: Path, vendor: Vendor, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(install)
    inside = install / "Program" / "updater-here"
    code, report, _ = _start(capsys, install, vendor, *_approved(inside))
    assert (code, report["status"]) == (24, "refused")
    assert "outside the installation" in report["hint"]
    assert snapshot(install) == before


def test_start_without_a_published_updater_is_23(
    install: Path, vendor: Vendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, _ = _start(
        capsys, install, vendor, *_approved(tmp_path / "dl", "--platform", "windows-arm64")
    )
    assert (code, report["code"]) == (23, 23)
    assert "no updater for this platform" in report["message"]
    assert not (tmp_path / "dl").exists()


def test_updater_command_passes_root_and_proxy(tmp_path: Path) -> None:
    command = updater_command(
        tmp_path / "u",
        tmp_path / "i",
        42,
        trusted_root=tmp_path / "r.json",
        proxy="http://proxy:3128",
        extra_args=("-v",),
    )
    assert command == (
        str(tmp_path / "u"),
        "--install-dir",
        str(tmp_path / "i"),
        "--wait-pid",
        "42",
        "--yes",
        "--gui",
        "--trusted-root",
        str(tmp_path / "r.json"),
        "--proxy",
        "http://proxy:3128",
        "-v",
    )


# --- start: a real updater, published, verified, detached -----------------------------------


@dataclass(frozen=True)
class Published:
    vendor: Vendor
    url: str
    script: bytes


def _updater_script(body: str) -> bytes:
    return f"#!/bin/sh\n{body}\n".encode()


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    """A vendor of its own (the session repository stays as it is) with an "updater" for
    linux-x86_64: a script that runs the real updater module, so it really updates."""
    base = tmp_path_factory.mktemp("own-vendor")
    own = make_vendor(base)
    script = _updater_script(f'exec {shlex.quote(sys.executable)} -m updater.install.cli "$@"')
    exe = base / "opusi-INSTALLUpdate"
    exe.write_bytes(script)
    publish.publish_updater(own.repo, own.keys, exe, PLATFORM, "test")
    server = Server(own.repo, own.db, threads=4)
    server.start()
    try:
        yield Published(own, f"http://127.0.0.1:{server.port}", script)
    finally:
        server.stop()


def _wait_for(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())


def _reap(pid: int) -> None:
    """Collect the exited updater (our child here; after the host exits it would be init's)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def test_start_runs_the_updater_detached_after_the_host_exits(
    published: Published,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own = published.vendor
    install = make_install(tmp_path / "opusi", own.trees[1147], 1147, published.url)
    temp = tmp_path / "system-temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # the default download folder's parent
    host = subprocess.Popen(["sleep", "2"])
    try:
        started = time.monotonic()
        code, report, _ = _start(
            capsys, install, own, "--admin", "--host-pid", str(host.pid), "--platform", PLATFORM
        )
        took = time.monotonic() - started
        assert code == 0 and report["status"] == "started", report
        assert took < 5 and host.poll() is None  # returned at once, the host still runs
        updater = Path(report["updater"])
        assert updater.parent.parent == temp and updater.read_bytes() == published.script
        assert os.access(updater, os.X_OK)
        assert (install / BUILD_FILE).read_text().strip() == "1147"  # it waits for the host
        host.wait()
        host_gone = time.time()
        assert _wait_for(lambda: (install / BUILD_FILE).read_text().strip() == "1155", 60)
        assert (install / BUILD_FILE).stat().st_mtime >= host_gone - 0.05
        assert _wait_for(lambda: not process_alive(report["pid"]), 30)
        _reap(report["pid"])
    finally:
        host.kill()
        host.wait()
    assert program_files(install) == vendor_files(own.trees[1155], 1155)
    output = Path(report["log"]).read_text()
    assert f"Waiting for the program (process {host.pid}) to exit" in output
    assert "Updated from build 1147 to 1155" in output


def test_start_refuses_a_tampered_updater_and_runs_nothing(
    published: Published, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    own = published.vendor
    marker = tmp_path / "tampered-updater-ran"
    good = _updater_script("exit 0")
    exe = tmp_path / "opusi-INSTALLUpdate"
    exe.write_bytes(good)
    platform = "linux-tampered"  # a platform of its own: the real updater stays intact
    publish.publish_updater(own.repo, own.keys, exe, platform)
    [stored] = (own.repo / "targets" / "updater" / platform).iterdir()
    evil = _updater_script(f"touch {shlex.quote(str(marker))}")
    stored.write_bytes(evil)
    install = make_install(tmp_path / "opusi", own.trees[1147], 1147, published.url)
    downloads = tmp_path / "dl"
    code, report, err = _start(capsys, install, own, *_approved(downloads, "--platform", platform))
    assert (code, report["status"], report["code"]) == (13, "error", 13) and "Error 13" in err
    assert list(downloads.iterdir()) == []
    time.sleep(0.5)
    assert not marker.exists()
    assert (install / BUILD_FILE).read_text().strip() == "1147"


def test_start_leaves_no_temp_folder_when_it_fails(
    published: Published,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own = published.vendor
    install = make_install(tmp_path / "opusi", own.trees[1147], 1147, published.url)
    temp = tmp_path / "system-temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    stored = next((own.repo / "targets" / "updater" / PLATFORM).iterdir())
    good = stored.read_bytes()
    stored.write_bytes(good.replace(b"exec", b"EXEC"))
    try:
        code, _, _ = _start(
            capsys, install, own, "--admin", "--host-pid", str(os.getpid()), "--platform", PLATFORM
        )
    finally:
        stored.write_bytes(good)
    assert code == 13
    assert list(temp.iterdir()) == []


def test_spawn_failure_is_a_refusal(tmp_path: Path) -> None:
    not_executable = tmp_path / "updater"
    not_executable.write_bytes(b"#!/bin/sh\n")
    not_executable.chmod(0o644)
    with pytest.raises(RefusedByPolicyError, match="refused to start"):
        spawn_detached([str(not_executable)], tmp_path)


# --- prepare: the updater's --prepare run, in the foreground, its JSON lines passed on ---------


def _prepare(capsys: pytest.CaptureFixture[str], install: Path, vendor: Vendor,
             *extra: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["prepare", "--install-dir", str(install), "--trusted-root",
                 str(vendor.root_file), "--platform", PLATFORM, *extra])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.strip().splitlines()]


def test_prepare_then_start(published: Published, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    own = published.vendor
    install = make_install(tmp_path / "opusi", own.trees[1147], 1147, published.url)
    program = program_snapshot(install)
    code, lines = _prepare(capsys, install, own)
    assert code == 0 and lines[-1] == {"status": "prepared"}, lines
    phases = {line.get("phase") for line in lines}
    assert {"download", "prepare", "backup"} <= phases
    assert program_snapshot(install) == program  # nothing of the program changed
    # then the update itself: it only applies
    host = subprocess.Popen(["sleep", "0.5"])
    try:
        code, report, _ = _start(capsys, install, own, "--admin", "--host-pid", str(host.pid),
                                 "--platform", PLATFORM)
        assert code == 0, report
        host.wait()
        assert _wait_for(lambda: (install / BUILD_FILE).read_text().strip() == "1155", 60)
        assert _wait_for(lambda: not process_alive(report["pid"]), 30)
        _reap(report["pid"])
    finally:
        host.kill()
        host.wait()
    assert program_files(install) == vendor_files(own.trees[1155], 1155)
    assert "Backup reused" in Path(report["log"]).read_text()


def test_prepare_reports_the_updaters_error(published: Published, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The updater's prepare run fails (a build the server does not know: no path, 21): the
    host reads the updater's own error line, then the bootstrap's JSON with code and title."""
    own = published.vendor
    install = make_install(tmp_path / "opusi", own.trees[1147], 1000, published.url)
    program = program_snapshot(install)
    code, lines = _prepare(capsys, install, own, "--min-build", "1")
    assert code == 21, lines
    assert lines[-2]["event"] == "error" and lines[-2]["code"] == 21
    assert lines[-1]["status"] == "error" and lines[-1]["code"] == 21
    assert "1000" in lines[-1]["message"] and lines[-1]["localized"].startswith("Error 21: ")
    assert program_snapshot(install) == program
