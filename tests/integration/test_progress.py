"""Progress reporters: JSON lines for hosts, tqdm bars for people, silence on request."""

from __future__ import annotations

import io
import json
import logging
import time
from typing import Any

import pytest

from updater.shared.progress import JSON_INTERVAL, make_reporter


class CountingStream(io.StringIO):
    """A text stream that counts flushes."""

    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_first_and_final_lines() -> None:
    stream = CountingStream()
    with make_reporter("json", stream).phase("download", 1000, build=1148) as phase:
        for _ in range(10):
            phase.advance(100)
    lines = json_lines(stream)
    assert lines[0] == {"phase": "download", "build": 1148, "done": 0, "total": 1000, "unit": "B"}
    assert lines[-1] == {
        "phase": "download",
        "build": 1148,
        "done": 1000,
        "total": 1000,
        "unit": "B",
    }
    assert [line["done"] for line in lines].count(1000) == 1  # close() does not repeat it
    assert stream.flushes >= len(lines)


def test_json_is_throttled_per_phase() -> None:
    stream = io.StringIO()
    started = time.monotonic()
    with make_reporter("json", stream).phase("backup", 100_000, unit="files") as phase:
        for _ in range(100_000):
            phase.advance(1)
    elapsed = time.monotonic() - started
    lines = json_lines(stream)
    assert len(lines) <= 2 + elapsed / JSON_INTERVAL + 1
    assert lines[0]["done"] == 0 and lines[-1]["done"] == 100_000
    assert lines[0]["build"] is None and lines[0]["unit"] == "files"


def test_json_writes_again_after_the_interval() -> None:
    stream = io.StringIO()
    phase = make_reporter("json", stream).phase("apply", 10, build=1150)
    phase.advance(1)
    phase.advance(1)
    assert [line["done"] for line in json_lines(stream)] == [0]
    time.sleep(JSON_INTERVAL * 1.5)
    phase.advance(1)
    assert [line["done"] for line in json_lines(stream)] == [0, 3]


def test_json_close_reports_where_an_interrupted_phase_stopped() -> None:
    stream = io.StringIO()
    phase = make_reporter("json", stream).phase("download", 10)
    phase.advance(4)
    phase.close()
    phase.close()
    phase.advance(1)
    assert [line["done"] for line in json_lines(stream)] == [0, 4]


def test_json_messages() -> None:
    stream = io.StringIO()
    make_reporter("json", stream).message("Backup erstellt: ä")
    assert json_lines(stream) == [{"event": "message", "text": "Backup erstellt: ä",
                                   "localized": "Backup erstellt: ä", "lang": "en"}]
    assert stream.getvalue().isascii()


def test_none_writes_nothing_but_logs(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    reporter = make_reporter("none", stream)
    with caplog.at_level(logging.INFO, logger="updater.shared.progress"):
        with reporter.phase("download", 100) as phase:
            phase.advance(100)
        reporter.message("Build 1148 installed")
    assert stream.getvalue() == ""
    assert "Build 1148 installed" in caplog.text


def test_bar_writes_bars_and_messages() -> None:
    stream = io.StringIO()
    reporter = make_reporter("bar", stream)
    with reporter.phase("download", 5 * 1024 * 1024, build=1148) as phase:
        phase.advance(5 * 1024 * 1024)
    reporter.message("Build 1148 installed")
    text = stream.getvalue()
    assert "download 1148" in text
    assert "5.00M" in text
    assert "Build 1148 installed" in text


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError):
        make_reporter("xml", io.StringIO())  # type: ignore[arg-type]
