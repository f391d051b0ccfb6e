"""The block list and the audit log on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest

from ivr.protection.errors import ProtectionError
from ivr.protection.service_blocks import Actor, BlockService
from ivr.protection.store_audit import AuditStore
from ivr.protection.store_blocks import BlockStore
from ivr.store import CallStore
from tests.store.conftest import Clock

pytestmark = pytest.mark.timeout(60)
T0 = 1_700_000_000.0


async def test_add_get_active_remove(db):
    clock = Clock()
    store = BlockStore(db, clock=clock)
    a = await store.add(kind="exact", value="0312345678", reason="暴言", source="admin",
                        added_by="alice")
    b = await store.add(kind="prefix", value="0120", reason="spam", source="admin",
                        added_by="alice", entry="sales", expires_at=T0 + 60)
    c = await store.add(kind="pattern", value="_0990XXXXXX", reason="r", source="repeat",
                        added_by="ivr", call_id="call-1", review="pending")
    assert a.rule_id == f"block:{a.id}" and a.added_at == pytest.approx(T0, abs=1e-3)
    assert b.expires_at == pytest.approx(T0 + 60, abs=1e-3) and b.entry == "sales"
    assert await store.get(c.id) == c and c.call_id == "call-1" and c.review == "pending"
    assert await store.get(999_999) is None
    assert [x.id for x in await store.active(T0)] == [a.id, b.id, c.id]
    # Expired: not active, listed only with include_expired.
    assert [x.id for x in await store.active(T0 + 60)] == [a.id, c.id]
    clock.now = T0 + 61
    assert [x.id for x in await store.list()] == [a.id, c.id]
    assert [x.id for x in await store.list(include_expired=True)] == [a.id, b.id, c.id]
    removed = await store.remove(a.id, by="bob", reason="謝罪あり")
    assert removed is not None and removed.removed_by == "bob"
    assert removed.removed_at == pytest.approx(T0 + 61, abs=1e-3)
    assert await store.remove(a.id, by="carol", reason="again") is None  # first one kept
    assert (await store.get(a.id)).removed_by == "bob"
    assert [x.id for x in await store.active(T0)] == [b.id, c.id]
    assert [x.id for x in await store.list(include_removed=True)] == [a.id, c.id]
    with pytest.raises(ValueError, match="kind"):
        await store.add(kind="regex", value=".*", reason="r", source="admin", added_by="x")


async def test_candidates_are_the_blocks_that_may_cover_a_number(db):
    store = BlockStore(db)
    for kind, value, entry, expires in (
            ("exact", "0312345678", None, None), ("exact", "0312345679", None, None),
            ("prefix", "03", None, None), ("prefix", "0312", "sales", None),
            ("prefix", "04", None, None), ("prefix", "03", None, T0 - 1),
            ("pattern", "_0990XXXXXX", None, None)):
        await store.add(kind=kind, value=value, entry=entry, reason="r", source="admin",
                        added_by="t", expires_at=expires, added_at=T0 - 10)
    found = await store.candidates("0312345678", "main", T0)
    assert [(b.kind, b.value) for b in found] == [
        ("exact", "0312345678"), ("prefix", "03"), ("pattern", "_0990XXXXXX")]
    found = await store.candidates("0312345678", "sales", T0)
    assert ("prefix", "0312") in [(b.kind, b.value) for b in found]
    assert [b.value for b in await store.candidates("+12125550100", None, T0)] == \
        ["_0990XXXXXX"]


async def test_calls_from_counts_each_window_in_one_query(db):
    calls = CallStore(db)
    for i, at in enumerate([T0 - 7200, T0 - 1800, T0 - 60, T0]):
        await calls.ensure_call(f"c{i}", node="n", started_at=at, source="controller")
        await calls.update(f"c{i}", caller="0312345678")
    await calls.ensure_call("out", node="n", started_at=T0, source="controller",
                            direction="outbound")
    await calls.update("out", caller="0312345678")
    await calls.ensure_call("other", node="n", started_at=T0, source="controller")
    await calls.update("other", caller="0399999999")
    await calls.flush()
    store = BlockStore(db)
    assert await store.calls_from("0312345678", [T0 - 3600, T0 - 86400, T0 + 1]) == [3, 4, 0]
    assert await store.calls_from("0312345678", [T0 - 3600], exclude_call="c3") == [2]
    assert await store.calls_from("0300000000", [T0 - 3600]) == [0]
    assert await store.calls_from("0312345678", []) == []


async def test_audit_round_trip(db):
    clock = Clock()
    audit = AuditStore(db, clock=clock)
    await audit.record(actor="alice", role="admin", action="block.add", target="block:1",
                       before=None, after={"value": "03", "日本": [1, 2]}, origin="cli")
    clock.now += 10
    await audit.record(actor="bob", role="supervisor", action="block.remove",
                       target="block:1", before={"a": 1}, after={"a": 2}, origin="api ::1")
    entries = await audit.list()
    assert [e.actor for e in entries] == ["bob", "alice"]
    assert entries[1].after == {"value": "03", "日本": [1, 2]} and entries[1].before is None
    assert [e.actor for e in await audit.list(actor="alice")] == ["alice"]
    assert [e.actor for e in await audit.list(since=T0 + 5)] == ["bob"]
    assert len(await audit.list(limit=1)) == 1
    assert [e.actor for e in await audit.list(action="block.rem")] == ["bob"]


async def test_service_validates_and_audits(db):
    clock = Clock()
    service = BlockService(BlockStore(db, clock=clock), AuditStore(db, clock=clock),
                           entries={"main", "sales"}, clock=clock)
    admin = Actor("alice", "admin", "cli")
    one = await service.block("+81 3-1234-5678", reason="暴言", actor=admin)
    assert one.value == "0312345678" and one.kind == "exact"
    pat = await service.block("_0990-XXX-XXX", kind="pattern", reason="r", actor=admin)
    assert pat.value == "_0990XXXXXX"
    pre = await service.block("0120", kind="prefix", reason="r", actor=admin, entry="sales",
                              expires_at=T0 + 3600)
    assert pre.value == "0120"
    bad = [
        (dict(value="abc"), "number"),
        (dict(value=""), "number"),
        (dict(value="03" * 500), "number"),
        (dict(value="_09[9", kind="pattern"), "pattern"),
        (dict(value="_0.9", kind="pattern"), "pattern"),
        (dict(value="(.*)+", kind="pattern"), "pattern"),
        (dict(value="12a", kind="prefix"), "prefix"),
        (dict(value="0312345678", reason="  "), "reason"),
        (dict(value="0312345678", expires_at=T0 - 1), "expires"),
        (dict(value="0312345678", entry="nope"), "entry"),
        (dict(value="0312345678", kind="regex"), "kind"),
    ]
    for kwargs, field in bad:
        kwargs.setdefault("reason", "r")
        with pytest.raises(ProtectionError, match=f"^{field}: "):
            await service.block(actor=admin, **kwargs)
    assert len(await service.list()) == 3  # nothing was added by the refused ones
    removed = await service.unblock(one.id, reason="謝罪", actor=Actor("bob", "supervisor"))
    assert removed.removed_reason == "謝罪"
    with pytest.raises(ProtectionError, match=r"^id: "):
        await service.unblock(one.id, reason="again", actor=admin)
    with pytest.raises(ProtectionError, match=r"^id: "):
        await service.unblock(12345, reason="x", actor=admin)
    with pytest.raises(ProtectionError, match=r"^reason: "):
        await service.unblock(pat.id, reason="", actor=admin)
    log = await service.audit.list()
    assert [e.action for e in log] == ["block.remove", "block.add", "block.add", "block.add"]
    assert log[0].before["removed_at"] is None and log[0].after["removed_by"] == "bob"
    assert log[-1].after["value"] == "0312345678" and log[-1].before is None
    assert log[-1].target == one.rule_id
