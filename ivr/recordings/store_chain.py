"""The ``recording_chain`` table: appending (safe with several nodes) and reading."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ivr.recordings.chain import GENESIS, canonical, link_hash
from ivr.store.db import Database
from ivr.store.engine import write_transaction
from ivr.store.tables import recording_chain, to_datetime, to_epoch

log = logging.getLogger("ivr.recordings.chain")


@dataclass(frozen=True)
class ChainEntry:
    seq: int
    at: float
    kind: str  # final | tombstone
    recording_id: int
    call_id: str
    entry: str  # the canonical JSON the hash covers, exactly as hashed
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "kind": self.kind,
                "recording_id": self.recording_id, "call_id": self.call_id,
                "entry": self.entry, "prev_hash": self.prev_hash, "hash": self.hash}


def _entry(row: sa.Row[Any]) -> ChainEntry:
    m = row._mapping
    return ChainEntry(seq=int(m["seq"]), at=to_epoch(m["at"]), kind=m["kind"],
                      recording_id=int(m["recording_id"]), call_id=m["call_id"],
                      entry=m["entry"], prev_hash=m["prev_hash"], hash=m["hash"])


class ChainStore:
    """Appends go straight to the database (not the batching writer): evidence is not
    reported chained before its entry is committed."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time):
        self.db = db
        self.clock = clock

    async def head(self) -> ChainEntry | None:
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(sa.select(recording_chain)
                                      .order_by(recording_chain.c.seq.desc())
                                      .limit(1))).first()
        return None if row is None else _entry(row)

    async def append(self, *, kind: str, recording_id: int, call_id: str,
                     entry: dict[str, Any], attempts: int = 20) -> ChainEntry:
        """Link `entry` after the current head. Two nodes appending at once both read the
        same head; prev_hash is unique, so one insert fails and that one retries."""
        text = canonical(entry)
        for _ in range(attempts):
            head = await self.head()
            prev = head.hash if head is not None else GENESIS
            values = {"at": to_datetime(self.clock()), "kind": kind,
                      "recording_id": recording_id, "call_id": call_id, "entry": text,
                      "prev_hash": prev, "hash": link_hash(prev, text)}
            try:
                async with write_transaction(self.db.engine) as conn:
                    result = await conn.execute(sa.insert(recording_chain).values(**values)
                                                .returning(recording_chain.c.seq))
                    seq = int(result.scalar_one())
            except IntegrityError:
                continue
            # The head hash in the log after every append: an anchor outside the database.
            log.info("event=recording_chained call_id=%s recording_id=%d kind=%s seq=%d "
                     "head=%s", call_id, recording_id, kind, seq, values["hash"])
            return ChainEntry(seq=seq, at=self.clock(), kind=kind, recording_id=recording_id,
                              call_id=call_id, entry=text, prev_hash=prev,
                              hash=values["hash"])
        raise RuntimeError("recording chain: could not append (head kept moving)")

    async def entries(self, *, after_seq: int = 0, limit: int | None = None) -> list[ChainEntry]:
        stmt = (sa.select(recording_chain).where(recording_chain.c.seq > after_seq)
                .order_by(recording_chain.c.seq))
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self.db.engine.connect() as conn:
            return [_entry(r) for r in (await conn.execute(stmt)).all()]

    async def for_recording(self, recording_id: int) -> list[ChainEntry]:
        stmt = (sa.select(recording_chain)
                .where(recording_chain.c.recording_id == recording_id)
                .order_by(recording_chain.c.seq))
        async with self.db.engine.connect() as conn:
            return [_entry(r) for r in (await conn.execute(stmt)).all()]

    async def neighbours(self, entry: ChainEntry) -> list[ChainEntry]:
        """The entry `entry` links to and the one linking to it (an export's proof; by hash,
        as sequence numbers may have gaps on PostgreSQL)."""
        stmt = sa.select(recording_chain).where(sa.or_(
            recording_chain.c.hash == entry.prev_hash,
            recording_chain.c.prev_hash == entry.hash))
        async with self.db.engine.connect() as conn:
            return [_entry(r) for r in (await conn.execute(stmt)).all()]
