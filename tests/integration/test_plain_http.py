"""Plain http:// only to this machine: the license number is the only credential, so the updater
and the bootstrap refuse an http:// server anywhere else (error 11, nothing sent) unless
update.ini allows it. The runs that name an outside address run in a network namespace of their
own (``unshare -n``), where nothing can leave."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Vendor, make_install, program_files, vendor_files
from tests.support.crash import ROOT, hook_env, updater_args
from updater.core.errors import ConfigError
from updater.core.install import IniSettings
from updater.shared.config import server_url

OUTSIDE = "http://192.0.2.10:8080"  # TEST-NET-1: never routed; and the namespace has no network


def _ini(allow_http: bool = False) -> IniSettings:
    return IniSettings(server_url=None, license_number="DEMO-1147", proxy_url=None,
                       keep_backups=3, host_wait_seconds=120, option_52=True, option_53=True,
                       allow_http=allow_http)


@pytest.mark.parametrize("url", ["https://updates.vendor.example/opusi", "http://127.0.0.1:8080",
                                 "http://127.1.2.3", "http://[::1]:8080", "http://localhost:80"])
def test_https_and_loopback_are_fine(url: str) -> None:
    assert server_url(url, _ini()) == url


@pytest.mark.parametrize("url", [OUTSIDE, "http://updates.vendor.example/opusi",
                                 "http://127.0.0.1.nip.io", "http://[2001:db8::1]/"])
def test_plain_http_elsewhere_is_refused_unless_allowed(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        server_url(url, _ini())
    assert raised.value.exit_code == 11
    assert "the license number would travel unencrypted. Nothing was sent." in raised.value.message
    assert "allow_http = 1" in raised.value.hint
    assert server_url(url, _ini(allow_http=True)) == url.rstrip("/")


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_the_updater_refuses_before_sending_anything(vendor: Vendor, tmp_path: Path) -> None:
    """In a namespace without a network: refused with 11 and nothing changed; allowed, it tries
    and ends with 6 (no connection), nothing changed either."""
    if subprocess.run(["unshare", "-n", "true"], check=False).returncode != 0:
        pytest.skip("unshare -n is not permitted here")
    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, OUTSIDE)

    def update() -> subprocess.CompletedProcess[str]:
        command = ["unshare", "-n", sys.executable, "-m", "updater.install.cli",
                   *updater_args(install, vendor.root_file)]
        return subprocess.run(command, cwd=ROOT, env=hook_env(), capture_output=True,
                              text=True, timeout=120, check=False)

    done = update()
    assert done.returncode == 11, done.stderr
    assert "would travel unencrypted" in done.stderr
    ini = install / "Database/SystemFiles/SystemINI/update.ini"
    ini.write_text(ini.read_text().replace("[Update]\n", "[Update]\nallow_http = 1\n"))
    done = update()
    assert done.returncode == 6, done.stderr
    assert program_files(install) == vendor_files(vendor.trees[1147], 1147)
