"""The license registry on PostgreSQL, for real: Debian's PostgreSQL on 127.0.0.1, a cluster the
test makes (``tests/support/postgres.py``); several license-check services on one database; the
database restarted under load."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
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
from tests.support.nginx import nginx_path
from tests.support.nginx import running as running_nginx
from tests.support.postgres import Postgres, postgres_bin, running
from updater.core.errors import LicenseDatabaseError
from updater.core.protocol import ERROR_HEADER, LICENSE_HEADER
from updater.publisher import cli
from updater.publisher.database import SCHEMA_VERSION
from updater.publisher.licenses import open_registry

pytestmark = [pytest.mark.posix_only,
              pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL is not installed")]


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with running() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def shared(pg: Postgres, vendor: Vendor) -> Vendor:
    """The test vendor's repository with its licenses in PostgreSQL."""
    with open_registry(pg.url) as registry:
        registry.add(LICENSE, entitled_until=None, note="test customer")
        registry.add(REVOKED, entitled_until=None)
        registry.revoke(REVOKED)
    return replace(vendor, db=pg.url)  # type: ignore[arg-type]


def _get(url: str, number: str | None = LICENSE) -> urllib3.BaseHTTPResponse:
    headers = {LICENSE_HEADER: number} if number else {}
    return urllib3.request("GET", f"{url}/metadata/timestamp.json", headers=headers,
                           retries=False, timeout=10)


def test_migrate_is_safe_to_run_twice_and_at_once(pg: Postgres,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["license", "migrate", "--db", pg.url]) == 0
    assert cli.main(["license", "migrate", "--db", pg.url]) == 0
    with ThreadPoolExecutor(6) as pool:  # six servers starting together
        assert list(pool.map(lambda _: cli.main(["license", "migrate", "--db", pg.url]),
                             range(6))) == [0] * 6
    assert f"has schema version {SCHEMA_VERSION}" in capsys.readouterr().out
    assert pg.psql("SELECT id, version FROM opusi_schema") == f"1|{SCHEMA_VERSION}\n"


def test_the_license_commands_on_postgresql(pg: Postgres,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["license", "add", "PG-1", "--note", "Praxis Dr. Ö", "--db", pg.url]) == 0
    assert cli.main(["license", "revoke", "PG-1", "--db", pg.url]) == 0
    capsys.readouterr()
    assert cli.main(["license", "list", "--json", "--db", pg.url]) == 0
    assert '"number": "PG-1", "status": "revoked", "note": "Praxis Dr. \\u00d6"' in (
        capsys.readouterr().out)
    assert cli.main(["license", "revoke", "NOT-THERE", "--db", pg.url]) == 32
    assert "not registered, so nothing was revoked" in capsys.readouterr().err


def test_an_unreachable_database_is_a_clear_error(pg: Postgres) -> None:
    url = f"postgresql://opusi:geheim@127.0.0.1:{pg.port + 1}/opusi"  # nothing listens there
    with pytest.raises(LicenseDatabaseError, match="could not be opened: connection failed") as e:
        open_registry(url)
    assert "geheim" not in str(e.value) and "opusi:***@127.0.0.1" in str(e.value)
    assert "Check that the PostgreSQL server runs" in (e.value.hint or "")


def test_two_services_share_one_registry(shared: Vendor, pg: Postgres) -> None:
    with served(shared) as first, served(shared) as second:
        assert [_get(u).status for u in (first, second)] == [200, 200]
        assert [_get(u, "PG-NEW").headers.get(ERROR_HEADER) for u in (first, second)] == [
            "7", "7"]
        assert cli.main(["license", "add", "PG-NEW", "--db", pg.url]) == 0
        assert [_get(u, "PG-NEW").status for u in (first, second)] == [200, 200]  # at once
        with open_registry(pg.url) as registry:
            registry.revoke("PG-NEW")
        assert [_get(u, "PG-NEW").headers.get(ERROR_HEADER) for u in (first, second)] == [
            "2", "2"]


def test_an_update_with_the_registry_on_postgresql(shared: Vendor, tmp_path: Path) -> None:
    with served(shared) as url:
        install = make_install(tmp_path / "opusi", shared.trees[1147], 1147, url)
        assert run(install, shared) == 0
        assert program_files(install) == vendor_files(shared.trees[1155], 1155)
        unknown = make_install(tmp_path / "unknown", shared.trees[1147], 1147, url, "PG-NOBODY")
        assert run(unknown, shared) == 7


def test_the_database_down_is_no_connection_never_not_registered(
        shared: Vendor, pg: Postgres, tmp_path: Path) -> None:
    with served(shared) as url:
        install = make_install(tmp_path / "opusi", shared.trees[1147], 1147, url)
        pg.stop()
        try:
            assert run(install, shared) == 6  # not 7: the registry was not asked
            assert "The update server is unavailable (HTTP 503" in run_logs(install)
            assert program_files(install) == vendor_files(shared.trees[1147], 1147)
        finally:
            pg.start()
        assert run(install, shared) == 0  # the same server, without a restart


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_restart_under_load(shared: Vendor, pg: Postgres, mode: str,
                              caplog: pytest.LogCaptureFixture) -> None:
    """Eight clients check without pause while the database stops for 2 s (``fast``: a clean
    shutdown; ``immediate``: as in a crash): each answer is 200 or a 503 with a retry hint,
    never a refusal; the service resumes by itself and logs the outage twice, not per request."""
    seen: list[tuple[float, int, str | None, str | None]] = []  # (sent, status, wait, code)
    stop = threading.Event()
    with served(shared, threads=8) as url:
        def client(number: str) -> None:
            while not stop.is_set():
                sent = time.monotonic()
                r = _get(url, number)
                seen.append((sent, r.status, r.headers.get("Retry-After"),
                             r.headers.get(ERROR_HEADER)))
        workers = [threading.Thread(target=client, args=(n,))
                   for n in [LICENSE] * 6 + [REVOKED, "PG-NOBODY"]]
        for w in workers:
            w.start()
        time.sleep(1.0)
        pg.stop(mode)
        down = time.monotonic()  # the server process has exited
        time.sleep(2.0)
        starting = time.monotonic()
        pg.start()
        up = time.monotonic()  # it accepts connections
        time.sleep(2.0)
        stop.set()
        for w in workers:
            w.join()
    statuses = Counter(status for _, status, _, _ in seen)
    assert set(statuses) <= {200, 403, 503}, statuses
    during = [s for t, s, _, _ in seen if down < t < starting]
    assert during and set(during) == {503}, Counter(during)  # none served, none refused
    assert all(wait and int(wait) > 0 for _, s, wait, _ in seen if s == 503)
    refusals = Counter(code for t, s, _, code in seen if s == 403)
    assert set(refusals) <= {"2", "7"}  # only the revoked and the unknown number, when up
    assert not [t for t, s, _, code in seen if s == 403 and down < t < starting]
    back = min(t for t, s, _, _ in seen if t > up and s == 200)
    assert back - up < 1.0  # the first request after the restart is served
    assert {s for t, s, _, _ in seen if t > back + 0.1} <= {200, 403}  # and every one after
    outage = [r.getMessage() for r in caplog.records
              if r.name == "updater.publisher.app" and "license registry" in r.getMessage()]
    assert len(outage) == 2, "\n".join(outage)
    assert outage[0].startswith("license registry unavailable, answering 503: The license "
                                "registry postgresql://opusi@127.0.0.1")
    assert outage[1].startswith("license registry available again after")
    assert f"; {statuses[503]} requests were answered 503" in outage[1]
    print(f"{mode}: {len(seen)} requests, {statuses[503]} answered 503 while down "
          f"({up - down:.1f} s), first 200 {back - up:.3f} s after the restart")


@pytest.mark.skipif(nginx_path() is None, reason="nginx is not installed")
def test_the_database_down_behind_nginx(shared: Vendor, pg: Postgres, tmp_path: Path) -> None:
    """Behind nginx, a number whose decision nginx cached a moment ago is still served while the
    database is down; any other gets nginx's 503 with a retry hint, never a refusal."""
    with served(shared) as upstream, running_nginx(shared.repo, upstream, tmp_path / "nginx",
                                                   "5s") as front:
        assert _get(front.url).status == 200  # the decision is cached now
        pg.stop()
        try:
            assert _get(front.url).status == 200
            for number in ("PG-NOBODY", REVOKED):  # not cached: the service must answer
                answer = _get(front.url, number)
                assert (answer.status, answer.headers.get(ERROR_HEADER)) == (503, None)
                assert answer.headers["Retry-After"] == "60"
        finally:
            pg.start()
        answer = _get(front.url, "PG-NOBODY")
        assert (answer.status, answer.headers.get(ERROR_HEADER)) == (403, "7")


def test_the_support_desk_on_postgresql(shared: Vendor, pg: Postgres, tmp_path: Path) -> None:
    """A license registered on the desk (its registry in PostgreSQL) is served by an update
    server on the same database at once; the audit entry is in the database."""
    from tests.desk.test_security import PASSWORD, Browser
    from tests.support.browser import desk
    from updater.publisher.desk import staff

    with open_registry(pg.url) as registry:
        staff.add(registry.db, "pia", PASSWORD, ["support"])
    with served(shared) as update_url, desk(pg.url, shared.repo, None, [], tmp_path) as url:
        assert _get(update_url, "PG-DESK-1").headers.get(ERROR_HEADER) == "7"
        member = Browser(url)
        assert member.sign_in("pia").status == 303
        token = member.csrf("/licenses")
        assert member.request("POST", "/licenses", {"csrf": token, "number": "PG-DESK-1",
                                                    "note": "Praxis am Markt"}).status == 303
        assert _get(update_url, "PG-DESK-1").status == 200
    assert pg.psql("SELECT staff, action, subject FROM audit WHERE subject = 'PG-DESK-1'") == (
        "pia|license.add|PG-DESK-1\n")
