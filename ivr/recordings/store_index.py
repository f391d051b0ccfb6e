"""The ``recordings`` table: one row per archived recording file (see ivr/store/tables.py).

Written directly (committed when a method returns), not through the batching writer: a
recording is not reported indexed or chained before its row is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa

from ivr.store.db import Database
from ivr.store.engine import write_transaction
from ivr.store.tables import is_time, recordings, to_datetime, to_epoch


class State:
    RECORDING = "recording"  # the call is live; the file is still being written
    FINAL = "final"  # archived, hashed, chained
    MISSING = "missing"  # the file was expected and is not there (reported, kept)
    EXPIRED = "expired"  # retention deleted the file; this row is its tombstone


class AnalysisState:
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    NONE = "none"  # nothing to analyse (no file)


@dataclass(frozen=True)
class RecordingRow:
    id: int
    call_id: str
    kind: str  # call | called
    path: str  # relative to the recordings dir
    format: str
    state: str
    origin: str
    node: str
    direction: str | None
    caller: str | None
    did: str | None
    desk: str | None
    operator: str | None
    outcome: str | None
    flags: str
    started_at: float | None
    duration: float | None
    size: int | None
    sha256: str | None
    caller_audio: float | None
    other_audio: float | None
    finalised_at: float | None
    chain_seq: int | None
    keep_until: float | None
    hold: bool
    hold_reason: str | None
    released_by: str | None
    released_at: float | None
    deleted_at: float | None
    deleted_by: str | None
    deleted_reason: str | None
    analysis_state: str
    analysis: dict[str, Any] | None
    analysed_at: float | None
    shouting: int | None
    updated_at: float

    @property
    def flag_list(self) -> list[str]:
        return self.flags.split()

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


COLUMNS = tuple(f.name for f in fields(RecordingRow))


def _to_db(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in recordings.c:
            raise KeyError(f"recordings has no column {key!r}")
        if is_time(recordings, key):
            value = to_datetime(value)
        elif key == "analysis" and value is not None and not isinstance(value, str):
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        out[key] = value
    return out


def row_from_db(row: sa.Row[Any]) -> RecordingRow:
    m = dict(row._mapping)
    for key in m:
        if is_time(recordings, key):
            m[key] = to_epoch(m[key])
    m["analysis"] = json.loads(m["analysis"]) if m.get("analysis") else None
    m["hold"] = bool(m["hold"])
    return RecordingRow(**{k: m.get(k) for k in COLUMNS})


class RecordingIndex:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time):
        self.db = db
        self.clock = clock

    async def add(self, **values: Any) -> int:
        """A new row (call_id, kind, path, format, state required); returns its id."""
        values.setdefault("updated_at", self.clock())
        async with write_transaction(self.db.engine) as conn:
            result = await conn.execute(sa.insert(recordings).values(**_to_db(values))
                                        .returning(recordings.c.id))
            return int(result.scalar_one())

    async def update_row(self, recording_id: int, **values: Any) -> RecordingRow:
        """update(), returning the row in one round trip (RETURNING's values may differ in
        type from a select's, e.g. 4 for 4.0 on SQLite: never hash them)."""
        values["updated_at"] = self.clock()
        async with write_transaction(self.db.engine) as conn:
            result = await conn.execute(sa.update(recordings)
                                        .where(recordings.c.id == recording_id)
                                        .values(**_to_db(values)).returning(*recordings.c))
            return row_from_db(result.one())

    async def update(self, recording_id: int, **values: Any) -> None:
        values["updated_at"] = self.clock()
        async with write_transaction(self.db.engine) as conn:
            await conn.execute(sa.update(recordings).where(recordings.c.id == recording_id)
                               .values(**_to_db(values)))

    async def _select(self, stmt: sa.Select[Any]) -> list[RecordingRow]:
        async with self.db.engine.connect() as conn:
            return [row_from_db(r) for r in (await conn.execute(stmt)).all()]

    async def get(self, recording_id: int) -> RecordingRow | None:
        rows = await self._select(sa.select(recordings).where(recordings.c.id == recording_id))
        return rows[0] if rows else None

    async def by_path(self, path: str) -> RecordingRow | None:
        rows = await self._select(sa.select(recordings).where(recordings.c.path == path))
        return rows[0] if rows else None

    async def for_call(self, call_id: str) -> list[RecordingRow]:
        """A call's recordings: `call` first, then an outbound call's `called`."""
        return await self._select(sa.select(recordings).where(recordings.c.call_id == call_id)
                                  .order_by(recordings.c.kind != "call", recordings.c.id))

    async def all(self) -> list[RecordingRow]:
        return await self._select(sa.select(recordings).order_by(recordings.c.id))

    async def paths(self) -> set[str]:
        async with self.db.engine.connect() as conn:
            return set((await conn.execute(sa.select(recordings.c.path))).scalars())

    async def with_analysis(self, state: str, limit: int = 100) -> list[RecordingRow]:
        """Final recordings whose analysis is in `state` (the analysis queue), oldest first."""
        return await self._select(
            sa.select(recordings)
            .where(recordings.c.analysis_state == state, recordings.c.state == State.FINAL)
            .order_by(recordings.c.id).limit(limit))

    async def select(self, stmt: sa.Select[Any]) -> list[RecordingRow]:
        """Rows of a query built on `recordings` (ivr/recordings/search.py builds them)."""
        return await self._select(stmt)
