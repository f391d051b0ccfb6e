"""Bringing a database to the schema this code expects, with the Alembic revisions shipped in
ivr/store/alembic/versions. Run at every open: cheap when nothing is to do."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.store.engine import lock_for_migration, write_transaction

SCRIPTS = Path(__file__).parent / "alembic"


class SchemaError(RuntimeError):
    """The database cannot be used by this version of ivr; the message says what to do."""


def _config(connection: Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(SCRIPTS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _upgrade(conn: Connection) -> str | None:
    lock_for_migration(conn)
    current = MigrationContext.configure(conn).get_current_revision()
    scripts = ScriptDirectory.from_config(_config())
    if current is not None:
        try:
            scripts.get_revision(current)
        except CommandError as exc:
            raise SchemaError(
                f"the database has schema revision {current}, newer than this program "
                f"({scripts.get_current_head()}): upgrade ivr"
            ) from exc
    command.upgrade(_config(conn), "head")
    return MigrationContext.configure(conn).get_current_revision()


async def upgrade(engine: AsyncEngine) -> str | None:
    """Apply the missing revisions in one transaction; returns the revision now in place."""
    async with write_transaction(engine) as conn:
        return await conn.run_sync(_upgrade)
