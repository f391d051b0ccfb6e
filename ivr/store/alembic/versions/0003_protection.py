"""Operator protection: the block list, the audit log, API tokens, versions of the protection
settings, and the call record's rule, flags, repeat count and talk-time limit.

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("rule", sa.Text))
        batch.add_column(sa.Column("flags", sa.Text))
        batch.add_column(sa.Column("repeat_count", sa.Integer))
        batch.add_column(sa.Column("talk_limit", sa.Float))
    op.create_table(
        "blocks",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("entry", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("added_by", sa.Text, nullable=False),
        sa.Column("added_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp),
        sa.Column("call_id", sa.Text),
        sa.Column("review", sa.Text),
        sa.Column("removed_at", Timestamp),
        sa.Column("removed_by", sa.Text),
        sa.Column("removed_reason", sa.Text),
    )
    op.create_index("blocks_value", "blocks", ["kind", "value"])
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False, server_default=""),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False, server_default=""),
        sa.Column("before", sa.Text),
        sa.Column("after", sa.Text),
        sa.Column("origin", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("audit_log_at", "audit_log", ["at"])
    op.create_table(
        "api_tokens",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("last_used_at", Timestamp),
        sa.Column("revoked_at", Timestamp),
    )
    op.create_table(
        "settings_versions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("settings_versions")
    op.drop_table("api_tokens")
    op.drop_index("audit_log_at", "audit_log")
    op.drop_table("audit_log")
    op.drop_index("blocks_value", "blocks")
    op.drop_table("blocks")
    with op.batch_alter_table("calls") as batch:
        for column in ("talk_limit", "repeat_count", "flags", "rule"):
            batch.drop_column(column)
