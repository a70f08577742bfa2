"""update.ini as Windows programs and editors write it, read by the real updater end to end.

Section names in any case, UTF-8 with or without a byte-order mark, UTF-16 ("Unicode" in
Notepad) and ANSI (cp1252): the same settings, the same update. A umlaut in the proxy password
reaches the proxy as UTF-8 (tinyproxy's configuration takes no umlauts, so a scripted proxy
reads that header); the whole update runs through tinyproxy.
"""

from __future__ import annotations

import base64
import codecs
from pathlib import Path

import pytest

from tests.conftest import LICENSE, Vendor, program_files, program_snapshot, vendor_files
from tests.integration.conftest import StartProxy
from tests.integration.test_proxy import PASSWORD, USER, _port, _proxied_requests
from tests.integration.test_update import run
from tests.support.rawserver import RawServer, reply_status
from updater.core.paths import CONFIG_FILE
from updater.shared.config import read_install

ENCODINGS = {
    "utf-8": lambda text: text.encode("utf-8"),
    "utf-8 with BOM": lambda text: codecs.BOM_UTF8 + text.encode("utf-8"),
    "utf-16 (Notepad's Unicode)": lambda text: text.replace("\n", "\r\n").encode("utf-16"),
    "ANSI (cp1252)": lambda text: text.replace("\n", "\r\n").encode("cp1252"),
}


def _write_ini(install: Path, encoding: str, server: str, proxy: str) -> None:
    text = (f"; geschrieben von opus i\n[update]\nSERVER = {server}\nLicense = {LICENSE}\n"
            f"Proxy = {proxy}\n\n[allgemein]\n52 = 1\n53 = 1\n")
    (install / CONFIG_FILE).write_bytes(ENCODINGS[encoding](text))


class _EveryPath(dict):  # type: ignore[type-arg]
    """Routes answering every request the same: a proxy that wants other credentials."""

    def get(self, key: object, default: object = None) -> object:
        return reply_status(407, b"", {"Proxy-Authenticate": 'Basic realm="praxis"'})


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_umlaut_proxy_password_from_any_encoding(install: Path, vendor: Vendor, server_url: str,
                                                 encoding: str, no_proxy_env: object,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``[update]`` in lower case, keys in any case, the password ``Grüße-ß``: read alike from
    every encoding; the proxy receives it as UTF-8 in Basic authentication; its refusal is
    error 6 with nothing changed."""
    proxy = RawServer(routes=_EveryPath())
    try:
        _write_ini(install, encoding, server_url, f"http://praxis:Grüße-ß@127.0.0.1:{proxy.port}")
        settings = read_install(install).ini
        assert settings.proxy_url == f"http://praxis:Grüße-ß@127.0.0.1:{proxy.port}"
        assert (settings.server_url, settings.license_number) == (server_url, LICENSE)
        assert settings.option_52 and settings.option_53 and settings.warnings == ()
        before = program_snapshot(install)
        assert run(install, vendor) == 6
        assert "Error 6" in capsys.readouterr().err
        sent = proxy.requests[0].headers["proxy-authorization"]
        assert sent == "Basic " + base64.b64encode("praxis:Grüße-ß".encode()).decode()
        assert program_snapshot(install) == before
    finally:
        proxy.close()


@pytest.mark.parametrize("encoding", ["utf-16 (Notepad's Unicode)", "ANSI (cp1252)"])
def test_update_through_tinyproxy_configured_in_any_encoding(
        install: Path, vendor: Vendor, server_url: str, encoding: str,
        start_proxy: StartProxy, no_proxy_env: object) -> None:
    proxy = start_proxy([_port(server_url)], auth=(USER, PASSWORD))
    _write_ini(install, encoding, server_url, proxy.url(f"{USER}:{PASSWORD}"))
    assert run(install, vendor) == 0
    assert program_files(install) == vendor_files(vendor.trees[1155], 1155)
    assert _proxied_requests(proxy, _port(server_url))


def test_license_in_the_wrong_section_is_error_1_naming_where_it_stands(
        install: Path, vendor: Vendor, server_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Not just "no license number was given": the message says where the number stands."""
    (install / CONFIG_FILE).write_text(
        f"[Update]\nserver = {server_url}\n[Allgemein]\nlicense = {LICENSE}\n52 = 1\n",
        encoding="utf-8")
    assert run(install, vendor) == 1
    err = capsys.readouterr().err
    assert "'license' stands [Allgemein]" in err and "belongs in [Update]" in err, err
