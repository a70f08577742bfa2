"""Progress reporting for long work (downloads, backup, apply, restore): the only user of tqdm.

Every step reports through a :class:`Reporter` it is handed; this module decides what reaches
the terminal. Three modes, chosen by ``--progress``:

- ``bar``: tqdm bars and plain status lines on the stream.
- ``json``: one JSON object per line, for a host program that draws its own progress:
  ``{"phase": "download", "build": 1148, "done": 1048576, "total": 5242880, "unit": "B"}``
  and ``{"event": "message", "text": "..."}``. At most about ten lines per second per phase,
  but the first line of a phase and its final one (``done == total``) are always written.
  Each line is flushed at once. ``ensure_ascii`` keeps the lines safe for any console code page.
- ``none``: nothing on the stream.

In every mode, messages also go to :mod:`logging` (and so to the update log). Writes only to
the stream it is given.
"""

from __future__ import annotations

import json
import logging
import time
from types import TracebackType
from typing import Literal, TextIO

from tqdm import tqdm

from updater.core.i18n import language, tr

log = logging.getLogger(__name__)

Mode = Literal["bar", "json", "none"]

#: Shortest time between two JSON lines of one phase (the first and final line excepted).
JSON_INTERVAL = 0.1


class PhaseHandle:
    """Progress of one phase; advance it, then close it (or use it as a context manager)."""

    def advance(self, n: int) -> None:
        """Count ``n`` more units (bytes, files) as done."""

    def close(self) -> None:
        """End the phase; a second call does nothing."""

    def __enter__(self) -> PhaseHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Reporter:
    """Hands out a :class:`PhaseHandle` per phase and shows status lines (this base: silent)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def phase(
        self, name: str, total: int, build: int | None = None, unit: str = "B"
    ) -> PhaseHandle:
        """Start a phase.

        Args:
            name: What is going on ("download", "backup", "apply", "restore").
            total: Units the phase will take; 0 when unknown.
            build: The build the phase works on, if any.
            unit: "B" for bytes (shown scaled: kB, MB), or a count's unit ("files").

        Returns:
            The phase's handle.
        """
        return PhaseHandle()

    def message(self, text: str) -> None:
        """Show a plain status line in the language in use (and log it in English)."""
        log.info("%s", text)


class _BarPhase(PhaseHandle):
    def __init__(self, bar: tqdm[None]) -> None:
        self._bar = bar

    def advance(self, n: int) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


class _BarReporter(Reporter):
    def phase(
        self, name: str, total: int, build: int | None = None, unit: str = "B"
    ) -> PhaseHandle:
        is_bytes = unit == "B"
        bar: tqdm[None] = tqdm(
            total=total or None,
            desc=name if build is None else f"{name} {build}",
            unit=unit,
            unit_scale=is_bytes,
            unit_divisor=1024 if is_bytes else 1000,
            file=self.stream,
            leave=True,
        )
        return _BarPhase(bar)

    def message(self, text: str) -> None:
        super().message(text)
        tqdm.write(tr(text), file=self.stream)


class _JsonPhase(PhaseHandle):
    def __init__(
        self, reporter: _JsonReporter, name: str, total: int, build: int | None, unit: str
    ) -> None:
        self._reporter = reporter
        self._fields: dict[str, object] = {"phase": name, "build": build, "total": total}
        self._unit = unit
        self._total = total
        self._done = 0
        self._sent: int | None = None
        self._sent_at = 0.0
        self._closed = False
        self._emit()

    def advance(self, n: int) -> None:
        self._done += n
        if self._closed:
            return
        if self._done == self._total or time.monotonic() - self._sent_at >= JSON_INTERVAL:
            self._emit()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._emit()

    def _emit(self) -> None:
        if self._sent == self._done:
            return
        self._reporter.write_line({**self._fields, "done": self._done, "unit": self._unit})
        self._sent, self._sent_at = self._done, time.monotonic()


class _JsonReporter(Reporter):
    def phase(
        self, name: str, total: int, build: int | None = None, unit: str = "B"
    ) -> PhaseHandle:
        return _JsonPhase(self, name, total, build, unit)

    def message(self, text: str) -> None:
        super().message(text)
        # "text" stays English (stable for hosts that match on it); "localized" is as shown
        self.write_line({"event": "message", "text": str(text), "localized": tr(text),
                         "lang": language()})

    def failed(self, code: int, error: str, localized: str) -> None:
        """The last line of a failed run: its exit code and message (English and as shown)."""
        self.write_line({"event": "error", "code": code, "text": error, "localized": localized,
                         "lang": language()})

    def write_line(self, record: dict[str, object]) -> None:
        """Write one JSON object as one line, flushed at once."""
        self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()


def make_reporter(mode: Mode, stream: TextIO) -> Reporter:
    """Build the reporter for ``--progress mode``.

    Args:
        mode: "bar", "json" or "none".
        stream: Where bars or JSON lines go (usually ``sys.stderr`` / ``sys.stdout``).

    Returns:
        The reporter.

    Raises:
        ValueError: ``mode`` is none of the three.
    """
    kinds: dict[str, type[Reporter]] = {
        "bar": _BarReporter,
        "json": _JsonReporter,
        "none": Reporter,
    }
    if mode not in kinds:
        raise ValueError(f"unknown progress mode {mode!r}; expected bar, json or none")
    return kinds[mode](stream)
