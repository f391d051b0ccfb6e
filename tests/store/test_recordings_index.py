"""The recordings index and its hash chain, on both engines."""

from __future__ import annotations

import asyncio

from ivr.recordings.chain import GENESIS, canonical, final_entry, link_hash
from ivr.recordings.store_chain import ChainStore
from ivr.recordings.store_index import RecordingIndex, State
from ivr.store import Database


async def test_index_row_round_trip(db: Database) -> None:
    index = RecordingIndex(db)
    rid = await index.add(call_id="c1", kind="call", path="2026/11/25/c1.flac", format="flac",
                          state=State.RECORDING, caller="0312345678", started_at=1.7e9 + 0.25)
    await index.update(rid, state=State.FINAL, sha256="ab" * 32, size=1234, duration=12.5,
                       analysis={"caller": {"episodes": []}})
    row = await index.get(rid)
    assert row is not None and row.state == State.FINAL and row.size == 1234
    assert row.started_at == 1.7e9 + 0.25 and row.analysis == {"caller": {"episodes": []}}
    assert [r.id for r in await index.for_call("c1")] == [rid]
    assert await index.paths() == {"2026/11/25/c1.flac"}


async def test_chain_links_each_entry_to_the_previous(db: Database) -> None:
    chain = ChainStore(db)
    first = await chain.append(kind="final", recording_id=1, call_id="c1",
                               entry=final_entry({"recording_id": 1, "call_id": "c1"}))
    second = await chain.append(kind="final", recording_id=2, call_id="c2",
                                entry=final_entry({"recording_id": 2, "call_id": "c2"}))
    assert first.prev_hash == GENESIS and second.prev_hash == first.hash
    stored = await chain.entries()
    assert [e.hash for e in stored] == [first.hash, second.hash]
    # Recomputed from the stored text alone, as a third party would.
    assert link_hash(stored[0].hash, stored[1].entry) == stored[1].hash
    assert stored[1].entry == canonical(final_entry({"recording_id": 2, "call_id": "c2"}))


async def test_concurrent_appends_never_fork(db: Database) -> None:
    chain = ChainStore(db)
    await asyncio.gather(*(chain.append(kind="final", recording_id=i, call_id=f"c{i}",
                                        entry={"n": i}) for i in range(20)))
    entries = await chain.entries()
    assert len(entries) == 20
    prev = GENESIS
    for entry in entries:
        assert entry.prev_hash == prev
        prev = entry.hash
