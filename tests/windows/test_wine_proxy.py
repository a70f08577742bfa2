"""The proxy a Windows machine is set up with, taken from the registry as Windows programs do.

A practice's network often reaches the Internet only through a proxy, set once in Windows'
"Internet Options" (``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings``:
``ProxyEnable``, ``ProxyServer``), not in environment variables. The updater reads it there when
neither ``--proxy``, update.ini nor the environment names one.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import data_snapshot, make_install, program_files, vendor_files
from tests.support.proxies import Tinyproxy, start_tinyproxy
from tests.support.wine import wine_env
from tests.windows.conftest import NEW, OLD, Windows, update

pytestmark = [pytest.mark.windows]
SETTINGS = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Internet Settings"


def _reg(*args: str) -> None:
    subprocess.run(["wine", "reg", *args], check=True, stdin=subprocess.DEVNULL,
                   capture_output=True, env=wine_env(), timeout=120)


@pytest.fixture
def system_proxy(windows: Windows, tmp_path: Path) -> Iterator[Tinyproxy]:
    """tinyproxy on 127.0.0.1, entered as this Windows user's proxy in the registry."""
    proxy = start_tinyproxy(tmp_path / "tinyproxy", connect_ports=[])
    _reg("add", SETTINGS, "/v", "ProxyEnable", "/t", "REG_DWORD", "/d", "1", "/f")
    _reg("add", SETTINGS, "/v", "ProxyServer", "/t", "REG_SZ", "/d", f"127.0.0.1:{proxy.port}",
         "/f")
    try:
        yield proxy
    finally:
        _reg("add", SETTINGS, "/v", "ProxyEnable", "/t", "REG_DWORD", "/d", "0", "/f")
        _reg("delete", SETTINGS, "/v", "ProxyServer", "/f")
        proxy.stop()


def test_update_through_the_proxy_set_in_windows(windows: Windows, system_proxy: Tinyproxy,
                                                 tmp_path: Path) -> None:
    """No proxy in update.ini or the environment: the update goes through the system's proxy.

    Windows API: RegOpenKeyExW/RegQueryValueExW of the Internet Settings (Python's
    ``urllib.request.getproxies_registry``, through the transport's ``proxy_for``)."""
    install = make_install(tmp_path / "opusi", windows.vendor.trees[OLD], OLD, windows.url)
    data = data_snapshot(install)
    code, output = update(windows, install)
    assert code == 0, output
    assert program_files(install) == vendor_files(windows.vendor.trees[NEW], NEW)
    assert data_snapshot(install) == data
    port = windows.url.rsplit(":", 1)[1]
    log = system_proxy.log()
    assert f"GET http://127.0.0.1:{port}/metadata/timestamp.json" in log, log[-2000:]
    assert "/targets/" in log, log[-2000:]
