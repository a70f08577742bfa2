"""The vendor's license registry: which license numbers may download updates, and until when.

Reads and writes one SQLite file (table ``licenses``), in WAL mode so the server can read it
on many threads while the vendor's ``opusi-repo license`` commands write it from another
process. The decision whether a request is allowed, :func:`judge`, is pure and does no I/O.

Re-adding a number that is already registered re-activates it (if it was revoked) and sets
its entitlement date to the new value; the note is replaced only when a new one is given.
"""

from __future__ import annotations

import builtins
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Literal

from updater.core.errors import LicenseDatabaseError
from updater.core.protocol import (
    ANSWER_MALFORMED,
    ANSWER_REFUSED,
    ANSWER_UNREGISTERED,
    REASON_ENDED,
    REASON_REVOKED,
    REASON_UNREGISTERED,
    LicenseAnswer,
    license_answer,
    license_problem,
)

#: How long a connection waits for another process's write lock before giving up.
BUSY_TIMEOUT_MS = 5000

Status = Literal["active", "revoked"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS licenses (
    number TEXT PRIMARY KEY NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    entitled_until TEXT NULL,
    note TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    updated TEXT NOT NULL
)
"""
_COLUMNS = "number, status, entitled_until, note, created, updated"
_UPSERT = f"""
INSERT INTO licenses ({_COLUMNS}) VALUES (?, 'active', ?, ?, ?, ?)
ON CONFLICT (number) DO UPDATE SET
    status = 'active',
    entitled_until = excluded.entitled_until,
    note = CASE WHEN excluded.note = '' THEN licenses.note ELSE excluded.note END,
    updated = excluded.updated
"""


@dataclass(frozen=True)
class License:
    """One registered license.

    Attributes:
        number: The license number, exactly as registered.
        status: ``active`` or ``revoked``.
        entitled_until: Last day (UTC) on which updates may be downloaded; None for no end.
        note: Free text for the vendor (never sent to clients).
        created: When the number was first registered (UTC).
        updated: When it was last changed (UTC).
    """

    number: str
    status: Status
    entitled_until: date | None
    note: str
    created: datetime
    updated: datetime


def judge(license: License | None, number: str | None, today: date) -> LicenseAnswer | None:
    """Decide whether a request with license ``number`` may be served.

    Args:
        license: The registry's entry for ``number``, or None when there is none.
        number: The license number the client sent, or None when it sent none.
        today: The current date (UTC).

    Returns:
        None when the request is allowed, else the refusal to send: code 1 for a missing or
        malformed number, 7 for an unregistered one, 2 for a revoked license or an ended
        entitlement.
    """
    problem = license_problem(number)
    if problem is not None:
        return license_answer(ANSWER_MALFORMED, problem)
    assert number is not None  # well-formed
    if license is None:
        return license_answer(ANSWER_UNREGISTERED, "", REASON_UNREGISTERED, number)
    if license.status != "active":
        return license_answer(ANSWER_REFUSED, "", REASON_REVOKED, number)
    if license.entitled_until is not None and today > license.entitled_until:
        return license_answer(ANSWER_REFUSED, "", REASON_ENDED, number,
                              license.entitled_until.isoformat())
    return None


def open_registry(path: Path, *, create: bool = True) -> LicenseRegistry:
    """Open the registry at ``path``, creating the file and its schema if missing.

    Args:
        path: The SQLite file.
        create: When False, a missing file is an error instead of a new, empty registry
            (the server uses this so a mistyped path does not refuse every customer).

    Returns:
        The open registry; close it with :meth:`LicenseRegistry.close`.

    Raises:
        LicenseDatabaseError: The file is missing (``create=False``), unreadable, or not a
            license registry.
    """
    if not create and not path.is_file():
        raise LicenseDatabaseError(
            f"The license registry {path} does not exist.",
            hint="Create it with 'opusi-repo license add', or check the path.",
        )
    registry = LicenseRegistry(path)
    try:
        registry.setup()
    except LicenseDatabaseError:
        registry.close()
        raise
    return registry


class LicenseRegistry:
    """The license table of one SQLite file, with one connection per thread."""

    def __init__(self, path: Path) -> None:
        """Remember ``path``; connections are made on first use in each thread."""
        self.path = path
        self._local = threading.local()
        self._all: builtins.list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def __enter__(self) -> LicenseRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def setup(self) -> None:
        """Switch the file to WAL mode and create the table if missing.

        Raises:
            LicenseDatabaseError: SQLite failed.
        """
        try:
            conn = self._connection()
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute(_SCHEMA)
        except sqlite3.Error as e:
            raise self._error("could not be opened", e) from e
        if str(mode).lower() != "wal":
            raise LicenseDatabaseError(
                f"The license registry {self.path} could not be switched to WAL mode "
                f"(journal mode is {mode!r}).",
                hint="Keep the registry on a local disk, not a network share.",
            )

    def close(self) -> None:
        """Close every connection this registry opened, in any thread."""
        with self._lock:
            connections, self._all = self._all, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def add(self, number: str, *, entitled_until: date | None, note: str = "") -> License:
        """Register ``number``, or re-activate it and set its entitlement date.

        Args:
            number: The license number (1 to 32 letters, digits or dashes).
            entitled_until: Last day (UTC) of the update entitlement; None for no end.
            note: Free text; an empty note keeps the existing note of a re-added number.

        Returns:
            The license as now stored.

        Raises:
            LicenseDatabaseError: The number is malformed, or SQLite failed.
        """
        problem = license_problem(number)
        if problem is not None:
            raise LicenseDatabaseError(f"Cannot register the license: {problem}.")
        now = _now_text()
        until = entitled_until.isoformat() if entitled_until is not None else None
        self._write(_UPSERT, (number, until, note, now, now), f"add license {number}")
        return self._must_get(number)

    def revoke(self, number: str) -> License:
        """Revoke ``number``: from the next request on, the server refuses it (error 2).

        Returns:
            The license as now stored.

        Raises:
            LicenseDatabaseError: The number is not registered, or SQLite failed.
        """
        sql = "UPDATE licenses SET status = 'revoked', updated = ? WHERE number = ?"
        changed = self._write(sql, (_now_text(), number), f"revoke license {number}")
        if changed == 0:
            raise LicenseDatabaseError(
                f"The license {number!r} is not registered, so nothing was revoked.",
                hint="See 'opusi-repo license list' for the registered numbers.",
            )
        return self._must_get(number)

    def get(self, number: str) -> License | None:
        """Return the entry for ``number``, or None when it is not registered.

        Raises:
            LicenseDatabaseError: SQLite failed or the entry is corrupt.
        """
        rows = self._read(f"SELECT {_COLUMNS} FROM licenses WHERE number = ?", (number,))
        return _license_from_row(rows[0]) if rows else None

    def list(self) -> builtins.list[License]:
        """Return every registered license, ordered by number.

        Raises:
            LicenseDatabaseError: SQLite failed or an entry is corrupt.
        """
        rows = self._read(f"SELECT {_COLUMNS} FROM licenses ORDER BY number", ())
        return [_license_from_row(row) for row in rows]

    def _must_get(self, number: str) -> License:
        found = self.get(number)
        if found is None:
            raise LicenseDatabaseError(f"The license {number} vanished right after writing.")
        return found

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            with self._lock:
                self._all.append(conn)
            self._local.conn = conn
        return conn

    def _read(self, sql: str, params: tuple[object, ...]) -> builtins.list[tuple[object, ...]]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise self._error("could not be read", e) from e

    def _write(self, sql: str, params: tuple[object, ...], what: str) -> int:
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                changed = conn.execute(sql, params).rowcount
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return changed
        except sqlite3.Error as e:
            raise self._error(f"could not be written ({what})", e) from e

    def _error(self, what: str, e: sqlite3.Error) -> LicenseDatabaseError:
        return LicenseDatabaseError(
            f"The license registry {self.path} {what}: {e}.",
            hint="Nothing was changed. Check the file, its permissions and free disk space.",
        )


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _license_from_row(row: tuple[object, ...]) -> License:
    number, status, until, note, created, updated = row
    try:
        if status not in ("active", "revoked"):
            raise ValueError(f"unknown status {status!r}")
        return License(
            number=str(number),
            status="active" if status == "active" else "revoked",
            entitled_until=date.fromisoformat(str(until)) if until is not None else None,
            note=str(note),
            created=datetime.fromisoformat(str(created)),
            updated=datetime.fromisoformat(str(updated)),
        )
    except ValueError as e:
        raise LicenseDatabaseError(
            f"The license registry holds a corrupt entry for {number!r}: {e}.",
            hint="Re-add the license with 'opusi-repo license add'.",
        ) from e
