"""Where a run's records go: the console (the updater's own warnings) and the log file.

One log file per run in the install's ``Logs`` folder, English, for the vendor's support; the
console shows only the updater's own warnings unless ``-v`` (the report step prints the final
error itself). The handlers are removed again when the run ends (:func:`remove_handlers`).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from updater.core.paths import LOG_DIR

_handlers: list[logging.Handler] = []


def _add_handler(handler: logging.Handler) -> None:
    logging.getLogger().addHandler(handler)
    _handlers.append(handler)


def remove_handlers() -> None:
    while _handlers:
        handler = _handlers.pop()
        logging.getLogger().removeHandler(handler)
        handler.close()


def setup_console(verbose: bool) -> None:
    logging.getLogger().setLevel(logging.DEBUG if verbose else logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    # the report step prints the final error itself; the console needs it only once. Without
    # -v the admin sees only the updater's own warnings, not the libraries' (urllib3's
    # "Retrying (Retry(total=2, ...))"): those are in the log file.
    console.addFilter(
        lambda record: record.name != "updater.core.report"
        and (verbose or record.name.startswith("updater."))
    )
    _add_handler(console)


def setup_log_file(install: Path) -> Path | None:
    """A log file for this run in the install's Logs folder (None if it cannot be written)."""
    folder = install / LOG_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"update-{datetime.now(UTC):%Y%m%d-%H%M%S}.log"
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _add_handler(handler)
    return path
