"""Shared fixtures: a vendor repository with four builds, its real server, real installs."""

from __future__ import annotations

import configparser
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.trees import program_builds, snapshot, write_tree
from updater.core.paths import BUILD_FILE, CONFIG_FILE, EXCLUDED_DIRS
from updater.publisher import publish, repository
from updater.publisher.licenses import open_registry
from updater.publisher.serving import Server
from updater.shared import fileops, package


@pytest.fixture(autouse=True, scope="session")
def _no_display() -> Iterator[None]:
    """No test opens a window on the developer's display by accident: the updater would wait
    for a click. The window tests bring their own display (Xvfb)."""
    import os

    saved = {name: os.environ.pop(name) for name in ("DISPLAY", "WAYLAND_DISPLAY")
             if name in os.environ}
    yield
    os.environ.update(saved)


def pytest_configure(config: pytest.Config) -> None:
    """Compile the message catalogs if they are stale (scripts/test does it too; a bare
    ``pytest`` run must not test German against an old .mo)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "catalogs", Path(__file__).resolve().parents[1] / "build_spec" / "catalogs.py")
    assert spec is not None and spec.loader is not None
    catalogs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(catalogs)
    catalogs.compile_all()
    # where the updater and the bootstrap record installs: the tests' own, never the user's
    if "OPUSI_STATE_DIR" not in os.environ:
        os.environ["OPUSI_STATE_DIR"] = tempfile.mkdtemp(prefix="opusi-state-")

LICENSE = "DEMO-1147"
REVOKED = "REVOKED-1"
UNREGISTERED = "NOBODY-1"


@dataclass(frozen=True)
class Vendor:
    """A published repository: its folder, keys, license registry and the vendor's trees."""

    repo: Path
    keys: Path
    db: Path
    trees: dict[int, Path]

    @property
    def root_file(self) -> Path:
        return self.repo / "metadata" / "1.root.json"


def make_vendor(
    base: Path,
    builds: dict[int, dict[str, bytes]] | None = None,
    methods: dict[int, str] | None = None,
) -> Vendor:
    """Init a repository, publish ``builds`` (default: the four test builds), register licenses.

    ``methods`` chooses the compression per build (default: the publisher's default).
    """
    repo_dir, keys, db = base / "repo", base / "keys", base / "licenses.sqlite3"
    repository.init_repository(repo_dir, keys)
    trees = {}
    for build, files in (builds or program_builds()).items():
        trees[build] = write_tree(base / f"tree-{build}", files)
        method = (methods or {}).get(build, package.DEFAULT_METHOD)
        publish.publish_build(repo_dir, keys, build, trees[build], method=method)
    with open_registry(db) as registry:
        registry.add(LICENSE, entitled_until=None, note="test customer")
        registry.add(REVOKED, entitled_until=None)
        registry.revoke(REVOKED)
    return Vendor(repo=repo_dir, keys=keys, db=db, trees=trees)


@pytest.fixture(scope="session")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Vendor:
    return make_vendor(tmp_path_factory.mktemp("vendor"))


@dataclass(frozen=True)
class Frozen:
    """The frozen programs, built with the root of their own vendor repository, and its server."""

    vendor: Vendor
    url: str
    updater: Path
    bootstrap: Path


@pytest.fixture(scope="session")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Frozen]:
    """A vendor with the frozen updater published for this platform, served on loopback."""
    from tests.support.frozen_build import build_frozen
    from updater.shared import system

    base = tmp_path_factory.mktemp("frozen")
    # every compression method the publisher writes, read back by the frozen updater
    vendor = make_vendor(base, methods={1148: "lzma2", 1150: "zstd", 1155: "lzma2"})
    updater_exe, bootstrap_exe = build_frozen(vendor.root_file, base / "dist")
    platform = system.platform_name()
    publish.publish_updater(vendor.repo, vendor.keys, updater_exe, platform, "test")
    server = Server(vendor.repo, vendor.db, threads=8)
    server.start()
    try:
        yield Frozen(vendor, f"http://127.0.0.1:{server.port}", updater_exe, bootstrap_exe)
    finally:
        server.stop()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--front", choices=("server", "nginx"), default="server",
        help="what the updater tests talk to: the project's server (default), or Debian's "
             "nginx with deploy/nginx/ in front of it (tests/nginx/test_same_suite.py)")


@pytest.fixture(scope="session")
def server_url(vendor: Vendor, request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The update server of the session's vendor: the project's server, or with ``--front
    nginx`` nginx with the shipped configuration in front of it (license decisions cached 2 s)."""
    with served(vendor, threads=8) as url:
        if request.config.getoption("--front") == "nginx":
            from tests.support.nginx import running

            with running(vendor.repo, url, tmp_path_factory.mktemp("nginx-front")) as front:
                yield front.url
        else:
            yield url


@contextmanager
def served(vendor: Vendor, threads: int = 4) -> Iterator[str]:
    """The project's server for ``vendor``'s repository on 127.0.0.1; yields its URL."""
    server = Server(vendor.repo, vendor.db, threads=threads)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def customer_data() -> dict[str, bytes]:
    """A file (two in nested folders) in every customer-data folder, as a practice has them."""
    files = {}
    for i, folder in enumerate(EXCLUDED_DIRS):
        files[f"{folder}/data-{i}.bin"] = f"customer data {i}".encode() * 50
        files[f"{folder}/sub/ordner ä/{i}.txt"] = f"more {i}".encode()
    return files


def make_install(
    root: Path,
    tree: Path,
    build: int,
    server_url: str,
    license_number: str = LICENSE,
    extra_ini: dict[str, str] | None = None,
) -> Path:
    """An install of ``build``: the vendor's tree, BUILD, update.ini, customer data."""
    shutil.copytree(tree, root)
    write_tree(root, customer_data())
    (root / BUILD_FILE).write_text(f"{build}\n")
    ini = configparser.ConfigParser()
    ini["Update"] = {"server": server_url, "license": license_number, **(extra_ini or {})}
    ini["Allgemein"] = {"52": "1", "53": "1"}
    with (root / CONFIG_FILE).open("w") as handle:
        ini.write(handle)
    return root


def data_snapshot(install: Path) -> dict[str, str]:
    """Snapshot of the customer-data folders, minus the updater's own backups, logs, state."""
    own = (
        "Database/SystemFiles/Backups",
        "Database/SystemFiles/Logs",
        "Database/SystemFiles/SecuMax2/UpdateFiles",
    )
    return {
        p: h
        for p, h in snapshot(install).items()
        if any(p.startswith(d + "/") for d in EXCLUDED_DIRS) and not p.startswith(own)
    }


def program_snapshot(install: Path) -> dict[str, str]:
    """Snapshot of the program files: everything outside the customer-data folders."""
    from updater.core.paths import is_excluded

    return {p: h for p, h in snapshot(install).items() if not is_excluded(p.rstrip("/"))}


def vendor_files(tree: Path, build: int) -> dict[str, str]:
    """What the program part of an install of ``build`` must be: the vendor's tree plus BUILD."""
    import hashlib

    files = {p: h for p, h in snapshot(tree).items() if not p.endswith("/")}
    files[BUILD_FILE] = hashlib.sha256(f"{build}\n".encode()).hexdigest()
    return files


def program_files(install: Path) -> dict[str, str]:
    """Program files of an install (no folders)."""
    return {p: h for p, h in program_snapshot(install).items() if not p.endswith("/")}


@pytest.fixture
def install(tmp_path: Path, vendor: Vendor, server_url: str) -> Path:
    return make_install(tmp_path / "opusi", vendor.trees[1147], 1147, server_url)


@pytest.fixture(autouse=True)
def _no_fault_plan() -> Iterator[None]:
    fileops.set_hook(None)
    yield
    fileops.set_hook(None)


def run_logs(install: Path) -> str:
    """The text of every run log (``Logs/update-*.log``) of ``install``, oldest first."""
    from updater.core.paths import LOG_DIR

    return "".join(p.read_text("utf-8", "replace")
                   for p in sorted((install / LOG_DIR).glob("update-*.log")))


@pytest.fixture(scope="module")
def display() -> Iterator[object]:
    """An Xvfb display for the window tests (tests/support/xvfb.py); skips without Xvfb."""
    from tests.support.xvfb import xvfb

    with xvfb() as shown:
        yield shown
