"""The audit log (table audit_log): who changed what, the state before and after, when, and
from where. Rows are only ever added."""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

from ivr.store.db import Database
from ivr.store.engine import write_transaction
from ivr.store.tables import audit_log, to_datetime, to_epoch


def _text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)


def _row(row: sa.Row[Any]) -> dict[str, Any]:
    return {"id": int(row.id), "at": to_epoch(row.at), "actor": row.actor, "role": row.role,
            "action": row.action, "target": row.target,
            "before": None if row.before is None else json.loads(row.before),
            "after": None if row.after is None else json.loads(row.after),
            "origin": row.origin}


class AuditStore:
    def __init__(self, db: Database):
        self.db = db

    async def record(self, *, actor: str, action: str, target: str = "", before: Any = None,
                     after: Any = None, role: str = "", origin: str = "",
                     at: float | None = None) -> int:
        """Committed before returning: a change is not reported done without its audit row."""
        async with write_transaction(self.db.engine) as conn:
            result = await conn.execute(audit_log.insert().values(
                at=to_datetime(at if at is not None else time.time()), actor=actor, role=role,
                action=action, target=target, before=_text(before), after=_text(after),
                origin=origin))
            return int(result.inserted_primary_key[0])

    async def list(self, *, since: float | None = None, limit: int = 100,
                   action: str | None = None) -> list[dict[str, Any]]:
        """Newest first."""
        stmt = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if since is not None:
            stmt = stmt.where(audit_log.c.at >= to_datetime(since))
        if action is not None:
            stmt = stmt.where(audit_log.c.action.startswith(action))
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_row(r) for r in rows]
