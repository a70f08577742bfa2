"""The fetcher against a raw-socket server's broken replies: each ends in its documented error,
within a bounded time, and a broken package download is resumed or restarted correctly.

The time bounds are generous correctness bounds (the fetcher gives up at all), not benchmarks.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from tuf.api import exceptions as tuf_exceptions

from tests.support.processes import free_port
from tests.support.rawserver import (
    Package,
    RawServer,
    reply_body,
    reply_endless,
    reply_license_refused,
    reply_package,
    reply_reset,
    reply_short,
    reply_stall,
    reply_stall_before_headers,
    reply_status,
    reply_trickle,
)
from updater.core.errors import (
    ConnectionFailedError,
    LicenseRefusedError,
    PackageVerificationError,
    ServerResponseError,
    UntrustedMetadataError,
)
from updater.core.protocol import LICENSE_HEADER
from updater.shared.transport import Fetcher, NetworkSettings
from updater.shared.trust import tuf_errors

LICENSE = "DEMO-1147"
SETTINGS = NetworkSettings(
    license_number=LICENSE,
    use_environment=False,
    connect_timeout=2,
    read_timeout=1,
    min_rate=100,
    rate_window=2,
    retries=0,
    backoff=0.5,
)
BODY = bytes(range(256)) * 400  # 102400 bytes
E = TypeVar("E", bound=BaseException)


@pytest.fixture
def raw() -> Iterator[RawServer]:
    server = RawServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fetcher() -> Fetcher:
    return Fetcher(SETTINGS)


def _timed(action: Callable[[], object]) -> float:
    start = time.monotonic()
    action()
    return time.monotonic() - start


def _raises_within(
    error: type[E], seconds: float, action: Callable[[], object]
) -> pytest.ExceptionInfo[E]:
    start = time.monotonic()
    with pytest.raises(error) as info:
        action()
    elapsed = time.monotonic() - start
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    return info


def _download(fetcher: Fetcher, url: str, dest: Path, body: bytes = BODY) -> Path:
    return fetcher.download_package(
        url, dest, length=len(body), sha256=hashlib.sha256(body).hexdigest()
    )


# --- a correct answer, and what the request carries --------------------------------------------


def test_good_answer_carries_license_and_nothing_else(
    raw: RawServer, fetcher: Fetcher, tmp_path: Path
) -> None:
    raw.routes["/ok"] = reply_body(BODY)
    assert fetcher.download_bytes(raw.url("/ok"), len(BODY)) == BODY
    assert _download(fetcher, raw.url("/ok"), tmp_path / "p.7z").read_bytes() == BODY
    sent = raw.requests[0].headers
    assert sent[LICENSE_HEADER.lower()] == LICENSE
    assert set(sent) <= {
        "host",
        "user-agent",
        "accept-encoding",
        "x-opusi-license",
        "connection",
        "accept",
    }


# --- stalls and trickles ----------------------------------------------------------------------


def test_stall_before_headers_is_error_6(raw: RawServer, fetcher: Fetcher) -> None:
    raw.routes["/p"] = reply_stall_before_headers()
    info = _raises_within(
        ConnectionFailedError, 6, lambda: fetcher.download_bytes(raw.url("/p"), 1000)
    )
    assert info.value.exit_code == 6 and "in time" in str(info.value)


def test_stall_after_headers_is_error_6(raw: RawServer, fetcher: Fetcher, tmp_path: Path) -> None:
    raw.routes["/p"] = reply_stall(len(BODY), sent=100)
    _raises_within(
        ConnectionFailedError, 6, lambda: fetcher.download_bytes(raw.url("/p"), len(BODY))
    )
    _raises_within(
        ConnectionFailedError, 6, lambda: _download(fetcher, raw.url("/p"), tmp_path / "p.7z")
    )
    part = tmp_path / "p.7z.part"
    assert part.read_bytes() == b"x" * 100, "the bytes received are kept for resuming"


@pytest.mark.parametrize("broken", ["stall", "trickle", "endless", "overlong"])
def test_abandoned_connection_is_not_reused(raw: RawServer, fetcher: Fetcher, broken: str) -> None:
    """A connection given up mid-body is closed: reused, the rest of the old body would be
    read as the next answer (the trickle case hung for hours that way)."""
    raw.routes["/stall"] = reply_stall(len(BODY), sent=100)
    raw.routes["/trickle"] = reply_trickle(len(BODY), every=0.5)
    raw.routes["/endless"] = reply_endless()
    raw.routes["/overlong"] = reply_body(BODY * 4)
    raw.routes["/ok"] = reply_body(b"fine")
    with pytest.raises((ConnectionFailedError, tuf_exceptions.DownloadLengthMismatchError)):
        fetcher.download_bytes(raw.url(f"/{broken}"), len(BODY))
    start = time.monotonic()
    assert fetcher.download_bytes(raw.url("/ok"), 100) == b"fine"
    assert time.monotonic() - start < 3


def test_trickle_is_dropped_by_the_throughput_guard(
    raw: RawServer, fetcher: Fetcher, tmp_path: Path
) -> None:
    raw.routes["/p"] = reply_trickle(len(BODY), every=0.5)
    window = SETTINGS.rate_window
    info = _raises_within(
        ConnectionFailedError, window + 3, lambda: fetcher.download_bytes(raw.url("/p"), len(BODY))
    )
    assert "too slowly" in str(info.value)
    _raises_within(
        ConnectionFailedError,
        window + 3,
        lambda: _download(fetcher, raw.url("/p"), tmp_path / "p.7z"),
    )


# --- lengths -------------------------------------------------------------------------------------


def test_more_than_the_signed_length(raw: RawServer, fetcher: Fetcher, tmp_path: Path) -> None:
    raw.routes["/p"] = reply_body(BODY + b"evil" * 1000)
    info = _raises_within(
        PackageVerificationError, 10, lambda: _download(fetcher, raw.url("/p"), tmp_path / "p.7z")
    )
    assert info.value.exit_code == 13
    assert not list(tmp_path.iterdir()), "nothing of a lying download is kept"
    with pytest.raises(tuf_exceptions.DownloadLengthMismatchError):
        fetcher.download_bytes(raw.url("/p"), len(BODY))
    with pytest.raises(UntrustedMetadataError), tuf_errors():
        fetcher.download_bytes(raw.url("/p"), len(BODY))


def test_endless_body_stops_at_the_limit(raw: RawServer, fetcher: Fetcher, tmp_path: Path) -> None:
    raw.routes["/p"] = reply_endless()
    _raises_within(
        tuf_exceptions.DownloadLengthMismatchError,
        10,
        lambda: fetcher.download_bytes(raw.url("/p"), 1_000_000),
    )
    _raises_within(
        PackageVerificationError, 10, lambda: _download(fetcher, raw.url("/p"), tmp_path / "p.7z")
    )
    assert not (tmp_path / "p.7z.part").exists()


def test_short_body_is_error_6_and_kept_for_resume(
    raw: RawServer, fetcher: Fetcher, tmp_path: Path
) -> None:
    package = Package(BODY)
    raw.routes["/p"] = reply_package(package, cut_first_at=40000)
    dest = tmp_path / "p.7z"
    info = _raises_within(
        ConnectionFailedError, 10, lambda: _download(fetcher, raw.url("/p"), dest)
    )
    assert "dropped the connection" in str(info.value)
    assert (tmp_path / "p.7z.part").read_bytes() == BODY[:40000]
    assert _download(fetcher, raw.url("/p"), dest).read_bytes() == BODY
    resumed = raw.requests[-1].headers
    assert resumed["range"] == "bytes=40000-" and resumed["if-range"] == package.etag
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.7z"]


def test_short_metadata_is_error_6(raw: RawServer, fetcher: Fetcher) -> None:
    raw.routes["/p"] = reply_short(BODY, 1000)
    _raises_within(
        ConnectionFailedError, 10, lambda: fetcher.download_bytes(raw.url("/p"), len(BODY))
    )


def test_stale_if_range_restarts_cleanly(raw: RawServer, fetcher: Fetcher, tmp_path: Path) -> None:
    old = Package(b"O" * len(BODY), etag='"old"')
    raw.routes["/p"] = reply_package(old, cut_first_at=50000)
    dest = tmp_path / "p.7z"
    with pytest.raises(ConnectionFailedError):
        _download(fetcher, raw.url("/p"), dest)
    raw.routes["/p"] = reply_package(Package(BODY, etag='"new"'))
    assert _download(fetcher, raw.url("/p"), dest).read_bytes() == BODY
    assert raw.requests[-1].headers["if-range"] == '"old"'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.7z"]


def test_resumed_file_that_does_not_verify_is_discarded(
    raw: RawServer, fetcher: Fetcher, tmp_path: Path
) -> None:
    raw.routes["/p"] = reply_package(Package(BODY), cut_first_at=30000)
    dest = tmp_path / "p.7z"
    with pytest.raises(ConnectionFailedError):
        _download(fetcher, raw.url("/p"), dest)
    part = tmp_path / "p.7z.part"
    part.write_bytes(b"\0" * 30000)  # corrupted on disk while waiting
    with pytest.raises(PackageVerificationError):
        _download(fetcher, raw.url("/p"), dest)
    assert not list(tmp_path.iterdir())
    assert _download(fetcher, raw.url("/p"), dest).read_bytes() == BODY


def test_complete_part_is_verified_not_downloaded_again(
    raw: RawServer, fetcher: Fetcher, tmp_path: Path
) -> None:
    """A run stopped between the last byte and the rename: the next one checks and uses it."""
    raw.routes["/p"] = reply_package(Package(BODY))
    dest = tmp_path / "p.7z"
    (tmp_path / "p.7z.part").write_bytes(BODY)
    seen = len(raw.requests)
    assert _download(fetcher, raw.url("/p"), dest).read_bytes() == BODY
    assert len(raw.requests) == seen  # not a byte fetched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.7z"]


def test_complete_but_wrong_part_is_downloaded_again(
    raw: RawServer, fetcher: Fetcher, tmp_path: Path
) -> None:
    raw.routes["/p"] = reply_package(Package(BODY))
    dest = tmp_path / "p.7z"
    (tmp_path / "p.7z.part").write_bytes(b"\0" * len(BODY))
    assert _download(fetcher, raw.url("/p"), dest).read_bytes() == BODY
    assert "range" not in raw.requests[-1].headers  # from the start, not resumed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.7z"]


def test_reset_mid_body_is_error_6(raw: RawServer, fetcher: Fetcher, tmp_path: Path) -> None:
    raw.routes["/p"] = reply_reset(BODY, 20000)
    _raises_within(
        ConnectionFailedError, 10, lambda: fetcher.download_bytes(raw.url("/p"), len(BODY))
    )
    _raises_within(
        ConnectionFailedError, 10, lambda: _download(fetcher, raw.url("/p"), tmp_path / "p.7z")
    )
    assert (tmp_path / "p.7z.part").exists()


# --- statuses ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503])
def test_gateway_errors_are_error_6(raw: RawServer, fetcher: Fetcher, status: int) -> None:
    raw.routes["/p"] = reply_status(status, b"upstream down")
    info = _raises_within(
        ConnectionFailedError, 5, lambda: fetcher.download_bytes(raw.url("/p"), 100)
    )
    assert f"HTTP {status}" in str(info.value)


def test_407_is_error_6_naming_proxy_credentials(raw: RawServer, fetcher: Fetcher) -> None:
    raw.routes["/p"] = reply_status(407, b"auth", {"Proxy-Authenticate": 'Basic realm="x"'})
    info = _raises_within(
        ConnectionFailedError, 5, lambda: fetcher.download_bytes(raw.url("/p"), 100)
    )
    assert "credentials" in str(info.value)


def test_license_refusal_is_error_2(raw: RawServer, fetcher: Fetcher, tmp_path: Path) -> None:
    raw.routes["/p"] = reply_license_refused("license revoked")
    info = _raises_within(
        LicenseRefusedError, 5, lambda: fetcher.download_bytes(raw.url("/p"), 100)
    )
    assert info.value.exit_code == 2 and "license revoked" in str(info.value)
    with pytest.raises(LicenseRefusedError):
        _download(fetcher, raw.url("/p"), tmp_path / "p.7z")


def test_401_is_a_server_answer_without_proxy(raw: RawServer, fetcher: Fetcher) -> None:
    raw.routes["/p"] = reply_status(401, b"who?", {"WWW-Authenticate": 'Basic realm="x"'})
    with pytest.raises(ServerResponseError):
        fetcher.download_bytes(raw.url("/p"), 100)


def test_401_from_a_proxy_is_error_6_naming_proxy_credentials(raw: RawServer) -> None:
    """tinyproxy answers wrong proxy credentials with 401 (and WWW-Authenticate), not 407."""
    target = "http://127.0.0.1:9/metadata/timestamp.json"
    raw.routes[target] = reply_status(401, b"auth", {"WWW-Authenticate": 'Basic realm="Tinyproxy"'})
    proxied = Fetcher(
        NetworkSettings(LICENSE, proxy_url=f"http://u:p@127.0.0.1:{raw.port}", retries=0)
    )
    with pytest.raises(ConnectionFailedError) as info:
        proxied.download_bytes(target, 100)
    assert "credentials" in str(info.value)
    assert raw.requests[0].method == "GET" and raw.requests[0].path == target


@pytest.mark.parametrize("status", [403, 404])
def test_plain_403_404_stay_tuf_http_errors(raw: RawServer, fetcher: Fetcher, status: int) -> None:
    raw.routes["/p"] = reply_status(status, b"<html>nope</html>")
    info = _raises_within(
        tuf_exceptions.DownloadHTTPError, 5, lambda: fetcher.download_bytes(raw.url("/p"), 100)
    )
    assert info.value.status_code == status


# --- no server at all -------------------------------------------------------------------


def test_refused_with_retries_waits_the_backoff(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/p"
    assert (
        _timed(
            lambda: pytest.raises(ConnectionFailedError, Fetcher(SETTINGS).download_bytes, url, 10)
        )
        < 2
    )
    retrying = Fetcher(
        NetworkSettings(
            license_number=LICENSE, use_environment=False, retries=2, backoff=0.5, connect_timeout=2
        )
    )
    start = time.monotonic()
    with pytest.raises(ConnectionFailedError) as info:
        retrying.download_bytes(url, 10)
    elapsed = time.monotonic() - start
    # urllib3 2: no pause before the first retry, backoff * 2 before the second.
    assert 0.8 < elapsed < 5, f"took {elapsed:.1f} s"
    assert info.value.exit_code == 6 and "could not be reached (no connection)" in str(info.value)


def _local_resolver_only() -> bool:
    try:
        text = Path("/etc/resolv.conf").read_text()
    except OSError:
        return False
    servers = [
        line.split()[1]
        for line in text.splitlines()
        if line.startswith("nameserver") and len(line.split()) > 1
    ]
    return bool(servers) and all(s.startswith("127.") or s == "::1" for s in servers)


_DNS_PROBE = """
from updater.core.errors import ConnectionFailedError
from updater.shared.transport import Fetcher, NetworkSettings
settings = NetworkSettings(license_number="TEST-1147", use_environment=False, retries=0,
                           connect_timeout=5, read_timeout=5)
try:
    Fetcher(settings).download_bytes("http://opusi-test.invalid/p", 10)
except ConnectionFailedError as e:
    print(f"error {e.exit_code}: {e}")
"""


def _empty_network_namespace() -> list[str] | None:
    """``unshare -n`` where it works: a network of its own with nothing in it, so a name lookup
    fails on this machine and no query leaves it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True, timeout=10)
    return [unshare, "-n"] if probe.returncode == 0 else None


def test_dns_failure_is_error_6() -> None:
    if _local_resolver_only():
        with pytest.raises(ConnectionFailedError) as info:
            Fetcher(SETTINGS).download_bytes("http://opusi-test.invalid/p", 10)
        assert "DNS" in str(info.value)
        return
    isolated = _empty_network_namespace()
    if isolated is None:
        pytest.skip(
            "a DNS failure cannot be provoked without a query leaving the machine "
            "(/etc/resolv.conf names a resolver other than 127.x, and unshare -n is not allowed)"
        )
    done = subprocess.run([*isolated, sys.executable, "-c", _DNS_PROBE], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.startswith("error 6: "), done.stdout + done.stderr
    assert "DNS" in done.stdout, done.stdout


def test_wrong_protocol_answer_is_error_6(fetcher: Fetcher) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def garbage() -> None:
        client, _ = listener.accept()
        client.recv(65536)
        client.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        client.close()

    thread = threading.Thread(target=garbage, daemon=True)
    thread.start()
    try:
        _raises_within(
            ConnectionFailedError,
            5,
            lambda: fetcher.download_bytes(f"http://127.0.0.1:{port}/p", 10),
        )
    finally:
        thread.join(timeout=5)
        listener.close()
