"""Listen, whisper, barge without Asterisk: the request checks, which channel each mode spies
on, the Originate built, and the service against a fake AMI on a real SQLite store (audit
rows, the call's timeline), and the CLI with the same fake."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ivr.asterisk.render import render_asterisk_config
from ivr.config import load_config
from ivr.credentials import Secrets
from ivr.model import Source
from ivr.protection.service_settings import Actor
from ivr.protection.store_audit import AuditStore
from ivr.service import CallService
from ivr.spy.checks import (
    OPTIONS,
    Mode,
    SpyError,
    SpyRequest,
    check_request,
    choose_target,
    originate_action,
    shown_number,
)
from ivr.spy.service import SpyService
from ivr.store import CallStore, Database
from ivr.store.tables import audit_log

PROJECT = Path(__file__).resolve().parents[2]
OPERATORS = ["op1001", "op1002", "sv2001"]
CALL = "n1-1764100000.7"
ALICE = Actor("alice", "supervisor", "api 127.0.0.1")


def channel(name: str, uniqueid: str, linkedid: str = CALL, state: str = "6",
            bridge: str = "b-1") -> dict[str, str]:
    return {"Event": "CoreShowChannel", "Channel": name, "Uniqueid": uniqueid,
            "Linkedid": linkedid, "ChannelState": state, "BridgeId": bridge}


# A caller talking to op1001 through the queue's Local member (asterisk/extensions.conf.j2).
TALKING = [
    channel("PJSIP/trunk-00000003", CALL),
    channel("Local/op1001@ivr-member-00000001;1", "n1-1764100001.8"),
    channel("Local/op1001@ivr-member-00000001;2", "n1-1764100001.9", bridge="b-2"),
    channel("PJSIP/op1001-00000004", "n1-1764100001.10", bridge="b-2"),
    channel("PJSIP/trunk-00000009", "n1-1764100002.20", linkedid="n1-1764100002.20"),
]
WAITING = [channel("PJSIP/trunk-00000003", CALL, bridge="")]


# ---- the pure checks ----

@pytest.mark.parametrize("call_id, phone, mode, field", [
    (CALL, "sv2001", "eavesdrop", "mode"),
    (CALL, "sv2001", None, "mode"),
    (CALL, "", "listen", "phone"),
    (CALL, None, "listen", "phone"),
    (CALL, "sv9999", "listen", "phone"),  # well formed, not in ivr.toml
    (CALL, "sv2001\r\nAction: Hangup", "listen", "phone"),
    (CALL, "Local/x@ctx", "listen", "phone"),
    ("n1-1.1,qESuBr(x)", "sv2001", "listen", "call_id"),  # a ChanSpy option smuggled in
    ("n1-1.1\r\nAction: Hangup", "sv2001", "listen", "call_id"),
    ("", "sv2001", "listen", "call_id"),
    ("../etc", "sv2001", "listen", "call_id"),
    (7, "sv2001", "listen", "call_id"),
])
def test_bad_requests_name_their_field(call_id, phone, mode, field):
    with pytest.raises(SpyError) as info:
        check_request(call_id, phone, mode, OPERATORS)
    assert (info.value.status, info.value.field) == (400, field), info.value.message
    assert "\r" not in info.value.message and "\n" not in info.value.message


def test_a_good_request():
    assert check_request(CALL, "sv2001", "whisper", OPERATORS) == \
        SpyRequest(CALL, "sv2001", Mode.WHISPER)


def request(mode: str, phone: str = "sv2001") -> SpyRequest:
    return check_request(CALL, phone, mode, OPERATORS)


def test_listen_and_barge_spy_on_the_callers_channel_whisper_on_the_operators_phone():
    for mode in ("listen", "barge"):
        assert choose_target(request(mode), TALKING[:4], OPERATORS).uniqueid == CALL
    target = choose_target(request("whisper"), TALKING[:4], OPERATORS)
    assert (target.channel, target.uniqueid) == ("PJSIP/op1001-00000004", "n1-1764100001.10")


def test_whisper_takes_the_newest_operator_leg():
    moved = [*TALKING[:4], channel("PJSIP/op1002-0000000a", "n1-1764100009.2", bridge="b-3")]
    assert choose_target(request("whisper"), moved, OPERATORS).channel == \
        "PJSIP/op1002-0000000a"


def test_refusals_by_what_asterisk_has():
    with pytest.raises(SpyError) as gone:
        choose_target(request("listen"), [], OPERATORS)
    assert gone.value.status == 404 and "no live call" in gone.value.message
    with pytest.raises(SpyError) as waiting:
        choose_target(request("whisper"), WAITING, OPERATORS)
    assert waiting.value.status == 409 and "listen works" in waiting.value.message
    assert choose_target(request("listen"), WAITING, OPERATORS).uniqueid == CALL
    with pytest.raises(SpyError) as party:
        choose_target(request("listen", phone="op1001"), TALKING[:4], OPERATORS)
    assert party.value.status == 409 and "on this call" in party.value.message


def test_the_originate_rings_the_phone_into_the_spy_context():
    target = choose_target(request("barge"), TALKING[:4], OPERATORS)
    action = originate_action(request("barge"), target, "+81312345678")
    assert action == {
        "Action": "Originate", "Channel": "PJSIP/sv2001", "Context": "ivr-spy",
        "Exten": "barge", "Priority": "1", "Timeout": "30000",
        "CallerID": '"Barge +81312345678" <+81312345678>',
        "Variable": f"IVR_SPY_TARGET={CALL}", "Async": "true"}


@pytest.mark.parametrize("caller, shown", [
    ("0312345678", "0312345678"), ('03"<1>\r\nAction: Hangup', "031"), (None, ""),
    ("anonymous", ""), ("+8131234" * 9, "+" + ("8131234" * 9)[:20])])
def test_the_callers_number_on_the_supervisors_display_is_digits_only(caller, shown):
    assert shown_number(caller) == shown
    target = choose_target(request("listen"), TALKING[:4], OPERATORS)
    action = originate_action(request("listen"), target, caller)
    assert all(re.fullmatch(r"[ -~]*", str(v)) for v in action.values())
    assert action["CallerID"].count('"') == 2 and action["CallerID"].count("<") == 1


def test_the_dialplan_runs_the_options_of_each_mode(tmp_path):
    path = tmp_path / "ivr.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "var"}"\n'
                    f'[prompts]\ntexts = "{PROJECT / "prompts" / "prompts.yaml"}"\n'
                    f'[journey]\ndir = "{PROJECT / "dialplan"}"\n'
                    '[[operators]]\nendpoint = "sv2001"\n')
    config = load_config(path)
    etc = render_asterisk_config(config, Secrets("s3cret", {"sv2001": "pw"})).etc
    plan = (etc / "extensions.conf").read_text()
    section = plan.split("[ivr-spy]")[1]
    for mode in Mode:
        assert re.search(rf"^exten => {mode.value},1,Gosub\(ivr-spy-check,s,1\)\n"
                         rf" same => n,ChanSpy\(\$\{{IVR_SPY_TARGET\}},{OPTIONS[mode]}\)$",
                         section, re.M), mode
    check = plan.split("[ivr-spy-check]")[1]
    assert "CDR_PROP(disable)=1" in check
    assert "FILTER(-0-9A-Za-z._,${IVR_SPY_TARGET})" in check


# ---- the service, against a fake AMI ----

class FakeAmi:
    def __init__(self, channels: list[dict[str, str]], originate: dict | Exception | None = None):
        self.channels = channels
        self.originate = originate or {"Response": "Success",
                                       "Message": "Originate successfully queued"}
        self.sent: list[dict] = []

    async def __call__(self, action: dict, timeout: float | None = None,
                      as_list: bool | None = None):
        self.sent.append(dict(action))
        if action["Action"] == "CoreShowChannels":
            if isinstance(self.originate, ConnectionError):
                raise self.originate
            return [{"Response": "Success", "EventList": "start"}, *self.channels,
                    {"Event": "CoreShowChannelsComplete"}]
        if action["Action"] == "Originate":
            if isinstance(self.originate, Exception):
                raise self.originate
            return self.originate
        raise AssertionError(action)


@pytest.fixture
async def store(tmp_path):
    async with Database(tmp_path / "ivr.sqlite3") as db:
        calls = CallService(CallStore(db), node="n1")
        await calls.call_started(CALL, caller="0312345678", did="0399000000",
                                 recording_path=None, source=Source.CONTROLLER)
        yield db, calls, AuditStore(db)


async def audit_rows(db: Database) -> list[dict]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(sa.select(audit_log).order_by(audit_log.c.id))
        return [dict(r._mapping) for r in rows]


async def test_a_granted_whisper(store, caplog):
    db, calls, audit = store
    ami = FakeAmi(TALKING)
    service = SpyService(ami, calls, audit, lambda: OPERATORS)
    caplog.set_level("INFO", logger="ivr.spy")
    result = await service.spy(CALL, "sv2001", "whisper", ALICE)
    assert result.as_dict() == {"call_id": CALL, "phone": "sv2001", "mode": "whisper",
                                "channel": "PJSIP/op1001-00000004", "state": "ringing"}
    originate = ami.sent[-1]
    assert originate["Exten"] == "whisper"
    assert originate["Variable"] == "IVR_SPY_TARGET=n1-1764100001.10"
    assert originate["CallerID"] == '"Whisper 0312345678" <0312345678>'
    [row] = await audit_rows(db)
    assert (row["actor"], row["role"], row["action"], row["target"], row["origin"]) == \
        ("alice", "supervisor", "spy.whisper", f"call {CALL}", "api 127.0.0.1")
    assert json.loads(row["after"]) == {"mode": "whisper", "phone": "sv2001",
                                        "channel": "PJSIP/op1001-00000004"}
    await calls.store.flush()
    [event] = [e for e in await calls.events(CALL) if e["kind"] == "supervisor_spy"]
    assert event["data"] == {"mode": "whisper", "phone": "sv2001", "actor": "alice",
                             "channel": "PJSIP/op1001-00000004"}
    assert f"event=spy call_id={CALL} phone=sv2001 mode=whisper actor=alice" in caplog.text


@pytest.mark.parametrize("call_id, phone, mode, channels, answer, status", [
    (CALL, "sv9", "listen", TALKING, None, 400),
    ("n1-1.1", "sv2001", "listen", TALKING, None, 404),  # not in the call records
    (CALL, "sv2001", "listen", [], None, 404),  # ended: Asterisk has no channel
    (CALL, "sv2001", "whisper", WAITING, None, 409),
    (CALL, "sv2001", "listen", TALKING, ConnectionError("AMI gone"), 503),
])
async def test_refusals_are_audited_and_nothing_rings(store, call_id, phone, mode, channels,
                                                      answer, status):
    db, calls, audit = store
    ami = FakeAmi(channels, answer)
    service = SpyService(ami, calls, audit, lambda: OPERATORS)
    with pytest.raises(SpyError) as info:
        await service.spy(call_id, phone, mode, ALICE)
    assert info.value.status == status
    assert not [a for a in ami.sent if a["Action"] == "Originate"]
    [row] = await audit_rows(db)
    assert row["action"] == "spy.refused" and row["actor"] == "alice"
    after = json.loads(row["after"])
    assert after["status"] == status and after["reason"] == info.value.message
    assert (after["phone"], after["mode"]) == (phone, mode)
    await calls.store.flush()
    assert not [e for e in await calls.events(CALL) if e["kind"] == "supervisor_spy"]


async def test_asterisk_refusing_the_originate_is_a_failed_use(store):
    db, calls, audit = store
    ami = FakeAmi(TALKING, {"Response": "Error", "Message": "Originate failed\r\nx"})
    with pytest.raises(SpyError) as info:
        await SpyService(ami, calls, audit, lambda: OPERATORS).spy(CALL, "sv2001", "listen",
                                                                    ALICE)
    assert info.value.status == 502 and "Originate failed" in info.value.message
    assert "\r" not in info.value.message
    assert [r["action"] for r in await audit_rows(db)] == ["spy.listen", "spy.failed"]


# ---- the CLI ----

@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "ivr.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "var"}"\n'
                    f'[prompts]\ntexts = "{PROJECT / "prompts" / "prompts.yaml"}"\n'
                    f'[journey]\ndir = "{PROJECT / "dialplan"}"\n'
                    '[desk]\ndefault = "support"\n'
                    + "".join(f'[[operators]]\nendpoint = "{op}"\n' for op in OPERATORS))
    return path


def fake_ami_runner(ami: FakeAmi):
    async def runner(_config, work):
        return await work(ami)
    return runner


def cli(monkeypatch, config: Path, ami: FakeAmi, *args: str):
    import asyncio

    from ivr import cli_spy
    from ivr.cli import main

    async def seed() -> None:
        async with Database(load_config(config).database_url) as db:
            calls = CallService(CallStore(db), node="n1")
            if not await calls.is_known(CALL):
                await calls.call_started(CALL, caller="0312345678", did=None,
                                         recording_path=None, source=Source.CONTROLLER)

    load_config(config).data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(seed())
    monkeypatch.setattr(cli_spy, "_with_ami", fake_ami_runner(ami))
    return CliRunner().invoke(main, ["spy", *args, "-c", str(config)])


def test_cli_spy_rings_the_phone_and_refuses_clearly(monkeypatch, config):
    ami = FakeAmi(TALKING)
    done = cli(monkeypatch, config, ami, CALL, "--phone", "sv2001", "--mode", "barge", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["channel"] == "PJSIP/trunk-00000003"
    assert f"event=spy call_id={CALL} phone=sv2001 mode=barge actor=" in done.stderr
    assert ami.sent[-1]["Exten"] == "barge"
    bad = cli(monkeypatch, config, ami, CALL, "--phone", "op9999")
    assert bad.exit_code == 2 and "not an operator endpoint" in bad.output, bad.output
    gone = cli(monkeypatch, config, FakeAmi([]), CALL, "--phone", "sv2001")
    assert gone.exit_code == 1 and "no live call" in gone.output, gone.output
    mode = cli(monkeypatch, config, ami, CALL, "--phone", "sv2001", "--mode", "shout")
    assert mode.exit_code == 2 and "listen" in mode.output  # click names the choices

    async def rows() -> list[tuple[str, str, str]]:
        async with Database(load_config(config).database_url) as db:
            return [(r["action"], r["origin"], r["role"]) for r in await audit_rows(db)]

    import asyncio
    assert asyncio.run(rows()) == [("spy.barge", "cli", "admin"), ("spy.refused", "cli", "admin"),
                                   ("spy.refused", "cli", "admin")]
