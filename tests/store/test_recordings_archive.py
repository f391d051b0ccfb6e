"""Archiving finalised recordings (ArchiveService, RecordingFinaliser, start-up reconcile),
on both engines, with files a fake Asterisk leaves (mono mix + legs)."""

from __future__ import annotations

import hashlib
import logging
import wave
from pathlib import Path

import numpy as np
import pytest

from ivr.config import RecordingConfig
from ivr.model import Source
from ivr.recording import RecordingFinaliser
from ivr.recordings import archive
from ivr.recordings.chain import GENESIS, canonical, final_entry, link_hash
from ivr.recordings.reconcile import RecordingReconciler
from ivr.recordings.service_archive import ArchiveService
from ivr.recordings.store_chain import ChainStore
from ivr.recordings.store_index import RecordingIndex, State
from ivr.service import CallService
from ivr.store import CallStore, Database

pytestmark = pytest.mark.timeout(60)
T0 = 1_700_000_000.0
DAY = "2026/11/25"


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(samples.astype("<i2").tobytes())


def tone(seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-4000, 4000, round(seconds * 8000)).astype(
        np.int16)


class Rig:
    def __init__(self, db: Database, root: Path, *, fmt: str = "flac", node: str = "n1",
                 **config):
        self.root = root
        self.calls = CallService(CallStore(db), node=node, clock=lambda: T0 + 60)
        self.index = RecordingIndex(db)
        self.chain = ChainStore(db)
        self.service = ArchiveService(self.calls, self.index, self.chain,
                                      RecordingConfig(format=fmt, **config), root, node=node,
                                      clock=lambda: T0 + 70)
        self.finaliser = RecordingFinaliser(self.calls, archive=self.service, close_timeout=2)
        self.finals: list = []
        self.service.on_final.append(self.finals.append)

    def files(self, stem: str, said: np.ndarray, heard: np.ndarray, *,
              legs: bool = True) -> Path:
        folder = self.root / DAY
        folder.mkdir(parents=True, exist_ok=True)
        n = max(len(said), len(heard))
        write_wav(folder / f"{stem}.wav", archive.stereo(said, heard).sum(axis=1).clip(
            -32768, 32767))
        if legs:
            write_wav(folder / f"{stem}-rx.wav", said)
            write_wav(folder / f"{stem}-tx.wav", heard)
        assert n
        return folder / f"{stem}.wav"

    async def call(self, call_id: str, *, direction: str = "inbound", flags: str | None = None,
                   desk: str = "sales") -> None:
        path = str(self.root / DAY / f"{call_id}.wav")
        await self.calls.call_started(call_id, caller="0312345678", did="0501234567",
                                      recording_path=path, source=Source.CONTROLLER,
                                      started_at=T0, direction=direction)
        await self.calls.routed(call_id, desk, "test")
        await self.calls.connected(call_id, "op1001", 3)
        if flags:
            await self.calls.store.update(call_id, flags=flags)
        await self.calls.hung_up(call_id, 16, "Normal Clearing")
        await self.calls.store.flush()


async def test_a_call_becomes_one_stereo_archive_indexed_and_chained(db, tmp_path):
    rig = Rig(db, tmp_path)
    said, heard = tone(4, 1), tone(4, 2)
    recording = rig.files("c1", said, heard)
    await rig.call("c1")

    facts = await rig.finaliser.finalise("c1", recording)

    assert facts is not None
    folder = tmp_path / DAY
    assert sorted(p.name for p in folder.iterdir()) == ["c1.flac"], "legs and mix removed"
    left, right, rate = archive.read_sides(folder / "c1.flac")
    assert rate == 8000 and np.array_equal(left, said) and np.array_equal(right, heard)
    [row] = await rig.index.for_call("c1")
    data = (folder / "c1.flac").read_bytes()
    assert row.path == f"{DAY}/c1.flac" and row.kind == "call" and row.format == "flac"
    assert row.state == State.FINAL and row.origin == "finaliser" and row.node == "n1"
    assert row.sha256 == hashlib.sha256(data).hexdigest() and row.size == len(data)
    assert row.duration == pytest.approx(4.0)
    assert (row.caller, row.did, row.desk, row.operator) == ("0312345678", "0501234567",
                                                              "sales", "op1001")
    assert row.outcome == "answered" and row.direction == "inbound" and row.flags == ""
    assert row.caller_audio == 1.0 and row.other_audio == 1.0
    # Analysed as it was archived, from the samples written (no second decode).
    assert row.analysis_state == "done" and row.analysis["sha256"] == row.sha256
    assert not row.hold
    assert row.keep_until == pytest.approx(T0 + 365 * 86400)
    [entry] = await rig.chain.entries()
    assert entry.seq == row.chain_seq and entry.prev_hash == GENESIS
    assert entry.entry == canonical(final_entry({**row.as_dict(), "recording_id": row.id}))
    assert entry.hash == link_hash(GENESIS, entry.entry)
    record = await rig.calls.get("c1")
    assert record.recording_path == str(folder / "c1.flac")
    assert record.recording_sha256 == row.sha256
    assert rig.finals == [row], "the on_final hook saw the committed row"


async def test_wav_format_replaces_the_mono_mix(db, tmp_path):
    rig = Rig(db, tmp_path, fmt="wav")
    recording = rig.files("c2", tone(2, 3), tone(2, 4))
    await rig.call("c2")
    await rig.finaliser.finalise("c2", recording)
    folder = tmp_path / DAY
    assert sorted(p.name for p in folder.iterdir()) == ["c2.wav"]
    assert archive.channels(folder / "c2.wav") == 2
    [row] = await rig.index.for_call("c2")
    assert row.format == "wav" and row.path == f"{DAY}/c2.wav"


async def test_a_silent_side_is_flagged_and_flagged_calls_are_held(db, tmp_path):
    rig = Rig(db, tmp_path, retention={"sales": 30})
    said = np.zeros(8000 * 10, dtype=np.int16)
    said[: 8000 * 3] = tone(3, 5)  # the caller stopped sending after 3 s
    recording = rig.files("c3", said, tone(10, 6))
    await rig.call("c3", flags="harassment")
    await rig.finaliser.finalise("c3", recording)
    [row] = await rig.index.for_call("c3")
    assert row.caller_audio == pytest.approx(0.3) and row.other_audio == 1.0
    assert row.flag_list == ["harassment", "one_sided:caller"]
    assert row.hold and "harassment" in row.hold_reason
    assert row.keep_until == pytest.approx(T0 + 30 * 86400)
    assert row.duration == pytest.approx(10.0), "the archive still covers the whole call"


async def test_outbound_far_end_left_and_the_called_party_second(db, tmp_path):
    rig = Rig(db, tmp_path)
    operator, far_end = tone(5, 7), tone(5, 8)
    recording = rig.files("o1", operator, far_end)  # the operator's channel: said, heard
    notice_and_operator = tone(4, 9)
    rig.files("o1-called", far_end[:32000], notice_and_operator)
    await rig.call("o1", direction="outbound")

    await rig.finaliser.finalise("o1", recording)

    call, called = await rig.index.for_call("o1")
    assert (call.kind, called.kind) == ("call", "called")
    left, right, _ = archive.read_sides(tmp_path / call.path)
    assert np.array_equal(left, far_end) and np.array_equal(right, operator)
    left, right, _ = archive.read_sides(tmp_path / called.path)
    assert np.array_equal(left, far_end[:32000]) and np.array_equal(right,
                                                                     notice_and_operator)
    assert sorted(p.name for p in (tmp_path / DAY).iterdir()) == ["o1-called.flac", "o1.flac"]
    entries = await rig.chain.entries()
    assert [e.recording_id for e in entries] == [call.id, called.id]
    events = [e["kind"] for e in await rig.calls.events("o1")]
    assert "called_recording_finalised" in events


async def test_finalising_again_after_a_crash_does_not_double(db, tmp_path):
    """Crash after the archive was indexed but before the legs went: finalising again (the
    call still has no hash: the writer had not committed it) completes without a 2nd row."""
    rig = Rig(db, tmp_path)
    recording = rig.files("c4", tone(2, 10), tone(2, 11))
    await rig.call("c4")
    await rig.finaliser.finalise("c4", recording)
    rig.files("c4", tone(2, 10), tone(2, 11))  # leftovers of the crash: stale legs again
    (tmp_path / DAY / "c4-rx.wav").unlink()

    await rig.finaliser.finalise("c4", recording)

    assert len(await rig.index.for_call("c4")) == 1
    assert len(await rig.chain.entries()) == 1
    assert sorted(p.name for p in (tmp_path / DAY).iterdir()) == ["c4.flac"]


async def test_reconcile_indexes_archives_finalises_leftovers_reports_missing(
        db, tmp_path, caplog):
    rig = Rig(db, tmp_path)
    folder = tmp_path / DAY
    # 1. An archive written just before a crash: no row.
    rig.files("r1", tone(1, 12), tone(1, 13))
    await rig.call("r1")
    archive.build(folder / "r1.flac", tone(1, 12), tone(1, 13), "flac")
    # 2. A finalisation cut short before the archive: mix and legs of an ended call.
    rig.files("r2", tone(2, 14), tone(2, 15))
    await rig.call("r2")
    # 3. A final row whose file is gone.
    rig.files("r3", tone(1, 16), tone(1, 17))
    await rig.call("r3")
    await rig.finaliser.finalise("r3", folder / "r3.wav")
    (folder / "r3.flac").unlink()
    # 4. A live call's files: untouched.
    rig.files("r4", tone(1, 18), tone(1, 19))
    await rig.calls.call_started("r4", caller="03", did="05", source=Source.CONTROLLER,
                                 recording_path=str(folder / "r4.wav"), started_at=T0)
    # 5. Another node's call: untouched.
    other = CallService(rig.calls.store, node="n2", clock=lambda: T0)
    await other.call_started("r5", caller="03", did="05", source=Source.CONTROLLER,
                             recording_path=str(folder / "r5.wav"), started_at=T0)
    await other.hung_up("r5", 16, "Normal Clearing")
    rig.files("r5", tone(1, 20), tone(1, 21))
    await rig.calls.store.flush()

    with caplog.at_level(logging.INFO, logger="ivr.recording"):
        report = await RecordingReconciler(rig.service, rig.finaliser).run()

    assert sorted(report.scheduled) == ["r1", "r2"] and report.missing == [f"{DAY}/r3.flac"]
    [r1] = await rig.index.for_call("r1")
    assert r1.origin == "reconcile" and r1.state == State.FINAL and r1.chain_seq is not None
    assert r1.sha256 == hashlib.sha256((folder / "r1.flac").read_bytes()).hexdigest()
    [r2] = await rig.index.for_call("r2")
    assert r2.origin == "reconcile" and r2.duration == pytest.approx(2.0)
    [r3] = await rig.index.for_call("r3")
    assert r3.state == State.FINAL, "reported, not changed"
    assert "event=recording_missing call_id=r3" in caplog.text
    assert "recording_missing" in [e["kind"] for e in await rig.calls.events("r3")]
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["r1.flac", "r2.flac", "r4-rx.wav", "r4-tx.wav", "r4.wav",
                     "r5-rx.wav", "r5-tx.wav", "r5.wav"]
    assert await rig.index.for_call("r4") == [] and await rig.index.for_call("r5") == []
    # Chain intact across finaliser and reconcile entries.
    prev = GENESIS
    for entry in await rig.chain.entries():
        assert entry.prev_hash == prev and link_hash(prev, entry.entry) == entry.hash
        prev = entry.hash
    # Twice is harmless.
    again = await RecordingReconciler(rig.service, rig.finaliser).run()
    assert again.scheduled == [] and again.chained == 0


async def test_a_row_without_its_chain_entry_is_chained_at_start_up(db, tmp_path):
    rig = Rig(db, tmp_path)
    archive.build(tmp_path / "x.flac", tone(1, 22), tone(1, 23), "flac")
    rid = await rig.index.add(call_id="x", kind="call", path="x.flac", format="flac",
                              state=State.FINAL, node="n1", sha256="00" * 32)
    report = await RecordingReconciler(rig.service, rig.finaliser).run()
    assert report.chained == 1
    row = await rig.index.get(rid)
    [entry] = await rig.chain.for_recording(rid)
    assert row.chain_seq == entry.seq
