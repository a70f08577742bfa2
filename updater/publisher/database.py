"""Where the vendor's registry lives: one SQLite file, or a PostgreSQL database many servers share.

Chosen by a location (``--db``): a path or ``sqlite:///PATH`` for a file on this machine, or
``postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=...]`` for a database that several
license-check services use at once (a revoke through one is seen by the others on their next
request: nothing is cached here). SQLAlchemy Core speaks to both, so every query is written once;
psycopg 3 is the PostgreSQL driver.

The schema is created and moved forward by :func:`migrate`, which is safe to run twice and at
the same time from several processes (SQLite: a write transaction; PostgreSQL: transactional
DDL under an advisory lock). A database whose schema is newer than this program is refused.

Every database failure becomes :class:`~updater.core.errors.LicenseDatabaseError` with the
location (its password hidden); the server answers those with 503 and a retry hint, never with a
refusal. A read that finds its pooled connection dead (the database was restarted) is retried
once on a fresh connection, so a restart costs the requests made while it is down, no more.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    event,
    exc,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from updater.core.errors import LicenseDatabaseError

#: The schema this program writes and reads; :func:`migrate` brings a database up to it.
SCHEMA_VERSION = 2  # 1: licenses; 2: staff, sessions, audit (the support desk)
#: How long SQLite waits for another process's write lock, and PostgreSQL for a connection.
BUSY_TIMEOUT_S = 5
#: Connections kept per process to PostgreSQL (the server's threads share them).
POOL_SIZE, POOL_OVERFLOW = 8, 24
#: Connections kept open to a SQLite file for reads: one per server thread (``serve`` runs 32).
SQLITE_POOL_SIZE = 32

metadata = MetaData()

schema = Table(
    "opusi_schema", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
)

#: Times are ISO 8601 text in UTC in both databases (the SQLite files made before PostgreSQL
#: was an option hold them so); ``entitled_until`` is an ISO date.
licenses = Table(
    "licenses", metadata,
    Column("number", Text, primary_key=True),
    Column("status", Text, CheckConstraint("status IN ('active', 'revoked')"), nullable=False),
    Column("entitled_until", Text, nullable=True),
    Column("note", Text, nullable=False, server_default=""),
    Column("created", Text, nullable=False),
    Column("updated", Text, nullable=False),
)

#: The support desk's staff (``opusi-repo staff``): name, role(s), argon2id hash of the password.
staff = Table(
    "staff", metadata,
    Column("name", Text, primary_key=True),
    Column("roles", Text, nullable=False),  # space-separated: support, release
    Column("password", Text, nullable=False),  # argon2id, with its parameters and salt
    Column("active", Integer, nullable=False, server_default="1"),
    Column("created", Text, nullable=False),
    Column("updated", Text, nullable=False),
)

#: The desk's sessions: the sha256 of the cookie's token (not the token), the form token.
sessions = Table(
    "staff_sessions", metadata,
    Column("token_hash", Text, primary_key=True),
    Column("staff", Text, nullable=False, index=True),
    Column("csrf", Text, nullable=False),
    Column("created", Text, nullable=False),
    Column("last_seen", Text, nullable=False),
)

#: Who changed what and when: written with each change, in the same transaction; never changed.
audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Text, nullable=False, index=True),
    Column("staff", Text, nullable=False),  # a desk account, or "opusi-repo" for the commands
    Column("action", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
)

_LOCK_KEY = 0x6F707573  # PostgreSQL advisory lock of migrate ("opus")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
T = TypeVar("T")


def is_url(location: str | Path) -> bool:
    """True when ``location`` is a URL (``scheme://``), not a file path."""
    return isinstance(location, str) and _SCHEME.match(location) is not None


class Database:
    """A pool of connections to the registry at one location."""

    def __init__(self, location: str | Path, *, create: bool = True) -> None:
        """Connect lazily to ``location`` (a path, ``sqlite:///PATH`` or ``postgresql://...``).

        Args:
            location: Where the registry is.
            create: For a SQLite file: False makes a missing file an error instead of a new,
                empty registry (the server uses it, so a mistyped path does not refuse every
                customer). A PostgreSQL database must always exist (its schema is made here).

        Raises:
            LicenseDatabaseError: The location is not one of the forms above, or the file is
                missing with ``create=False``.
        """
        url = _url(location)
        # as the vendor wrote it, without its password
        self.name: str = (make_url(str(location)).render_as_string(hide_password=True)
                          if is_url(location) else str(location))
        self.sqlite = url.get_backend_name() == "sqlite"
        if self.sqlite:
            path = Path(url.database or "")
            if not url.database or url.database == ":memory:":
                raise LicenseDatabaseError(f"The license registry {self.name} names no file.",
                                           hint="Give a path, e.g. sqlite:///srv/licenses.sqlite3.")
            if not create and not path.is_file():
                raise LicenseDatabaseError(
                    f"The license registry {self.name} does not exist.",
                    hint="Create it with 'opusi-repo license add', or check the path.")
        # Two pools: reads (every license check) outside transactions, whose connections are
        # set to autocommit once when made instead of at every check-out and check-in (which
        # cost the license check under load a tenth of its time), and writes in transactions.
        self._reader: Engine = self._engine(url, reads=True)
        self.engine: Engine = self._engine(url, reads=False)

    def _engine(self, url: Any, *, reads: bool) -> Engine:
        options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if reads else {}
        if self.sqlite:
            # one connection per server thread: opening one per request (WAL and busy timeout
            # set each time) cost the license check another tenth
            engine = create_engine(url, pool_size=SQLITE_POOL_SIZE if reads else 2,
                                   max_overflow=SQLITE_POOL_SIZE,
                                   connect_args={"timeout": BUSY_TIMEOUT_S,
                                                 "check_same_thread": False}, **options)
            event.listen(engine, "connect", _sqlite_connect)
            if not reads:
                event.listen(engine, "begin", _sqlite_begin)
            return engine
        return create_engine(
            url, pool_size=POOL_SIZE if reads else 2, max_overflow=POOL_OVERFLOW,
            pool_timeout=BUSY_TIMEOUT_S, pool_recycle=1800,
            connect_args={"connect_timeout": BUSY_TIMEOUT_S,
                          "options": f"-c statement_timeout={BUSY_TIMEOUT_S * 1000}",
                          "application_name": "opusi-repo"}, **options)

    def close(self) -> None:
        """Close every pooled connection."""
        self._reader.dispose()
        self.engine.dispose()

    def read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` on a connection outside a transaction; retry once on a dead one."""
        for attempt in (1, 2):
            try:
                with self._reader.connect() as conn:
                    return work(conn)
            except exc.DBAPIError as e:
                if attempt == 1 and e.connection_invalidated:
                    continue  # the database was restarted since this connection was made
                raise self.error("could not be read", e) from e
            except exc.SQLAlchemyError as e:
                raise self.error("could not be read", e) from e
        raise AssertionError("unreachable")

    @contextmanager
    def write(self, what: str, failure: str = "") -> Iterator[Connection]:
        """A transaction: committed when the block ends, rolled back when it raises."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except exc.SQLAlchemyError as e:
            raise self.error(failure or f"could not be written ({what})", e) from e

    def error(self, what: str, e: BaseException) -> LicenseDatabaseError:
        """The error to raise for a failure of the database itself."""
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0].rstrip(".")
        hint = ("Check the file, its permissions and free disk space." if self.sqlite else
                "Check that the PostgreSQL server runs and is reachable, and the user name, "
                "password and database in the URL.")
        if "written" in what:
            hint = f"Nothing was changed. {hint}"
        return LicenseDatabaseError(f"The license registry {self.name} {what}: {reason}.",
                                    hint=hint)


def migrate(db: Database) -> int:
    """Create what is missing of the schema and record its version; return that version.

    Safe to run twice and concurrently.

    Raises:
        LicenseDatabaseError: The database failed, holds tables that are not a license
            registry, or has a newer schema than this program.
    """
    with db.write("schema", "could not be opened") as conn:
        if not db.sqlite:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        metadata.create_all(conn, checkfirst=True)
        found = conn.execute(select(schema.c.version).where(schema.c.id == 1)).scalar()
        if found is not None and found > SCHEMA_VERSION:
            raise LicenseDatabaseError(
                f"The license registry {db.name} has schema version {found}; this program "
                f"knows up to {SCHEMA_VERSION}. Nothing was changed.",
                hint="Update opusi-repo on this machine to the version the other servers run.")
        _check_columns(db, conn)
        if found is None:
            conn.execute(schema.insert().values(id=1, version=SCHEMA_VERSION))
        elif found < SCHEMA_VERSION:  # steps from one version to the next go here
            conn.execute(schema.update().where(schema.c.id == 1).values(version=SCHEMA_VERSION))
    return SCHEMA_VERSION


def _check_columns(db: Database, conn: Connection) -> None:
    """Refuse a ``licenses`` table made by something else (create_all keeps existing tables)."""
    try:
        conn.execute(select(*licenses.columns).limit(1)).all()
    except exc.DBAPIError as e:
        raise LicenseDatabaseError(
            f"The license registry {db.name} has a 'licenses' table that is not a license "
            f"registry's: {str(e.orig).strip().splitlines()[0]}. Nothing was changed.",
            hint="Give the registry's own file or database.") from e


def _url(location: str | Path) -> Any:
    if not is_url(location):
        return make_url("sqlite://").set(database=str(Path(location)))
    try:
        url = make_url(str(location))
    except (exc.ArgumentError, ValueError) as e:
        shown = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", str(location))
        raise LicenseDatabaseError(f"The registry location {shown} is not a URL: {e}.",
                                   hint=_FORMS) from e
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "sqlite" and driver == "pysqlite":
        return url
    if backend == "postgresql" and driver in ("psycopg", "psycopg2"):
        return url.set(drivername="postgresql+psycopg")
    raise LicenseDatabaseError(
        f"The registry location {url.render_as_string(hide_password=True)} names a database "
        f"this program does not use ({url.drivername}).", hint=_FORMS)


_FORMS = "Use a file path, sqlite:///PATH, or postgresql://USER:PASSWORD@HOST:PORT/DATABASE."


def _sqlite_connect(dbapi: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    # Transactions are begun by _sqlite_begin (pysqlite's own handling would begin them late);
    # WAL lets the server read on many threads while opusi-repo writes from another process.
    dbapi.isolation_level = None
    cursor = dbapi.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
    cursor.execute("PRAGMA journal_mode=WAL")
    mode = str((cursor.fetchone() or ("?",))[0]).lower()
    cursor.close()
    if mode != "wal":
        raise LicenseDatabaseError(
            f"The license registry could not be switched to WAL mode (journal mode is {mode!r}).",
            hint="Keep the registry on a local disk, not a network share.")


def _sqlite_begin(conn: Connection) -> None:
    # A write transaction takes the write lock at once (waiting up to the busy timeout), so it
    # never fails half-way for a lock another process holds. Only the writing engine listens:
    # reads run outside transactions, on the autocommit engine of their own.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def rows(conn: Connection, statement: Any) -> Sequence[Any]:
    """Every row ``statement`` selects."""
    return conn.execute(statement).all()
