"""Fixtures shared by the integration tests: a real proxy (tinyproxy) and a clean environment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.proxies import Tinyproxy, start_tinyproxy

StartProxy = Callable[..., Tinyproxy]


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[StartProxy]:
    started: list[Tinyproxy] = []

    def start(connect_ports: list[int], auth: tuple[str, str] | None = None) -> Tinyproxy:
        proxy = start_tinyproxy(tmp_path / f"tinyproxy-{len(started)}", connect_ports, auth)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


