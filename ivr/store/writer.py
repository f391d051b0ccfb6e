"""The single background writer: call-path writes are queued and committed in batches.

A FastAGI handler or an AMI event must never wait for a disk or a network round trip to the
database, so `submit` only queues a statement. One task applies the queue in order, many
statements per transaction (a batch closes after `window` seconds or `max_batch` statements,
or at once when someone waits for it, even mid-window). The call path's frequent writes
(timeline events, record updates) pass a prepared statement, its parameters and the key of
the row they belong to (the call): ops of one statement in a batch go to the database as one
executemany, built and compiled once. To make those runs long, an op joins an earlier run of
its statement when nothing between them touches its key and no plain statement (a barrier)
lies between: ops of one call keep their order, ops of different calls commute, because they
touch different rows (an event needs its call's row, whose insert is a barrier). Nothing is
dropped quietly: a batch that fails on a busy or unreachable database is retried as it is; one that
fails otherwise is applied statement by statement, and only a statement that can never
succeed (a constraint, a type) is given up, with an error in the log that names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.sql import Executable

from ivr.store.engine import is_transient, write_transaction

log = logging.getLogger("ivr.store")

#: How long queued writes gather before a commit when nobody waits for them.
BATCH_WINDOW_S = 0.05


class WriterClosed(RuntimeError):
    """The store is shutting down and takes no more writes."""


@dataclass(eq=False)
class _Op:
    stmt: Executable | None  # None: a flush marker, done when everything before it is
    done: asyncio.Future[Any] | None = None
    settled: bool = field(default=False)
    # With params, stmt is a prepared statement shared by many ops (executemany together).
    params: dict[str, Any] | None = None
    # The row these params touch (a call id): ops of different keys may be reordered.
    key: str | None = None


class Writer:
    def __init__(self, engine: Any, *, window: float = BATCH_WINDOW_S, max_batch: int = 500,
                 retry_delay: float = 0.2, max_retry_delay: float = 5.0):
        self.engine = engine
        self.window = window
        self.max_batch = max_batch
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._items: deque[_Op] = deque()
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()  # someone waits: the batch window ends now
        self._waiters = 0  # queued ops someone awaits: their batch closes without the window
        # Writes not yet committed, by key (None: no key): a read of one call waits only
        # for its own call's writes (flush(key)), not for a commit of everyone's.
        self._uncommitted: Counter[str | None] = Counter()
        self._in_flight = 0
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        # Counters for tests and /metrics.
        self.batches = 0
        self.hurried = 0  # batches closed before their window: someone waited, or full
        self.applied = 0
        self.failed = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="store-writer")

    @property
    def pending(self) -> int:
        return len(self._items) + self._in_flight

    def submit(self, stmt: Executable, params: dict[str, Any] | None = None,
               key: str | None = None) -> None:
        """Queue a write and return at once; it is committed within the batch window.
        params: `stmt` is a prepared statement (module-level, reused), these its values;
        key: the row they touch (writes of other keys may go before a prepared one, never of
        its own; a plain statement stays where it is, whatever its key)."""
        self._put(_Op(stmt, params=params, key=key))

    async def submit_wait(self, stmt: Executable, key: str | None = None) -> int:
        """Queue a write behind the others and wait for its commit; returns its rowcount."""
        op = _Op(stmt, asyncio.get_running_loop().create_future(), key=key)
        self._put(op)
        assert op.done is not None
        return int(await op.done)

    async def flush(self, key: str | None = None) -> None:
        """Wait until every write queued before this call is committed (or given up); with a
        key, only if a write of that key (or one without a key) is among them."""
        if not self._items and not self._in_flight:
            return
        if key is not None and not self._uncommitted[key] and not self._uncommitted[None]:
            return
        op = _Op(None, asyncio.get_running_loop().create_future())
        self._put(op, closing_ok=True)
        assert op.done is not None
        await op.done

    def _put(self, op: _Op, closing_ok: bool = False) -> None:
        if self._closing and not closing_ok:
            raise WriterClosed("the store is closed")
        if self._task is None or self._task.done():
            raise WriterClosed("the store writer is not running")
        if op.done is not None:
            self._waiters += 1
            self._urgent.set()
        if op.stmt is not None:
            self._uncommitted[op.key] += 1
        self._items.append(op)
        self._wake.set()

    async def close(self, timeout: float = 30.0) -> None:
        """Stop accepting writes, commit what is queued, then stop the task."""
        self._closing = True
        if self._task is None:
            return
        self._wake.set()
        self._urgent.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            log.error("event=store_writer_lost ops=%d reason=database unavailable at shutdown",
                      self.pending)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            for op in self._items:
                self._settle(op, error=WriterClosed("the store closed before this write"))
            self._items.clear()
        self._task = None

    # ---- the task ----
    async def _run(self) -> None:
        while True:
            if not self._items:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._waiters == 0 and len(self._items) < self.max_batch and not self._closing:
                # Let the call-path writes of many calls gather into one commit, unless
                # someone starts waiting for one meanwhile.
                self._urgent.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.window):
                        await self._urgent.wait()
                        self.hurried += 1
            else:
                self.hurried += 1
            batch = [self._items.popleft() for _ in range(min(self.max_batch, len(self._items)))]
            self._in_flight = len(batch)
            try:
                await self._apply(batch)
            except asyncio.CancelledError:
                # close() gave up: whoever waits (ensure_call, flush) hears it, not hangs.
                for op in batch:
                    self._settle(op, error=WriterClosed("the store closed before this write"))
                raise
            except Exception:  # a bug here must not stop every later write
                log.exception("event=store_writer_error")
                for op in batch:
                    self._settle(op, error=RuntimeError("store writer error"))
            finally:
                self._in_flight = 0

    async def _apply(self, batch: list[_Op]) -> None:
        ops = [op for op in batch if op.stmt is not None]
        delay = self.retry_delay
        while ops:
            try:
                results = await self._commit(ops)
            except Exception as exc:
                if is_transient(exc):
                    log.warning("event=store_batch_retry ops=%d error=%s", len(ops), _short(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_retry_delay)
                    continue
                await self._one_by_one(ops)
                break
            for op, rowcount in zip(ops, results, strict=True):
                self._settle(op, result=rowcount)
            self.batches += 1
            break
        for op in batch:
            if op.stmt is None:
                self._settle(op, result=0)

    async def _commit(self, ops: list[_Op]) -> list[int]:
        """One transaction; the rowcount of each op, in the order of `ops`."""
        counts: dict[int, int] = {}
        async with write_transaction(self.engine) as conn:
            for group in _runs(ops):
                first = group[0]
                if first.params is None:
                    counts[id(first)] = (await conn.execute(first.stmt)).rowcount  # type: ignore[arg-type]
                    continue
                await conn.execute(first.stmt, [op.params for op in group])  # type: ignore[arg-type, misc]
                # executemany reports no per-row count; these writes are never awaited.
                counts.update((id(op), 1) for op in group)
        return [counts[id(op)] for op in ops]

    async def _one_by_one(self, ops: list[_Op]) -> None:
        for op in ops:
            delay = self.retry_delay
            while True:
                try:
                    (rowcount,) = await self._commit([op])
                except Exception as exc:
                    if is_transient(exc):
                        log.warning("event=store_write_retry error=%s", _short(exc))
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, self.max_retry_delay)
                        continue
                    self.failed += 1
                    log.error("event=store_write_failed statement=%r error=%s",
                              _describe(op), _short(exc))
                    self._settle(op, error=exc)
                    break
                self.batches += 1
                self._settle(op, result=rowcount)
                break

    def _settle(self, op: _Op, *, result: int = 0, error: BaseException | None = None) -> None:
        if op.settled:
            return
        op.settled = True
        if op.stmt is not None:
            self.applied += error is None
            self._uncommitted[op.key] -= 1
            if not self._uncommitted[op.key]:
                del self._uncommitted[op.key]
        if op.done is None:
            return
        self._waiters -= 1
        if op.done.done():
            return
        if error is None:
            op.done.set_result(result)
        else:
            op.done.set_exception(error)


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


class _Run:
    __slots__ = ("keys", "ops")

    def __init__(self, op: _Op):
        self.ops = [op]
        self.keys = {op.key}


def _runs(ops: list[_Op]) -> list[list[_Op]]:
    """The ops as runs of one prepared statement each (one executemany), plain statements
    alone. An op joins the latest earlier run of its statement if every run after that one
    is prepared and touches other keys; ops without a key only join the run just before."""
    runs: list[_Run] = []
    for op in ops:
        target: _Run | None = None
        if op.params is not None:
            for run in reversed(runs):
                first = run.ops[0]
                if first.stmt is op.stmt and first.params is not None:
                    target = run
                    break
                if (first.params is None or op.key is None or None in run.keys
                        or op.key in run.keys):
                    break  # a barrier, or a write of this op's own row: keep the order
        if target is None:
            runs.append(_Run(op))
        else:
            target.ops.append(op)
            target.keys.add(op.key)
    return [run.ops for run in runs]


def _describe(op: _Op) -> str:
    try:
        compiled = op.stmt.compile()  # type: ignore[union-attr]
        return f"{compiled} {op.params or compiled.params}"[:500]
    except Exception:
        return repr(op.stmt)[:500]
