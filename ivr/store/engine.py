"""Everything that differs between SQLite and PostgreSQL lives here, and only here.

SQLite (aiosqlite) is the embedded default: WAL so the CLI and the web can read beside the
controller, synchronous=NORMAL (a power cut may lose the last commits, never corrupt the
file), foreign keys on. PostgreSQL (asyncpg) is the shared store of several nodes.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")
# PRAGMA user_version of the pre-Alembic store (ivr/store/migrations.py, up to schema 2).
LEGACY_VERSION = 2
# Set on SQLite files this code has taken over, so an older ivr refuses them ("newer than
# this program") instead of writing REAL epochs into timestamp columns.
ADOPTED_VERSION = 1000
# Any fixed number: several nodes starting at once take turns to migrate a shared database.
MIGRATION_LOCK = 0x1A7E_5701


def check_url(url: str) -> str:
    """The URL if its scheme is one we support; ValueError with the fix otherwise."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"not a database URL: {url!r}") from exc
    if parsed.drivername not in SCHEMES:
        raise ValueError(
            f"unsupported database {parsed.drivername!r}: use sqlite+aiosqlite:///path/ivr.sqlite3"
            " or postgresql+asyncpg://user:password@host/dbname"
        )
    if parsed.drivername.startswith("sqlite") and not parsed.database:
        raise ValueError("a SQLite URL needs a file: sqlite+aiosqlite:///path/ivr.sqlite3")
    return url


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL and in-memory databases)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def safe_url(url: str) -> str:
    """For logs and errors: the URL without its password."""
    return make_url(url).render_as_string(hide_password=True)


def is_sqlite(engine: AsyncEngine | AsyncConnection | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str) -> AsyncEngine:
    check_url(url)
    if make_url(url).drivername.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 10})
        _sqlite_setup(engine)
        return engine
    # pool_pre_ping: a PostgreSQL restart must not fail the first writes after it.
    return create_async_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


# The verb, and the table: UPDATE's next word, or the first after INTO / FROM.
_STATEMENT = re.compile(r'^\s*(?:(UPDATE)\s+"?(\w+)|(\w+)(?:.*?\b(?:INTO|FROM)\s+"?(\w+))?)',
                        re.S | re.I)


def count_statements(engine: AsyncEngine) -> Counter[str]:
    """Counts what is sent to the database, by verb and table ("INSERT call_events"; an
    executemany counts once): the store's load per call (/metrics, the load bench). The
    label is worked out once per statement text (SQLAlchemy's compiled cache hands back the
    same strings)."""
    counts: Counter[str] = Counter()
    labels: dict[str, str] = {}

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        label = labels.get(statement)
        if label is None:
            match = _STATEMENT.match(statement)
            verb, table = ((match.group(1) or match.group(3) or "").upper(),
                           match.group(2) or match.group(4) or "") if match else ("", "")
            label = labels[statement] = f"{verb} {table}".strip() if len(labels) < 1000 \
                else "other"
        counts[label] += 1

    return counts


def _sqlite_setup(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # The driver's own implicit BEGIN is off: we emit BEGIN ourselves (below), so DDL is
        # transactional (migrations) and write transactions can take the lock up front.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock at BEGIN: a transaction that reads and then writes
        # (finish_call) cannot be overtaken between its read and its write.
        immediate = conn.get_execution_options().get("ivr_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that will write: committed at the end, rolled back on error."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(ivr_write=True)
        async with conn.begin():
            yield conn


def insert_ignore(dialect: str, table: sa.Table, values: dict[str, Any]) -> sa.Insert:
    """INSERT ... ON CONFLICT DO NOTHING (the rowcount says whether the row was new)."""
    return _insert(dialect, table, values).on_conflict_do_nothing()


def upsert(dialect: str, table: sa.Table, values: dict[str, Any], keys: list[str]) -> sa.Insert:
    """INSERT, or UPDATE the non-key columns when a row with these keys exists."""
    stmt = _insert(dialect, table, values)
    changes = {k: stmt.excluded[k] for k in values if k not in keys}
    return stmt.on_conflict_do_update(index_elements=keys, set_=changes)


def _insert(dialect: str, table: sa.Table, values: dict[str, Any]) -> Any:
    # Both engines spell ON CONFLICT alike, but each dialect has its own statement type.
    make = sqlite.insert if dialect == "sqlite" else postgresql.insert
    return make(table).values(**values)


def lock_row(stmt: sa.Select, conn: AsyncConnection) -> sa.Select:
    """SELECT ... FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already locked it all."""
    return stmt if is_sqlite(conn) else stmt.with_for_update()


def is_transient(exc: BaseException) -> bool:
    """Worth retrying as it is: the database is busy, restarting or unreachable, as opposed to
    a statement that can never succeed (constraint, type, schema)."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        if not isinstance(exc, OperationalError | InterfaceError):
            return False  # IntegrityError, DataError, ProgrammingError: the statement is wrong
        if isinstance(exc.orig, sqlite3.Error) or "sqlite" in type(exc.orig).__module__:
            # SQLite also reports a missing table as OperationalError: only these pass.
            text = str(exc.orig).lower()
            return any(w in text for w in ("locked", "busy", "disk i/o", "full"))
        return True  # PostgreSQL: these are connection and server-state problems
    seen: BaseException | None = exc
    while seen is not None:  # a refused connection arrives as a plain OSError
        if isinstance(seen, OSError | TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# ---- migrations (called by ivr/store/migrate.py and the first Alembic revision) ----
def lock_for_migration(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")


def legacy_version(conn: Connection) -> int:
    """The pre-Alembic schema version of a SQLite file (0 for new files and PostgreSQL)."""
    if conn.dialect.name != "sqlite":
        return 0
    return int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)


def mark_adopted(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA user_version = {ADOPTED_VERSION}")
