"""The support desk's staff accounts and sessions, kept in the license registry.

Accounts are made on the command line (``opusi-repo staff add NAME --role support``); the
password is stored as an argon2id hash (argon2-cffi's defaults, RFC 9106's second choice:
64 MiB, 3 passes), never itself. A login makes a session: a random token in the browser's
cookie, its sha256 in the registry (a copy of the registry does not let anyone in), and a
second random token for the forms (CSRF). A session ends at logout, after :data:`IDLE` without
a request, or :data:`MAXIMUM` after the login, whichever is first.

Roles: ``support`` (licenses) and ``release`` (builds: rollout, withdrawal); everyone signed in
sees the status and the audit log.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update

from updater.core.errors import LicenseDatabaseError, UsageError
from updater.publisher.audit import COMMAND_LINE, now_text, record
from updater.publisher.database import Database, sessions, staff

ROLES = ("support", "release")
IDLE = timedelta(minutes=30)
MAXIMUM = timedelta(hours=12)
#: A session's last request is written at most this often (not on every page).
_TOUCH = timedelta(seconds=60)
_HASHER = PasswordHasher()
#: Checked against when the name is unknown, so that a wrong name takes as long as a wrong
#: password (no one learns the names from the time an answer takes).
_DUMMY = _HASHER.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class Staff:
    """A staff member: name and roles."""

    name: str
    roles: frozenset[str]


@dataclass(frozen=True)
class Session:
    """A signed-in staff member and the token their forms must carry."""

    staff: Staff
    csrf: str


def add(db: Database, name: str, password: str, roles: list[str],
        actor: str = COMMAND_LINE) -> Staff:
    """Make the account ``name`` (or replace the password and roles of an existing one).

    Raises:
        UsageError: The name, a role or the password is not acceptable.
        LicenseDatabaseError: The database failed.
    """
    _check(name, roles, password)
    now = now_text()
    hashed = _HASHER.hash(password)
    with db.write(f"add staff {name}") as conn:
        exists = conn.execute(select(staff.c.name).where(staff.c.name == name)).first()
        if exists:
            conn.execute(update(staff).where(staff.c.name == name).values(
                roles=" ".join(sorted(set(roles))), password=hashed, active=1, updated=now))
            conn.execute(delete(sessions).where(sessions.c.staff == name))
        else:
            conn.execute(staff.insert().values(name=name, roles=" ".join(sorted(set(roles))),
                                               password=hashed, active=1, created=now,
                                               updated=now))
        record(conn, actor, "staff.change" if exists else "staff.add", name,
               "roles: " + ", ".join(sorted(set(roles))))
    return Staff(name, frozenset(roles))


def remove(db: Database, name: str, actor: str = COMMAND_LINE) -> None:
    """Close the account ``name`` and end its sessions (its audit entries stay).

    Raises:
        LicenseDatabaseError: No such account, or the database failed.
    """
    with db.write(f"remove staff {name}") as conn:
        if conn.execute(update(staff).where(staff.c.name == name).values(
                active=0, updated=now_text())).rowcount == 0:
            raise LicenseDatabaseError(f"There is no staff account {name!r}.",
                                       hint="See 'opusi-repo staff list'.")
        conn.execute(delete(sessions).where(sessions.c.staff == name))
        record(conn, actor, "staff.remove", name)


def accounts(db: Database) -> list[tuple[Staff, bool]]:
    """Every account and whether it is active, by name."""
    rows = db.read(lambda conn: conn.execute(
        select(staff.c.name, staff.c.roles, staff.c.active).order_by(staff.c.name)).all())
    return [(Staff(r[0], frozenset(r[1].split())), bool(r[2])) for r in rows]


def verify(db: Database, name: str, password: str) -> Staff | None:
    """The active account ``name`` when ``password`` is its password, else None."""
    row = db.read(lambda conn: conn.execute(
        select(staff.c.password, staff.c.roles).where(staff.c.name == name, staff.c.active == 1)
    ).first())
    try:
        _HASHER.verify(row[0] if row else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _HASHER.check_needs_rehash(row[0]):  # the library's parameters have grown since
        hashed = _HASHER.hash(password)
        with db.write(f"rehash staff {name}") as conn:
            conn.execute(update(staff).where(staff.c.name == name).values(password=hashed))
    return Staff(name, frozenset(row[1].split()))


def open_session(db: Database, member: Staff) -> str:
    """Start a session for ``member``; return the token for the cookie."""
    token, now = secrets.token_urlsafe(32), now_text()
    with db.write("open a session") as conn:
        conn.execute(sessions.insert().values(token_hash=_digest(token), staff=member.name,
                                              csrf=secrets.token_urlsafe(32), created=now,
                                              last_seen=now))
    return token


def find_session(db: Database, token: str) -> Session | None:
    """The live session of ``token``, or None (unknown, ended, timed out, account closed)."""
    key = _digest(token)
    row = db.read(lambda conn: conn.execute(
        select(sessions.c.staff, sessions.c.csrf, sessions.c.created, sessions.c.last_seen,
               staff.c.roles)
        .join(staff, staff.c.name == sessions.c.staff)
        .where(sessions.c.token_hash == key, staff.c.active == 1)).first())
    if row is None:
        return None
    now = datetime.now(UTC)
    created, seen = datetime.fromisoformat(row[2]), datetime.fromisoformat(row[3])
    if now - seen > IDLE or now - created > MAXIMUM:
        close_session(db, token)
        return None
    if now - seen > _TOUCH:
        with db.write("keep a session") as conn:
            conn.execute(update(sessions).where(sessions.c.token_hash == key)
                         .values(last_seen=now_text()))
    return Session(Staff(row[0], frozenset(row[4].split())), row[1])


def close_session(db: Database, token: str) -> None:
    """End the session of ``token`` (nothing when there is none)."""
    with db.write("end a session") as conn:
        conn.execute(delete(sessions).where(sessions.c.token_hash == _digest(token)))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check(name: str, roles: list[str], password: str) -> None:
    if not name or len(name) > 64 or not name.replace(".", "").replace("-", "").isalnum():
        raise UsageError(f"A staff name is 1 to 64 letters, digits, dots or dashes: {name!r}.")
    unknown = sorted(set(roles) - set(ROLES))
    if not roles or unknown:
        raise UsageError(f"Give one or more roles of {', '.join(ROLES)}"
                         + (f" (unknown: {', '.join(unknown)})." if unknown else "."))
    if len(password) < 12:
        raise UsageError("The password must have at least 12 characters.")
