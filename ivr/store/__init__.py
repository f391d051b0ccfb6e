"""The embedded store (aiosqlite): call records and their events, with schema migrations."""

from ivr.store.calls import CallStore
from ivr.store.db import Database

__all__ = ["CallStore", "Database"]
