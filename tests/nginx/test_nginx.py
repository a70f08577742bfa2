"""nginx in front, for real: Debian's nginx on 127.0.0.1 with the shipped configuration
(``deploy/nginx/opusi.conf.template``) serves metadata and packages from disk, the project's
server answers only the license check (``auth_request``), and the updater runs against nginx."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3

from tests.conftest import (
    LICENSE,
    REVOKED,
    Vendor,
    make_install,
    program_files,
    run_logs,
    served,
    vendor_files,
)
from tests.integration.test_update import run
from tests.support.nginx import Nginx, free_port, nginx_path, running
from tests.support.processes import serve_process
from tests.support.relay import Relay
from updater.core.errors import LicenseMissingError, LicenseRefusedError, RegistrationMissingError
from updater.core.paths import WORK_DIR
from updater.core.protocol import ERROR_HEADER, LICENSE_HEADER, error_from_answer
from updater.publisher.licenses import open_registry
from updater.publisher.status import read_requests, summarize

pytestmark = [pytest.mark.posix_only,
              pytest.mark.skipif(nginx_path() is None, reason="nginx is not installed")]

AUTH_CACHE = 2.0  # seconds nginx keeps a license decision in these tests


@pytest.fixture(scope="module")
def nginx(vendor: Vendor, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with served(vendor) as upstream, running(vendor.repo, upstream,
                                             tmp_path_factory.mktemp("nginx"),
                                             f"{AUTH_CACHE:g}s") as front:
        yield front


def _get(nginx: Nginx, path: str, number: str | None = LICENSE) -> urllib3.BaseHTTPResponse:
    headers = {LICENSE_HEADER: number} if number is not None else {}
    return urllib3.request("GET", nginx.url + path, headers=headers, retries=False,
                           redirect=False)


def test_an_update_through_nginx(nginx: Nginx, vendor: Vendor, tmp_path: Path) -> None:
    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, nginx.url)
    assert run(install, vendor) == 0
    assert program_files(install) == vendor_files(vendor.trees[1155], 1155)
    log = nginx.access_log.read_text()
    assert "GET /metadata/timestamp.json 200" in log and f"license={LICENSE}" in log
    assert "127.0.0.1" not in log  # never an address
    # opusi-repo status reads nginx's log as it reads the project's server's
    assert summarize(read_requests(log.splitlines())).licenses[LICENSE].newest == 1155


@pytest.mark.parametrize(("number", "code", "words"), [
    (REVOKED, 2, f"the license {REVOKED} has been revoked"),
    ("99999-NEW", 7, "the license number 99999-NEW is not registered"),
])
def test_license_errors_reach_the_client(nginx: Nginx, vendor: Vendor, tmp_path: Path,
                                         number: str, code: int, words: str) -> None:
    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, nginx.url, number)
    assert run(install, vendor) == code
    assert program_files(install) == vendor_files(vendor.trees[1147], 1147)
    assert words in run_logs(install)  # the reason came through nginx's body


@pytest.mark.parametrize(("number", "status", "error"), [
    (None, 401, LicenseMissingError), ("bad license!", 401, LicenseMissingError),
    (REVOKED, 403, LicenseRefusedError), ("99999-NEW", 403, RegistrationMissingError),
])
def test_each_refusal_as_the_client_reads_it(nginx: Nginx, number: str | None, status: int,
                                             error: type[Exception]) -> None:
    """(The updater itself never sends a malformed number: it stops with 1 first.)"""
    answer = _get(nginx, "/metadata/timestamp.json", number)
    assert answer.status == status
    assert answer.headers["Cache-Control"] == "no-store"
    assert isinstance(error_from_answer(answer.headers.get(ERROR_HEADER), answer.data), error)


def test_other_paths(nginx: Nginx) -> None:
    assert _get(nginx, "/opusi-license-check").status == 404  # internal only
    assert _get(nginx, "/licenses.sqlite3").status == 404
    assert _get(nginx, "/../licenses.sqlite3").status in (400, 404)


def test_caching_headers(nginx: Nginx, vendor: Vendor) -> None:
    stamp = _get(nginx, "/metadata/timestamp.json")
    assert stamp.status == 200 and stamp.headers["Cache-Control"] == "no-cache"
    root = _get(nginx, "/metadata/1.root.json")
    assert "immutable" in root.headers["Cache-Control"]
    package = next((vendor.repo / "targets" / "builds").glob("*.7z"))
    answer = _get(nginx, f"/targets/builds/{package.name}")
    assert answer.status == 200 and "max-age=31536000" in answer.headers["Cache-Control"]
    assert answer.data == package.read_bytes()


def test_range_resume_through_nginx(nginx: Nginx, vendor: Vendor, tmp_path: Path) -> None:
    port = int(nginx.url.rsplit(":", 1)[1])
    relay = Relay(("127.0.0.1", port), cut_package_after=12000)
    try:
        install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147,
                               f"http://127.0.0.1:{relay.port}")
        assert run(install, vendor) == 6
        assert relay.cuts == 1
        assert list((install / WORK_DIR / "downloads").glob("*.part"))
        assert run(install, vendor) == 0
        assert any("Range: bytes=" in r and "If-Range:" in r for r in relay.requests())
        assert program_files(install) == vendor_files(vendor.trees[1155], 1155)
    finally:
        relay.close()


def test_a_revoked_license_stops_within_the_cache_time(nginx: Nginx, vendor: Vendor) -> None:
    number = f"RVK-{int(time.time() * 1000) % 10**8}"
    with open_registry(vendor.db) as registry:
        registry.add(number, entitled_until=None)
    assert _get(nginx, "/metadata/timestamp.json", number).status == 200  # decision cached
    with open_registry(vendor.db) as registry:
        registry.revoke(number)
    revoked_at = time.monotonic()
    assert _get(nginx, "/metadata/timestamp.json", number).status == 200  # still cached
    while (answer := _get(nginx, "/metadata/timestamp.json", number)).status == 200:
        assert time.monotonic() - revoked_at < AUTH_CACHE + 1.5, "still served after the cache"
        time.sleep(0.1)
    assert (answer.status, answer.headers[ERROR_HEADER]) == (403, "2")
    assert time.monotonic() - revoked_at <= AUTH_CACHE + 1.5


def test_the_license_service_down(vendor: Vendor, tmp_path: Path) -> None:
    """nginx up, the project's server not: 503 with Retry-After, which the updater reports as
    no connection (6), nothing changed."""
    nothing = f"http://127.0.0.1:{free_port()}"
    with running(vendor.repo, nothing, tmp_path / "nginx") as front:
        answer = _get(front, "/metadata/timestamp.json")
        assert (answer.status, answer.headers["Retry-After"]) == (503, "60")
        install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, front.url)
        assert run(install, vendor) == 6
        assert program_files(install) == vendor_files(vendor.trees[1147], 1147)


def _asked(request_log: Path) -> list[str]:
    """The license numbers a license service was asked about, from its request log."""
    if not request_log.exists():
        return []
    return [r.license for r in read_requests(request_log.read_text().splitlines())
            if r.path == "/license-check"]


def test_two_license_services_behind_one_nginx(vendor: Vendor, tmp_path: Path) -> None:
    """The deployment for many practices (README): nginx with an ``upstream`` of two license
    services (``opusi-repo serve`` processes) on one registry. nginx spreads the checks over
    both; with one stopped (an upgrade, a crash) it asks the other, and an update goes through;
    a license revoked in the registry is refused within the cache time."""
    logs = [tmp_path / "first-requests.log", tmp_path / "second-requests.log"]
    numbers = [f"TWO-{i:04d}" for i in range(30)]
    with open_registry(vendor.db) as registry:
        for number in numbers:
            registry.add(number, entitled_until=None)
    with contextlib.ExitStack() as stack:
        (first, first_pid), (second, _) = (
            stack.enter_context(serve_process(vendor.repo, vendor.db, tmp_path / f"{n}.log", log))
            for n, log in zip(("first", "second"), logs, strict=True))
        front = stack.enter_context(running(vendor.repo, [first, second], tmp_path / "nginx",
                                            f"{AUTH_CACHE:g}s"))
        for number in numbers[:20]:
            assert _get(front, "/metadata/timestamp.json", number).status == 200
        deadline = time.monotonic() + 5  # a service logs a request once it has answered it
        while sum(len(_asked(log)) for log in logs) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        asked = [_asked(log) for log in logs]
        assert sorted(asked[0] + asked[1]) == numbers[:20]  # each number asked once, by one
        assert asked[0] and asked[1], asked  # both took a share

        os.kill(first_pid, signal.SIGTERM)  # the first one stops
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", int(first.rpartition(":")[2]))) != 0:
                    break
            time.sleep(0.05)
        for number in numbers[20:]:  # new to nginx: it must ask, and only the second answers
            assert _get(front, "/metadata/timestamp.json", number).status == 200
        install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, front.url,
                               numbers[-1])
        assert run(install, vendor) == 0
        assert program_files(install) == vendor_files(vendor.trees[1155], 1155)
        time.sleep(0.2)
        assert set(numbers[20:]) <= set(_asked(logs[1]))

        with open_registry(vendor.db) as registry:
            registry.revoke(numbers[-1])
        revoked_at = time.monotonic()
        while (answer := _get(front, "/metadata/timestamp.json", numbers[-1])).status == 200:
            assert time.monotonic() - revoked_at < AUTH_CACHE + 1.5, "still served"
            time.sleep(0.1)
        assert (answer.status, answer.headers[ERROR_HEADER]) == (403, "2")


def test_idle_and_slow_connections_keep_no_one_waiting(nginx: Nginx) -> None:
    """1,000 connections that send nothing and 64 that send their headers a line a second (slow
    loris): nginx, event-driven, still answers a normal request at once. (The project's server
    alone does not yet: see the README.)"""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    count = min(1000, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 300)
    port = int(nginx.url.rsplit(":", 1)[1])
    idle: list[socket.socket] = []
    slow: list[socket.socket] = []
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(1.0):
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Slow: a\r\n")

    dripper = threading.Thread(target=drip)
    try:
        idle += [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
        for _ in range(64):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /metadata/timestamp.json HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)
        dripper.start()
        time.sleep(2.5)
        started = time.monotonic()
        assert _get(nginx, "/metadata/timestamp.json").status == 200
        assert time.monotonic() - started < 1.0
    finally:
        stop.set()
        if dripper.is_alive():
            dripper.join()
        for sock in idle + slow:
            sock.close()
