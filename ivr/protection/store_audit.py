"""The audit log (table `audit_log`): every change an admin, supervisor or operator makes.

Written directly (committed when `record` returns), not through the batching writer: an
audited change must not be reported done before its audit row is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ivr.store.db import Database
from ivr.store.engine import write_transaction
from ivr.store.tables import audit_log, to_datetime, to_epoch


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    role: str
    action: str  # e.g. block.add, block.remove, settings.change
    target: str  # e.g. block:12
    before: Any  # JSON-able; None when the thing did not exist
    after: Any
    origin: str  # cli | api <address> | feature-code | repeat

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, "actor": self.actor, "role": self.role,
                "action": self.action, "target": self.target, "before": self.before,
                "after": self.after, "origin": self.origin}


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _entry(row: sa.Row[Any]) -> AuditEntry:
    m = row._mapping
    return AuditEntry(id=int(m["id"]), at=to_epoch(m["at"]), actor=m["actor"], role=m["role"],
                      action=m["action"], target=m["target"], before=_load(m["before"]),
                      after=_load(m["after"]), origin=m["origin"])


class AuditStore:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time):
        self.db = db
        self.clock = clock

    async def record(self, *, actor: str, action: str, target: str = "", before: Any = None,
                     after: Any = None, role: str = "", origin: str = "",
                     at: float | None = None) -> AuditEntry:
        """Committed before returning: a change is not reported done without its audit row."""
        values = {"at": to_datetime(self.clock() if at is None else at), "actor": actor,
                  "role": role,
                  "action": action, "target": target, "before": _dump(before),
                  "after": _dump(after), "origin": origin}
        async with write_transaction(self.db.engine) as conn:
            row = (await conn.execute(
                sa.insert(audit_log).values(**values).returning(audit_log))).one()
        return _entry(row)

    async def list(self, *, since: float | None = None, actor: str | None = None,
                   action: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """Newest first; `action` matches a prefix (`block.` for block.add and .remove)."""
        query = sa.select(audit_log).order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
        if since is not None:
            query = query.where(audit_log.c.at >= to_datetime(since))
        if actor is not None:
            query = query.where(audit_log.c.actor == actor)
        if action is not None:
            query = query.where(audit_log.c.action.startswith(action, autoescape=True))
        async with self.db.engine.connect() as conn:
            return [_entry(r) for r in await conn.execute(query.limit(limit))]
