"""Calls, call events and operator events with timestamp columns; adopts a pre-Alembic file.

A SQLite file made by the earlier store (PRAGMA user_version 1 or 2, REAL epoch seconds) is
rebuilt in place: its tables are renamed aside, the new ones created, every row copied with
its times converted to UTC timestamps (ids kept, so event order is kept), the old ones dropped.
All in the one migration transaction: a failure leaves the file as it was.

Revision ID: 0001
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from ivr.store.engine import LEGACY_VERSION, legacy_version, mark_adopted

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LEGACY_INDEXES = ("calls_started", "calls_caller", "calls_open", "call_events_call",
                  "operator_events_operator")
TABLES = ("calls", "call_events", "operator_events")
CHUNK = 5000


def _create() -> dict[str, sa.Table]:
    calls = op.create_table(
        "calls",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("node", sa.Text, nullable=False),
        sa.Column("direction", sa.Text, nullable=False, server_default="inbound"),
        sa.Column("caller", sa.Text),
        sa.Column("caller_name", sa.Text),
        sa.Column("did", sa.Text),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("answered_at", TS),
        sa.Column("notice_started_at", TS),
        sa.Column("notice_ended_at", TS),
        sa.Column("queue_joined_at", TS),
        sa.Column("connected_at", TS),
        sa.Column("ended_at", TS),
        sa.Column("desk", sa.Text),
        sa.Column("operator", sa.Text),
        sa.Column("outcome", sa.Text),
        sa.Column("hangup_cause", sa.Integer),
        sa.Column("hangup_by", sa.Text),
        sa.Column("recording_path", sa.Text),
        sa.Column("recording_duration", sa.Float),
        sa.Column("recording_sha256", sa.Text),
        sa.Column("failsafe", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("entry", sa.Text),
        sa.Column("language", sa.Text),
        sa.Column("menu_path", sa.Text),
        sa.Column("disposition", sa.Text),
        sa.Column("overflow_from", sa.Text),
    )
    op.create_index("calls_started", "calls", ["started_at"])
    op.create_index("calls_caller", "calls", ["caller", "started_at"])
    op.create_index("calls_open", "calls", ["node", "started_at"],
                    sqlite_where=sa.text("ended_at IS NULL"),
                    postgresql_where=sa.text("ended_at IS NULL"))
    call_events = op.create_table(
        "call_events",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.Text, sa.ForeignKey("calls.id"), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False, server_default="{}"),
    )
    op.create_index("call_events_call", "call_events", ["call_id", "at"])
    operator_events = op.create_table(
        "operator_events",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("operator", sa.Text, nullable=False),
        sa.Column("desk", sa.Text),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("by_whom", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("operator_events_operator", "operator_events", ["operator", "at"])
    assert calls is not None and call_events is not None and operator_events is not None
    return {"calls": calls, "call_events": call_events, "operator_events": operator_events}


def _convert(table: sa.Table, row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in row.items():
        if name not in table.c:
            continue  # a column this schema does not have (none today)
        kind = table.c[name].type
        if isinstance(kind, sa.DateTime) and value is not None:
            value = datetime.fromtimestamp(float(value), UTC)
        elif isinstance(kind, sa.Boolean) and value is not None:
            value = bool(value)
        out[name] = value
    return out


def _copy(conn: sa.Connection, old_name: str, new: sa.Table) -> None:
    names = [c["name"] for c in sa.inspect(conn).get_columns(old_name)]
    old = sa.table(old_name, *[sa.column(n) for n in names])
    key = old.c.id
    last: Any = None
    while True:
        query = sa.select(old).order_by(key).limit(CHUNK)
        if last is not None:
            query = query.where(key > last)
        rows = [dict(r._mapping) for r in conn.execute(query)]
        if not rows:
            return
        conn.execute(new.insert(), [_convert(new, r) for r in rows])
        last = rows[-1]["id"]


def upgrade() -> None:
    conn = op.get_bind()
    legacy = legacy_version(conn)
    if legacy > LEGACY_VERSION:
        raise RuntimeError(f"unknown SQLite schema version {legacy}: upgrade ivr")
    existing = set(sa.inspect(conn).get_table_names())
    adopt = [t for t in TABLES if t in existing] if legacy else []
    if adopt:
        for index in LEGACY_INDEXES:
            op.drop_index(index, if_exists=True)
        for name in adopt:
            op.rename_table(name, f"v{legacy}_{name}")
    new = _create()
    for name in adopt:
        _copy(conn, f"v{legacy}_{name}", new[name])
    for name in reversed(adopt):  # events before the calls they refer to
        op.drop_table(f"v{legacy}_{name}")
    mark_adopted(conn)


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
