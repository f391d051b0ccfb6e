"""The block list in the store (table `blocks`): exact numbers, prefixes and patterns.

Blocks are written and read directly (one short transaction each), never through the
batching writer: a block added on one node must refuse the very next call on any node, so
it must be committed when `add` returns. Rows are never deleted: unblocking sets removed_*.
Nothing here is cached; every call reads the active blocks afresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ivr.store.db import Database
from ivr.store.engine import write_transaction
from ivr.store.tables import blocks, calls, to_datetime, to_epoch

KINDS = ("exact", "prefix", "pattern")
SOURCES = ("admin", "repeat", "operator", "config")


@dataclass(frozen=True)
class Block:
    id: int
    kind: str  # exact | prefix | pattern
    value: str  # a normalised number, a digit prefix, or an Asterisk-style pattern (_0990X.)
    entry: str | None  # None: every entry point
    reason: str
    source: str  # admin | repeat | operator | config
    added_by: str
    added_at: float
    expires_at: float | None = None
    call_id: str | None = None  # the call that caused it (repeat step, end-and-refuse)
    review: str | None = None  # pending | confirmed
    removed_at: float | None = None
    removed_by: str | None = None
    removed_reason: str | None = None

    @property
    def rule_id(self) -> str:
        return f"block:{self.id}"

    def is_active(self, now: float) -> bool:
        return self.removed_at is None and (self.expires_at is None or self.expires_at > now)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (audit log, API, `ivr blocks list --json`)."""
        return {"id": self.id, "rule": self.rule_id, "kind": self.kind, "value": self.value,
                "entry": self.entry, "reason": self.reason, "source": self.source,
                "added_by": self.added_by, "added_at": self.added_at,
                "expires_at": self.expires_at, "call_id": self.call_id, "review": self.review,
                "removed_at": self.removed_at, "removed_by": self.removed_by,
                "removed_reason": self.removed_reason}


def _block(row: sa.Row[Any]) -> Block:
    m = row._mapping
    return Block(
        id=int(m["id"]), kind=m["kind"], value=m["value"], entry=m["entry"],
        reason=m["reason"], source=m["source"], added_by=m["added_by"],
        added_at=to_epoch(m["added_at"]), expires_at=to_epoch(m["expires_at"]),
        call_id=m["call_id"], review=m["review"], removed_at=to_epoch(m["removed_at"]),
        removed_by=m["removed_by"], removed_reason=m["removed_reason"],
    )


class BlockStore:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time):
        self.db = db
        self.clock = clock

    async def add(self, *, kind: str, value: str, reason: str, source: str, added_by: str,
                  entry: str | None = None, expires_at: float | None = None,
                  call_id: str | None = None, review: str | None = None,
                  added_at: float | None = None) -> Block:
        """Insert a block (already validated by the service) and return it, committed."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}: {kind!r}")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}: {source!r}")
        values = {
            "kind": kind, "value": value, "entry": entry, "reason": reason, "source": source,
            "added_by": added_by, "added_at": to_datetime(added_at or self.clock()),
            "expires_at": to_datetime(expires_at), "call_id": call_id, "review": review,
        }
        async with write_transaction(self.db.engine) as conn:
            result = await conn.execute(sa.insert(blocks).values(**values).returning(blocks))
            return _block(result.one())

    async def remove(self, block_id: int, *, by: str, reason: str) -> Block | None:
        """Mark a block removed; None when there is no such block or it was removed already
        (the first removal is kept as it was)."""
        async with write_transaction(self.db.engine) as conn:
            result = await conn.execute(
                sa.update(blocks)
                .where(blocks.c.id == block_id, blocks.c.removed_at.is_(None))
                .values(removed_at=to_datetime(self.clock()), removed_by=by,
                        removed_reason=reason)
                .returning(blocks))
            row = result.first()
        return _block(row) if row is not None else None

    async def confirm(self, block_id: int) -> Block | None:
        """A pending block (end-and-refuse, repeat step) confirmed by a supervisor; None when
        it is not pending or was removed (the first review is kept)."""
        async with write_transaction(self.db.engine) as conn:
            result = await conn.execute(
                sa.update(blocks)
                .where(blocks.c.id == block_id, blocks.c.removed_at.is_(None),
                       blocks.c.review == "pending")
                .values(review="confirmed")
                .returning(blocks))
            row = result.first()
        return _block(row) if row is not None else None

    async def _rows(self, query: sa.Select[Any]) -> list[sa.Row[Any]]:
        async with self.db.engine.connect() as conn:
            return list(await conn.execute(query))

    async def get(self, block_id: int) -> Block | None:
        rows = await self._rows(sa.select(blocks).where(blocks.c.id == block_id))
        return _block(rows[0]) if rows else None

    async def active(self, now: float | None = None) -> list[Block]:
        """Blocks in force at `now`: not removed, not expired; oldest first."""
        at = to_datetime(self.clock() if now is None else now)
        query = sa.select(blocks).where(
            blocks.c.removed_at.is_(None),
            sa.or_(blocks.c.expires_at.is_(None), blocks.c.expires_at > at),
        ).order_by(blocks.c.id)
        return [_block(r) for r in await self._rows(query)]

    async def candidates(self, number: str, entry: str | None,
                         now: float | None = None) -> list[Block]:
        """The active blocks that may cover a number at an entry point: its exact block, the
        prefixes it starts with, and every pattern (the rules match them), so a call reads a
        handful of rows however long the list is (1,000 exact blocks: 9.4 ms to read all,
        measured). Prefix values are digits, `*`, `#`, `+` (service_blocks.py), so LIKE
        finds no wildcard in them."""
        at = to_datetime(self.clock() if now is None else now)
        query = sa.select(blocks).where(
            blocks.c.removed_at.is_(None),
            sa.or_(blocks.c.expires_at.is_(None), blocks.c.expires_at > at),
            sa.or_(blocks.c.entry.is_(None), blocks.c.entry == entry),
            sa.or_(sa.and_(blocks.c.kind == "exact", blocks.c.value == number),
                   sa.and_(blocks.c.kind == "prefix",
                           sa.literal(number).startswith(blocks.c.value)),
                   blocks.c.kind == "pattern"),
        ).order_by(blocks.c.id)
        return [_block(r) for r in await self._rows(query)]

    async def list(self, include_removed: bool = False,
                   include_expired: bool = False) -> list[Block]:
        query = sa.select(blocks).order_by(blocks.c.id)
        if not include_removed:
            query = query.where(blocks.c.removed_at.is_(None))
        if not include_expired:
            query = query.where(sa.or_(blocks.c.expires_at.is_(None),
                                       blocks.c.expires_at > to_datetime(self.clock())))
        return [_block(r) for r in await self._rows(query)]

    async def calls_from(self, number: str, since: Sequence[float], *,
                         exclude_call: str | None = None) -> list[int]:
        """For each time in `since`: how many calls from `number` started at or after it.
        One query over index calls_caller (caller, started_at), whatever the number of
        windows. `exclude_call`: the call being decided (its record may or may not name the
        caller yet; the caller of this method counts it itself)."""
        if not since:
            return []
        counts = [
            sa.func.coalesce(sa.func.sum(sa.case(
                (calls.c.started_at >= to_datetime(t), 1), else_=0)), 0).label(f"n{i}")
            for i, t in enumerate(since)
        ]
        # Inbound only: an operator calling the customer back is not the customer calling.
        query = sa.select(*counts).where(calls.c.caller == number,
                                         calls.c.direction == "inbound",
                                         calls.c.started_at >= to_datetime(min(since)))
        if exclude_call is not None:
            query = query.where(calls.c.id != exclude_call)
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(query)).one()
        return [int(v) for v in row]
