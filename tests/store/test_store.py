"""The store on SQLite and PostgreSQL alike (db_url runs each test on both)."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from ivr.model import CallRecord, Source
from ivr.service import CallService
from ivr.store import CallStore, Database
from ivr.store.tables import calls

# A store test that hangs is a bug in the writer: fail fast.
pytestmark = pytest.mark.timeout(60)
T0 = 1_700_000_000.125


def approx(value: float):
    # Epoch seconds are ~1.7e9: the default relative tolerance would allow half an hour.
    return pytest.approx(value, abs=1e-3)


@pytest.fixture
async def store(db_url):
    db = await Database(db_url).open()
    yield CallStore(db)
    await db.close()


async def test_round_trip(store):
    assert await store.ensure_call("c1", node="n1", started_at=T0, source="ami") is True
    assert await store.ensure_call("c1", node="n1", started_at=T0 + 5, source="cdr") is False
    await store.update("c1", caller="0312345678", answered_at=T0 + 0.5, hangup_cause=16,
                       failsafe=1, recording_duration=12.5)
    await store.update("c1", only_if_null=True, caller="099", desk="sales", did=None)
    await store.add_event("c1", "menu", T0 + 1, {"menu": "main", "日本語": "はい"})
    await store.add_event("c1", "routed", T0 + 2)
    record = await store.get("c1")
    assert record is not None and record.node == "n1" and record.source == "ami"
    assert record.started_at == approx(T0)
    assert record.answered_at == approx(T0 + 0.5)
    assert record.caller == "0312345678" and record.desk == "sales" and record.did is None
    assert record.failsafe is True and record.hangup_cause == 16
    assert record.recording_duration == 12.5
    assert await store.events("c1") == [
        {"at": approx(T0 + 1), "kind": "menu", "data": {"menu": "main", "日本語": "はい"}},
        {"at": approx(T0 + 2), "kind": "routed", "data": {}},
    ]
    assert await store.exists("c1") and not await store.exists("nope")
    assert await store.get("nope") is None
    with pytest.raises(ValueError, match="not call record columns"):
        await store.update("c1", started_at=1.0)


async def test_recent_order_and_json_shape(store):
    for i in range(3):
        await store.ensure_call(f"c{i}", node="n1", started_at=T0 + i, source="controller")
    recent = await store.recent(2)
    assert [r.id for r in recent] == ["c2", "c1"]
    assert recent[0].to_json()["started_at"] == "2023-11-14T22:13:22.125Z"


async def test_writes_do_not_wait_for_the_commit(store):
    await store.ensure_call("c1", node="n1", started_at=T0, source="ami")
    writer = store.db.writer
    await store.update("c1", desk="sales")
    await store.add_event("c1", "routed", T0)
    await store.add_operator_event(T0, "op1001", "sales", "login", "", "cli")
    assert writer.pending == 3  # queued, not yet committed
    await store.flush()
    assert writer.pending == 0
    # Committed: another connection sees it without going through the store.
    async with store.db.engine.connect() as conn:
        desk = (await conn.execute(sa.select(calls.c.desk))).scalar()
    assert desk == "sales"
    assert [e["action"] for e in await store.operator_events("op1001")] == ["login"]


async def test_writer_batches_and_keeps_order_under_concurrency(store):
    await store.ensure_call("c1", node="n1", started_at=T0, source="ami")
    writer = store.db.writer
    batches_before = writer.batches
    order: list[tuple[int, int]] = []

    async def task(t: int) -> None:
        for i in range(20):
            order.append((t, i))
            await store.add_event("c1", "tick", T0, {"t": t, "i": i})
            await asyncio.sleep(0)

    await asyncio.gather(*(task(t) for t in range(100)))
    await store.flush()
    async with store.db.engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT data FROM call_events ORDER BY id"))
        import json
        seen = [(d["t"], d["i"]) for d in (json.loads(r.data) for r in rows)]
    assert seen == order and len(seen) == 2000
    assert writer.batches - batches_before <= 100, writer.batches  # 2000 ops, few commits
    assert writer.failed == 0


async def test_prepared_updates_in_one_batch_keep_their_order(store):
    """Consecutive updates of one column set go as one executemany: still in order, and
    only_if_null (COALESCE) still lets the first report win."""
    for cid in ("c1", "c2"):
        await store.ensure_call(cid, node="n1", started_at=T0, source="ami")
    await store.update("c1", desk="sales")
    await store.update("c2", desk="billing")
    await store.update("c1", desk="support")  # same statement: the later one wins
    await store.update("c2", desk="sales", only_if_null=True)  # already set: kept
    await store.update("c1", operator="op1", only_if_null=True)  # was NULL: set
    await store.update("c1", operator="op2", only_if_null=True)  # first report wins
    await store.add_event("c1", "between", T0)
    await store.update("c2", operator="op3", desk="sales")
    await store.flush()
    one, two = await store.get("c1"), await store.get("c2")
    assert (one.desk, one.operator) == ("support", "op1")
    assert (two.desk, two.operator) == ("sales", "op3")
    assert [e["kind"] for e in await store.events("c1")] == ["between"]
    assert store.db.writer.failed == 0


async def test_calls_interleaved_in_one_batch_go_as_one_executemany_per_statement(db_url):
    """Three calls' events and record updates, interleaved as calls interleave, queued in one
    batch window: the three calls' writes of each step share one executemany per statement
    (27 writes, 9 statements), and each call's writes keep their order (timeline order, the
    later update winning, the first report winning with only_if_null)."""
    db = await Database(db_url, window=0.5).open()  # long enough to gather everything
    try:
        store = CallStore(db)
        for cid in ("c1", "c2", "c3"):
            await store.ensure_call(cid, node="n1", started_at=T0, source="ami")
        before = dict(db.statements)
        for step in range(3):
            for cid in ("c1", "c2", "c3"):
                await store.add_event(cid, f"step{step}", T0, {"call": cid})
                await store.update(cid, desk=f"{cid}-desk{step}")
                await store.update(cid, operator=f"{cid}-op{step}", only_if_null=True)
        await store.flush()
        sent = {k: v - before.get(k, 0) for k, v in db.statements.items()
                if v != before.get(k, 0)}
        # A call's next step may not pass its own update: one run per step and statement.
        assert sent.get("INSERT call_events") == 3, sent
        assert sent.get("UPDATE calls") == 6, sent  # two column sets per step
        for cid in ("c1", "c2", "c3"):
            record = await store.get(cid)
            assert record is not None
            assert (record.desk, record.operator) == (f"{cid}-desk2", f"{cid}-op0")
            # Same `at`: the timeline falls back to insertion order, kept per call.
            assert [e["kind"] for e in await store.events(cid)] == ["step0", "step1", "step2"]
        assert db.writer.failed == 0
    finally:
        await db.close()


async def test_a_waiting_write_does_not_wait_out_the_batch_window(db_url):
    """Queued writes wait for the window to gather more; a write someone awaits (a new
    call's record, a flush) ends the window at once."""
    db = await Database(db_url, window=30.0).open()
    try:
        store = CallStore(db)
        await store.ensure_call("c1", node="n1", started_at=T0, source="ami")
        await store.add_event("c1", "queued", T0)  # starts a 30 s window
        await asyncio.sleep(0.05)
        # Under the test's 60 s timeout only if the window ended early.
        assert await asyncio.wait_for(store.ensure_call("c2", node="n1", started_at=T0,
                                                        source="ami"), 10) is True
        assert [e["kind"] for e in await store.events("c1")] == ["queued"]
    finally:
        await db.close()


async def test_a_read_of_one_call_waits_for_that_calls_writes_only(db_url):
    """Reading a call commits its own queued writes first (a reader sees what was written
    before it asked), but not the other calls': their writes keep gathering."""
    db = await Database(db_url, window=30.0).open()
    try:
        store = CallStore(db)
        for cid in ("c1", "c2"):
            await store.ensure_call(cid, node="n1", started_at=T0, source="ami")
        await store.update("c2", desk="billing")  # queued: a 30 s window starts
        assert (await store.get("c1")).desk is None
        assert db.writer.pending == 1  # c1's read forced no commit of c2's write
        await store.update("c1", desk="sales")
        assert (await asyncio.wait_for(store.get("c1"), 10)).desk == "sales"
        assert [e for e in await store.events("c2")] == []  # waits for c2's update too
        assert db.writer.pending == 0
        assert (await store.get("c2")).desk == "billing"
    finally:
        await db.close()


async def test_a_bad_write_does_not_lose_the_others(store, caplog):
    await store.ensure_call("c1", node="n1", started_at=T0, source="ami")
    await store.add_event("c1", "before", T0)
    await store.add_event("no-such-call", "orphan", T0)  # foreign key: can never be applied
    await store.add_event("c1", "after", T0 + 1)
    await store.flush()
    assert [e["kind"] for e in await store.events("c1")] == ["before", "after"]
    assert store.db.writer.failed == 1
    assert "store_write_failed" in caplog.text


async def test_close_drains_the_queue(db_url):
    db = await Database(db_url).open()
    store = CallStore(db)
    await store.ensure_call("c1", node="n1", started_at=T0, source="ami")
    for i in range(300):
        await store.add_event("c1", "tick", T0 + i)
    await db.close()
    async with Database(db_url) as db2:
        assert len(await CallStore(db2).events("c1")) == 300


async def test_finish_call_exactly_once(db_url):
    # Two processes (nodes) and several finishers each race to end the same call.
    a, b = await Database(db_url).open(), await Database(db_url).open()
    try:
        sa_, sb = CallStore(a), CallStore(b)
        await sa_.ensure_call("c1", node="n1", started_at=T0, source="ami")
        await sa_.update("c1", connected_at=T0 + 10)
        await sa_.add_event("c1", "connected", T0 + 10, {"operator": "op1001"})
        await sa_.flush()  # another process reads only what this one has committed
        seen: list[tuple[CallRecord, list[dict]]] = []

        def decide(record: CallRecord, events: list[dict]) -> dict:
            seen.append((record, events))
            return {"outcome": "answered", "ended_at": T0 + 20, "hangup_cause": 16}

        results = await asyncio.gather(*(s.finish_call("c1", decide)
                                         for s in (sa_, sb, sa_, sb, sa_, sb)))
        winners = [r for r in results if r is not None]
        assert len(winners) == 1 and len(seen) == 1
        assert winners[0].outcome == "answered"
        assert winners[0].ended_at == approx(T0 + 20)
        record, events = seen[0]
        assert record.connected_at == approx(T0 + 10) and record.ended_at is None
        assert events == [{"at": approx(T0 + 10), "kind": "connected",
                           "data": {"operator": "op1001"}}]
        assert await sb.finish_call("c1", decide) is None
        assert await sa_.finish_call("missing", decide) is None
    finally:
        await a.close()
        await b.close()


async def test_finish_call_defaults_ended_at_and_rolls_back_on_error(store):
    store.clock = lambda: T0 + 99
    await store.ensure_call("c1", node="n1", started_at=T0, source="ami")

    def broken(record, events):
        raise RuntimeError("policy bug")

    with pytest.raises(RuntimeError):
        await store.finish_call("c1", broken)
    assert (await store.get("c1")).ended_at is None
    ended = await store.finish_call("c1", lambda r, e: {"outcome": "abandoned_in_menu"})
    assert ended.ended_at == approx(T0 + 99)


async def test_node_filters(store):
    for call_id, node in (("a1", "n1"), ("a2", "n1"), ("b1", "n2")):
        await store.ensure_call(call_id, node=node, started_at=T0, source="ami")
        await store.update(call_id, recording_path=f"/r/{call_id}.wav")
    await store.update("a2", ended_at=T0 + 5)
    await store.update("b1", ended_at=T0 + 5)
    assert {r.id for r in await store.open_calls()} == {"a1"}
    assert {r.id for r in await store.open_calls("n2")} == set()
    assert {r.id for r in await store.unfinalised_recordings()} == {"a2", "b1"}
    assert {r.id for r in await store.unfinalised_recordings("n1")} == {"a2"}
    await store.update("a2", recording_sha256="ab" * 32, recording_duration=1.0)
    assert {r.id for r in await store.unfinalised_recordings("n1")} == set()


async def test_node_state(store):
    assert await store.get_state("n1", "cdr_offset") is None
    await store.set_state("n1", "cdr_offset", "100")
    await store.set_state("n2", "cdr_offset", "7")
    await store.set_state("n1", "cdr_offset", "250")
    assert await store.get_state("n1", "cdr_offset") == "250"
    assert await store.get_state("n2", "cdr_offset") == "7"


async def test_call_service_lifecycle(store):
    service = CallService(store, node="n1", clock=lambda: T0 + 30)
    await service.call_started("c1", caller="03", did="05", recording_path="/r/c1.wav",
                               source=Source.AMI, started_at=T0)
    await service.call_started("c1", caller="03", did="05", recording_path="/r/c1.wav",
                               source=Source.CONTROLLER, started_at=T0)
    await service.queue_joined("c1", "sales", 1)
    await service.connected("c1", "op1001", 3)
    record = await service.hung_up("c1", 16, "Normal Clearing")
    assert record.source == "controller" and record.outcome == "answered"
    assert record.ended_at == approx(T0 + 30) and record.operator == "op1001"
    assert record.to_json()["talk_seconds"] == 0.0


async def test_call_reported_twice_has_one_start_and_waits_for_no_commit(store):
    """AMI and FastAGI both report a call (here as two services, as two nodes or a restart
    would): one record, one call_started event, FastAGI's source. The reports queue their
    writes: nothing is committed until the writer's batch runs."""
    ami = CallService(store, node="n1", clock=lambda: T0)
    agi = CallService(store, node="n1", clock=lambda: T0 + 0.2)
    assert await ami.call_started("c1", caller="0312345678", did=None, recording_path=None,
                                  source=Source.AMI) is True
    assert await ami.call_started("c1", caller=None, did="0399000000",
                                  recording_path="/r/c1.wav", source=Source.CONTROLLER) is False
    assert await agi.call_started("c1", caller="0312345678", did="0399000001",
                                  recording_path=None, source=Source.CONTROLLER) is True
    assert store.db.writer.pending > 0  # queued, not awaited
    for i in range(3):  # one batch, one executemany of the once-only insert
        await agi.call_started(f"d{i}", caller=None, did=None, recording_path=None,
                               source=Source.AMI)
        await ami.call_started(f"d{i}", caller=None, did=None, recording_path=None,
                               source=Source.AMI)
    record = await store.get("c1")
    assert record is not None and record.source == "controller"
    assert record.started_at == approx(T0) and record.answered_at == approx(T0)
    assert (record.caller, record.did, record.recording_path) == (
        "0312345678", "0399000000", "/r/c1.wav")
    events = await store.events("c1")
    assert [e["kind"] for e in events] == ["call_started"], events
    assert events[0]["data"] == {"caller": "0312345678", "did": None, "source": "ami"}
    for i in range(3):
        assert [e["kind"] for e in await store.events(f"d{i}")] == ["call_started"]


async def test_statements_are_counted_by_verb_and_table(store):
    """/metrics' ivr_store_statements: what the database was sent, an executemany once."""
    await store.ensure_call("s1", node="n1", started_at=T0, source="ami")
    before = dict(store.db.statements)
    for i in range(3):  # one prepared statement, queued together: one executemany
        await store.add_event("s1", "menu", T0 + i, {"key": str(i)})
    await store.db.writer.flush()
    await store.get("s1")
    sent = {k: v - before.get(k, 0) for k, v in store.db.statements.items()
            if v != before.get(k, 0)}
    assert sent.get("INSERT call_events") == 1, sent
    assert sent.get("SELECT calls", 0) >= 1 and "INSERT calls" not in sent, sent
    assert len(await store.events("s1")) == 3


async def test_events_of_unknown_and_ended_calls_cost_one_look_up(store, monkeypatch):
    """The AMI tracker asks is_known for every event: a call the store does not have is
    looked up once (and again only after UNKNOWN_KEPT_S: another node may commit it), a call
    this process started or saw end never."""
    import ivr.service as service_module

    service = CallService(store, node="n1", clock=lambda: T0)
    other = CallService(store, node="n2", clock=lambda: T0)

    def selects() -> int:
        return store.db.statements["SELECT calls"]

    before = selects()
    for _ in range(5):  # five events of a call of another dialplan
        assert await service.is_known("foreign") is False
    assert selects() == before + 1
    await service.call_started("mine", caller=None, did=None, recording_path=None,
                               source=Source.AMI)
    await service.hung_up("mine", 16, "Normal Clearing")
    assert await service.is_known("mine") is True  # ended: no longer active, still known
    await other.call_started("late", caller=None, did=None, recording_path=None,
                             source=Source.AMI)
    await store.db.writer.flush()
    assert await service.is_known("late") is True  # never asked before: looked up
    looked_up = selects()
    assert await service.is_known("late") is True and selects() == looked_up
    # "No" is believed for a while only: the other node's call becomes known after it.
    assert await service.is_known("soon") is False
    await other.call_started("soon", caller=None, did=None, recording_path=None,
                             source=Source.AMI)
    await store.db.writer.flush()
    assert await service.is_known("soon") is False
    monkeypatch.setattr(service_module, "UNKNOWN_KEPT_S", 0.0)
    assert await service.is_known("soon2") is False
    await other.call_started("soon2", caller=None, did=None, recording_path=None,
                             source=Source.AMI)
    await store.db.writer.flush()
    assert await service.is_known("soon2") is True


async def test_a_busy_database_is_retried_not_dropped(store, caplog):
    import sqlite3

    from sqlalchemy.exc import OperationalError

    await store.ensure_call("c1", node="n1", started_at=T0, source="ami")
    writer = store.db.writer
    writer.retry_delay = 0.01
    real_commit = writer._commit
    failures = iter([True, True, False])

    async def flaky(ops):
        if next(failures, False):
            raise OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked"))
        return await real_commit(ops)

    writer._commit = flaky
    for i in range(5):
        await store.add_event("c1", "tick", T0 + i, {"i": i})
    await store.flush()
    assert [e["data"]["i"] for e in await store.events("c1")] == [0, 1, 2, 3, 4]
    assert writer.failed == 0 and "store_batch_retry" in caplog.text


async def test_close_gives_up_on_an_unreachable_database_after_its_timeout(store, caplog):
    import sqlite3

    from sqlalchemy.exc import OperationalError

    await store.ensure_call("c1", node="n1", started_at=T0, source="ami")
    writer = store.db.writer
    writer.retry_delay = 0.01

    async def down(ops):
        raise OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked"))

    writer._commit = down
    await store.add_event("c1", "tick", T0)
    waiting = asyncio.create_task(store.ensure_call("c2", node="n1", started_at=T0,
                                                    source="ami"))
    await asyncio.sleep(0.05)
    await writer.close(timeout=0.2)
    assert "store_writer_lost ops=2" in caplog.text
    with pytest.raises(RuntimeError, match="closed"):
        await waiting
