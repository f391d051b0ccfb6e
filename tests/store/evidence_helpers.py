"""Fabricated archive recordings for the evidence tests: a small stereo FLAC written with
soundfile, hashed with hashlib (not the code under test), indexed and chained the way the
archive does it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import soundfile as sf

from ivr.config import RecordingConfig
from ivr.model import Source
from ivr.protection.service_settings import Actor
from ivr.protection.store_audit import AuditStore
from ivr.recordings.chain import final_entry
from ivr.recordings.retention import RetentionService
from ivr.recordings.service_evidence import EvidenceService
from ivr.recordings.store_chain import ChainStore
from ivr.recordings.store_index import RecordingIndex, RecordingRow, State
from ivr.recordings.verify import row_fields
from ivr.service import CallService
from ivr.store import CallStore, Database
from tests.store.conftest import Clock

T0 = 1_700_000_000.0
RATE = 8000
CLI = Actor(name="alice", role="admin", origin="cli")


def write_flac(path: Path, seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    left = 0.3 * np.sin(2 * np.pi * (300 + seed) * t)
    right = 0.1 * rng.standard_normal(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack([left, right], axis=1), RATE, format="FLAC", subtype="PCM_16")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def archive(index: RecordingIndex, chain: ChainStore, root: Path, call_id: str, *,
                  desk: str = "support", at: float = T0, seconds: float = 1.0,
                  flags: str = "", kind: str = "call", seed: int = 1,
                  keep_until: float | None = None, hold: bool = False) -> RecordingRow:
    suffix = "" if kind == "call" else "-called"
    rel = f"2023/11/14/{call_id}{suffix}.flac"
    write_flac(root / rel, seconds, seed)
    rid = await index.add(call_id=call_id, kind=kind, path=rel, format="flac",
                          state=State.FINAL, caller="0312345678", did="0399000000",
                          desk=desk, operator="op1001", outcome="answered", flags=flags,
                          started_at=at, duration=seconds, size=(root / rel).stat().st_size,
                          sha256=sha256_of(root / rel), finalised_at=at + seconds + 0.5,
                          caller_audio=1.0, other_audio=1.0, keep_until=keep_until,
                          hold=hold)
    row = await index.get(rid)
    assert row is not None
    entry = await chain.append(kind="final", recording_id=rid, call_id=call_id,
                               entry=final_entry(row_fields(row)))
    await index.update(rid, chain_seq=entry.seq)
    row = await index.get(rid)
    assert row is not None
    return row


async def ended_call(calls: CallService, call_id: str, *, at: float = T0,
                     ended: bool = True) -> None:
    await calls.call_started(call_id, caller="0312345678", did="0399000000",
                             recording_path=f"2023/11/14/{call_id}.wav", source=Source.AMI,
                             started_at=at)
    if ended:
        await calls.hung_up(call_id, 16, "Normal Clearing", at=at + 30)


SETTINGS = RecordingConfig(retention_days=30, retention={"support": 10, "legal": 0})


class World:
    def __init__(self, db: Database, root: Path, clock: Clock):
        self.db, self.root, self.clock = db, root, clock
        self.index, self.chain = RecordingIndex(db, clock=clock), ChainStore(db, clock=clock)
        self.audit = AuditStore(db, clock=clock)
        self.calls = CallService(CallStore(db), node="n1")
        self.retention = RetentionService(self.index, self.chain, root, SETTINGS,
                                          audit=self.audit, calls=self.calls.store, clock=clock)
        self.evidence = EvidenceService(self.index, self.chain, root, audit=self.audit,
                                        calls=self.calls.store, clock=clock)

    async def call(self, call_id: str, *, ended: bool = True, **kw):
        await ended_call(self.calls, call_id, ended=ended)
        return await archive(self.index, self.chain, self.root, call_id,
                             seed=len(call_id), **kw)
