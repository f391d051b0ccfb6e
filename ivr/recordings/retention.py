"""Retention: recordings expire per desk; flagged calls are held until a supervisor releases
them; expiry deletes the file and keeps the row as a tombstone, chained.

Expiry only ever touches a `final` row whose call has ended (a file still being written is
never final). It goes in an order a crash cannot turn into a silent deletion: the row is
marked expired (who, when, why; the hash stays), then the tombstone entry is chained, then
the file is deleted. A run finishes what an interrupted one started (an expired row without
its tombstone, or whose file is still there).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from ivr.config import RecordingConfig
from ivr.model import iso
from ivr.protection.service_settings import Actor
from ivr.protection.store_audit import AuditStore
from ivr.recordings.chain import tombstone_entry
from ivr.recordings.files import PathError, hash_file, index_path
from ivr.recordings.service_archive import HOLD_FLAGS
from ivr.recordings.store_chain import ChainStore
from ivr.recordings.store_index import RecordingIndex, RecordingRow, State
from ivr.recordings.verify import row_fields
from ivr.store import CallStore
from ivr.store.engine import write_transaction
from ivr.store.tables import recordings, to_datetime

log = logging.getLogger("ivr.recordings.retention")

DAY = 86400.0
RETENTION_ACTOR = Actor(name="retention", role="system", origin="controller")
INTERRUPTED_AFTER = 600.0  # seconds


class RetentionError(ValueError):
    pass


def hold_reason_for(flags: str | None) -> str | None:
    """The hold the archive gives a flagged call's recording (service_archive.HOLD_FLAGS);
    None: no hold."""
    found = [f for f in (flags or "").split() if f in HOLD_FLAGS]
    return f"flagged: {' '.join(found)}" if found else None


@dataclass(frozen=True)
class Expiry:
    recording_id: int
    call_id: str
    path: str
    desk: str | None
    keep_until: float
    done: bool  # False in a dry run or when refused
    refused: str | None = None  # why it was not expired (an edited or missing file)


class RetentionService:
    def __init__(self, index: RecordingIndex, chain: ChainStore, recordings_dir: Path,
                 config: RecordingConfig, *, audit: AuditStore, calls: CallStore,
                 node: str | None = None, clock: Callable[[], float] = time.time):
        self.index = index
        self.node = node  # the controller expires its own node's recordings (its folder)
        self.chain = chain
        self.root = recordings_dir
        self.config = config
        self.audit = audit
        self.calls = calls
        self.clock = clock

    def due(self, row: RecordingRow) -> float | None:
        """When the row may go (None: kept for ever). The archive sets keep_until from the
        desk's retention; a row without one (kept for ever then, or indexed before) follows
        the settings in force now."""
        if row.keep_until is not None:
            return row.keep_until
        days = self.config.retention_for(row.desk)
        start = row.started_at or row.finalised_at or row.updated_at
        return None if days == 0 else start + days * DAY

    async def expire(self, *, dry_run: bool = False,
                     actor: Actor = RETENTION_ACTOR) -> list[Expiry]:
        now = self.clock()
        if not dry_run:
            await self._finish_interrupted(now)
        candidates = await self.index.select(self._candidates(now))
        done = []
        for row in candidates:
            keep_until = self.due(row)
            if keep_until is None or keep_until > now:
                continue
            if row.released_at is None and hold_reason_for(row.flags):
                # A flagged call the archive did not hold (older rows): held, never expired.
                if not dry_run:
                    await self.index.update(row.id, hold=True,
                                            hold_reason=hold_reason_for(row.flags))
                continue
            record = await self.calls.get(row.call_id)
            if record is not None and record.ended_at is None:
                continue  # the call is live: never touch its recording
            problem = await self._problem(row)
            if problem is not None:
                current = await self.index.get(row.id)
                if current is None or current.state != State.FINAL or current.hold:
                    continue  # expired or held meanwhile (another node, a supervisor)
                log.error("event=recording_expiry_refused call_id=%s recording_id=%d path=%s "
                          "reason=%r", row.call_id, row.id, row.path, problem)
                done.append(Expiry(row.id, row.call_id, row.path, row.desk, keep_until, False,
                                   problem))
                continue
            if not dry_run and not await self._expire(row, now, keep_until, actor):
                continue
            done.append(Expiry(row.id, row.call_id, row.path, row.desk, keep_until,
                               not dry_run))
        expired = sum(1 for e in done if e.done)
        if expired:
            log.info("event=recordings_expired count=%d", expired)
        return done

    def _candidates(self, now: float) -> sa.Select:
        """Final, not held, and possibly due: past keep_until, or without one and older than
        the shortest retention configured (so a year of rows is not read every hour)."""
        c = recordings.c
        due = [c.keep_until <= to_datetime(now)]
        days = [d for d in (self.config.retention_days, *self.config.retention.values()) if d]
        if days:
            due.append(sa.and_(c.keep_until.is_(None),
                               c.started_at <= to_datetime(now - min(days) * DAY)))
            due.append(sa.and_(c.keep_until.is_(None), c.started_at.is_(None)))
        stmt = sa.select(recordings).where(c.state == State.FINAL, c.hold.is_(False),
                                           sa.or_(*due))
        if self.node is not None:
            stmt = stmt.where(c.node == self.node)
        return stmt.order_by(c.id)

    async def _problem(self, row: RecordingRow) -> str | None:
        """Expiry deletes exactly the file the chain vouches for: an edited or missing file is
        left for `ivr recordings verify` to report, not hidden under a tombstone."""
        try:
            found = await asyncio.to_thread(hash_file, index_path(self.root, row.path))
        except PathError:
            found = None
        if found is not None and found[1] == row.sha256:
            return None
        return "file missing" if found is None else "sha256 differs from the index"

    async def _expire(self, row: RecordingRow, now: float, keep_until: float,
                      actor: Actor) -> bool:
        days = self.config.retention_for(row.desk)
        reason = (f"retention: desk {row.desk or '-'} keeps {days} days"
                  if row.keep_until is None else
                  f"retention: kept until {iso(keep_until)}")
        # Only from final and not held, in one statement: a hold set since the row was read,
        # or another node expiring it at the same moment, leaves it alone here.
        async with write_transaction(self.index.db.engine) as conn:
            result = await conn.execute(
                sa.update(recordings)
                .where(recordings.c.id == row.id, recordings.c.state == State.FINAL,
                       recordings.c.hold.is_(False))
                .values(state=State.EXPIRED, deleted_at=to_datetime(now),
                        deleted_by=actor.name, deleted_reason=reason,
                        updated_at=to_datetime(now)))
        if result.rowcount != 1:
            return False
        expired = await self.index.get(row.id)
        assert expired is not None
        await self._tombstone(expired)
        await self.audit.record(actor=actor.name, role=actor.role, origin=actor.origin,
                                action="recordings.expire", target=f"call:{row.call_id}",
                                before={"recording_id": row.id, "path": row.path,
                                        "sha256": row.sha256, "keep_until": keep_until},
                                after={"state": State.EXPIRED, "reason": reason}, at=now)
        return True

    async def _tombstone(self, row: RecordingRow) -> None:
        """Chain the tombstone (once), then delete the file."""
        if not any(e.kind == "tombstone" for e in await self.chain.for_recording(row.id)):
            entry = await self.chain.append(kind="tombstone", recording_id=row.id,
                                            call_id=row.call_id,
                                            entry=tombstone_entry(row_fields(row)))
            log.info("event=recording_tombstoned call_id=%s recording_id=%d path=%s seq=%d",
                     row.call_id, row.id, row.path, entry.seq)
        try:
            path = index_path(self.root, row.path)
        except PathError as exc:
            log.error("event=recording_expiry_path_refused call_id=%s error=%s",
                      row.call_id, exc)
            return
        await asyncio.to_thread(path.unlink, True)

    async def _finish_interrupted(self, now: float) -> None:
        """Expired rows whose file is still there or whose tombstone is not chained. A row
        expired moments ago may be another node's expiry in progress: left to the next run."""
        for row in await self.index.select(
                sa.select(recordings).where(recordings.c.state == State.EXPIRED)):
            if (row.deleted_at or 0) > now - INTERRUPTED_AFTER:
                continue
            try:
                present = index_path(self.root, row.path).exists()
            except PathError:
                present = False
            chained = any(e.kind == "tombstone"
                          for e in await self.chain.for_recording(row.id))
            if present or not chained:
                await self._tombstone(row)

    # ---- holds ----

    async def hold(self, call_id: str, *, reason: str, actor: Actor) -> list[RecordingRow]:
        return await self._set_hold(call_id, hold=True, reason=reason, actor=actor)

    async def release(self, call_id: str, *, reason: str, actor: Actor) -> list[RecordingRow]:
        return await self._set_hold(call_id, hold=False, reason=reason, actor=actor)

    async def _set_hold(self, call_id: str, *, hold: bool, reason: str,
                        actor: Actor) -> list[RecordingRow]:
        reason = (reason or "").strip()
        if not reason:
            raise RetentionError("a reason is required")
        rows = [r for r in await self.index.for_call(call_id)
                if r.state != State.EXPIRED]
        if not rows:
            raise RetentionError(f"no recording of call {call_id} is kept (none indexed, or "
                                 "all expired)")
        now = self.clock()
        for row in rows:
            if hold:
                await self.index.update(row.id, hold=True, hold_reason=reason)
            else:
                await self.index.update(row.id, hold=False, released_by=actor.name,
                                        released_at=now)
        await self.audit.record(
            actor=actor.name, role=actor.role, origin=actor.origin,
            action="recordings.hold" if hold else "recordings.release",
            target=f"call:{call_id}",
            before=[{"recording_id": r.id, "hold": r.hold, "hold_reason": r.hold_reason}
                    for r in rows],
            after={"hold": hold, "reason": reason}, at=now)
        log.info("event=recordings_%s call_id=%s actor=%s reason=%r",
                 "held" if hold else "released", call_id, actor.name, reason)
        return [r for r in [await self.index.get(r.id) for r in rows] if r is not None]

    async def run_hourly(self, interval: float = 3600.0) -> None:
        """The controller's task: expire at start-up, then every `interval` seconds. A failed
        run is logged and retried next time; it never stops the controller."""
        while True:
            try:
                await self.expire()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("event=recordings_expiry_failed error=%r", exc)
            await asyncio.sleep(interval)
