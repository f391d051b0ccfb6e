"""Menus through a socket-level fake Asterisk: step limits, hang-ups while waiting for a key,
and the caller number stored normalised whoever reports the call first."""

import asyncio
from pathlib import Path

import pytest
import yaml

from ivr.agi.context import HandlerContext, Prompts
from ivr.agi.server import AgiServer
from ivr.audio.prompts import load_prompt_texts
from ivr.journey import MAX_MENU_STEPS, load_journey
from ivr.model import Source
from ivr.service import CallService
from ivr.store import CallStore, Database
from tests.unit.fake_asterisk import FakeAsterisk

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def service(tmp_path):
    db = await Database(tmp_path / "t.sqlite3").open()
    yield CallService(CallStore(db), node="test")
    await db.close()


def journey(tmp_path):
    data = yaml.safe_load((PROJECT / "dialplan" / "contact-centre.yaml").read_text())
    data["schedules"]["office"]["weekly"] = {"weekdays": "24h", "sat": "24h", "sun": "24h"}
    data["schedules"]["office"]["holidays"] = []
    (tmp_path / "journey.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_journey([tmp_path / "journey.yaml"],
                        operators=["op1001", "op1002", "op1003", "sv2001"],
                        prompts=load_prompt_texts(PROJECT / "prompts" / "prompts.yaml"))


async def run_call(service, tmp_path, answer_for, uniqueid="call-1"):
    j = journey(tmp_path)
    ctx = HandlerContext(calls=service, prompts=Prompts(tmp_path, "ja"), notice="notice",
                         default_desk="support", journey=lambda: j)
    server = AgiServer(ctx, host="127.0.0.1", port=0, command_timeout=2)
    await server.start()
    fake = FakeAsterisk(server.port, "inbound", variables={"IVR_DID": "0501234567"},
                        uniqueid=uniqueid)
    fake.answer = lambda command: answer_for(fake, command)
    try:
        await asyncio.wait_for(fake.run(), 10)
    finally:
        await server.stop()
    return fake


async def test_repeat_for_ever_ends_at_the_default_route(service, tmp_path):
    """Pressing 9 (repeat) again and again: the step limit sends the caller to the main
    menu's default desk instead of holding the IVR channel for ever."""

    def answer(fake, command):
        if command.startswith("STREAM FILE") and '"0123456789*#"' in command:
            prompt = command.split('"')[1].rsplit("/", 1)[-1]
            key = "1" if prompt == "language_select" else "9"
            return f"200 result={ord(key)} endpos=100"
        return FakeAsterisk.default_answer(fake, command)

    fake = await run_call(service, tmp_path, answer)
    assert fake.variables.get("IVR_ACTION") == "queue"
    assert fake.variables["IVR_QUEUE"] == "support"  # main's default: {desk: support}
    menus = [c for c in fake.commands if c.startswith("STREAM FILE") and "main_menu" in c]
    assert len(menus) == MAX_MENU_STEPS - 1  # the language menu was step one
    kinds = [e["kind"] for e in await service.events("call-1")]
    assert "menu_step_limit" in kinds


async def test_hangup_while_waiting_for_a_key_is_not_no_input(service, tmp_path):
    def answer(fake, command):
        if command.startswith("WAIT FOR DIGIT"):
            return ["HANGUP", "200 result=-1"]
        return FakeAsterisk.default_answer(fake, command)

    fake = await run_call(service, tmp_path, answer)
    assert "IVR_ACTION" not in fake.variables
    record = await service.get("call-1")
    assert record.menu_path is None, record.menu_path
    kinds = [e["kind"] for e in await service.events("call-1")]
    assert "menu_no_input" not in kinds


async def test_caller_normalised_when_ami_reports_first(service):
    await service.call_started("c9", caller="+81 3-1234-5678", did="05", recording_path=None,
                               source=Source.AMI)
    await service.call_started("c9", caller="+81312345678", did="05", recording_path=None,
                               source=Source.CONTROLLER)
    assert (await service.get("c9")).caller == "0312345678"
    await service.call_started("c10", caller="anonymous", did="05", recording_path=None,
                               source=Source.AMI)
    assert (await service.get("c10")).caller is None
