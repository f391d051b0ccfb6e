"""The store's tables as SQLAlchemy Core objects, and the conversion of times at its boundary.

Times are `DateTime(timezone=True)` columns holding UTC (timestamptz on PostgreSQL; SQLite
keeps the UTC wall time as text and gives it back without a zone). The rest of the program
speaks float epoch seconds: the store converts with `to_datetime` / `to_epoch`.

This module describes the schema *now*; Alembic migrations (ivr/store/alembic/versions) build
it and never import this module, so a shipped migration does not change when this file does.
tests/store/test_schema.py checks that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

# SQLite makes only an INTEGER PRIMARY KEY an auto-increment rowid; PostgreSQL gets 64 bits.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)

calls = sa.Table(
    "calls",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("node", sa.Text, nullable=False),
    sa.Column("direction", sa.Text, nullable=False, server_default="inbound"),
    sa.Column("caller", sa.Text),
    sa.Column("caller_name", sa.Text),
    sa.Column("did", sa.Text),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("answered_at", Timestamp),
    sa.Column("notice_started_at", Timestamp),
    sa.Column("notice_ended_at", Timestamp),
    sa.Column("queue_joined_at", Timestamp),
    sa.Column("connected_at", Timestamp),
    sa.Column("ended_at", Timestamp),
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
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("entry", sa.Text),
    sa.Column("language", sa.Text),
    sa.Column("menu_path", sa.Text),
    sa.Column("disposition", sa.Text),
    sa.Column("overflow_from", sa.Text),
    # Operator protection (schema v3): the rule that decided a restriction (`block:12`,
    # `withheld:anonymous`, `repeat:day>=5`, `outbound:intl`), flags (space-separated,
    # e.g. `repeat harassment`), calls from this number in the repeat window that decided,
    # and the talk-time limit applied (seconds).
    sa.Column("rule", sa.Text),
    sa.Column("flags", sa.Text),
    sa.Column("repeat_count", sa.Integer),
    sa.Column("talk_limit", sa.Float),
    sa.Index("calls_started", "started_at"),
    sa.Index("calls_caller", "caller", "started_at"),
    # Open calls are few; several nodes share one database and each asks for its own.
    sa.Index(
        "calls_open",
        "node",
        "started_at",
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    ),
)

call_events = sa.Table(
    "call_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.Text, sa.ForeignKey("calls.id"), nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    # JSON as text: the same bytes on every engine, and v2's rows copy over unchanged.
    sa.Column("data", sa.Text, nullable=False, server_default="{}"),
    sa.Index("call_events_call", "call_id", "at"),
)

operator_events = sa.Table(
    "operator_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("operator", sa.Text, nullable=False),
    sa.Column("desk", sa.Text),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("by_whom", sa.Text, nullable=False, server_default=""),
    sa.Index("operator_events_operator", "operator", "at"),
)

# Small per-node facts that must survive a restart (e.g. how far the CDR file was read).
node_state = sa.Table(
    "node_state",
    metadata,
    sa.Column("node", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)


# The block list: exact numbers, prefixes and patterns (normalised numbers, see
# ivr/policy/callerid.py). Rows are never deleted: unblocking sets removed_*; the rule id a
# call record names is `block:<id>`.
blocks = sa.Table(
    "blocks",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.Text, nullable=False),  # exact | prefix | pattern
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("entry", sa.Text),  # null: every entry point
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),  # admin | repeat | operator | config
    sa.Column("added_by", sa.Text, nullable=False),
    sa.Column("added_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp),
    sa.Column("call_id", sa.Text),  # the call that caused it (repeat, end-and-refuse)
    sa.Column("review", sa.Text),  # pending | confirmed (a supervisor looked at it)
    sa.Column("removed_at", Timestamp),
    sa.Column("removed_by", sa.Text),
    sa.Column("removed_reason", sa.Text),
    sa.Index("blocks_value", "kind", "value"),
)

# Every change an admin, supervisor or operator makes (CLI, API, feature codes): who, what,
# the state before and after (JSON text), when, from where.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False, server_default=""),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=False, server_default=""),
    sa.Column("before", sa.Text),
    sa.Column("after", sa.Text),
    sa.Column("origin", sa.Text, nullable=False, server_default=""),  # cli | api <addr> | ...
    sa.Index("audit_log_at", "at"),
)

# API tokens: only a hash is kept; the token itself is shown once, when created.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("role", sa.Text, nullable=False),  # admin | supervisor | operator
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("last_used_at", Timestamp),
    sa.Column("revoked_at", Timestamp),
)

# The protection settings (restrictions, limits, feature codes) as whole JSON documents, one
# row per version: the file's content when it changed, or a change made through the CLI/API.
# The newest row is in force on every node.
settings_versions = sa.Table(
    "settings_versions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),  # file | api | cli
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("sha256", sa.Text, nullable=False),
)


# Recording as evidence (schema v4): one row per archived recording file (ivr/recordings/).
# The call's facts are copied in when the file becomes final, so the index stands alone (a
# search, an export, the chain) even where the call row is gone or was never written (a file
# found on disk at start-up). state: recording | final | missing | expired (tombstone: the
# file was deleted by retention; the row, its hash and the deletion facts stay).
recordings = sa.Table(
    "recordings",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # call | called (an outbound call's far end)
    sa.Column("path", sa.Text, nullable=False, unique=True),  # relative to the recordings dir
    sa.Column("format", sa.Text, nullable=False),  # wav | flac
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("origin", sa.Text, nullable=False, server_default="finaliser"),  # | reconcile
    sa.Column("node", sa.Text, nullable=False, server_default=""),
    sa.Column("direction", sa.Text),
    sa.Column("caller", sa.Text),
    sa.Column("did", sa.Text),
    sa.Column("desk", sa.Text),
    sa.Column("operator", sa.Text),
    sa.Column("outcome", sa.Text),
    sa.Column("flags", sa.Text, nullable=False, server_default=""),  # space-separated
    sa.Column("started_at", Timestamp),
    sa.Column("duration", sa.Float),
    sa.Column("size", sa.BigInteger),
    sa.Column("sha256", sa.Text),
    # Share of the call (0..1) in which each side carried audio (not digital silence or no
    # RTP): caller = left channel, other = right (IVR, operator, what the caller heard).
    sa.Column("caller_audio", sa.Float),
    sa.Column("other_audio", sa.Float),
    sa.Column("finalised_at", Timestamp),
    sa.Column("chain_seq", sa.BigInteger),  # the chain entry that covers the final file
    sa.Column("keep_until", Timestamp),
    sa.Column("hold", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("hold_reason", sa.Text),
    sa.Column("released_by", sa.Text),
    sa.Column("released_at", Timestamp),
    sa.Column("deleted_at", Timestamp),
    sa.Column("deleted_by", sa.Text),
    sa.Column("deleted_reason", sa.Text),
    # The analysis queue survives restarts: rows stay `pending` until a worker stores one.
    sa.Column("analysis_state", sa.Text, nullable=False, server_default="pending"),
    sa.Column("analysis", sa.Text),  # JSON
    sa.Column("analysed_at", Timestamp),
    sa.Column("shouting", sa.Integer),  # shouting episodes, both sides (searchable)
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index("recordings_call", "call_id"),
    sa.Index("recordings_started", "started_at"),
    sa.Index("recordings_caller", "caller", "started_at"),
    sa.Index("recordings_analysis", "analysis_state"),
)

# The hash chain over the recordings (append-only): each entry's hash covers its own
# canonical JSON and the previous entry's hash (ivr/recordings/chain.py). prev_hash is unique,
# so two nodes appending at once cannot fork it: one insert fails and retries on the new head.
recording_chain = sa.Table(
    "recording_chain",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # final | tombstone
    sa.Column("recording_id", sa.BigInteger, nullable=False),
    sa.Column("call_id", sa.Text, nullable=False),
    sa.Column("entry", sa.Text, nullable=False),  # canonical JSON (what the hash covers)
    sa.Column("prev_hash", sa.Text, nullable=False, unique=True),
    sa.Column("hash", sa.Text, nullable=False, unique=True),
    sa.Index("recording_chain_recording", "recording_id"),
)


def to_datetime(ts: float | None) -> datetime | None:
    """Epoch seconds -> an aware UTC datetime (what every engine stores as UTC)."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def to_epoch(value: Any) -> Any:
    """A datetime read back -> epoch seconds; SQLite's come without a zone and are UTC."""
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def is_time(table: sa.Table, column: str) -> bool:
    return isinstance(table.c[column].type, sa.DateTime)
