"""`ivr recordings verify` on both engines: an intact chain passes; each kind of tampering
(flipped byte, deleted file, deleted index row, deleted chain row, altered row or entry,
reordered pair) is found and named, and nothing else is reported."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from ivr.protection.store_audit import AuditStore
from ivr.recordings.chain import GENESIS, link_hash
from ivr.recordings.service_evidence import EvidenceService
from ivr.recordings.store_chain import ChainStore
from ivr.recordings.store_index import RecordingIndex, State
from ivr.store import Database
from ivr.store.engine import write_transaction
from ivr.store.tables import recording_chain, recordings
from tests.store.evidence_helpers import archive, sha256_of

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def setup(db: Database, tmp_path: Path):
    root = tmp_path / "recordings"
    index, chain = RecordingIndex(db), ChainStore(db)
    rows = [await archive(index, chain, root, f"170000000{i}.{i}", seed=i) for i in range(4)]
    service = EvidenceService(index, chain, root, audit=AuditStore(db))
    return service, rows, root


async def _sql(db: Database, *statements) -> None:
    async with write_transaction(db.engine) as conn:
        for stmt in statements:
            await conn.execute(stmt)


def _kinds(report) -> list[str]:
    return sorted(p.kind for p in report.problems)


async def test_an_intact_chain_passes_and_gives_its_head(setup) -> None:
    service, rows, root = setup
    report = await service.verify()
    assert report.intact, report.problems
    assert report.files == 4 and report.entries == 4
    # The head recomputed here from the files alone, as a third party would.
    prev = GENESIS
    for entry in await service.chain.entries():
        assert link_hash(prev, entry.entry) == entry.hash
        assert sha256_of(root / rows[entry.seq - 1].path) in entry.entry
        prev = entry.hash
    assert report.head_hash == prev
    assert (await service.verify(anchor=prev)).intact


async def test_a_flipped_byte_is_named(setup) -> None:
    service, rows, root = setup
    path = root / rows[1].path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    report = await service.verify()
    assert _kinds(report) == ["edited_file"]
    problem = report.problems[0]
    assert problem.recording_id == rows[1].id and problem.path == rows[1].path
    assert rows[1].path in problem.message


async def test_a_deleted_file_is_named(setup) -> None:
    service, rows, root = setup
    (root / rows[2].path).unlink()
    report = await service.verify()
    assert _kinds(report) == ["deleted_file"]
    assert report.problems[0].recording_id == rows[2].id


async def test_a_deleted_index_row_is_named(setup, db: Database) -> None:
    service, rows, _ = setup
    await _sql(db, sa.delete(recordings).where(recordings.c.id == rows[0].id))
    report = await service.verify()
    assert _kinds(report) == ["deleted_index_row"]
    assert report.problems[0].recording_id == rows[0].id
    assert rows[0].call_id in report.problems[0].message


async def test_a_deleted_chain_row_is_named(setup, db: Database) -> None:
    service, rows, _ = setup
    await _sql(db, sa.delete(recording_chain).where(recording_chain.c.seq == rows[1].chain_seq))
    report = await service.verify()
    # The gap in the links, and the row whose entry went with it.
    assert _kinds(report) == ["deleted_chain_row", "deleted_chain_row"]
    assert {p.recording_id for p in report.problems} == {rows[1].id, rows[2].id}
    assert f"between seq {rows[0].chain_seq} and seq {rows[2].chain_seq}" in \
        report.problems[0].message + report.problems[1].message


async def test_a_deleted_head_entry_is_caught_by_the_row_and_the_anchor(setup,
                                                                        db: Database) -> None:
    service, rows, _ = setup
    anchor = (await service.verify()).head_hash
    await _sql(db, sa.delete(recording_chain).where(recording_chain.c.seq == rows[3].chain_seq))
    report = await service.verify(anchor=anchor)
    assert _kinds(report) == ["anchor_missing", "deleted_chain_row"]


async def test_an_altered_row_is_named_with_its_field(setup, db: Database) -> None:
    service, rows, _ = setup
    await _sql(db, sa.update(recordings).where(recordings.c.id == rows[2].id)
               .values(caller="0899999999"))
    report = await service.verify()
    assert _kinds(report) == ["altered_row"]
    assert "caller" in report.problems[0].message and "0899999999" in report.problems[0].message


async def test_an_altered_entry_is_named(setup, db: Database) -> None:
    service, rows, _ = setup
    entry = (await service.chain.for_recording(rows[1].id))[0]
    await _sql(db, sa.update(recording_chain).where(recording_chain.c.seq == entry.seq)
               .values(entry=entry.entry.replace("0312345678", "0312345679")))
    report = await service.verify()
    # The entry no longer gives its hash, and the row no longer matches it.
    assert _kinds(report) == ["altered_entry", "altered_row"]
    assert all(p.recording_id == rows[1].id for p in report.problems)


async def test_a_reordered_pair_is_named(setup, db: Database) -> None:
    service, _, _ = setup
    a, b = (await service.chain.entries())[1:3]
    keep = ("kind", "recording_id", "call_id", "entry", "prev_hash", "hash")
    values_a = {k: getattr(a, k) for k in keep}
    values_b = {k: getattr(b, k) for k in keep}
    row = recording_chain.c.seq
    await _sql(db,
               sa.update(recording_chain).where(row == a.seq).values(prev_hash="x", hash="y"),
               sa.update(recording_chain).where(row == b.seq).values(**values_a),
               sa.update(recording_chain).where(row == a.seq).values(**values_b))
    # The rows still point at the seq their entry had: move them too (a careful forger).
    await _sql(db,
               sa.update(recordings).where(recordings.c.id == a.recording_id)
               .values(chain_seq=b.seq),
               sa.update(recordings).where(recordings.c.id == b.recording_id)
               .values(chain_seq=a.seq))
    report = await service.verify()
    assert _kinds(report) == ["reordered"]
    assert f"seq {a.seq}, {b.seq}" in report.problems[0].message


async def test_an_unchained_final_row_is_named(setup, db: Database) -> None:
    service, rows, root = setup
    index = service.index
    extra = rows[0].as_dict() | {"path": "2023/11/14/extra.flac"}
    for key in ("id", "chain_seq", "updated_at"):
        extra.pop(key)
    (root / "2023/11/14/extra.flac").write_bytes((root / rows[0].path).read_bytes())
    rid = await index.add(**extra)
    report = await service.verify()
    assert _kinds(report) == ["unchained"] and report.problems[0].recording_id == rid


async def test_an_expired_row_without_a_tombstone_is_named(setup, db: Database) -> None:
    service, rows, root = setup
    (root / rows[3].path).unlink()
    await service.index.update(rows[3].id, state=State.EXPIRED, deleted_at=1.8e9,
                               deleted_by="mallory", deleted_reason="quietly")
    report = await service.verify()
    assert _kinds(report) == ["unchained"] and report.problems[0].recording_id == rows[3].id
