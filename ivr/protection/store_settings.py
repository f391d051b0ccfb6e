"""Versions of the protection settings document (table settings_versions).

One row per version; the newest row is in force on every node sharing the store. Rows are
never updated or deleted: the table is the history (`ivr settings show --version N`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ivr.store.db import Database
from ivr.store.engine import write_transaction
from ivr.store.tables import settings_versions, to_datetime, to_epoch

SOURCES = ("file", "api", "cli")


@dataclass(frozen=True)
class SettingsVersion:
    id: int
    at: float
    actor: str
    source: str
    document: dict[str, Any]
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"version": self.id, "at": self.at, "actor": self.actor, "source": self.source,
                "sha256": self.sha256}


def _version(row: sa.Row[Any]) -> SettingsVersion:
    return SettingsVersion(id=int(row.id), at=to_epoch(row.at), actor=row.actor,
                           source=row.source, document=json.loads(row.document),
                           sha256=row.sha256)


class SettingsStore:
    def __init__(self, db: Database):
        self.db = db

    async def newest_id(self) -> int:
        """The id of the version in force (0 when there is none): what every node polls."""
        async with self.db.engine.connect() as conn:
            value = (await conn.execute(sa.select(sa.func.max(settings_versions.c.id)))).scalar()
        return int(value or 0)

    async def newest(self, source: str | None = None) -> SettingsVersion | None:
        """The newest version (of one source, when given)."""
        stmt = sa.select(settings_versions).order_by(settings_versions.c.id.desc()).limit(1)
        if source is not None:
            stmt = stmt.where(settings_versions.c.source == source)
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else _version(row)

    async def get(self, version: int) -> SettingsVersion | None:
        stmt = sa.select(settings_versions).where(settings_versions.c.id == version)
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else _version(row)

    async def history(self, limit: int = 50) -> list[SettingsVersion]:
        stmt = sa.select(settings_versions).order_by(settings_versions.c.id.desc()).limit(limit)
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_version(r) for r in rows]

    async def add(self, document: dict[str, Any], sha256: str, *, source: str, actor: str,
                  expect_newest: int | None = None, at: float | None = None) -> int | None:
        """A new version; its id. With expect_newest, only if the newest version is still
        that one (None otherwise): two admins changing sections at once must not silently
        drop one change, since each change is made from the newest document."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}")
        text = json.dumps(document, sort_keys=True, ensure_ascii=False)
        async with write_transaction(self.db.engine) as conn:
            if expect_newest is not None:
                stmt = sa.select(sa.func.max(settings_versions.c.id))
                if conn.dialect.name == "postgresql":
                    # Take turns with other nodes: the table lock is held to the commit.
                    await conn.exec_driver_sql(
                        "LOCK TABLE settings_versions IN SHARE ROW EXCLUSIVE MODE")
                newest = int((await conn.execute(stmt)).scalar() or 0)
                if newest != expect_newest:
                    return None
            result = await conn.execute(settings_versions.insert().values(
                at=to_datetime(at if at is not None else time.time()), actor=actor,
                source=source, document=text, sha256=sha256))
            return int(result.inserted_primary_key[0])
