"""The update history: one line per run an administrator can read, in ``Logs/update-history.log``.

Appends to ``<install>/Database/SystemFiles/Logs/update-history.log`` (a customer-data folder the
backup leaves out, so a restore never rolls the history back). Like the log file, it is written
outside the file seam (:mod:`updater.shared.fileops`): it records what happened even when the
seam's operations fail. A history that cannot be written is logged and otherwise ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from updater.core.paths import LOG_DIR

log = logging.getLogger(__name__)

HISTORY_FILE = "update-history.log"


def write_history(install: Path, from_build: int, to_build: int, outcome: str,
                  applied: Sequence[int] = (), backup: Path | None = None) -> None:
    """Append one line: when, from which build to which, the outcome, builds applied, backup."""
    line = (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S}Z  build {from_build} -> {to_build}  "
        f"{outcome}  applied: {','.join(map(str, applied)) or '-'}  "
        f"backup: {backup.name if backup else '-'}\n"
    )
    try:
        folder = install / LOG_DIR
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / HISTORY_FILE).open("a", encoding="utf-8") as handle:
            handle.write(line)
    except OSError as e:
        log.warning("cannot write the update history: %s", e)
