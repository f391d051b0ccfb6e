"""Recording as evidence: the recordings index (one row per archived file, with retention,
hold and tombstone facts and the analysis) and the append-only hash chain over it.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False, unique=True),
        sa.Column("format", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("origin", sa.Text, nullable=False, server_default="finaliser"),
        sa.Column("node", sa.Text, nullable=False, server_default=""),
        sa.Column("direction", sa.Text),
        sa.Column("caller", sa.Text),
        sa.Column("did", sa.Text),
        sa.Column("desk", sa.Text),
        sa.Column("operator", sa.Text),
        sa.Column("outcome", sa.Text),
        sa.Column("flags", sa.Text, nullable=False, server_default=""),
        sa.Column("started_at", Timestamp),
        sa.Column("duration", sa.Float),
        sa.Column("size", sa.BigInteger),
        sa.Column("sha256", sa.Text),
        sa.Column("caller_audio", sa.Float),
        sa.Column("other_audio", sa.Float),
        sa.Column("finalised_at", Timestamp),
        sa.Column("chain_seq", sa.BigInteger),
        sa.Column("keep_until", Timestamp),
        sa.Column("hold", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("hold_reason", sa.Text),
        sa.Column("released_by", sa.Text),
        sa.Column("released_at", Timestamp),
        sa.Column("deleted_at", Timestamp),
        sa.Column("deleted_by", sa.Text),
        sa.Column("deleted_reason", sa.Text),
        sa.Column("analysis_state", sa.Text, nullable=False, server_default="pending"),
        sa.Column("analysis", sa.Text),
        sa.Column("analysed_at", Timestamp),
        sa.Column("shouting", sa.Integer),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index("recordings_call", "recordings", ["call_id"])
    op.create_index("recordings_started", "recordings", ["started_at"])
    op.create_index("recordings_caller", "recordings", ["caller", "started_at"])
    op.create_index("recordings_analysis", "recordings", ["analysis_state"])
    op.create_table(
        "recording_chain",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("recording_id", sa.BigInteger, nullable=False),
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("entry", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.Text, nullable=False, unique=True),
        sa.Column("hash", sa.Text, nullable=False, unique=True),
    )
    op.create_index("recording_chain_recording", "recording_chain", ["recording_id"])


def downgrade() -> None:
    op.drop_index("recording_chain_recording", "recording_chain")
    op.drop_table("recording_chain")
    for name in ("recordings_analysis", "recordings_caller", "recordings_started",
                 "recordings_call"):
        op.drop_index(name, "recordings")
    op.drop_table("recordings")
