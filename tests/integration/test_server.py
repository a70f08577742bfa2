"""The update server, run for real on 127.0.0.1 (port 0) and asked with urllib3.

The repository is made by hand (files in metadata/ and targets/); the license registry is a
real SQLite file. Raw paths that a client library would normalise go through a raw socket.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import urllib3

from updater.core.errors import LicenseDatabaseError, RepositoryError
from updater.core.protocol import ERROR_HEADER, LICENSE_HEADER
from updater.publisher.app import scrub_addresses
from updater.publisher.licenses import open_registry
from updater.publisher.serving import Server

PACKAGE_SIZE = 5 * 1024 * 1024
ACTIVE = "ACTIVE-1"
TIMEOUT = urllib3.Timeout(connect=5, read=60)


@dataclass(frozen=True)
class Repo:
    root: Path
    registry: Path
    package_url: str
    package: bytes


def _make_repo(base: Path) -> Repo:
    root = base / "repo"
    meta = root / "metadata"
    builds = root / "targets" / "builds"
    builds.mkdir(parents=True)
    meta.mkdir()
    (meta / "timestamp.json").write_text('{"signed": {"_type": "timestamp"}}')
    (meta / "1.root.json").write_text('{"signed": {"_type": "root"}}')
    (meta / ".hidden").write_text("hidden")
    (root / "targets" / ".secret").write_text("hidden")
    (root / "opusi-repo.json").write_text("{}")
    (base / "secret.txt").write_text("outside the repository")
    (root / "targets" / "link-out").symlink_to(base / "secret.txt")
    package = os.urandom(PACKAGE_SIZE)
    name = f"{hashlib.sha256(package).hexdigest()}.1148.7z"
    (builds / name).write_bytes(package)
    (builds / "sub").mkdir()
    (builds / "sub" / "updater.exe").write_bytes(b"MZ" + b"\0" * 100)
    return Repo(root, base / "licenses.db", f"/targets/builds/{name}", package)


def _make_registry(path: Path) -> None:
    today = dt.datetime.now(dt.UTC).date()
    with open_registry(path) as registry:
        registry.add(ACTIVE, entitled_until=None, note="test")
        registry.add("LASTDAY-1", entitled_until=today)
        registry.add("EXPIRED-1", entitled_until=today - dt.timedelta(days=1))
        registry.add("REVOKED-1", entitled_until=None)
        registry.revoke("REVOKED-1")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    made = _make_repo(tmp_path_factory.mktemp("server"))
    _make_registry(made.registry)
    return made


@pytest.fixture
def server(repo: Repo) -> Iterator[Server]:
    before = set(threading.enumerate())
    running = Server(repo.root, repo.registry, host="127.0.0.1", port=0, threads=16)
    running.start()
    try:
        yield running
    finally:
        running.stop()
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert left == [], f"threads left running after stop(): {left}"


@pytest.fixture
def http(server: Server) -> Iterator[urllib3.HTTPConnectionPool]:
    with urllib3.HTTPConnectionPool(
        "127.0.0.1", server.port, maxsize=60, timeout=TIMEOUT, retries=False
    ) as pool:
        yield pool


def _get(
    pool: urllib3.HTTPConnectionPool | urllib3.HTTPSConnectionPool,
    path: str,
    license: str | None = ACTIVE,
    method: str = "GET",
    **headers: str,
) -> urllib3.BaseHTTPResponse:
    sent = {key.replace("_", "-"): value for key, value in headers.items()}
    if license is not None:
        sent[LICENSE_HEADER] = license
    return pool.request(method, path, headers=sent)


def _raw_status(port: int, path: str) -> int:
    """Send ``path`` byte for byte (no client-side normalisation) and return the status."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{LICENSE_HEADER}: {ACTIVE}\r\n"
            "Connection: close\r\n\r\n"
        )
        sock.sendall(request.encode("latin-1"))
        head = sock.recv(1024)
    return int(head.split(b" ", 2)[1])


# --- licenses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("license", "status", "code"),
    [
        (None, 400, 1),
        ("", 400, 1),
        ("bad number!", 400, 1),
        ("UNKNOWN-9", 403, 7),
        ("REVOKED-1", 403, 2),
        ("EXPIRED-1", 403, 2),
    ],
)
def test_refusals_carry_code_in_header_and_json(
    http: urllib3.HTTPConnectionPool, license: str | None, status: int, code: int
) -> None:
    response = _get(http, "/metadata/timestamp.json", license)
    assert response.status == status
    assert response.headers[ERROR_HEADER] == str(code)
    assert response.headers["Content-Type"] == "application/json"
    body = json.loads(response.data)
    assert body["error"] == code
    assert body["message"]


@pytest.mark.parametrize("license", [ACTIVE, "LASTDAY-1"])
def test_allowed_license_gets_the_file(
    http: urllib3.HTTPConnectionPool, license: str, repo: Repo
) -> None:
    response = _get(http, "/metadata/timestamp.json", license)
    assert response.status == 200
    assert response.data == (repo.root / "metadata" / "timestamp.json").read_bytes()
    assert response.headers["Content-Type"] == "application/json"
    assert "no-cache" in response.headers["Cache-Control"]
    assert ERROR_HEADER not in response.headers


def test_refusal_also_for_packages_and_head(http: urllib3.HTTPConnectionPool, repo: Repo) -> None:
    assert _get(http, repo.package_url, "REVOKED-1").status == 403
    head = _get(http, repo.package_url, None, method="HEAD")
    assert head.status == 400
    assert head.headers[ERROR_HEADER] == "1"
    assert head.data == b""


def test_license_check_endpoint(http: urllib3.HTTPConnectionPool) -> None:
    allowed = _get(http, "/license-check")
    assert allowed.status == 204
    assert allowed.data == b""
    unknown = _get(http, "/license-check", "UNKNOWN-9")
    assert (unknown.status, unknown.headers[ERROR_HEADER]) == (403, "7")
    missing = _get(http, "/license-check", None)
    assert (missing.status, missing.headers[ERROR_HEADER]) == (401, "1")
    assert json.loads(missing.data)["error"] == 1


def test_revoke_takes_effect_on_next_request(server: Server, repo: Repo, tmp_path: Path) -> None:
    registry = tmp_path / "licenses.db"
    registry.write_bytes(repo.registry.read_bytes())
    with open_registry(registry) as writer:
        writer.add("LATER-1", entitled_until=None)
    other = Server(repo.root, registry, port=0)
    other.start()
    try:
        with urllib3.HTTPConnectionPool("127.0.0.1", other.port, timeout=TIMEOUT) as pool:
            assert _get(pool, "/metadata/timestamp.json", "LATER-1").status == 200
            _revoke_in_other_process(registry, "LATER-1")
            refused = _get(pool, "/metadata/timestamp.json", "LATER-1")
            assert (refused.status, refused.headers[ERROR_HEADER]) == (403, "2")
            with open_registry(registry) as writer:
                writer.add("LATER-1", entitled_until=None)
            assert _get(pool, "/metadata/timestamp.json", "LATER-1").status == 200
    finally:
        other.stop()


def _revoke_in_other_process(registry: Path, number: str) -> None:
    code = (
        "import sys; from pathlib import Path; "
        "from updater.publisher.licenses import open_registry; "
        "r = open_registry(Path(sys.argv[1])); r.revoke(sys.argv[2]); r.close()"
    )
    subprocess.run([sys.executable, "-c", code, str(registry), number], check=True, timeout=60)


# --- what is served ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/targets/../secret.txt",
        "/targets/../../secret.txt",
        "/targets/%2e%2e/secret.txt",
        "/targets/%2E%2E/%2e%2e/secret.txt",
        "/targets/builds/%2e%2e/%2e%2e/opusi-repo.json",
        "/targets/%2e%2e%2fopusi-repo.json",
        "/targets/..%5copusi-repo.json",
        "/metadata/../opusi-repo.json",
        "/metadata/%2e%2e/opusi-repo.json",
        "/targets//etc/passwd",
        "/targets/%2fetc/passwd",
        "/opusi-repo.json",
        "/metadata/.hidden",
        "/targets/.secret",
        "/targets/link-out",
        "/targets/builds",
        "/targets/builds/",
        "/targets/",
        "/metadata/",
        "/",
        "/metadata/nope.json",
        "/targets/builds/sub/",
    ],
)
def test_anything_outside_the_two_folders_is_404(server: Server, path: str) -> None:
    assert _raw_status(server.port, path) == 404


def test_subfolders_of_targets_are_served(http: urllib3.HTTPConnectionPool) -> None:
    response = _get(http, "/targets/builds/sub/updater.exe")
    assert response.status == 200
    assert response.data.startswith(b"MZ")
    assert response.headers["Content-Type"] == "application/octet-stream"


def test_only_get_and_head(http: urllib3.HTTPConnectionPool) -> None:
    response = _get(http, "/metadata/timestamp.json", method="POST")
    assert response.status == 405
    assert "GET" in response.headers["Allow"]


def test_head_gives_length_without_body(http: urllib3.HTTPConnectionPool, repo: Repo) -> None:
    response = _get(http, repo.package_url, method="HEAD")
    assert response.status == 200
    assert int(response.headers["Content-Length"]) == PACKAGE_SIZE
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.data == b""


def test_package_headers(http: urllib3.HTTPConnectionPool, repo: Repo) -> None:
    response = _get(http, repo.package_url, method="HEAD")
    assert response.headers["Content-Type"] == "application/x-7z-compressed"
    cache = response.headers["Cache-Control"]
    assert "max-age=31536000" in cache and "private" in cache and "public" not in cache
    assert response.headers["ETag"]
    versioned = _get(http, "/metadata/1.root.json", method="HEAD")
    assert "max-age=31536000" in versioned.headers["Cache-Control"]


def test_range_request(http: urllib3.HTTPConnectionPool, repo: Repo) -> None:
    response = _get(http, repo.package_url, Range="bytes=1000-1999")
    assert response.status == 206
    assert response.data == repo.package[1000:2000]
    assert response.headers["Content-Range"] == f"bytes 1000-1999/{PACKAGE_SIZE}"


def test_range_beyond_the_end_is_416(http: urllib3.HTTPConnectionPool, repo: Repo) -> None:
    response = _get(http, repo.package_url, Range=f"bytes={PACKAGE_SIZE + 10}-")
    assert response.status == 416


def test_resume_with_if_range(http: urllib3.HTTPConnectionPool, repo: Repo) -> None:
    etag, first = _get_half(http, repo.package_url)
    rest = _get(http, repo.package_url, Range=f"bytes={len(first)}-", If_Range=etag)
    assert rest.status == 206
    assert first + rest.data == repo.package
    stale = _get(http, repo.package_url, Range=f"bytes={len(first)}-", If_Range='"stale"')
    assert stale.status == 200
    assert stale.data == repo.package


def _get_half(pool: urllib3.HTTPConnectionPool, url: str) -> tuple[str, bytes]:
    """Start a full download and drop the connection after half of it, as a killed client."""
    response = pool.request("GET", url, headers={LICENSE_HEADER: ACTIVE}, preload_content=False)
    assert response.status == 200
    data = response.read(PACKAGE_SIZE // 2)
    response.close()
    response.release_conn()
    return response.headers["ETag"], data


def test_conditional_get_gives_304(http: urllib3.HTTPConnectionPool, repo: Repo) -> None:
    etag = _get(http, repo.package_url, method="HEAD").headers["ETag"]
    response = _get(http, repo.package_url, If_None_Match=etag)
    assert response.status == 304
    assert response.data == b""


def test_fifty_concurrent_downloads(http: urllib3.HTTPConnectionPool, repo: Repo) -> None:
    expected = hashlib.sha256(repo.package).hexdigest()

    def download(_: int) -> str:
        response = http.request(
            "GET", repo.package_url, headers={LICENSE_HEADER: ACTIVE}, preload_content=False
        )
        assert response.status == 200
        digest = hashlib.sha256()
        for chunk in response.stream(64 * 1024):
            digest.update(chunk)
        response.release_conn()
        return digest.hexdigest()

    with ThreadPoolExecutor(max_workers=50) as pool:
        digests = list(pool.map(download, range(50)))
    assert digests == [expected] * 50


# --- logging -----------------------------------------------------------------------------


def test_one_log_line_per_request_without_address(
    http: urllib3.HTTPConnectionPool,
    repo: Repo,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    _get(http, repo.package_url, Range="bytes=0-99")
    _get(http, "/metadata/timestamp.json", "UNKNOWN-9")
    _get(http, "/metadata/timestamp.json", "bad number!")
    lines = _wait_for_lines(caplog, 3)
    assert any(
        "GET" in line
        and repo.package_url in line
        and " 206 " in line
        and "100 bytes" in line
        and f"license={ACTIVE}" in line
        and " ms" in line
        for line in lines
    )
    assert any(" 403 " in line and "license=UNKNOWN-9" in line for line in lines)
    assert any(" 400 " in line and "license=-" in line for line in lines)
    assert not any("bad number" in line for line in lines)
    assert "127.0.0.1" not in _server_log(caplog) + "".join(capfd.readouterr())


def _server_log(caplog: pytest.LogCaptureFixture) -> str:
    """Everything logged except by the test's own client (urllib3 names the host it asks)."""
    return "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if not r.name.startswith("urllib3")
    )


def _wait_for_lines(caplog: pytest.LogCaptureFixture, count: int) -> list[str]:
    deadline = time.monotonic() + 5
    while True:
        lines = [r.getMessage() for r in caplog.records
                 if r.name == "updater.publisher.app.requests"]
        requests = [line for line in lines if " ms" in line]
        if len(requests) >= count or time.monotonic() > deadline:
            return requests
        time.sleep(0.05)


def test_scrub_addresses() -> None:
    text = "Client ('127.0.0.1', 5555) and ('::1', 80, 0, 0) and [fe80::1%eth0] and 10.0.0.255"
    scrubbed = scrub_addresses(text)
    for address in ("127.0.0.1", "::1", "fe80::1", "10.0.0.255"):
        assert address not in scrubbed
    assert scrub_addresses("build 1148.7z version 1.2") == "build 1148.7z version 1.2"


# --- TLS ---------------------------------------------------------------------------------


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


def test_https_and_plain_http_to_tls_port(
    repo: Repo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    certfile, keyfile = _self_signed(tmp_path)
    tls = Server(repo.root, repo.registry, port=0, certfile=certfile, keyfile=keyfile)
    tls.start()
    try:
        with urllib3.HTTPSConnectionPool(
            "127.0.0.1", tls.port, ca_certs=str(certfile), server_hostname="localhost",
            assert_hostname="localhost", timeout=TIMEOUT,
        ) as pool:  # fmt: skip
            assert _get(pool, "/metadata/timestamp.json").status == 200
        with socket.create_connection(("127.0.0.1", tls.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with contextlib.suppress(OSError):
                sock.recv(1024)
        _wait_for_log(caplog, "plain HTTP")
    finally:
        tls.stop()
    assert "127.0.0.1" not in _server_log(caplog)


def _wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> None:
    deadline = time.monotonic() + 5
    while text not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)


def test_unusable_certificate_is_refused_at_start(repo: Repo, tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    server = Server(
        repo.root, repo.registry, port=0,
        certfile=tmp_path / "cert.pem", keyfile=tmp_path / "cert.pem",
    )  # fmt: skip
    with pytest.raises(Exception, match="cannot listen"):
        server.start()
    server.stop()


# --- start, stop, freshness --------------------------------------------------------------


def test_missing_registry_or_repository_is_refused(repo: Repo, tmp_path: Path) -> None:
    with pytest.raises(LicenseDatabaseError, match="does not exist"):
        Server(repo.root, tmp_path / "typo.db").start()
    assert not (tmp_path / "typo.db").exists()
    with pytest.raises(RepositoryError):
        Server(tmp_path, repo.registry).start()


def test_bad_timestamp_key_is_logged_and_serving_goes_on(
    repo: Repo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "timestamp.pem").write_text("not a key")
    before = set(threading.enumerate())
    server = Server(
        repo.root, repo.registry, port=0, timestamp_key=tmp_path / "timestamp.pem",
        resign_interval=0.05,
    )  # fmt: skip
    server.start()
    try:
        _wait_for_log(caplog, "could not refresh timestamp.json")
        assert "could not refresh timestamp.json" in caplog.text
        with urllib3.HTTPConnectionPool("127.0.0.1", server.port, timeout=TIMEOUT) as pool:
            assert _get(pool, "/metadata/timestamp.json").status == 200
    finally:
        server.stop()
    assert [t for t in threading.enumerate() if t not in before and t.is_alive()] == []


def test_timestamp_is_resigned_before_it_expires(tmp_path: Path) -> None:
    repository = pytest.importorskip("updater.publisher.repository")
    root, keys = tmp_path / "repo", tmp_path / "keys"
    repository.init_repository(root, keys, {"timestamp": 1})
    registry = tmp_path / "licenses.db"
    _make_registry(registry)
    stamp = root / "metadata" / "timestamp.json"
    version = json.loads(stamp.read_bytes())["signed"]["version"]
    server = Server(
        root, registry, port=0, timestamp_key=keys / "timestamp.pem",
        resign_interval=3600, min_remaining=dt.timedelta(days=2),
    )  # fmt: skip
    server.start()
    try:
        deadline = time.monotonic() + 10
        while json.loads(stamp.read_bytes())["signed"]["version"] == version:
            assert time.monotonic() < deadline, "timestamp.json was not re-signed"
            time.sleep(0.05)
        with urllib3.HTTPConnectionPool("127.0.0.1", server.port, timeout=TIMEOUT) as pool:
            served = _get(pool, "/metadata/timestamp.json")
            assert json.loads(served.data)["signed"]["version"] == version + 1
    finally:
        server.stop()


def test_stop_twice_and_stop_without_start(repo: Repo) -> None:
    server = Server(repo.root, repo.registry, port=0)
    server.stop()
    server.start()
    assert server.wait(0.1) is False
    server.stop()
    server.stop()
    assert server.wait(0.1) is True
