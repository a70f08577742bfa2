"""The vendor's license registry: which license numbers may download updates, and until when.

The table ``licenses`` in a SQLite file or a PostgreSQL database (:mod:`.database`), read by the
server on many threads while the vendor's ``opusi-repo license`` commands (or other servers)
write it. The decision whether a request is allowed, :func:`judge`, is pure and does no I/O.

Re-adding a number that is already registered re-activates it (if it was revoked) and sets
its entitlement date to the new value; the note is replaced only when a new one is given.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from sqlalchemy import Connection, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

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
from updater.publisher.audit import COMMAND_LINE, record
from updater.publisher.database import Database, licenses, migrate

Status = Literal["active", "revoked"]


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


def open_registry(location: str | Path, *, create: bool = True) -> LicenseRegistry:
    """Open the registry at ``location``, creating its schema if missing (safe to run twice).

    Args:
        location: A SQLite file (a path or ``sqlite:///PATH``) or ``postgresql://...``.
        create: When False, a missing SQLite file is an error instead of a new, empty registry
            (the server uses this so a mistyped path does not refuse every customer).

    Returns:
        The open registry; close it with :meth:`LicenseRegistry.close`.

    Raises:
        LicenseDatabaseError: The location is malformed, the file missing (``create=False``),
            the database unreachable or not a license registry.
    """
    db = Database(location, create=create)
    try:
        migrate(db)
    except LicenseDatabaseError:
        db.close()
        raise
    return LicenseRegistry(db)


class LicenseRegistry:
    """The license table of one registry; safe to use from many threads."""

    def __init__(self, db: Database) -> None:
        """Use the (migrated) registry ``db``."""
        self.db = db

    @property
    def name(self) -> str:
        """Where the registry is (a path, or a URL without its password)."""
        return self.db.name

    def __enter__(self) -> LicenseRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection this registry opened, in any thread."""
        self.db.close()

    def add(self, number: str, *, entitled_until: date | None, note: str = "",
            actor: str = COMMAND_LINE) -> License:
        """Register ``number``, or re-activate it and set its entitlement date.

        Args:
            number: The license number (1 to 32 letters, digits or dashes).
            entitled_until: Last day (UTC) of the update entitlement; None for no end.
            note: Free text; an empty note keeps the existing note of a re-added number.
            actor: Who made the change, for the audit log.

        Returns:
            The license as now stored.

        Raises:
            LicenseDatabaseError: The number is malformed, or the database failed.
        """
        problem = license_problem(number)
        if problem is not None:
            raise LicenseDatabaseError(f"Cannot register the license: {problem}.")
        now = _now_text()
        until = entitled_until.isoformat() if entitled_until is not None else None
        dialect: Any = sqlite if self.db.sqlite else postgresql
        insert = dialect.insert(licenses).values(
            number=number, status="active", entitled_until=until, note=note, created=now,
            updated=now)
        upsert = insert.on_conflict_do_update(index_elements=[licenses.c.number], set_={
            "status": "active",
            "entitled_until": insert.excluded.entitled_until,
            "note": case((insert.excluded.note == "", licenses.c.note),
                         else_=insert.excluded.note),
            "updated": insert.excluded.updated,
        })
        with self.db.write(f"add license {number}") as conn:
            before = _get(conn, number)
            conn.execute(upsert)
            after = self._must_get(conn, number)
            record(conn, actor, "license.add" if before is None else "license.readd", number,
                   _describe(after))
            return after

    def revoke(self, number: str, *, actor: str = COMMAND_LINE, reason: str = "") -> License:
        """Revoke ``number``: from the next request on, the server refuses it (error 2).

        Returns:
            The license as now stored.

        Raises:
            LicenseDatabaseError: The number is not registered, or the database failed.
        """
        return self._change(number, {"status": "revoked"}, actor, "license.revoke", reason,
                            "revoked")

    def restore(self, number: str, *, actor: str = COMMAND_LINE, reason: str = "") -> License:
        """Make a revoked ``number`` active again (its end date and note unchanged).

        Raises:
            LicenseDatabaseError: The number is not registered, or the database failed.
        """
        return self._change(number, {"status": "active"}, actor, "license.restore", reason,
                            "restored")

    def set_until(self, number: str, until: date | None, *, actor: str = COMMAND_LINE,
                  reason: str = "") -> License:
        """Set the last day of ``number``'s update entitlement (None: no end).

        Raises:
            LicenseDatabaseError: The number is not registered, or the database failed.
        """
        return self._change(number, {"entitled_until": until.isoformat() if until else None},
                            actor, "license.until", reason, "changed")

    def search(self, text: str, limit: int = 500) -> builtins.list[License]:
        """Licenses whose number or note contains ``text`` (any case), ordered by number.

        Raises:
            LicenseDatabaseError: The database failed or an entry is corrupt.
        """
        pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace(
            "_", "\\_") + "%"
        query = (select(*licenses.columns)
                 .where(or_(func.lower(licenses.c.number).like(pattern, escape="\\"),
                            func.lower(licenses.c.note).like(pattern, escape="\\")))
                 .order_by(licenses.c.number).limit(limit))
        found = self.db.read(lambda conn: conn.execute(query).all())
        return [_license_from_row(tuple(row)) for row in found]

    def _change(self, number: str, values: dict[str, object], actor: str, action: str,
                reason: str, done: str) -> License:
        change = (update(licenses).where(licenses.c.number == number)
                  .values(**values, updated=_now_text()))
        with self.db.write(f"{action.split('.')[1]} license {number}") as conn:
            if conn.execute(change).rowcount == 0:
                raise LicenseDatabaseError(
                    f"The license {number!r} is not registered, so nothing was {done}.",
                    hint="See 'opusi-repo license list' for the registered numbers.",
                )
            after = self._must_get(conn, number)
            detail = _describe(after) + (f"; reason: {reason}" if reason else "")
            record(conn, actor, action, number, detail)
            return after

    def get(self, number: str) -> License | None:
        """Return the entry for ``number``, or None when it is not registered.

        Raises:
            LicenseDatabaseError: The database failed or the entry is corrupt.
        """
        return self.db.read(lambda conn: _get(conn, number))

    def list(self) -> builtins.list[License]:
        """Return every registered license, ordered by number.

        Raises:
            LicenseDatabaseError: The database failed or an entry is corrupt.
        """
        found = self.db.read(
            lambda conn: conn.execute(select(*licenses.columns).order_by(licenses.c.number)).all())
        return [_license_from_row(tuple(row)) for row in found]

    @staticmethod
    def _must_get(conn: Connection, number: str) -> License:
        found = _get(conn, number)
        if found is None:
            raise LicenseDatabaseError(f"The license {number} vanished right after writing.")
        return found


def _get(conn: Connection, number: str) -> License | None:
    row = conn.execute(select(*licenses.columns).where(licenses.c.number == number)).first()
    return _license_from_row(tuple(row)) if row is not None else None


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _describe(lic: License) -> str:
    until = lic.entitled_until.isoformat() if lic.entitled_until else "no end"
    note = f"; note: {lic.note}" if lic.note else ""
    return f"{lic.status}, entitled until {until}{note}"


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
