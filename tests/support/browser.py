"""Debian's chromium, headless, driven by Selenium through Debian's chromedriver; and the
support desk (``opusi-repo desk``) as a process of its own on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import urllib3

from tests.support.processes import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"


def chromium() -> tuple[str, str] | None:
    """The browser and its driver, when both are installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/lib/chromium/chromedriver" if os.path.exists("/usr/lib/chromium/chromedriver")
        else None)
    return (browser, driver) if browser and driver else None


@contextmanager
def browser(language: str = "de") -> Iterator[Any]:
    """A headless chromium (1280 x 1000) asking for pages in ``language``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = chromium()
    assert found is not None
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", f"--lang={language}", "--no-proxy-server",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": language})
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str) -> Path:
    """The whole page as ``build/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(700, min(int(height) + 40, 2400)))
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


@contextmanager
def desk(db: str | Path, repo: Path, keys: Path | None, logs: list[Path],
         folder: Path) -> Iterator[str]:
    """``opusi-repo desk`` on a free loopback port; yields its URL."""
    port = free_port()
    args = [sys.executable, "-m", "updater.publisher.cli", "desk", "--db", str(db), "--repo",
            str(repo), "--bind", f"127.0.0.1:{port}"]
    args += ["--keys", str(keys)] if keys else []
    for log in logs:
        args += ["--log", str(log)]
    out = (folder / "desk.out").open("wb")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib3.request("GET", url + "/login", retries=False, timeout=1)
                break
            except urllib3.exceptions.HTTPError:
                if proc.poll() is not None:
                    raise RuntimeError((folder / "desk.out").read_text()) from None
                time.sleep(0.05)
        yield url
    finally:
        stop_process(proc)
        out.close()
