"""Call records and call events in SQLite. Writes are small and idempotent: the AGI handler,
AMI events and the CDR import may each report the same fact, in any order."""

from __future__ import annotations

import json
import time
from typing import Any

from ivr.model import CallRecord
from ivr.store.db import Database

# Columns that callers may set; anything else is a programming error, not data.
UPDATABLE = frozenset(
    {
        "caller",
        "caller_name",
        "did",
        "answered_at",
        "notice_started_at",
        "notice_ended_at",
        "queue_joined_at",
        "connected_at",
        "ended_at",
        "desk",
        "operator",
        "outcome",
        "hangup_cause",
        "hangup_by",
        "recording_path",
        "recording_duration",
        "recording_sha256",
        "failsafe",
        "source",
        "entry",
        "language",
        "menu_path",
        "disposition",
        "overflow_from",
    }
)


class CallStore:
    def __init__(self, db: Database):
        self.db = db
        self._state: dict[tuple[str, str], str] = {}  # stand-in until the store has node_state

    async def ensure_call(
        self,
        call_id: str,
        *,
        node: str,
        started_at: float,
        source: str,
        direction: str = "inbound",
    ) -> bool:
        """Create the record unless it exists; True when this call created it."""
        cur = await self.db.conn.execute(
            "INSERT INTO calls (id, node, direction, started_at, source, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (call_id, node, direction, started_at, source, time.time()),
        )
        await self.db.conn.commit()
        return cur.rowcount == 1

    async def update(self, call_id: str, *, only_if_null: bool = False, **values: Any) -> None:
        """Set columns; with only_if_null the first report of a fact wins."""
        unknown = set(values) - UPDATABLE
        if unknown:
            raise ValueError(f"not call record columns: {sorted(unknown)}")
        if not values:
            return
        if only_if_null:
            assignments = ", ".join(f"{k} = COALESCE({k}, ?)" for k in values)
        else:
            assignments = ", ".join(f"{k} = ?" for k in values)
        await self.db.conn.execute(
            f"UPDATE calls SET {assignments}, updated_at = ? WHERE id = ?",
            (*values.values(), time.time(), call_id),
        )
        await self.db.conn.commit()

    async def add_event(
        self, call_id: str, kind: str, at: float, data: dict[str, Any] | None = None
    ) -> None:
        await self.db.conn.execute(
            "INSERT INTO call_events (call_id, at, kind, data) VALUES (?, ?, ?, ?)",
            (call_id, at, kind, json.dumps(data or {}, ensure_ascii=False, sort_keys=True)),
        )
        await self.db.conn.commit()

    async def get(self, call_id: str) -> CallRecord | None:
        async with self.db.conn.execute("SELECT * FROM calls WHERE id = ?", (call_id,)) as cur:
            row = await cur.fetchone()
        return CallRecord.from_row(row) if row else None

    async def exists(self, call_id: str) -> bool:
        async with self.db.conn.execute("SELECT 1 FROM calls WHERE id = ?", (call_id,)) as cur:
            return (await cur.fetchone()) is not None

    async def recent(self, limit: int = 20) -> list[CallRecord]:
        async with self.db.conn.execute(
            "SELECT * FROM calls ORDER BY started_at DESC, id DESC LIMIT ?", (limit,)
        ) as cur:
            return [CallRecord.from_row(r) for r in await cur.fetchall()]

    async def open_calls(self, node: str | None = None) -> list[CallRecord]:
        async with self.db.conn.execute(
            "SELECT * FROM calls WHERE ended_at IS NULL AND (? IS NULL OR node = ?) "
            "ORDER BY started_at", (node, node)
        ) as cur:
            return [CallRecord.from_row(r) for r in await cur.fetchall()]

    async def finish_call(self, call_id: str, decide: Any) -> CallRecord | None:
        """Close a call once: decide(record, events) -> values, applied in one transaction."""
        record = await self.get(call_id)
        if record is None or record.ended_at is not None:
            return None
        values = decide(record, await self.events(call_id))
        await self.update(call_id, **values)
        return await self.get(call_id)

    async def get_state(self, node: str, key: str) -> str | None:
        return self._state.get((node, key))

    async def set_state(self, node: str, key: str, value: str) -> None:
        self._state[(node, key)] = value

    async def unfinalised_recordings(self, node: str | None = None) -> list[CallRecord]:
        async with self.db.conn.execute(
            "SELECT * FROM calls WHERE ended_at IS NOT NULL AND recording_path IS NOT NULL "
            "AND recording_sha256 IS NULL AND (? IS NULL OR node = ?) ORDER BY started_at",
            (node, node)
        ) as cur:
            return [CallRecord.from_row(r) for r in await cur.fetchall()]

    async def events(self, call_id: str) -> list[dict[str, Any]]:
        async with self.db.conn.execute(
            "SELECT at, kind, data FROM call_events WHERE call_id = ? ORDER BY at, id",
            (call_id,),
        ) as cur:
            rows = await cur.fetchall()
        return [{"at": r["at"], "kind": r["kind"], "data": json.loads(r["data"])} for r in rows]

    async def add_operator_event(
        self, at: float, operator: str, desk: str | None, action: str, detail: str, by_whom: str
    ) -> None:
        await self.db.conn.execute(
            "INSERT INTO operator_events (at, operator, desk, action, detail, by_whom) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (at, operator, desk, action, detail, by_whom),
        )
        await self.db.conn.commit()
