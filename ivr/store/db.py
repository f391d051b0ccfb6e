"""Opening the database: the engine for its URL, the schema migrated, the writer started.

Shutdown order (`close`): stop taking writes, commit what the writer still holds, then close
the connections.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.store.engine import count_statements, create_engine, safe_url, sqlite_file
from ivr.store.migrate import upgrade
from ivr.store.writer import BATCH_WINDOW_S, Writer

log = logging.getLogger("ivr.store")


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


class Database:
    def __init__(self, url: str | Path, *, window: float = BATCH_WINDOW_S, max_batch: int = 500):
        """url: a sqlite+aiosqlite:// or postgresql+asyncpg:// URL, or a SQLite file path."""
        self.url = sqlite_url(url) if isinstance(url, Path) else url
        self.path = sqlite_file(self.url)  # its folder is made at open, as for the data dir
        self._window = window
        self._max_batch = max_batch
        self._engine: AsyncEngine | None = None
        self._writer: Writer | None = None
        # Statements sent, by verb and table (ivr_store_statements on /metrics).
        self.statements: Counter[str] = Counter()

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("database is not open")
        return self._engine

    @property
    def writer(self) -> Writer:
        if self._writer is None:
            raise RuntimeError("database is not open")
        return self._writer

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def open(self) -> Database:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._engine = create_engine(self.url)
        self.statements = count_statements(self._engine)
        try:
            revision = await upgrade(self._engine)
        except BaseException:
            await self._engine.dispose()
            self._engine = None
            raise
        log.info("event=store_open url=%s schema=%s", safe_url(self.url), revision)
        self._writer = Writer(self._engine, window=self._window, max_batch=self._max_batch)
        self._writer.start()
        return self

    async def migrate(self) -> str | None:
        """Bring the schema up to date (open does it); returns the Alembic revision."""
        return await upgrade(self.engine)

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                return (await conn.execute(sa.text("SELECT 1"))).scalar() == 1
        except Exception:
            return False

    async def close(self, timeout: float = 30.0) -> None:
        if self._writer is not None:
            await self._writer.close(timeout)
            self._writer = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
