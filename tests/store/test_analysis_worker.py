"""The analysis worker on both engines: the index is its queue (pending → done | failed),
a restart picks up what was pending, a bad file fails its row and nothing else."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ivr.recordings.archive import sha256_of, write_atomic
from ivr.recordings.service_analysis import AnalysisError, AnalysisWorker
from ivr.recordings.store_index import AnalysisState, RecordingIndex, State
from ivr.store import Database

RATE = 8000


def call_audio(seconds: float, loud_at: float | None = None, seed: int = 1) -> np.ndarray:
    """Talk-like noise at about -26 dBFS, 20 dB louder for 4 s from `loud_at`."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    envelope = np.repeat(rng.uniform(0.02, 0.08, n // 1600 + 1), 1600)[:n]
    if loud_at is not None:
        envelope[int(loud_at * RATE):int((loud_at + 4) * RATE)] *= 10.0
    return np.clip(rng.normal(0, 1, n) * envelope * 32767, -32768, 32767).astype(np.int16)


async def archived(index: RecordingIndex, folder: Path, call_id: str, *, loud_at=None,
                   fmt: str = "flac", node: str = "n1") -> int:
    rel = f"2026/11/25/{call_id}.{fmt}"
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, call_audio(40.0, loud_at), call_audio(40.0, seed=2), fmt)
    _size, digest = sha256_of(path)
    return await index.add(call_id=call_id, kind="call", path=rel, format=fmt,
                           state=State.FINAL, sha256=digest, node=node)


async def test_pending_rows_are_analysed_and_stored(db: Database, tmp_path: Path) -> None:
    index = RecordingIndex(db)
    loud = await archived(index, tmp_path, "c-loud", loud_at=21.0)
    calm = await archived(index, tmp_path, "c-calm", fmt="wav")
    elsewhere = await archived(index, tmp_path, "c-other-node", node="n2")
    worker = AnalysisWorker(index, tmp_path, node="n1", clock=lambda: 1_700_000_000.0)
    assert [r.id for r in await worker.pending()] == [loud, calm]

    assert await worker.drain() == 2
    row = await index.get(loud)
    assert row is not None and row.analysis_state == AnalysisState.DONE
    assert row.shouting == 1 and row.analysed_at == 1_700_000_000.0
    [episode] = row.analysis["caller"]["episodes"]
    assert episode["start"] == pytest.approx(21.0, abs=0.2)
    assert row.analysis["sha256"] == row.sha256
    calm_row = await index.get(calm)
    assert calm_row.analysis_state == AnalysisState.DONE and calm_row.shouting == 0
    # Another node's file is on that node's disk: left to it.
    assert (await index.get(elsewhere)).analysis_state == AnalysisState.PENDING
    assert await worker.pending() == []


async def test_a_restart_picks_up_what_was_pending(db: Database, tmp_path: Path) -> None:
    index = RecordingIndex(db)
    first = await archived(index, tmp_path, "c1", loud_at=5.0)

    started = threading.Event()

    def stuck(path: Path, sha256: str | None) -> dict:
        started.set()
        time.sleep(0.5)
        raise AnalysisError("never stored: the worker was stopped meanwhile")

    slow = AnalysisWorker(index, tmp_path, node="n1", poll_s=0.05, analyse_path=stuck)
    await slow.start()
    await asyncio.wait_for(asyncio.to_thread(started.wait, 5), 6)
    await slow.stop()  # "killed" mid-analysis: the row stays pending
    assert (await index.get(first)).analysis_state == AnalysisState.PENDING

    second = await archived(index, tmp_path, "c2")
    worker = AnalysisWorker(index, tmp_path, node="n1", poll_s=0.05)
    await worker.start()
    try:
        await asyncio.wait_for(_until_done(index, [first, second]), 10)
        # Woken by the archive service: a row added later is taken at once.
        third = await archived(index, tmp_path, "c3")
        worker.wake(third)
        await asyncio.wait_for(_until_done(index, [third]), 10)
    finally:
        await worker.stop()
    assert (await index.get(first)).shouting == 1


async def test_bad_files_fail_their_row_only(db: Database, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    index = RecordingIndex(db)
    corrupt = await archived(index, tmp_path, "c-corrupt")
    path = tmp_path / (await index.get(corrupt)).path
    path.write_bytes(b"fLaC" + b"\x00" * 100)  # and the index's sha256 no longer matches
    await index.update(corrupt, sha256=sha256_of(path)[1])  # ... now it does: a bad file
    missing = await archived(index, tmp_path, "c-missing")
    (tmp_path / (await index.get(missing)).path).unlink()
    edited = await archived(index, tmp_path, "c-edited")
    edited_path = tmp_path / (await index.get(edited)).path
    edited_path.write_bytes(edited_path.read_bytes()[:-10])
    escape = await index.add(call_id="c-escape", kind="call", path="../../etc/passwd",
                             format="wav", state=State.FINAL, node="n1")
    good = await archived(index, tmp_path, "c-good", loud_at=10.0)

    worker = AnalysisWorker(index, tmp_path, node="n1")
    with caplog.at_level(logging.WARNING, logger="ivr.recordings.analysis"):
        assert await worker.drain() == 5
    for rid, reason in ((corrupt, "cannot read"), (missing, "no such file"),
                        (edited, "is not the indexed"), (escape, "not a path inside")):
        row = await index.get(rid)
        assert row.analysis_state == AnalysisState.FAILED, row
        assert reason in row.analysis["error"]
        assert f"event=analysis_failed call_id={row.call_id} recording_id={rid}" in caplog.text
    assert (await index.get(good)).analysis_state == AnalysisState.DONE
    assert (await index.get(good)).shouting == 1
    assert await worker.pending() == []  # failed rows are not retried forever


async def _until_done(index: RecordingIndex, ids: list[int]) -> None:
    while True:
        rows = [await index.get(i) for i in ids]
        if all(r.analysis_state == AnalysisState.DONE for r in rows):
            return
        await asyncio.sleep(0.05)


async def test_an_unexpected_error_fails_the_row_and_the_queue_goes_on(
        db: Database, tmp_path: Path) -> None:
    index = RecordingIndex(db)
    first = await archived(index, tmp_path, "c-boom")
    second = await archived(index, tmp_path, "c-fine")

    def analyse_path(path: Path, sha256: str | None) -> dict:
        if "c-boom" in path.name:
            raise RuntimeError("a bug in the analysis")
        from ivr.recordings.service_analysis import analyse_file
        return analyse_file(path, sha256)

    worker = AnalysisWorker(index, tmp_path, node="n1", analyse_path=analyse_path)
    assert await worker.drain() == 2
    failed = await index.get(first)
    assert failed.analysis_state == AnalysisState.FAILED
    assert failed.analysis == {"error": "RuntimeError: a bug in the analysis"}
    assert (await index.get(second)).analysis_state == AnalysisState.DONE
