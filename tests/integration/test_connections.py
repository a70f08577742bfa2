"""The project's server alone, without nginx in front: 2,000 connections that send nothing and 64
that send their headers a line a second (slow loris) keep no one waiting, over HTTP and HTTPS,
and are closed after the header timeout with a 408 (just closed where not even the TLS handshake
was made); a slow download is not cut off by that timeout. (Before updater.publisher.gate,
cheroot gave each connection a worker thread before its request had arrived: a normal request
waited past its 10 s timeout.)"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import resource
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3

from tests.conftest import LICENSE, Vendor, make_vendor
from tests.integration.test_server import _self_signed
from updater.core.protocol import LICENSE_HEADER
from updater.publisher import gate
from updater.publisher.gate import HEADER_TIMEOUT
from updater.publisher.serving import Server

pytestmark = pytest.mark.posix_only

IDLE = 2000
SLOW = 64
THREADS = 32  # opusi-repo serve's default


@pytest.fixture(scope="module", autouse=True)
def _enough_files() -> Iterator[None]:
    """Both ends of every connection live in this process: ~4,200 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 16384 if hard == resource.RLIM_INFINITY else min(hard, 16384)
    needed = IDLE * 2 + SLOW * 2 + 500
    if soft < needed and wanted < needed:
        pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.contextmanager
def _running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_idle_and_slow_connections_keep_no_one_waiting(vendor: Vendor, tmp_path: Path,
                                                       tls: bool) -> None:
    cert, key = _self_signed(tmp_path) if tls else (None, None)
    client_tls = ssl.create_default_context(cafile=str(cert)) if cert else None
    with _running(Server(vendor.repo, vendor.db, threads=THREADS, certfile=cert,
                         keyfile=key)) as server:
        address = ("127.0.0.1", server.port)
        opened = time.monotonic()
        # idle: a TCP connection and nothing else (with TLS: not even a handshake)
        idle = [socket.create_connection(address, timeout=5) for _ in range(IDLE)]
        slow: list[socket.socket] = []
        for _ in range(SLOW):
            sock = socket.create_connection(address, timeout=5)
            if client_tls is not None:
                sock = client_tls.wrap_socket(sock, server_hostname="localhost")
            sock.sendall(b"GET /metadata/timestamp.json HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)
        stop = threading.Event()

        def drip() -> None:  # a header line a second, until shortly before the timeout
            while not stop.wait(1.0) and time.monotonic() - opened < HEADER_TIMEOUT - 1.5:
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X-Slow: a\r\n")

        dripper = threading.Thread(target=drip)
        dripper.start()
        try:
            time.sleep(2.5)
            scheme = "https" if tls else "http"
            pool = (urllib3.HTTPSConnectionPool(
                        "127.0.0.1", server.port, ca_certs=str(cert), server_hostname="localhost",
                        assert_hostname="localhost", retries=False, timeout=10)
                    if cert else urllib3.HTTPConnectionPool(
                        "127.0.0.1", server.port, retries=False, timeout=10))  # fmt: skip
            started = time.monotonic()
            answer = pool.request("GET", "/metadata/timestamp.json",
                                  headers={LICENSE_HEADER: LICENSE})
            waited = time.monotonic() - started
            print(f"[connections] {scheme}: {IDLE} idle + {SLOW} slow-loris open, a normal "
                  f"request answered {answer.status} in {waited:.3f} s")
            assert answer.status == 200
            assert waited < 2.0
            # then the server closes them all, once the header timeout has passed
            ends = _ends(idle + slow, opened, HEADER_TIMEOUT + 10)
        finally:
            stop.set()
            dripper.join()
            for sock in idle + slow:
                sock.close()
    closed_after = sorted(seconds for seconds, _ in ends)
    print(f"[connections] {scheme}: closed by the server after {closed_after[0]:.1f} to "
          f"{closed_after[-1]:.1f} s (header timeout {HEADER_TIMEOUT:g} s)")
    assert len(ends) == IDLE + SLOW  # none left open
    assert closed_after[0] >= HEADER_TIMEOUT - 0.5  # the timeout, not earlier
    assert closed_after[-1] <= HEADER_TIMEOUT + 5
    for n, (_, data) in enumerate(ends):
        if tls and n < IDLE:
            assert data == b""  # no handshake, so no HTTP either: closed
        else:
            assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), data[:80]


def _ends(socks: list[socket.socket], since: float, limit: float) -> list[tuple[float, bytes]]:
    """For each socket, when the server closed it (seconds after ``since``) and what it sent;
    a reset counts as not closed cleanly."""
    received = {sock: b"" for sock in socks}
    ends: dict[socket.socket, float] = {}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        while len(ends) < len(socks) and time.monotonic() - since < limit:
            for key, _ in selector.select(1.0):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                try:
                    data = ready.recv(4096)
                except (BlockingIOError, ssl.SSLWantReadError):
                    continue
                except ssl.SSLEOFError:  # closed without TLS's close_notify: still closed
                    data = b""
                if data:
                    received[ready] += data
                    continue
                ends[ready] = time.monotonic() - since
                selector.unregister(ready)
    return [(ends[sock], received[sock]) for sock in socks if sock in ends]


def test_a_slow_download_outlasts_the_header_timeout(tmp_path: Path) -> None:
    """The header timeout is for the request head only: a download on a slow line that takes
    many times as long is sent to the end (cheroot's own timeout applies to each write)."""
    vendor = make_vendor(tmp_path / "vendor", builds={1147: {"a.txt": b"a"}})
    big = vendor.repo / "targets" / "big" / "package.bin"
    big.parent.mkdir()
    big.write_bytes(os.urandom(8 * 1024 * 1024))
    header_timeout = 0.5
    with _running(Server(vendor.repo, vendor.db, threads=4,
                         header_timeout=header_timeout)) as server:
        pool = urllib3.HTTPConnectionPool(
            "127.0.0.1", server.port, retries=False, timeout=30,
            socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)])
        started = time.monotonic()
        answer = pool.request("GET", "/targets/big/package.bin", preload_content=False,
                              headers={LICENSE_HEADER: LICENSE})
        assert answer.status == 200
        digest = hashlib.sha256()
        while chunk := answer.read(32 * 1024):  # ~2 MB/s
            digest.update(chunk)
            time.sleep(0.015)
        seconds = time.monotonic() - started
        answer.release_conn()
    print(f"[connections] 8 MiB read at a slow pace in {seconds:.1f} s, header timeout "
          f"{header_timeout} s")
    assert digest.hexdigest() == hashlib.sha256(big.read_bytes()).hexdigest()
    assert seconds > 4 * header_timeout


def test_keep_alive_and_pipelined_requests(vendor: Vendor) -> None:
    """Requests after the first on a connection pass the gate too: one at a time, and two sent
    at once, the second split across two writes."""
    with _running(Server(vendor.repo, vendor.db, threads=2)) as server:
        request = (f"GET /metadata/timestamp.json HTTP/1.1\r\nHost: x\r\n"
                   f"{LICENSE_HEADER}: {LICENSE}\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            reader = sock.makefile("rb")
            for _ in range(3):
                sock.sendall(request)
                assert _answer(reader) == 200
            sock.sendall(request + request[:20])
            assert _answer(reader) == 200
            time.sleep(0.3)
            sock.sendall(request[20:])
            assert _answer(reader) == 200


def _answer(reader: io.BufferedReader) -> int:
    """The status of one answer read from ``reader`` (its body skipped by Content-Length)."""
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
    reader.read(length)
    return status


def test_plain_http_to_the_https_port(vendor: Vendor, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    with _running(Server(vendor.repo, vendor.db, certfile=cert, keyfile=key)) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /metadata/timestamp.json HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_beyond_max_waiting_the_longest_waiting_go_first(vendor: Vendor,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate's bound (500 on Windows, where select() takes 512 sockets at most): past it,
    the connection waiting longest gets its 408 early, and a normal request is answered."""
    monkeypatch.setattr(gate, "MAX_WAITING", 10)
    with _running(Server(vendor.repo, vendor.db, threads=2)) as server:
        address = ("127.0.0.1", server.port)
        first = [socket.create_connection(address, timeout=5) for _ in range(10)]
        time.sleep(0.3)
        later = [socket.create_connection(address, timeout=5) for _ in range(9)]
        answer = urllib3.request("GET", f"http://127.0.0.1:{server.port}/metadata/timestamp.json",
                                 headers={LICENSE_HEADER: LICENSE}, retries=False, timeout=5)
        assert answer.status == 200
        for sock in first:  # pushed out by the 9 later ones and the normal request
            assert sock.recv(4096).startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        for sock in later:  # still waiting
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(4096)
        for sock in first + later:
            sock.close()


def test_slow_request_bodies_keep_no_one_waiting(vendor: Vendor) -> None:
    """64 clients announce a body of 100,000 bytes and send a byte a second: each gets its 405
    and its connection closed at once; a normal request meanwhile is answered at once."""
    with _running(Server(vendor.repo, vendor.db, threads=THREADS)) as server:
        address = ("127.0.0.1", server.port)
        senders = []
        for _ in range(SLOW):
            sock = socket.create_connection(address, timeout=5)
            sock.sendall(b"POST /metadata/timestamp.json HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 100000\r\n\r\nx")
            senders.append(sock)
        stop = threading.Event()

        def drip() -> None:
            while not stop.wait(1.0):
                for sock in senders:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"x")

        dripper = threading.Thread(target=drip)
        dripper.start()
        try:
            time.sleep(2.5)
            started = time.monotonic()
            answer = urllib3.request("GET", f"http://127.0.0.1:{server.port}/metadata/"
                                     "timestamp.json", headers={LICENSE_HEADER: LICENSE},
                                     retries=False, timeout=10)
            waited = time.monotonic() - started
            print(f"[connections] {SLOW} slow request bodies open, a normal request answered "
                  f"{answer.status} in {waited:.3f} s")
            assert answer.status == 200 and waited < 2.0
            ends = _ends(senders, started, 5)
        finally:
            stop.set()
            dripper.join()
            for sock in senders:
                sock.close()
    assert len(ends) == SLOW  # every one closed by the server, not waited for
    for _, data in ends:
        assert data.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n"), data[:80]
        assert b"Connection: close" in data
