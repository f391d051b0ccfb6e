import asyncio
from pathlib import Path

import pytest

from ivr.agi.context import HandlerContext, Prompts
from ivr.agi.server import AgiServer
from ivr.ami.events import AgentConnect, CallStart, Hangup, QueueCallerJoin, parse_event
from ivr.cdr_import import CDR_POSITION, CdrPosition, import_missed_calls, parse_cdr_file
from ivr.journey import load_journey
from ivr.model import Source
from ivr.policy.callerid import normalise_number
from ivr.service import CallService
from ivr.store import CallStore, Database
from ivr.store.migrate import head
from tests.unit.fake_asterisk import FakeAsterisk

PROJECT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("raw", "expected"), [
    ("0312345678", "0312345678"), ("+81 3-1234-5678", "0312345678"), ("81312345678", "0312345678"),
    ("+1 212 555 0100", "+12125550100"), ("110", "110"),
    ("０９０-１２３４-５６７８", "09012345678"),
    ("0081312345678", "0312345678"), ("anonymous", None),
    ("", None), (None, None), ('"Unknown"', None), ("03(1234)5678", "0312345678"),
    ("0312<script>", None), ("1" * 40, None),
])
def test_normalise_number(raw, expected):
    assert normalise_number(raw) == expected


def test_parse_events():
    assert parse_event({"Event": "UserEvent", "UserEvent": "IvrCallStart", "CallId": "a.1",
                        "Uniqueid": "a.1", "CallerIDNum": "03", "Did": "05",
                        "Recording": "/r/a.1"}) == CallStart("a.1", "03", "05", "/r/a.1")
    assert parse_event({"Event": "QueueCallerJoin", "Uniqueid": "a.1", "Queue": "sales",
                        "Position": "2"}) == QueueCallerJoin("a.1", "sales", 2)
    assert parse_event({"Event": "AgentConnect", "Uniqueid": "a.1", "Queue": "sales",
                        "Interface": "PJSIP/op1001", "HoldTime": "x", "RingTime": "3"}) == \
        AgentConnect("a.1", "sales", "op1001", 0, 3)
    assert parse_event({"Event": "Hangup", "Uniqueid": "a.1", "Linkedid": "a.1",
                        "Channel": "PJSIP/trunk-0000000a", "Cause": "16",
                        "Cause-txt": "Normal Clearing"}) == \
        Hangup("a.1", "a.1", "PJSIP/trunk-0000000a", 16, "Normal Clearing")
    assert parse_event({"Event": "Newexten"}) is None


@pytest.fixture
async def service(tmp_path):
    db = await Database(tmp_path / "t.sqlite3").open()
    yield CallService(CallStore(db), node="test")
    await db.close()


async def test_call_lifecycle_and_idempotent_start(service):
    await service.call_started("c1", caller="03", did="05", recording_path="/r/c1.wav",
                               source=Source.AMI)
    await service.call_started("c1", caller="03", did="05", recording_path="/r/c1.wav",
                               source=Source.CONTROLLER)
    await service.menu_input("c1", "main", "7", "invalid", path=["main:7"])
    await service.menu_input("c1", "main", None, "no_input", path=["main:7", "main:-"])
    await service.menu_input("c1", "main", "1", "chosen", "desk:sales",
                             path=["main:7", "main:-", "main:1"])
    await service.queue_joined("c1", "sales", 1)
    await service.connected("c1", "op1001", 3)
    await service.conversation_ended("c1", "op1001", "agent")
    record = await service.hung_up("c1", 16, "Normal Clearing")
    assert record.source == "controller"
    assert record.menu_path == "main:7 main:- main:1"
    assert record.outcome == "answered" and record.hangup_by == "operator"
    assert record.operator == "op1001" and record.desk == "sales"
    again = await service.hung_up("c1", 16, "Normal Clearing")
    assert again.ended_at == record.ended_at
    kinds = [e["kind"] for e in await service.events("c1")]
    assert kinds.count("call_started") == 1 and kinds[-1] == "hung_up"


async def test_database_migrations_are_idempotent(tmp_path):
    async with Database(tmp_path / "m.sqlite3") as db:
        assert await db.migrate() == head()
    async with Database(tmp_path / "m.sqlite3") as db:
        assert await db.migrate() == head()


CDR = (
    '"ivr1-1.0","ivr1-1.0","0311112222","s","ivr-queue","PJSIP/trunk-00000000",'
    '"PJSIP/op1001-00000001","Queue","1700000000.0","1700000000.1","1700000020.0","ANSWERED",'
    '"0501234567","/r/ivr1-1.0.wav","support","failsafe"\n'
    '"ivr1-2.0","ivr1-2.0","anonymous","s","ivr-inbound","PJSIP/trunk-00000002","",'
    '"Playback","1700000100.0","1700000100.1","1700000103.0","ANSWERED","0501234567",'
    '"/r/ivr1-2.0.wav","",""\n'
    'garbage line\n'
)


async def test_cdr_import(service, tmp_path):
    path = tmp_path / "ivr-cdr.csv"
    path.write_text(CDR)
    calls = parse_cdr_file(path)
    assert [c.call_id for c in calls] == ["ivr1-1.0", "ivr1-2.0"]
    assert await import_missed_calls(path, service, node="ivr1") == ["ivr1-1.0", "ivr1-2.0"]
    assert await import_missed_calls(path, service, node="ivr1") == []
    first = await service.get("ivr1-1.0")
    assert first.failsafe and first.operator == "op1001" and first.outcome == "answered"
    assert first.source == "cdr" and first.desk == "support"
    second = await service.get("ivr1-2.0")
    assert second.caller is None and second.outcome == "abandoned_in_menu"


async def test_cdr_import_reads_only_new_rows_and_survives_rotation(service, tmp_path):
    path = tmp_path / "ivr-cdr.csv"
    path.write_text(CDR)
    assert len(await import_missed_calls(path, service, node="ivr1")) == 2
    position = CdrPosition.decode(await service.store.get_state("ivr1", CDR_POSITION))
    assert position.offset == len(CDR.encode())
    # A row half written (no newline yet) waits; once complete it is imported.
    row3 = CDR.splitlines()[1].replace("ivr1-2.0", "ivr1-3.0")
    with path.open("a") as fh:
        fh.write(row3[:40])
    assert await import_missed_calls(path, service, node="ivr1") == []
    with path.open("a") as fh:
        fh.write(row3[40:] + "\n")
    assert await import_missed_calls(path, service, node="ivr1") == ["ivr1-3.0"]
    # Rotation: a new file (new inode) is read from its start.
    path.rename(tmp_path / "ivr-cdr.csv.1")
    path.write_text(CDR.splitlines()[1].replace("ivr1-2.0", "ivr1-4.0") + "\n")
    assert await import_missed_calls(path, service, node="ivr1") == ["ivr1-4.0"]


async def test_menu_flow_through_fake_asterisk(service, tmp_path):
    import yaml

    from ivr.audio.prompts import load_prompt_texts

    data = yaml.safe_load((PROJECT / "dialplan" / "contact-centre.yaml").read_text())
    data["schedules"]["office"]["weekly"] = {"weekdays": "24h", "sat": "24h", "sun": "24h"}
    data["schedules"]["office"]["holidays"] = []
    (tmp_path / "journey.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    journey = load_journey(
        [tmp_path / "journey.yaml"],
        operators=["op1001", "op1002", "op1003", "sv2001"],
        prompts=load_prompt_texts(PROJECT / "prompts" / "prompts.yaml"),
    )
    ctx = HandlerContext(calls=service, prompts=Prompts(tmp_path, "ja"), notice="notice",
                         default_desk="support", journey=lambda: journey)
    server = AgiServer(ctx, host="127.0.0.1", port=0, command_timeout=2)
    await server.start()
    # The caller presses 5 (invalid), then 3 (billing menu), then 1 (billing desk).
    keys = iter(["5", "3", "1"])

    def answer(command: str):
        if command.startswith("STREAM FILE") and ('"0123456789*#"' in command):
            prompt = command.split('"')[1].rsplit("/", 1)[-1]
            if prompt in ("main_menu", "billing_menu", "language_select"):
                key = "1" if prompt == "language_select" else next(keys)
                return f"200 result={ord(key)} endpos=100"
        return FakeAsterisk.default_answer(fake, command)

    fake = FakeAsterisk(server.port, "inbound", variables={"IVR_DID": "0501234567"},
                        answer=answer)
    fake.uniqueid = "menu-1"
    try:
        await asyncio.wait_for(fake.run(), 5)
    finally:
        await server.stop()
    assert fake.variables["IVR_QUEUE"] == "billing"
    assert fake.variables["IVR_QUEUE_TIMEOUT"] == "180"
    record = await service.get("menu-1")
    assert record.menu_path == "language:1 main:5 main:3 billing:1"
    assert record.entry == "main" and record.desk == "billing"
    played = [c.split('"')[1].rsplit("/", 2)[-2:] for c in fake.commands
              if c.startswith("STREAM FILE")]
    assert played[:2] == [["ja", "welcome"], ["ja", "notice"]]
    assert ["ja", "invalid"] in played
