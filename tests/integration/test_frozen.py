"""The frozen programs (PyInstaller), run with an empty environment and Python hidden.

The session builds ``opusi-INSTALLUpdate`` and ``opusi-update`` once with ``scripts/build``,
with the root metadata of a vendor repository made for these tests built in, and publishes the
frozen updater there, so the bootstrap downloads and starts the real thing.

Python is hidden by a mount namespace (``unshare -m``) that lays empty tmpfs over every
directory of the interpreter and its packages. Where the machine does not allow that, the tests
fall back to ``env -i`` alone and say so in their output.
"""

from __future__ import annotations

import glob
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import (
    Frozen,
    data_snapshot,
    make_install,
    program_files,
    vendor_files,
)
from updater.core.paths import LOG_DIR
from updater.shared import system

pytestmark = [pytest.mark.frozen, pytest.mark.posix_only]
ROOT = Path(__file__).resolve().parents[2]


def _python_dirs() -> list[str]:
    found = {sys.prefix, sys.base_prefix, str(ROOT / ".venv"), str(ROOT / "updater")}
    for pattern in (
        "/usr/lib/python3*",
        "/usr/local/lib/python3*",
        "/usr/lib/python3/dist-packages",
    ):
        found.update(glob.glob(pattern))
    dirs = sorted(os.path.realpath(d) for d in found if os.path.isdir(d))
    # a tmpfs over a folder hides what is below it: mount only the outermost ones
    return [d for d in dirs if not any(d != o and d.startswith(o + "/") for o in dirs)]


def _can_hide_python() -> bool:
    probe = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs none /mnt && echo ok",
        ],
        capture_output=True,
        text=True,
    )
    return probe.returncode == 0 and probe.stdout.strip() == "ok"


HIDE = _can_hide_python()


def hidden(command: list[str | Path]) -> list[str]:
    """``command`` with an empty environment and, where possible, no Python to be found."""
    state = f"OPUSI_STATE_DIR={os.environ['OPUSI_STATE_DIR']}"  # records: the tests' folder
    cmd = " ".join(shlex.quote(str(c)) for c in [state, *command])
    if not HIDE:
        return ["env", "-i", state, *map(str, command)]
    mounts = "; ".join(f"mount -t tmpfs none {shlex.quote(d)}" for d in _python_dirs())
    check = "if command -v python3 >/dev/null 2>&1 && python3 -c 1 2>/dev/null; then exit 99; fi"
    return [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        f"set -e; {mounts}; {check}; exec env -i {cmd}",
    ]


def _say(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[frozen] {text}")


def test_frozen_update_with_python_hidden(
    frozen: Frozen, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _say(
        capsys,
        "Python hidden by a mount namespace"
        if HIDE
        else "FELL BACK to env -i only: this machine does not allow a mount namespace",
    )
    install = make_install(tmp_path / "opusi", frozen.vendor.trees[1147], 1147, frozen.url)
    data_before = data_snapshot(install)
    result = subprocess.run(
        hidden([frozen.updater, "--install-dir", install, "--yes", "--progress", "none"]),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Updated from build 1147 to 1155" in result.stdout
    assert program_files(install) == vendor_files(frozen.vendor.trees[1155], 1155)
    assert data_snapshot(install) == data_before
    # the frozen program carries ISA-L: its backup was not written by the slower zlib fallback
    logs = "".join(p.read_text(encoding="utf-8") for p in (install / LOG_DIR).glob("update-*.log"))
    assert "Deflate by isal" in logs


def test_frozen_error_codes(frozen: Frozen, tmp_path: Path) -> None:
    install = make_install(
        tmp_path / "opusi", frozen.vendor.trees[1147], 1147, frozen.url, license_number=""
    )
    result = subprocess.run(
        hidden([frozen.updater, "--install-dir", install, "--yes"]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Error 1" in result.stderr
    # German from the system's language: the compiled catalog is inside the frozen program
    result = subprocess.run(
        hidden(["LANG=de_DE.UTF-8", frozen.updater, "--install-dir", install, "--yes"]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "Fehler 1: Lizenzproblem." in result.stderr, result.stderr
    # no terminal, so it would show its window; with no display it says so and stays in text
    assert result.stderr.startswith("Kein Fenster ("), result.stderr
    result = subprocess.run(
        hidden(
            [
                frozen.updater,
                "--install-dir",
                install,
                "--yes",
                "--license",
                "X-1",
                "--server",
                "http://127.0.0.1:9",
            ]
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 6 and "Error 6" in result.stderr
    result = subprocess.run(
        hidden([frozen.updater, "--bogus"]), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 10


def test_frozen_bootstrap_starts_the_published_updater(frozen: Frozen, tmp_path: Path) -> None:
    install = make_install(tmp_path / "opusi", frozen.vendor.trees[1147], 1147, frozen.url)
    check = subprocess.run(
        hidden([frozen.bootstrap, "check", "--install-dir", install]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["pending"] == [1148, 1150, 1152, 1155]
    host = subprocess.Popen(["sleep", "2"])
    started = subprocess.run(
        [
            str(frozen.bootstrap),
            "start",
            "--install-dir",
            str(install),
            "--admin",
            "--host-pid",
            str(host.pid),
            "--download-dir",
            str(tmp_path / "dl"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={},
    )
    assert started.returncode == 0, started.stderr
    pid = json.loads(started.stdout)["pid"]
    host.wait()
    deadline = time.monotonic() + 120
    while system.process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert program_files(install) == vendor_files(frozen.vendor.trees[1155], 1155)


def test_frozen_size_and_start_up(frozen: Frozen, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    result = subprocess.run(
        hidden([frozen.updater, "--version"]), capture_output=True, text=True, timeout=60
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0 and "opusi-INSTALLUpdate" in result.stdout
    size = frozen.updater.stat().st_size
    _say(capsys, f"opusi-INSTALLUpdate: {size / 1e6:.1f} MB, --version in {seconds:.2f} s")
    assert size < 60e6  # a sanity bound; the benchmark reports the real figure against its goal
