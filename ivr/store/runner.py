"""Where the call path's transactions run: a whole transaction per hop, on either engine.

The store's hot statements (the writer's batches, the call record's reads, ending a call) are
plain functions of a SQLAlchemy `Connection`; a runner runs one of them in a transaction and
hands back its result. Why not `await conn.execute()` statement by statement: with aiosqlite
each statement is several round trips to its thread (cursor, execute, fetch, close), each
waking the event loop. Measured (`python -m bench.store_cost`): a call record read cost 1.1 ms
of CPU that way and 0.1 ms in a thread with the plain driver; a transaction of 3 writes
1.9 ms against 0.16 ms. So SQLite's runner is threads of its own
with the standard `sqlite3` driver (the same file, the same settings as the async engine),
and PostgreSQL's runs the same function on the loop through SQLAlchemy's greenlet bridge
(asyncpg needs no thread, so that costs little).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

import sqlalchemy as sa
from prometheus_client import Histogram
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.store.engine import SQLITE_CONNECT_ARGS, sqlite_file, sqlite_setup, write_transaction

T = TypeVar("T")
Work = Callable[[Connection], T]

# /metrics (registered on the web app's registry): SQLite's store thread, per transaction,
# the wait for the thread ("write wait") and the work itself ("write work"), in seconds.
STEPS = Histogram("ivr_store_seconds", "The store thread's transactions: waiting for the "
                  "thread, and the work", ["step"], registry=None,
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
        runner = ThreadRunner(url)
        return runner, runner.engine
    return LoopRunner(engine), engine.sync_engine


# Threads for reads beside the one for writes: a read (a FastAGI handler's block check) does
# not queue behind the writer's commits; WAL lets readers run beside the writer.
READ_THREADS = 2


class ThreadRunner:
    """SQLite, with the standard sqlite3 driver: write transactions in one thread of their
    own (one writer at a time, as SQLite has it), reads in READ_THREADS others."""

    def __init__(self, url: str):
        sync_url = make_url(url).set(drivername="sqlite+pysqlite")
        self.engine = sa.create_engine(
            sync_url, connect_args={**SQLITE_CONNECT_ARGS, "check_same_thread": False})
        sqlite_setup(self.engine)
        self._writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-write")
        self._reads = ThreadPoolExecutor(max_workers=READ_THREADS,
                                         thread_name_prefix="store-read")

    async def write(self, work: Work[T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._writes, self._in_transaction, work, True, time.perf_counter())

    async def read(self, work: Work[T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._reads, self._in_transaction, work, False, time.perf_counter())

    def _in_transaction(self, work: Work[T], write: bool, queued: float) -> T:
        kind = "write" if write else "read"
        started = time.perf_counter()
        STEPS.labels(f"{kind} wait").observe(started - queued)
        try:
            with self.engine.connect() as conn:
                if write:
                    conn = conn.execution_options(ivr_write=True)
                    with conn.begin():
                        return work(conn)
                return work(conn)  # autobegun, rolled back at close: nothing to commit
        finally:
            STEPS.labels(f"{kind} work").observe(time.perf_counter() - started)

    async def close(self) -> None:
        for threads in (self._reads, self._writes):
            await asyncio.get_running_loop().run_in_executor(
                None, lambda threads=threads: threads.shutdown(wait=True))
        self.engine.dispose()


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
