"""Where the call path's transactions run: a whole transaction at a time, on either engine.

The store's hot statements (the writer's batches, the call record's reads, ending a call, the
recording index and chain) are plain functions of a SQLAlchemy `Connection`; a runner runs one
of them in a transaction and hands back its result. Why not `await conn.execute()` statement
by statement: with aiosqlite each statement is several round trips to its thread (cursor,
execute, fetch, close), each waking the event loop. Measured (`python -m bench.store_cost`):
a call record read cost 1.1 ms of CPU that way, 0.1 ms with the plain driver; a transaction
of 3 writes 1.9 ms against 0.16 ms. So SQLite's runner uses the standard `sqlite3` driver
(the same file, the same settings as the async engine), and PostgreSQL's runs the same
function through SQLAlchemy's greenlet bridge (asyncpg needs no thread, so that costs little).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from prometheus_client import Histogram
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool

from ivr.store.engine import SQLITE_CONNECT_ARGS, sqlite_file, sqlite_setup, write_transaction

T = TypeVar("T")
Work = Callable[[Connection], T]

# /metrics (registered on the web app's registry): SQLite's transactions, how long each held
# the event loop ("write work", "read work"; busy retries each once), in seconds.
STEPS = Histogram("ivr_store_seconds", "SQLite transactions run on the event loop: the time "
                  "each held it", ["step"], registry=None,
                  buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5,
                           1.0, 2.5, 5.0, 10.0))


class Runner(Protocol):
    async def write(self, work: Work[T]) -> T:
        """work(conn) in a write transaction (SQLite: BEGIN IMMEDIATE), committed after."""
        ...

    async def read(self, work: Work[T]) -> T:
        """work(conn) in a read transaction."""
        ...

    async def close(self) -> None: ...


def runner_for(engine: AsyncEngine, url: str) -> tuple[Runner, sa.Engine]:
    """The runner for this database, and the sync engine its statements go through (for
    listeners such as the statement counter)."""
    if engine.dialect.name == "sqlite" and sqlite_file(url) is not None:
        runner = SqliteRunner(url)
        return runner, runner.engine
    return LoopRunner(engine), engine.sync_engine


# SQLite's runner waits for no lock on the loop: a busy database (another process writing) is
# tried again after a pause, for up to BUSY_TIMEOUT_S, as the driver's own wait would.
BUSY_TIMEOUT_S = 10.0
# Write transactions between two checkpoints of the WAL into the database file (in a thread:
# a checkpoint syncs the disk). SQLite's own default is every 1000 pages, about 300 of ours.
CHECKPOINT_EVERY = 200


class SqliteRunner:
    """SQLite, with the standard sqlite3 driver, on the event loop itself.

    Why on the loop: a transaction here is a few indexed statements, tens of microseconds of
    SQLite's own time; what costs is SQLAlchemy's Python around them, which used to run on
    the loop anyway; in threads, it would take the GIL from the loop at the worst moments.
    (This form was first taken back for long waits at the greeting; those were full garbage
    collections walking the start-up heap, gone since `ivr run` freezes it: see
    ivr/loop_watch.py. With the freeze, in interleaved runs at 100 calls, the greeting's
    first sound p99 was 34-41 ms with this runner against 56-160 ms with aiosqlite statement
    by statement, and the controller's CPU per call 0.044 s against 0.063-0.067 s.)
    What could block is kept off the loop: the connection never waits for another's lock
    (busy timeout 0; a busy database is retried after a pause), and never checkpoints (a
    checkpoint syncs the disk: done in a thread every CHECKPOINT_EVERY write transactions).
    `ivr_store_seconds` ("write work", "read work") on /metrics says how long the loop was
    held."""

    def __init__(self, url: str):
        self.path = sqlite_file(url)
        sync_url = make_url(url).set(drivername="sqlite+pysqlite")
        self.engine = sa.create_engine(
            sync_url, poolclass=StaticPool,
            connect_args={**SQLITE_CONNECT_ARGS, "timeout": 0, "check_same_thread": False})
        sqlite_setup(self.engine)
        event.listen(self.engine, "connect", _no_checkpoints)
        self._writes = 0
        self._checkpoint: asyncio.Future[None] | None = None

    async def write(self, work: Work[T]) -> T:
        result = await self._run(work, write=True)
        self._writes += 1
        if self._writes >= CHECKPOINT_EVERY and (self._checkpoint is None
                                                  or self._checkpoint.done()):
            self._writes = 0
            self._checkpoint = asyncio.ensure_future(asyncio.to_thread(self._checkpoint_wal))
        return result

    async def read(self, work: Work[T]) -> T:
        return await self._run(work, write=False)

    async def _run(self, work: Work[T], *, write: bool) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUSY_TIMEOUT_S
        pause = 0.005
        step = STEPS.labels("write work" if write else "read work")
        while True:
            started = time.perf_counter()
            try:
                with self.engine.connect() as conn:
                    if not write:
                        return work(conn)  # autobegun, rolled back at close
                    conn = conn.execution_options(ivr_write=True)
                    with conn.begin():
                        return work(conn)
            except OperationalError as exc:
                if not _busy(exc) or loop.time() > deadline:
                    raise
            finally:
                step.observe(time.perf_counter() - started)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.2)

    def _checkpoint_wal(self) -> None:
        """Blocking (a thread): the WAL's pages into the database file, readers and writers
        undisturbed (PASSIVE)."""
        assert self.path is not None
        with contextlib.closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)) as con:
            con.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def close(self) -> None:
        if self._checkpoint is not None:
            with contextlib.suppress(Exception):
                await self._checkpoint
        self.engine.dispose()


def _no_checkpoints(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


def _busy(exc: OperationalError) -> bool:
    text = str(exc.orig).lower()
    return "locked" in text or "busy" in text


class LoopRunner:
    """PostgreSQL (asyncpg): the same work on the loop, through SQLAlchemy's greenlet."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    async def write(self, work: Work[T]) -> T:
        async with write_transaction(self.engine) as conn:
            return await conn.run_sync(work)

    async def read(self, work: Work[T]) -> T:
        async with self.engine.connect() as conn:
            return await conn.run_sync(work)

    async def close(self) -> None:
        return None
