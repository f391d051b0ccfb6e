"""API tokens: made with the CLI, shown once, kept as sha256, checked on every API request.

Roles and what they may do (the API checks `allowed(role, right)`):
- admin: everything;
- supervisor: blocks (list, add, remove, review), rules test, audit read, calls read,
  settings read, recordings (search, play and download, export), listen/whisper/barge on a
  live call (calls.spy);
- operator: rules test only (an operator's screen asks "why was this number refused?");
  recordings are evidence about operators too, so they get none of the recording rights.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time

from ivr.protection.admin_errors import AdminError, Conflict, NotFound
from ivr.protection.service_settings import Actor, Audit
from ivr.protection.store_tokens import Token, TokenStore

ROLES = ("admin", "supervisor", "operator")
# Search and details; the audio and the analysis picture; the evidence bundle.
RECORDING_RIGHTS = ("recordings.search", "recordings.read", "recordings.export")
RIGHTS: dict[str, frozenset[str]] = {
    "admin": frozenset({"settings.read", "settings.write", "blocks.read", "blocks.write",
                        "rules.test", "audit.read", "calls.read", "calls.spy",
                        *RECORDING_RIGHTS}),
    "supervisor": frozenset({"settings.read", "blocks.read", "blocks.write", "rules.test",
                             "audit.read", "calls.read", "calls.spy", *RECORDING_RIGHTS}),
    "operator": frozenset({"rules.test"}),
}
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.@-]{0,63}$")
# Writing last use at most this often per token: a busy client is not a write per request.
TOUCH_EVERY = 60.0


def allowed(role: str, right: str) -> bool:
    return right in RIGHTS.get(role, frozenset())


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenService:
    def __init__(self, store: TokenStore, audit: Audit):
        self.store = store
        self.audit = audit
        self._touched: dict[str, float] = {}

    async def create(self, name: str, role: str, actor: Actor) -> str:
        """The new token (printed once, never stored)."""
        if not NAME.match(name):
            raise AdminError("a token name is 1-64 letters, digits, '_', '.', '@' or '-', "
                             "starting with a letter", field="name")
        if role not in ROLES:
            raise AdminError(f"role must be one of {', '.join(ROLES)}", field="role")
        token = secrets.token_urlsafe(32)
        if not await self.store.add(name, role, digest(token), actor.name):
            raise Conflict(f"a token named {name!r} exists (revoked names stay taken)",
                           field="name")
        await self.audit.record(actor=actor.name, role=actor.role, action="token.create",
                                target=f"token {name}", before=None,
                                after={"name": name, "role": role}, origin=actor.origin)
        return token

    async def revoke(self, name: str, actor: Actor) -> None:
        old = await self.store.revoke(name)
        if old is None:
            raise NotFound(f"no live token named {name!r}", field="name")
        await self.audit.record(actor=actor.name, role=actor.role, action="token.revoke",
                                target=f"token {name}", before={"name": name, "role": old.role},
                                after=None, origin=actor.origin)

    async def list(self) -> list[Token]:
        return await self.store.list()

    async def authenticate(self, token: str) -> Token | None:
        if not token or len(token) > 256:
            return None
        found = await self.store.by_hash(digest(token))
        if found is not None:
            now = time.time()
            if now - self._touched.get(found.name, 0.0) >= TOUCH_EVERY:
                self._touched[found.name] = now
                self.store.touch(found.name, now)
        return found
