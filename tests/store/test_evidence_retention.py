"""Retention on both engines: expiry per desk deletes the file and leaves a chained tombstone
(the chain still verifies); held and flagged calls stay until released; live calls and files
not final are never touched; an interrupted expiry is finished by the next run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ivr.recordings.retention import DAY, RetentionError
from ivr.recordings.store_index import State
from ivr.store import Database
from tests.store.conftest import Clock
from tests.store.evidence_helpers import CLI, T0, World, sha256_of

pytestmark = pytest.mark.timeout(60)

@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return World(db, tmp_path / "recordings", Clock(T0))


async def test_expiry_per_desk_leaves_a_chained_tombstone(world: World) -> None:
    support = await world.call("1.1", desk="support")  # 10 days
    legal = await world.call("1.2", desk="legal")  # 0: for ever
    other = await world.call("1.3", desk="sales")  # the default, 30 days
    world.clock.now = T0 + 11 * DAY
    done = await world.retention.expire()
    assert [e.recording_id for e in done] == [support.id]
    assert not (world.root / support.path).exists()
    assert (world.root / legal.path).exists() and (world.root / other.path).exists()
    row = await world.index.get(support.id)
    assert row is not None and row.state == State.EXPIRED
    assert row.deleted_at == pytest.approx(T0 + 11 * DAY) and row.deleted_by == "retention"
    assert "support" in (row.deleted_reason or "") and row.sha256 == support.sha256
    tomb = [e for e in await world.chain.for_recording(support.id) if e.kind == "tombstone"]
    assert len(tomb) == 1 and support.sha256 in tomb[0].entry
    # The chain still verifies: the missing file is accounted for by its tombstone.
    report = await world.evidence.verify()
    assert report.intact, report.problems
    assert report.tombstones == 1 and report.files == 2
    audit = await world.audit.list(action="recordings.expire")
    assert [a.target for a in audit] == ["call:1.1"]
    # 31 days: the default desk's recording goes too; never the legal one.
    world.clock.now = T0 + 31 * DAY
    assert [e.recording_id for e in await world.retention.expire()] == [other.id]
    world.clock.now = T0 + 36500 * DAY
    assert await world.retention.expire() == []


async def test_a_dry_run_changes_nothing(world: World) -> None:
    row = await world.call("2.1", desk="support")
    world.clock.now = T0 + 11 * DAY
    assert [e.recording_id for e in await world.retention.expire(dry_run=True)] == [row.id]
    assert (world.root / row.path).exists()
    assert (await world.index.get(row.id)).state == State.FINAL  # type: ignore[union-attr]
    assert len(await world.chain.entries()) == 1


async def test_keep_until_on_the_row_wins(world: World) -> None:
    row = await world.call("3.1", desk="support", keep_until=T0 + 100 * DAY)
    world.clock.now = T0 + 50 * DAY
    assert await world.retention.expire() == []
    world.clock.now = T0 + 101 * DAY
    assert [e.recording_id for e in await world.retention.expire()] == [row.id]


async def test_held_and_flagged_calls_stay_until_released(world: World) -> None:
    held = await world.call("4.1", desk="support")
    flagged = await world.call("4.2", desk="support", flags="harassment one_sided:caller")
    await world.retention.hold("4.1", reason="police request 123", actor=CLI)
    world.clock.now = T0 + 400 * DAY
    assert await world.retention.expire() == []
    assert (world.root / held.path).exists() and (world.root / flagged.path).exists()
    row = await world.index.get(flagged.id)
    assert row is not None and row.hold and "harassment" in (row.hold_reason or "")
    with pytest.raises(RetentionError, match="reason"):
        await world.retention.release("4.1", reason=" ", actor=CLI)
    released = await world.retention.release("4.1", reason="case closed", actor=CLI)
    assert [r.hold for r in released] == [False] and released[0].released_by == "alice"
    assert [e.recording_id for e in await world.retention.expire()] == [held.id]
    actions = [(a.action, a.actor, a.origin) for a in await world.audit.list(
        action="recordings.", limit=10)]
    assert ("recordings.hold", "alice", "cli") in actions
    assert ("recordings.release", "alice", "cli") in actions
    # The flagged call stays held: only a release lets it go.
    assert not [e for e in await world.retention.expire() if e.recording_id == flagged.id]


async def test_live_calls_and_unfinished_files_are_never_touched(world: World) -> None:
    live = await world.call("5.1", desk="support", ended=False)
    unfinished = await world.call("5.2", desk="support")
    await world.index.update(unfinished.id, state=State.RECORDING)
    world.clock.now = T0 + 400 * DAY
    assert await world.retention.expire() == []
    assert (world.root / live.path).exists() and (world.root / unfinished.path).exists()


async def test_an_interrupted_expiry_is_finished(world: World) -> None:
    row = await world.call("6.1", desk="support")
    # As if the controller died after marking the row and before the tombstone and delete.
    await world.index.update(row.id, state=State.EXPIRED, deleted_at=T0 + 11 * DAY,
                             deleted_by="retention", deleted_reason="retention")
    assert sha256_of(world.root / row.path) == row.sha256
    assert _kinds(await world.evidence.verify()) == ["unchained"]
    world.clock.now = T0 + 12 * DAY
    await world.retention.expire()
    assert not (world.root / row.path).exists()
    assert (await world.evidence.verify()).intact


async def test_hold_of_an_unknown_call_is_refused(world: World) -> None:
    with pytest.raises(RetentionError, match=r"no recording of call 9\.9"):
        await world.retention.hold("9.9", reason="x", actor=CLI)


def _kinds(report) -> list[str]:
    return sorted(p.kind for p in report.problems)


async def test_two_expiries_at_once_tombstone_once(world: World) -> None:
    rows = [await world.call(f"10.{i}", desk="support") for i in range(3)]
    world.clock.now = T0 + 11 * DAY
    first, second = await asyncio.gather(world.retention.expire(), world.retention.expire())
    assert sorted(e.recording_id for e in first + second) == [r.id for r in rows]
    tombstones = [e for e in await world.chain.entries() if e.kind == "tombstone"]
    assert sorted(e.recording_id for e in tombstones) == [r.id for r in rows]
    assert (await world.evidence.verify()).intact


async def test_an_edited_or_missing_file_is_not_expired_but_left_for_verify(world: World) -> None:
    edited = await world.call("11.1", desk="support")
    gone = await world.call("11.2", desk="support")
    (world.root / edited.path).write_bytes(b"not the recording")
    (world.root / gone.path).unlink()
    world.clock.now = T0 + 11 * DAY
    refused = await world.retention.expire()
    assert [(e.recording_id, e.done, e.refused) for e in refused] == [
        (edited.id, False, "sha256 differs from the index"), (gone.id, False, "file missing")]
    assert _kinds(await world.evidence.verify()) == ["deleted_file", "edited_file"]


async def test_only_possibly_due_rows_are_read_and_a_node_expires_its_own(world: World) -> None:
    mine = await world.call("13.1", desk="support")
    theirs = await world.call("13.2", desk="support")
    await world.index.update(theirs.id, node="other")
    await world.index.update(mine.id, node="n1")
    young = await world.call("13.3", desk="support", at=T0 + 9 * DAY)
    world.clock.now = T0 + 11 * DAY
    stmt = world.retention._candidates(world.clock.now)
    assert [r.id for r in await world.index.select(stmt)] == [mine.id, theirs.id]
    world.retention.node = "n1"
    assert [e.recording_id for e in await world.retention.expire()] == [mine.id]
    assert (world.root / theirs.path).exists() and (world.root / young.path).exists()


async def test_a_tombstoned_rows_facts_stay_vouched_for(world: World) -> None:
    row = await world.call("14.1", desk="support")
    world.clock.now = T0 + 11 * DAY
    await world.retention.expire()
    await world.index.update(row.id, caller="0899999999")
    report = await world.evidence.verify()
    assert _kinds(report) == ["altered_row"] and "caller" in report.problems[0].message
