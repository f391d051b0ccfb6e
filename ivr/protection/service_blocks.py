"""Blocking and unblocking numbers: what the CLI, the API and the feature codes call.

Every change is validated first (a ProtectionError names the field, nothing changes) and
written to the audit log with the block before and after.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ivr.policy.callerid import normalise_number
from ivr.protection.errors import ProtectionError
from ivr.protection.patterns import PatternError, canonical_pattern
from ivr.protection.store_audit import AuditStore
from ivr.protection.store_blocks import KINDS, SOURCES, Block, BlockStore

MAX_REASON = 500
_PREFIX = re.compile(r"^\+?[0-9*#]{1,32}$")
_DURATION = re.compile(r"^(\d{1,5})\s*([mhdw])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Actor:
    """Who changes something, for the audit log."""

    name: str
    role: str = "admin"
    origin: str = "cli"


def parse_expiry(text: str | None, now: float, tz: str | None = None) -> float | None:
    """`30d`, `12h`, `90m`, `2w` from now, or a date `2026-12-31` (through that day) or an
    ISO date-time, in `tz` (None: the machine's local time zone); None/empty: never."""
    if text is None or not text.strip():
        return None
    value = text.strip()
    found = _DURATION.match(value)
    if found:
        return now + int(found.group(1)) * _UNITS[found.group(2)]
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ProtectionError("expires", f"not a duration (30d, 12h) or a date "
                              f"(2026-12-31): {value[:40]!r}") from None
    if at.tzinfo is None:
        if len(value) == 10:  # a date alone: blocked through that whole day
            at = at + timedelta(days=1)
        at = at.replace(tzinfo=ZoneInfo(tz)) if tz else at.astimezone()
    return at.timestamp()


class BlockService:
    def __init__(self, blocks: BlockStore, audit: AuditStore, *, country: str = "81",
                 entries: set[str] | None = None, clock: Callable[[], float] = time.time):
        self.blocks = blocks
        self.audit = audit
        self.country = country
        self.entries = entries  # the journey's entry names; None: not checked
        self.clock = clock

    def canonical(self, kind: str, value: str) -> str:
        """The stored form of a block value; ProtectionError naming the field if bad."""
        text = (value or "").strip()
        if kind == "exact":
            number = normalise_number(text, self.country)
            if number is None:
                raise ProtectionError("number", f"not a phone number: {text[:40]!r}")
            return number
        if kind == "prefix":
            cleaned = re.sub(r"[\s().\-]", "", text)
            if not _PREFIX.match(cleaned):
                raise ProtectionError("prefix", f"digits only (e.g. 0120): {text[:40]!r}")
            return normalise_number(cleaned, self.country) or cleaned
        if kind == "pattern":
            try:
                return canonical_pattern(text)
            except PatternError as exc:
                raise ProtectionError("pattern", f"{exc}: {text[:40]!r}") from None
        raise ProtectionError("kind", f"one of {', '.join(KINDS)}: {kind!r}")

    async def block(self, value: str, *, kind: str = "exact", reason: str, actor: Actor,
                    expires_at: float | None = None, entry: str | None = None,
                    source: str = "admin", call_id: str | None = None,
                    review: str | None = None) -> Block:
        stored = self.canonical(kind, value)
        reason = (reason or "").strip()
        if not reason:
            raise ProtectionError("reason", "empty: say why the number is blocked")
        if len(reason) > MAX_REASON or not reason.isprintable():
            raise ProtectionError("reason", f"printable text of at most {MAX_REASON} "
                                  "characters")
        now = self.clock()
        if expires_at is not None and expires_at <= now:
            raise ProtectionError("expires", "in the past")
        if entry is not None and (not entry or (self.entries is not None
                                                and entry not in self.entries)):
            raise ProtectionError("entry", f"unknown entry point: {entry[:40]!r}")
        if source not in SOURCES:
            raise ProtectionError("source", f"one of {', '.join(SOURCES)}: {source!r}")
        added = await self.blocks.add(kind=kind, value=stored, reason=reason, source=source,
                                      added_by=actor.name, entry=entry,
                                      expires_at=expires_at, call_id=call_id, review=review,
                                      added_at=now)
        await self.audit.record(actor=actor.name, role=actor.role, action="block.add",
                                target=added.rule_id, before=None, after=added.as_dict(),
                                origin=actor.origin)
        return added

    async def unblock(self, block_id: int, *, reason: str, actor: Actor) -> Block:
        reason = (reason or "").strip()
        if not reason:
            raise ProtectionError("reason", "empty: say why the block is lifted")
        before = await self.blocks.get(block_id)
        if before is None:
            raise ProtectionError("id", f"no block {block_id}")
        if before.removed_at is not None:
            raise ProtectionError("id", f"block {block_id} was removed already")
        after = await self.blocks.remove(block_id, by=actor.name, reason=reason)
        if after is None:  # removed by someone else in between
            raise ProtectionError("id", f"block {block_id} was removed already")
        await self.audit.record(actor=actor.name, role=actor.role, action="block.remove",
                                target=after.rule_id, before=before.as_dict(),
                                after=after.as_dict(), origin=actor.origin)
        return after

    async def review(self, block_id: int, *, actor: Actor) -> Block:
        """A supervisor keeps a pending block (lifting one is `unblock`)."""
        before = await self.blocks.get(block_id)
        if before is None:
            raise ProtectionError("id", f"no block {block_id}")
        if before.removed_at is not None or before.review != "pending":
            raise ProtectionError("id", f"block {block_id} is not pending review")
        after = await self.blocks.confirm(block_id)
        if after is None:  # reviewed or removed by someone else in between
            raise ProtectionError("id", f"block {block_id} is not pending review")
        await self.audit.record(actor=actor.name, role=actor.role, action="block.review",
                                target=after.rule_id, before=before.as_dict(),
                                after=after.as_dict(), origin=actor.origin)
        return after

    async def list(self, *, include_removed: bool = False,
                   include_expired: bool = False) -> list[Block]:
        return await self.blocks.list(include_removed, include_expired)
