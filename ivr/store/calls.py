"""Call records, call events, operator events and node state, on SQLite or PostgreSQL.

Writes are small and idempotent: the AGI handler, AMI events and the CDR import may each
report the same fact, in any order. They go through the writer (ivr/store/writer.py) and do
not wait for the commit; reads flush it first, so a process always reads its own writes.
The public API speaks float epoch seconds; the tables hold UTC timestamps (tables.py).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ivr.model import CallRecord
from ivr.store.db import Database
from ivr.store.engine import insert_ignore, lock_row, upsert, write_transaction
from ivr.store.tables import (
    call_events,
    calls,
    is_time,
    node_state,
    operator_events,
    to_datetime,
    to_epoch,
)

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
        "rule",
        "flags",
        "repeat_count",
        "talk_limit",  # seconds: the call-time limit that applied (ivr/agi/desk.py)
    }
)

Decide = Callable[[CallRecord, list[dict[str, Any]]], dict[str, Any]]


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    """Check the keys and convert epoch seconds to timestamps for the time columns."""
    unknown = set(values) - UPDATABLE
    if unknown:
        raise ValueError(f"not call record columns: {sorted(unknown)}")
    return {k: to_datetime(v) if is_time(calls, k) else v for k, v in values.items()}


# The call path's writes as prepared statements (built and compiled once; the writer runs
# consecutive ones as one executemany).
_INSERT_EVENT = sa.insert(call_events)
# ... unless the call has an event of that kind: decided by the database, so the call's first
# report (AMI's and FastAGI's race; another node; an earlier run) waits for no commit.
_INSERT_EVENT_ONCE = sa.insert(call_events).from_select(
    ["call_id", "at", "kind", "data"],
    sa.select(sa.bindparam("call_id", type_=sa.Text),
              sa.bindparam("at", type_=call_events.c.at.type),
              sa.bindparam("kind", type_=sa.Text), sa.bindparam("data", type_=sa.Text))
    .where(~sa.exists().where(call_events.c.call_id == sa.bindparam("call_id", type_=sa.Text),
                              call_events.c.kind == sa.bindparam("kind", type_=sa.Text))))
# ... and its frequent reads (bound by :call_id_).
_SELECT_CALL = sa.select(calls).where(calls.c.id == sa.bindparam("call_id_"))
_CALL_EXISTS = sa.select(calls.c.id).where(calls.c.id == sa.bindparam("call_id_"))
_SELECT_EVENTS = (sa.select(call_events.c.at, call_events.c.kind, call_events.c.data)
                  .where(call_events.c.call_id == sa.bindparam("call_id_"))
                  .order_by(call_events.c.at, call_events.c.id))


@functools.lru_cache(maxsize=512)
def _update_statement(columns: tuple[str, ...], only_if_null: bool) -> sa.Update:
    """UPDATE calls SET <columns> (each COALESCEd with what is there when only_if_null),
    updated_at WHERE id = :call_id_; parameters v_<column>, v_updated_at, call_id_."""
    def value(column: str) -> Any:
        param = sa.bindparam(f"v_{column}", type_=calls.c[column].type)
        return sa.func.coalesce(calls.c[column], param) if only_if_null else param

    return (sa.update(calls).where(calls.c.id == sa.bindparam("call_id_"))
            .values({**{c: value(c) for c in columns},
                     "updated_at": sa.bindparam("v_updated_at",
                                                type_=calls.c.updated_at.type)}))


def _record(row: sa.Row[Any]) -> CallRecord:
    return CallRecord.from_row(row._mapping)


def _event(row: sa.Row[Any]) -> dict[str, Any]:
    return {"at": to_epoch(row.at), "kind": row.kind, "data": json.loads(row.data)}


class CallStore:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time):
        self.db = db
        self.clock = clock

    @property
    def _dialect(self) -> str:
        return self.db.dialect

    def _now(self) -> Any:
        return to_datetime(self.clock())

    # ---- writes ----
    async def ensure_call(
        self,
        call_id: str,
        *,
        node: str,
        started_at: float,
        source: str,
        direction: str = "inbound",
    ) -> bool:
        """Create the record unless it exists; True when this call created it. Waits for the
        commit, queued behind the writes before it (`start_call` does not wait)."""
        return await self.db.writer.submit_wait(
            self._new_call(call_id, node, started_at, source, direction), key=call_id) == 1

    async def update(self, call_id: str, *, only_if_null: bool = False, **values: Any) -> None:
        """Set columns (queued, not awaited); with only_if_null the first report of a fact
        wins (COALESCE with what is there)."""
        columns = _columns(values)
        if only_if_null:
            # COALESCE(x, NULL) is x: a None changes nothing and needs no typed parameter.
            columns = {k: v for k, v in columns.items() if v is not None}
        if not columns:
            return
        params = {f"v_{k}": v for k, v in columns.items()}
        params.update(v_updated_at=self._now(), call_id_=call_id)
        self.db.writer.submit(_update_statement(tuple(sorted(columns)), only_if_null), params,
                              key=call_id)

    def start_call(self, call_id: str, *, node: str, started_at: float, source: str,
                   direction: str = "inbound") -> None:
        """Queue the record's insert (one already there is kept as it is); not awaited."""
        self.db.writer.submit(self._new_call(call_id, node, started_at, source, direction),
                              key=call_id)

    def _new_call(self, call_id: str, node: str, started_at: float, source: str,
                  direction: str) -> sa.Insert:
        return insert_ignore(self._dialect, calls, {
            "id": call_id, "node": node, "direction": direction,
            "started_at": to_datetime(started_at), "source": source, "updated_at": self._now(),
        })

    async def add_event(
        self, call_id: str, kind: str, at: float, data: dict[str, Any] | None = None,
        *, once: bool = False,
    ) -> None:
        """Append to the call's timeline (queued, not awaited); once: not if the call has an
        event of this kind already."""
        self.db.writer.submit(_INSERT_EVENT_ONCE if once else _INSERT_EVENT, {
            "call_id": call_id, "at": to_datetime(at), "kind": kind,
            "data": json.dumps(data or {}, ensure_ascii=False, sort_keys=True)}, key=call_id)

    async def add_operator_event(
        self, at: float, operator: str, desk: str | None, action: str, detail: str, by_whom: str
    ) -> None:
        """Log an operator's login, logout, pause... (queued, not awaited)."""
        self.db.writer.submit(sa.insert(operator_events).values(
            at=to_datetime(at), operator=operator, desk=desk, action=action, detail=detail,
            by_whom=by_whom,
        ))

    async def set_state(self, node: str, key: str, value: str) -> None:
        """Remember a per-node fact across restarts (queued, not awaited)."""
        self.db.writer.submit(upsert(self._dialect, node_state, {
            "node": node, "key": key, "value": value, "updated_at": self._now(),
        }, ["node", "key"]))

    async def flush(self) -> None:
        """Wait until every write queued so far is committed."""
        await self.db.writer.flush()

    async def finish_call(self, call_id: str, decide: Decide) -> CallRecord | None:
        """End a call exactly once, even with several finishers (nodes, AMI and reconcile).

        In one transaction holding the call's row: read it and its events; if it has ended
        already (or does not exist) return None; else set what decide(record, events)
        returns (keys as for update; ended_at defaults to now) and return the new record.
        """
        await self.db.writer.flush(call_id)
        async with write_transaction(self.db.engine) as conn:
            query = lock_row(sa.select(calls).where(calls.c.id == call_id), conn)
            row = (await conn.execute(query)).first()
            if row is None or row.ended_at is not None:
                return None
            values = dict(decide(_record(row), await self._events(conn, call_id)))
            values.setdefault("ended_at", self.clock())
            await conn.execute(
                sa.update(calls).where(calls.c.id == call_id).values(
                    **_columns(values), updated_at=self._now()
                )
            )
            row = (await conn.execute(_SELECT_CALL, {"call_id_": call_id})).one()
        return _record(row)

    # ---- reads (each waits for the writes it could see: one call's, or everyone's) ----
    async def _rows(self, query: sa.Select[Any], params: dict[str, Any] | None = None,
                    call_id: str | None = None) -> list[sa.Row[Any]]:
        await self.db.writer.flush(call_id)
        async with self.db.engine.connect() as conn:
            return list(await conn.execute(query, params))

    async def get(self, call_id: str) -> CallRecord | None:
        rows = await self._rows(_SELECT_CALL, {"call_id_": call_id}, call_id)
        return _record(rows[0]) if rows else None

    async def get_with_events(self, call_id: str,
                              ) -> tuple[CallRecord | None, list[dict[str, Any]]]:
        """get() and events() with one flush and one connection."""
        await self.db.writer.flush(call_id)
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(_SELECT_CALL, {"call_id_": call_id})).first()
            if row is None:
                return None, []
            return _record(row), await self._events(conn, call_id)

    async def exists(self, call_id: str) -> bool:
        return bool(await self._rows(_CALL_EXISTS, {"call_id_": call_id}, call_id))

    async def recent(self, limit: int = 20) -> list[CallRecord]:
        query = sa.select(calls).order_by(calls.c.started_at.desc(), calls.c.id.desc())
        return [_record(r) for r in await self._rows(query.limit(limit))]

    async def open_calls(self, node: str | None = None) -> list[CallRecord]:
        """Calls not ended yet; only this node's when given (nodes share one database)."""
        query = sa.select(calls).where(calls.c.ended_at.is_(None))
        if node is not None:
            query = query.where(calls.c.node == node)
        return [_record(r) for r in await self._rows(query.order_by(calls.c.started_at))]

    async def unfinalised_recordings(self, node: str | None = None) -> list[CallRecord]:
        """Ended calls whose recording has no duration and hash yet."""
        query = sa.select(calls).where(
            calls.c.ended_at.is_not(None),
            calls.c.recording_path.is_not(None),
            calls.c.recording_sha256.is_(None),
        )
        if node is not None:
            query = query.where(calls.c.node == node)
        return [_record(r) for r in await self._rows(query.order_by(calls.c.started_at))]

    async def events(self, call_id: str) -> list[dict[str, Any]]:
        """The call's timeline: [{at, kind, data}], oldest first."""
        await self.db.writer.flush(call_id)
        async with self.db.engine.connect() as conn:
            return await self._events(conn, call_id)

    @staticmethod
    async def _events(conn: AsyncConnection, call_id: str) -> list[dict[str, Any]]:
        return [_event(r) for r in await conn.execute(_SELECT_EVENTS, {"call_id_": call_id})]

    async def operator_events(self, operator: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(operator_events).order_by(operator_events.c.at, operator_events.c.id)
        if operator is not None:
            query = query.where(operator_events.c.operator == operator)
        return [{**r._mapping, "at": to_epoch(r.at)} for r in await self._rows(query)]

    async def get_state(self, node: str, key: str) -> str | None:
        rows = await self._rows(sa.select(node_state.c.value).where(
            node_state.c.node == node, node_state.c.key == key))
        return rows[0].value if rows else None

    async def close(self) -> None:
        """Drain the writer and close the database (the owner of db may do it instead)."""
        await self.db.close()
