import asyncio
import re
from pathlib import Path

import pytest

from ivr.agi import variables as var
from ivr.agi.context import HandlerContext, Prompts
from ivr.agi.server import HANDLERS, AgiServer
from ivr.service import CallService
from ivr.store import CallStore, Database
from tests.unit.fake_asterisk import FakeAsterisk

TEMPLATES = Path(__file__).resolve().parents[2] / "asterisk"


@pytest.fixture
async def service(tmp_path):
    db = await Database(tmp_path / "t.sqlite3").open()
    yield CallService(CallStore(db), node="test")
    await db.close()


@pytest.fixture
async def server(service, tmp_path):
    ctx = HandlerContext(calls=service, prompts=Prompts(tmp_path / "prompts", "ja"),
                         notice="notice", default_desk="support")
    srv = AgiServer(ctx, host="127.0.0.1", port=0, header_timeout=0.5, command_timeout=2)
    await srv.start()
    yield srv
    await srv.stop()


def test_every_dialplan_agi_target_has_a_handler():
    targets = set()
    for path in TEMPLATES.glob("*.j2"):
        targets |= set(re.findall(r"AGI\(\$\{IVR_AGI\}/([a-z_]+)", path.read_text()))
    assert targets, "no AGI() in the dialplan?"
    assert targets <= set(HANDLERS), targets - set(HANDLERS)


async def test_inbound_plays_notice_then_routes_to_default_desk(server, service):
    fake = FakeAsterisk(server.port, "inbound",
                        variables={var.RECORDING: "/rec/2026/11/25/test-1700000000.1",
                                   var.DID: "0501234567"})
    await asyncio.wait_for(fake.run(), 5)
    stream = [c for c in fake.commands if c.startswith("STREAM FILE")]
    assert stream == [f'STREAM FILE "{server.ctx.prompts.path("notice")}" ""']
    # The notice is confirmed to the dialplan before the desk is chosen.
    order = [c.split(" ")[2] if c.startswith("SET") else c.split(" ")[0] for c in fake.commands]
    assert order.index(var.NOTICE_DONE) > order.index("STREAM")
    assert fake.variables[var.QUEUE] == "support"
    assert fake.variables[var.ACTION] == var.ACTION_QUEUE
    record = await service.get("test-1700000000.1")
    assert record is not None
    assert record.caller == "0312345678"
    assert record.caller_name == "Yamada"
    assert record.did == "0501234567"
    assert record.recording_path == "/rec/2026/11/25/test-1700000000.1.wav"
    assert record.notice_started_at <= record.notice_ended_at
    assert record.desk == "support"


async def test_hangup_during_notice_stops_quietly(server, service):
    def answer(command: str):
        if command.startswith("STREAM FILE"):
            return ["HANGUP", "200 result=-1 endpos=1200"]
        if command.startswith("CHANNEL STATUS") or server_dead[0]:
            return "511 Command Not Permitted on a dead channel or intercepted channel"
        return FakeAsterisk.default_answer(fake, command)

    server_dead = [False]
    fake = FakeAsterisk(server.port, "inbound", answer=answer)
    await asyncio.wait_for(fake.run(), 5)
    assert not any(c.startswith("SET VARIABLE IVR_NOTICE_DONE") for c in fake.commands)
    assert server.failures_total == 0
    record = await service.get(fake.uniqueid)
    assert record.notice_ended_at is None


async def test_handler_error_sends_call_to_failsafe(server):
    async def broken(agi, ctx):
        raise RuntimeError("bug")

    server.handlers = {"inbound": broken}
    fake = FakeAsterisk(server.port, "inbound")
    await asyncio.wait_for(fake.run(), 5)
    assert fake.variables[var.ACTION] == var.ACTION_FAILSAFE
    assert server.failures_total == 1


async def test_unknown_script_goes_failsafe(server):
    fake = FakeAsterisk(server.port, "no_such_script")
    await asyncio.wait_for(fake.run(), 5)
    assert fake.variables[var.ACTION] == var.ACTION_FAILSAFE


async def test_client_closing_before_headers_does_not_freeze_the_loop(server):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    for payload in (b"", b"agi_network: yes\n", b"GET / HTTP/1.0\r\n\r\n", b"x" * 40000):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(payload)
        await writer.drain()
        writer.close()
    # A client that connects and says nothing is dropped after the header timeout.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert await asyncio.wait_for(reader.read(), 3) == b""
    await asyncio.sleep(0.2)
    task.cancel()
    assert ticks > 20
    # And a real session still works afterwards.
    fake = FakeAsterisk(server.port, "inbound")
    await asyncio.wait_for(fake.run(), 5)
    assert fake.variables[var.ACTION] == var.ACTION_QUEUE
