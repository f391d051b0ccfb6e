"""The store: call records and their events in SQLAlchemy Core (async), on SQLite by default
or PostgreSQL, with Alembic migrations and a background writer."""

from ivr.store.calls import CallStore
from ivr.store.db import Database

__all__ = ["CallStore", "Database"]
