"""The inbound restriction in the FastAGI handler, against a fake Asterisk: a blocked caller
hears only the refusal and is hung up; a repeat caller's flags reach the queue variables; a
decision that cannot be made lets the caller through."""

from __future__ import annotations

import asyncio
import time

import pytest

from ivr.agi import variables as var
from ivr.agi.context import HandlerContext, Prompts
from ivr.agi.server import AgiServer
from ivr.model import Outcome
from ivr.protection.settings import parse_settings
from ivr.protection.store_blocks import BlockStore
from ivr.service import CallService
from ivr.store import CallStore, Database
from tests.unit.fake_asterisk import FakeAsterisk

SETTINGS = parse_settings({"inbound": {
    "entries": {"default": {
        "withheld": {"anonymous": "refuse"},
        "repeat": [{"window": "day", "calls": 2, "action": "flag"}]}},
    "ring": {"alert_info": {"repeat": "<urn:alert:service:normal>"}}}})


@pytest.fixture
async def db(tmp_path):
    database = await Database(tmp_path / "t.sqlite3").open()
    yield database
    await database.close()


@pytest.fixture
async def server(db, tmp_path):
    ctx = HandlerContext(calls=CallService(CallStore(db), node="test"),
                         prompts=Prompts(tmp_path / "prompts", "ja"), notice="notice",
                         default_desk="support", protection=lambda: SETTINGS)
    srv = AgiServer(ctx, host="127.0.0.1", port=0, header_timeout=0.5, command_timeout=2)
    await srv.start()
    yield srv
    await srv.stop()


async def call(server, **kw) -> FakeAsterisk:
    fake = FakeAsterisk(server.port, "inbound", variables={var.DID: "0501234567"}, **kw)
    await asyncio.wait_for(fake.run(), 5)
    return fake


async def test_blocked_caller_hears_only_the_refusal(server, db):
    block = await BlockStore(db).add(kind="exact", value="0312345678", reason="r",
                                     source="admin", added_by="t")
    fake = await call(server, callerid="+81-3-1234-5678")
    stream = [c for c in fake.commands if c.startswith("STREAM FILE")]
    assert stream == [f'STREAM FILE "{server.ctx.prompts.path("refused")}" ""']
    assert fake.variables[var.ACTION] == var.ACTION_REFUSED
    assert var.QUEUE not in fake.variables
    calls = server.ctx.calls
    await calls.hung_up("test-1700000000.1", 16, "Normal Clearing")
    record = await calls.get("test-1700000000.1")
    assert (record.outcome, record.rule, record.hangup_by) == \
        (Outcome.REFUSED, block.rule_id, "system")
    kinds = [(e["kind"], e["data"].get("prompt")) for e in await calls.events(record.id)]
    assert ("prompt", "refused") in kinds and ("notice_started", None) not in kinds


async def test_repeat_flags_reach_the_queue_variables(server, db):
    calls = CallStore(db)
    await calls.ensure_call("earlier", node="n", started_at=time.time() - 60,
                            source="controller")
    await calls.update("earlier", caller="0312345678")
    await calls.flush()
    fake = await call(server)
    assert fake.variables[var.ACTION] == var.ACTION_QUEUE
    assert fake.variables[f"__{var.FLAGS}"] == "repeat"
    assert fake.variables[f"__{var.RING_PREFIX}"] == "[!][R2]"
    assert fake.variables[f"__{var.ALERT_INFO}"] == "<urn:alert:service:normal>"
    record = await server.ctx.calls.get("test-1700000000.1")
    assert (record.rule, record.flags, record.repeat_count) == ("repeat:day>=2", "repeat", 2)


async def test_privacy_header_refuses_a_withheld_caller(server):
    fake = FakeAsterisk(server.port, "inbound", uniqueid="test-3", callerid="anonymous",
                        variables={var.DID: "0501234567", var.PRIVACY: "id"})
    await asyncio.wait_for(fake.run(), 5)
    assert fake.variables[var.ACTION] == var.ACTION_REFUSED
    record = await server.ctx.calls.get("test-3")
    assert (record.caller, record.rule) == (None, "withheld:anonymous")
    # The same caller without the header (display name Yamada): unknown reason, allowed.
    fake = FakeAsterisk(server.port, "inbound", uniqueid="test-4", callerid="anonymous",
                        variables={var.DID: "0501234567"})
    await asyncio.wait_for(fake.run(), 5)
    assert fake.variables[var.ACTION] == var.ACTION_QUEUE
    assert (await server.ctx.calls.get("test-4")).rule == "withheld:unknown"


async def test_a_failed_decision_lets_the_caller_through(server, monkeypatch):
    async def broken(*_args, **_kw):
        raise OSError("database unreachable")

    monkeypatch.setattr("ivr.protection.service_inbound.InboundService.decide", broken)
    fake = await call(server)
    assert fake.variables[var.ACTION] == var.ACTION_QUEUE
    events = await server.ctx.calls.events("test-1700000000.1")
    problem = [e["data"] for e in events if e["kind"] == "protection"]
    assert problem and "unreachable" in problem[0]["problem"]


async def test_a_missing_refusal_prompt_falls_back_and_still_refuses(server, db):
    await BlockStore(db).add(kind="exact", value="0312345678", reason="r", source="admin",
                             added_by="t")
    custom = server.ctx.prompts.path("refused")

    def answer(command: str):
        if command.startswith("STREAM FILE") and custom not in command:
            return "200 result=-1 endpos=0"  # Asterisk's answer for a missing file
        return fake.default_answer(command)

    object.__setattr__(server.ctx, "protection", lambda: parse_settings(
        {"inbound": {"prompts": {"blocked": "no_such_prompt"}}}))
    fake = FakeAsterisk(server.port, "inbound", variables={var.DID: "0501234567"},
                        answer=lambda c: answer(c))
    await asyncio.wait_for(fake.run(), 5)
    stream = [c for c in fake.commands if c.startswith("STREAM FILE")]
    assert len(stream) == 2 and custom in stream[1], stream
    assert fake.variables[var.ACTION] == var.ACTION_REFUSED
    kinds = [e["kind"] for e in await server.ctx.calls.events("test-1700000000.1")]
    assert "prompt_failed" in kinds
