"""The Windows tier's shared parts: both .exe files built once, a served vendor repository.

The session builds ``opusi-INSTALLUpdate.exe`` and ``opusi-update.exe`` with ``scripts/windows``
(a Windows CPython under Wine, PyInstaller for Windows), with the root of a vendor repository
made for these tests built in, publishes the .exe for ``windows-x86_64`` and serves the
repository with the project's server on 127.0.0.1. Installs are real trees on this machine,
reached by the Windows programs through Wine's ``Z:`` drive (or a drive letter of their own).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Vendor, make_vendor
from tests.support.wine import (
    build_holdfile,
    build_windows,
    run_windows,
    stop_wineserver,
    win_path,
    wine,
)
from updater.publisher import publish
from updater.publisher.serving import Server

OLD, NEW = 1147, 1155


@dataclass(frozen=True)
class Windows:
    """The Windows programs and the served vendor repository they were built for."""

    vendor: Vendor
    url: str
    updater: Path
    bootstrap: Path


@pytest.fixture(scope="session")
def windows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Windows]:
    base = tmp_path_factory.mktemp("windows")
    vendor = make_vendor(base, methods={1148: "lzma2", 1150: "zstd", 1155: "zstd"})
    # scripts/windows installs Wine first where it is missing (as root or with sudo), so a new
    # machine builds and runs this tier; asking for wine before it ran failed every test there
    try:
        updater_exe, bootstrap_exe = build_windows(vendor.root_file, base / "dist")
    except subprocess.CalledProcessError as e:
        pytest.fail(f"scripts/windows failed (status {e.returncode}; its messages are above)")
    if wine() is None:
        pytest.fail("wine is not installed: scripts/windows installs it (as root or with sudo)")
    publish.publish_updater(vendor.repo, vendor.keys, updater_exe, "windows-x86_64", "test")
    server = Server(vendor.repo, vendor.db, threads=8)
    server.start()
    try:
        yield Windows(vendor, f"http://127.0.0.1:{server.port}", updater_exe, bootstrap_exe)
    finally:
        server.stop()
        stop_wineserver()


@pytest.fixture(scope="session")
def holdfile(windows: Windows, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``holdfile.exe`` (tests/windows/holdfile.c), built with MinGW."""
    return build_holdfile(tmp_path_factory.mktemp("holdfile"))


def update(windows: Windows, install: Path | str, *args: str, vendor: Vendor | None = None,
           env: dict[str, str] | None = None, timeout: float = 300) -> tuple[int, str]:
    """Run the Windows updater on ``install`` unattended; return its exit code and output.

    ``install`` is a path on this machine (reached through ``Z:``) or a Windows path as is;
    ``vendor``: whose root to trust (default: the served one's); ``env``: more variables.
    """
    where = install if isinstance(install, str) else win_path(install)
    root = (vendor or windows.vendor).root_file
    done = run_windows(windows.updater, "--install-dir", where,
                       "--trusted-root", win_path(root), "--yes",
                       "--progress", "none", "--timeout", "5", *args, env=env, timeout=timeout)
    return done.returncode, done.stdout + done.stderr
