"""Updates through a real proxy (Debian's tinyproxy on loopback): flag, update.ini, environment,
Basic authentication, a proxy that is down, and https tunnelled with CONNECT.

Skipped when tinyproxy is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import (
    LICENSE,
    Vendor,
    make_install,
    program_files,
    program_snapshot,
    vendor_files,
)
from tests.integration.conftest import StartProxy
from tests.integration.test_update import run
from tests.support.processes import free_port
from tests.support.proxies import Tinyproxy
from tests.support.rawserver import RawServer, reply_body
from tests.support.relay import Relay
from updater.core.errors import ConnectionFailedError
from updater.core.paths import CONFIG_FILE
from updater.publisher.serving import Server
from updater.shared.transport import Fetcher, NetworkSettings, proxy_for
from updater.shared.trust import read_view

USER, PASSWORD = "opusi", "s3cret.pw-1"  # tinyproxy's config takes only [-a-z0-9._] here
AUTH = f"{USER}:{PASSWORD}"



def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _proxied_requests(proxy: Tinyproxy, server_port: int) -> list[str]:
    return re.findall(
        rf"Request \(file descriptor \d+\): (GET http://127\.0\.0\.1:{server_port}/\S+)",
        proxy.log(),
    )


def _assert_updated(install: Path, vendor: Vendor) -> None:
    assert program_files(install) == vendor_files(vendor.trees[1155], 1155)


# --- plain http through the proxy --------------------------------------------------------------


def test_update_through_proxy_flag(
    install: Path,
    vendor: Vendor,
    server_url: str,
    start_proxy: StartProxy,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    proxy = start_proxy([_port(server_url)])
    assert run(install, vendor, "--proxy", proxy.url()) == 0
    _assert_updated(install, vendor)
    requests = _proxied_requests(proxy, _port(server_url))
    assert any("/metadata/timestamp.json" in r for r in requests)
    assert sum(r.endswith(".7z") for r in requests) >= 3, requests


def test_update_through_proxy_with_basic_auth(
    install: Path,
    vendor: Vendor,
    server_url: str,
    start_proxy: StartProxy,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    proxy = start_proxy([_port(server_url)], auth=(USER, PASSWORD))
    # Every character percent-encoded: the fetcher must decode user and password.
    encoded = (
        "".join(f"%{b:02X}" for b in USER.encode())
        + ":"
        + "".join(f"%{b:02X}" for b in PASSWORD.encode())
    )
    assert run(install, vendor, "--proxy", proxy.url(encoded)) == 0
    _assert_updated(install, vendor)
    assert _proxied_requests(proxy, _port(server_url))


def test_wrong_proxy_credentials_are_error_6(
    install: Path,
    vendor: Vendor,
    server_url: str,
    start_proxy: StartProxy,
    no_proxy_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proxy = start_proxy([_port(server_url)], auth=(USER, PASSWORD))
    before = program_snapshot(install)
    for auth in (f"{USER}:wrong", ""):
        assert run(install, vendor, "--proxy", proxy.url(auth)) == 6
        err = capsys.readouterr().err
        assert "Error 6" in err and "proxy" in err and "credentials" in err
        assert program_snapshot(install) == before
    assert "Established connection" not in proxy.log(), "the proxy passed nothing on"


def test_password_with_reserved_characters_is_sent_decoded(
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    """tinyproxy cannot be given such a password, so a scripted proxy reads the header."""
    password = "p@ss:w%rd ä€"
    fake_proxy = RawServer()
    try:
        fake_proxy.routes["http://127.0.0.1:9/metadata/1.root.json"] = reply_body(b"{}")
        auth = f"{quote('user', safe='')}:{quote(password, safe='')}"
        proxy_url = f"http://{auth}@127.0.0.1:{fake_proxy.port}"
        fetcher = Fetcher(NetworkSettings(LICENSE, proxy_url=proxy_url, retries=0))
        assert fetcher.download_bytes("http://127.0.0.1:9/metadata/1.root.json", 100) == b"{}"
        sent = fake_proxy.requests[0].headers["proxy-authorization"]
        assert sent == "Basic " + base64.b64encode(f"user:{password}".encode()).decode()
    finally:
        fake_proxy.close()


def test_proxy_authorization_never_reaches_the_server(
    install: Path,
    vendor: Vendor,
    server_url: str,
    start_proxy: StartProxy,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    relay = Relay(("127.0.0.1", _port(server_url)))
    try:
        proxy = start_proxy([relay.port], auth=(USER, PASSWORD))
        _set_server(install, f"http://127.0.0.1:{relay.port}")
        assert run(install, vendor, "--proxy", proxy.url(AUTH)) == 0
        _assert_updated(install, vendor)
        heads = relay.requests()
        assert heads and all(f"x-opusi-license: {LICENSE.lower()}" in h.lower() for h in heads)
        assert not any("proxy-authorization" in h.lower() for h in heads)
        assert not any(base64.b64encode(AUTH.encode()).decode() in h for h in heads)
        assert _proxied_requests(proxy, relay.port)
    finally:
        relay.close()


def _set_server(install: Path, url: str) -> None:
    path = install / CONFIG_FILE
    path.write_text(re.sub(r"(?m)^server = .*$", f"server = {url}", path.read_text()))


def _add_ini_proxy(install: Path, proxy_url: str) -> None:
    path = install / CONFIG_FILE
    path.write_text(path.read_text().replace("[Update]\n", f"[Update]\nproxy = {proxy_url}\n", 1))


def test_proxy_from_update_ini(
    tmp_path: Path,
    vendor: Vendor,
    server_url: str,
    start_proxy: StartProxy,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    proxy = start_proxy([_port(server_url)], auth=(USER, PASSWORD))
    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, server_url)
    _add_ini_proxy(install, proxy.url(f"{USER}:{quote(PASSWORD, safe='')}"))
    assert run(install, vendor) == 0
    _assert_updated(install, vendor)
    assert _proxied_requests(proxy, _port(server_url))


def test_proxy_flag_wins_over_update_ini(
    install: Path,
    vendor: Vendor,
    server_url: str,
    start_proxy: StartProxy,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    proxy = start_proxy([_port(server_url)])
    _add_ini_proxy(install, f"http://127.0.0.1:{free_port()}")
    assert run(install, vendor, "--proxy", proxy.url()) == 0
    assert _proxied_requests(proxy, _port(server_url))


# --- the environment --------------------------------------------------------------------------


def test_proxy_from_environment(
    install: Path,
    vendor: Vendor,
    server_url: str,
    start_proxy: StartProxy,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    proxy = start_proxy([_port(server_url)], auth=(USER, PASSWORD))
    no_proxy_env.setenv("HTTP_PROXY", proxy.url(AUTH))
    assert run(install, vendor) == 0
    _assert_updated(install, vendor)
    assert _proxied_requests(proxy, _port(server_url))


def test_no_proxy_bypasses_the_environment_proxy(
    install: Path, vendor: Vendor, server_url: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """On Linux, urllib's proxy_bypass reads only NO_PROXY: 127.0.0.1 is proxied unless listed."""
    dead = f"http://127.0.0.1:{free_port()}"
    no_proxy_env.setenv("HTTP_PROXY", dead)
    settings = NetworkSettings(LICENSE)
    assert proxy_for(server_url + "/metadata/root.json", settings) == dead
    before = program_snapshot(install)
    assert run(install, vendor) == 6
    assert program_snapshot(install) == before
    no_proxy_env.setenv("NO_PROXY", "127.0.0.1")
    assert proxy_for(server_url + "/metadata/root.json", settings) is None
    assert run(install, vendor) == 0
    _assert_updated(install, vendor)


def test_explicit_proxy_is_used_even_when_no_proxy_lists_the_host(
    server_url: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    no_proxy_env.setenv("NO_PROXY", "127.0.0.1")
    explicit = NetworkSettings(LICENSE, proxy_url="http://127.0.0.1:3128")
    assert proxy_for(server_url, explicit) == "http://127.0.0.1:3128"


def test_proxy_down_is_error_6(
    install: Path,
    vendor: Vendor,
    no_proxy_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = program_snapshot(install)
    assert run(install, vendor, "--proxy", f"http://127.0.0.1:{free_port()}") == 6
    assert "through the proxy" in capsys.readouterr().err
    assert program_snapshot(install) == before


# --- https through the proxy (CONNECT) -----------------------------------------------------------


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def https_server(tmp_path: Path, vendor: Vendor) -> Iterator[tuple[str, Path]]:
    cert, key = _self_signed(tmp_path / "tls")
    server = Server(vendor.repo, vendor.db, certfile=cert, keyfile=key, threads=4)
    server.start()
    try:
        yield f"https://127.0.0.1:{server.port}", cert
    finally:
        server.stop()


def test_https_through_proxy_with_connect(
    tmp_path: Path,
    vendor: Vendor,
    https_server: tuple[str, Path],
    start_proxy: StartProxy,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    url, cert = https_server
    proxy = start_proxy([_port(url)], auth=(USER, PASSWORD))
    fetcher = Fetcher(
        NetworkSettings(LICENSE, proxy_url=proxy.url(AUTH), ca_file=cert, read_timeout=5, retries=0)
    )
    view = read_view(url, tmp_path / "cache", vendor.root_file.read_bytes(), fetcher)
    assert [b.build for b in view.builds][-4:] == [1148, 1150, 1152, 1155]
    package = view.builds[-1].package
    dest = fetcher.download_package(
        package.url, tmp_path / "p.7z", length=package.length, sha256=package.sha256
    )
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == package.sha256
    assert f"CONNECT 127.0.0.1:{_port(url)}" in proxy.log()
    assert "GET https://" not in proxy.log(), "tinyproxy saw only a tunnel, no plain request"


def test_https_through_proxy_wrong_credentials_or_ca(
    tmp_path: Path,
    vendor: Vendor,
    https_server: tuple[str, Path],
    start_proxy: StartProxy,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    url, cert = https_server
    proxy = start_proxy([_port(url)], auth=(USER, PASSWORD))
    root = vendor.root_file.read_bytes()
    wrong = Fetcher(
        NetworkSettings(LICENSE, proxy_url=proxy.url(f"{USER}:nope"), ca_file=cert, retries=0)
    )
    with pytest.raises(ConnectionFailedError) as info:
        read_view(url, tmp_path / "c1", root, wrong)
    assert "proxy" in str(info.value) and "credentials" in str(info.value)
    untrusted = Fetcher(NetworkSettings(LICENSE, proxy_url=proxy.url(AUTH), retries=0))
    with pytest.raises(ConnectionFailedError) as info:
        read_view(url, tmp_path / "c2", root, untrusted)
    assert "TLS" in str(info.value)
