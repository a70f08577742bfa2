"""The audit log in the registry: who changed what and when.

Every change to a license (from ``opusi-repo license`` or the support desk) and every action
on a build taken on the desk writes one entry, in the same transaction as the change itself, so
there is no change without its entry. Nothing here changes or removes an entry.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, desc, select

from updater.publisher.database import Database, audit

#: The actor of a change made with the command line tools.
COMMAND_LINE = "opusi-repo"


@dataclass(frozen=True)
class Entry:
    """One change: when (UTC), by whom, what (``license.add``, ``build.rollout``, ...), on what,
    and its details (the new values, the reason given)."""

    at: datetime
    staff: str
    action: str
    subject: str
    detail: str


def record(conn: Connection, staff: str, action: str, subject: str, detail: str = "") -> None:
    """Add an entry within the caller's transaction."""
    conn.execute(audit.insert().values(at=now_text(), staff=staff, action=action,
                                       subject=subject, detail=detail))


def entries(db: Database, limit: int = 200, subject: str | None = None) -> builtins.list[Entry]:
    """The newest ``limit`` entries (of ``subject`` only, when given), newest first."""
    query = select(audit.c.at, audit.c.staff, audit.c.action, audit.c.subject, audit.c.detail)
    if subject is not None:
        query = query.where(audit.c.subject == subject)
    query = query.order_by(desc(audit.c.id)).limit(limit)
    rows = db.read(lambda conn: conn.execute(query).all())
    return [Entry(datetime.fromisoformat(r[0]), r[1], r[2], r[3], r[4]) for r in rows]


def now_text() -> str:
    """The current time as the registry keeps it: ISO 8601, UTC, seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")
