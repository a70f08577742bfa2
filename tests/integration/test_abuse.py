"""Abuse of the one credential: a guessing run of 10,000 invented license numbers from one
address is stopped early, while another client is served; the updater says what happened.
Addresses are kept in memory only, never in a log."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3

from tests.conftest import LICENSE, Vendor, make_install, program_files, run_logs, vendor_files
from tests.integration.test_update import run
from updater.core.protocol import LICENSE_HEADER
from updater.publisher.serving import Server
from updater.publisher.throttle import LIMIT, FailureThrottle

GUESSES = 10_000
WINDOW = 60.0  # longer than the guessing run takes, also on a loaded machine


@pytest.fixture
def guarded(vendor: Vendor, caplog: pytest.LogCaptureFixture) -> Iterator[str]:
    throttle = FailureThrottle(window=WINDOW, loopback=True)
    server = Server(vendor.repo, vendor.db, threads=8, throttle=throttle)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def test_a_guessing_run_is_stopped_early(guarded: str, vendor: Vendor, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    guesser = urllib3.PoolManager(source_address=("127.0.0.2", 0), retries=False)
    honest = urllib3.PoolManager(source_address=("127.0.0.1", 0), retries=False)
    answers: Counter[int] = Counter()
    started = time.perf_counter()
    for n in range(GUESSES):
        answer = guesser.request("GET", f"{guarded}/metadata/timestamp.json",
                                 headers={LICENSE_HEADER: f"{n:05}-GSS"})
        answers[answer.status] += 1
        if n % 1000 == 0:  # meanwhile, an honest client from another address is served
            assert honest.request("GET", f"{guarded}/metadata/timestamp.json",
                                  headers={LICENSE_HEADER: LICENSE}).status == 200
    seconds = time.perf_counter() - started
    print(f"[abuse] {GUESSES} guesses in {seconds:.1f} s: {dict(answers)}")
    assert answers == {403: LIMIT, 429: GUESSES - LIMIT}  # 20 numbers judged, then refused
    # even a right number from that address waits, until the window has passed
    right = guesser.request("GET", f"{guarded}/metadata/timestamp.json",
                            headers={LICENSE_HEADER: LICENSE})
    assert right.status == 429 and 1 <= int(right.headers["Retry-After"]) <= WINDOW + 1
    assert "127.0.0.2" not in caplog.text  # never logged


def test_the_window_passes() -> None:
    now = [0.0]
    throttle = FailureThrottle(limit=3, window=10.0, clock=lambda: now[0], loopback=True)
    for _ in range(3):
        assert throttle.wait("198.51.100.7") == 0
        throttle.refused("198.51.100.7")
        now[0] += 1
    assert throttle.wait("198.51.100.7") == pytest.approx(7.0)  # the oldest is 3 s old
    assert throttle.wait("203.0.113.9") == 0  # another address
    now[0] = 10.5
    assert throttle.wait("198.51.100.7") == 0  # the oldest refusal has left the window
    assert FailureThrottle(limit=1).wait("127.0.0.1") == 0  # this machine is not counted


def test_the_updater_of_a_throttled_network_says_so(guarded: str, vendor: Vendor,
                                                    tmp_path: Path) -> None:
    guesser = urllib3.PoolManager(retries=False)
    for n in range(LIMIT):
        guesser.request("GET", f"{guarded}/metadata/timestamp.json",
                        headers={LICENSE_HEADER: f"{n:05}-TYP"})
    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, guarded)
    assert run(install, vendor) == 6
    assert program_files(install) == vendor_files(vendor.trees[1147], 1147)
    assert "too many wrong license numbers were sent from it" in run_logs(install)


@pytest.mark.parametrize(("headers", "status"), [
    ({"X-Big": "a" * 200_000}, 413),  # above the 64 KiB the server takes
    ({"Range": "bytes=abc"}, 416), ({"Range": "bytes=999999999-"}, 416),
    ({"Range": "bytes=5-1"}, 416), ({"Range": "pages=1-2"}, 416),
    ({"Range": "bytes=" + ",".join(f"{i}-{i}" for i in range(500))}, 416),
])
def test_odd_requests_get_a_clean_answer(guarded: str, headers: dict[str, str],
                                         status: int) -> None:
    """Oversized headers and malformed Range headers: a clean 4xx, and the next client served.
    (werkzeug answers a Range it cannot parse with 416, where ignoring it would be allowed.)"""
    answer = urllib3.request("GET", f"{guarded}/metadata/timestamp.json", retries=False,
                             headers={LICENSE_HEADER: LICENSE, **headers})
    assert answer.status == status
    assert urllib3.request("GET", f"{guarded}/metadata/timestamp.json", retries=False,
                           headers={LICENSE_HEADER: LICENSE}).status == 200
