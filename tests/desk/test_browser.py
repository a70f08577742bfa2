"""The support desk in a real browser (Debian's chromium, headless, Selenium): a support
member registers a practice and revokes it, a release engineer raises a rollout and withdraws a
build, the status chart shows the installs of the run; the updater meets each change.
Screenshots of each page go to ``build/screenshots/desk-*.png``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Vendor, make_install, make_vendor, program_files, vendor_files
from tests.integration.test_update import run
from tests.support.browser import browser, chromium, desk, screenshot
from updater.publisher.desk import staff
from updater.publisher.licenses import open_registry
from updater.publisher.repository import load_state
from updater.publisher.serving import Server, write_request_log

pytestmark = [pytest.mark.posix_only,
              pytest.mark.skipif(chromium() is None, reason="chromium or chromedriver missing")]

PASSWORD = "richtig-Pferd-Batterie"
PRACTICE = "PRAXIS-2001"


@dataclass
class Site:
    vendor: Vendor
    update_url: str
    desk_url: str
    log: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("desk")
    vendor = make_vendor(base)
    with open_registry(vendor.db) as registry:
        staff.add(registry.db, "sabine", PASSWORD, ["support"])
        staff.add(registry.db, "ralf", PASSWORD, ["release"])
    log = base / "requests.log"
    history = _history(base / "history.log", vendor)
    handler = write_request_log(log)
    server = Server(vendor.repo, vendor.db, threads=8)
    server.start()
    try:
        with desk(vendor.db, vendor.repo, vendor.keys, [history, log], base) as url:
            yield Site(vendor, f"http://127.0.0.1:{server.port}", url, log)
    finally:
        server.stop()
        logging.getLogger("updater.publisher.app.requests").removeHandler(handler)
        handler.close()


def _history(path: Path, vendor: Vendor) -> Path:
    """A week before the test run, in the request log's format: 60 practices that check every
    morning and move from build 1150 to 1152 to 1155 as those are released; two fail at 1155
    every day (stuck). Only for the chart to show a release as it goes (the screenshots); the
    run's own installs come from the server's real log."""
    from datetime import UTC, datetime, timedelta

    from updater.publisher.repository import load_state

    manifests = {b: f"/targets/{load_state(vendor.repo).build_info(b).manifest}"
                 for b in (1150, 1152, 1155)}
    hashed = {b: _hashed(vendor, m) for b, m in manifests.items()}
    start = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0) - timedelta(
        days=7)
    lines, on = [], {}
    for day in range(7):
        for n in range(60):
            at = start + timedelta(days=day, minutes=n * 2 + day)
            number = f"PRAXIS-{1000 + n}"
            lines.append(f"{at:%Y-%m-%dT%H:%M:%S} GET /metadata/timestamp.json 200 434 bytes "
                         f"license={number} 1.0 ms")
            target = (1150 if day < 2 else 1152 if day < 4
                      else 1155 if day >= 5 or n % 3 else 1152)
            if target != on.get(n) or (target == 1155 and n < 2):  # an update run
                lines.append(f"{at:%Y-%m-%dT%H:%M:%S} GET {hashed[target]} 200 900 bytes "
                             f"license={number} 1.0 ms")
            on[n] = target
    path.write_text("\n".join(lines) + "\n")
    return path


def _hashed(vendor: Vendor, manifest: str) -> str:
    """The path a client fetches a manifest target by (its hash before the name)."""
    from updater.core.builds import hashed_path
    from updater.publisher.repository import load_state

    name = manifest.removeprefix("/targets/")
    target = load_state(vendor.repo).target(name)
    return "/targets/" + hashed_path(name, target.hashes["sha256"])


def _find(driver: Any, element_id: str) -> Any:
    """The element ``element_id`` once the page that has it is loaded (up to 10 s)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, 10).until(
            expected_conditions.presence_of_element_located((By.ID, element_id)))
    except TimeoutException:
        raise AssertionError(f"no #{element_id} on {driver.current_url}:\n"
                             + driver.find_element(By.TAG_NAME, "main").text) from None


def _sign_in(driver: Any, site: Site, name: str) -> None:

    driver.get(site.desk_url + "/login")
    _find(driver, "name").send_keys(name)
    _find(driver, "password").send_keys(PASSWORD)
    _find(driver, "sign-in").click()
    _wait(driver, lambda d: "/login" not in d.current_url)


def _wait(driver: Any, condition: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(condition)


def _submit(driver: Any, button: str, expect: str) -> Any:
    """Click ``button`` and return element ``expect`` of the page that follows."""
    old = _find(driver, button)
    old.click()
    from selenium.webdriver.support import expected_conditions

    _wait(driver, expected_conditions.staleness_of(old))
    return _find(driver, expect)


def test_a_practice_is_registered_updates_and_is_revoked(site: Site, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    vendor = site.vendor
    first = make_install(tmp_path / "a", vendor.trees[1147], 1147, site.update_url, PRACTICE)
    assert run(first, vendor) == 7  # not registered yet
    with browser("de") as driver:
        driver.get(site.desk_url + "/licenses")
        assert driver.current_url.startswith(site.desk_url + "/login")  # signed out: to login
        screenshot(driver, "desk-1-anmelden")
        _sign_in(driver, site, "sabine")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Lizenzen"
        _find(driver, "number").send_keys(PRACTICE)
        _find(driver, "note").send_keys("Praxis Dr. Müller <b>Ulm</b>")
        assert _submit(driver, "add", "done").text == "Gespeichert."
        # HTML in a note is shown as text
        assert _find(driver, "license-note").text == "Praxis Dr. Müller <b>Ulm</b>"
        assert not driver.find_elements(By.CSS_SELECTOR, "#license-note b")

        assert run(first, vendor) == 0  # registered: the update goes through
        assert program_files(first) == vendor_files(vendor.trees[1155], 1155)

        driver.get(site.desk_url + "/licenses?q=m%C3%BCller")
        rows = driver.find_elements(By.CSS_SELECTOR, "#licenses tbody tr")
        assert [r.find_element(By.TAG_NAME, "a").text for r in rows] == [PRACTICE]
        screenshot(driver, "desk-2-lizenzen")
        rows[0].find_element(By.TAG_NAME, "a").click()
        _find(driver, "revoke-reason").send_keys("Vertrag gekündigt")
        assert _submit(driver, "revoke", "state").text == "gesperrt"
        screenshot(driver, "desk-3-lizenz-gesperrt")
    second = make_install(tmp_path / "b", vendor.trees[1147], 1147, site.update_url, PRACTICE)
    assert run(second, vendor) == 2  # revoked on the page: refused at once


def test_a_release_engineer_raises_a_rollout_and_withdraws_a_build(site: Site) -> None:

    with browser("en") as driver:
        _sign_in(driver, site, "ralf")
        assert driver.current_url == site.desk_url + "/builds", driver.page_source[-1500:]
        driver.get(site.desk_url + "/builds/1155")
        percent = _find(driver, "percent")
        percent.clear()
        percent.send_keys("30")
        _find(driver, "rollout-reason").send_keys("first practices on Monday")
        _find(driver, "rollout-confirm").click()
        assert _submit(driver, "rollout", "offered").text == "30% of the licenses"
        driver.get(site.desk_url + "/builds/1152")
        _find(driver, "withdraw-reason").send_keys("breaks the lab import")
        _find(driver, "withdraw-confirm").click()
        assert "breaks the lab import" in _submit(driver, "withdraw", "offered").text
        signed = load_state(site.vendor.repo)  # in the signed metadata the updaters read
        assert signed.build_info(1152).withdrawn == "breaks the lab import"
        assert signed.build_info(1155).audience.percent == 30
        screenshot(driver, "desk-4-build")
        driver.get(site.desk_url + "/builds")
        screenshot(driver, "desk-5-builds")
        # the release role does not see the licenses
        driver.get(site.desk_url + "/licenses")
        assert "support" in _find(driver, "error").text
        driver.get(site.desk_url + "/audit")
        text = _find(driver, "audit").text
        assert "ralf build.withdraw build 1152" in text and "sabine license.revoke" in text
        screenshot(driver, "desk-7-protokoll")


def test_the_status_chart_shows_the_installs_of_the_run(site: Site) -> None:
    from selenium.webdriver.common.by import By

    with browser("de") as driver:
        _sign_in(driver, site, "sabine")
        driver.get(site.desk_url + "/status")
        bars = driver.find_elements(By.CSS_SELECTOR, "#on-build rect")
        assert bars, "no bars in the chart"
        titles = " ".join(b.find_element(By.TAG_NAME, "title").get_attribute("textContent")
                          for b in bars)
        assert "build 1155" in titles
        table = _find(driver, "on-build-table").text
        # the history's 60 practices and the run's one install (PRAXIS-2001 reached 1155)
        counts = dict(line.rsplit(" ", 1) for line in table.splitlines()[1:])
        assert sum(map(int, counts.values())) == 61
        stuck = _find(driver, "stuck").text
        assert "PRAXIS-1000 1155" in stuck and "PRAXIS-1001 1155" in stuck
        assert driver.find_elements(By.CSS_SELECTOR, "#checks rect")
        screenshot(driver, "desk-6-status")
