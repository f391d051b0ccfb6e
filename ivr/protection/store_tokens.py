"""API tokens (table api_tokens): only the token's sha256 is kept."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ivr.store.db import Database
from ivr.store.engine import write_transaction
from ivr.store.tables import api_tokens, to_datetime, to_epoch


@dataclass(frozen=True)
class Token:
    name: str
    role: str
    created_at: float
    created_by: str
    last_used_at: float | None
    revoked_at: float | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "created_at": self.created_at,
                "created_by": self.created_by, "last_used_at": self.last_used_at,
                "revoked_at": self.revoked_at}


def _token(row: sa.Row[Any]) -> Token:
    return Token(name=row.name, role=row.role, created_at=to_epoch(row.created_at),
                 created_by=row.created_by, last_used_at=to_epoch(row.last_used_at),
                 revoked_at=to_epoch(row.revoked_at))


class TokenStore:
    def __init__(self, db: Database):
        self.db = db

    async def add(self, name: str, role: str, token_hash: str, created_by: str) -> bool:
        """False when the name is taken (revoked names stay taken: the audit log names them)."""
        try:
            async with write_transaction(self.db.engine) as conn:
                await conn.execute(api_tokens.insert().values(
                    name=name, role=role, token_hash=token_hash,
                    created_at=to_datetime(time.time()), created_by=created_by))
        except IntegrityError:
            return False
        return True

    async def by_hash(self, token_hash: str) -> Token | None:
        """The live (not revoked) token with this hash."""
        stmt = sa.select(api_tokens).where(api_tokens.c.token_hash == token_hash,
                                           api_tokens.c.revoked_at.is_(None))
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else _token(row)

    def touch(self, name: str, at: float) -> None:
        """Last use, through the writer: a request does not wait for this commit."""
        self.db.writer.submit(api_tokens.update().where(api_tokens.c.name == name)
                              .values(last_used_at=to_datetime(at)))

    async def list(self) -> list[Token]:
        stmt = sa.select(api_tokens).order_by(api_tokens.c.name)
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_token(r) for r in rows]

    async def revoke(self, name: str) -> Token | None:
        """The token as it was before; None if there is no live token of that name."""
        async with write_transaction(self.db.engine) as conn:
            row = (await conn.execute(sa.select(api_tokens).where(
                api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None)))).first()
            if row is None:
                return None
            await conn.execute(api_tokens.update().where(api_tokens.c.id == row.id)
                               .values(revoked_at=to_datetime(time.time())))
        return _token(row)
