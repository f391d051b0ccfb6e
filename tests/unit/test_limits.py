"""Call-time limits: settings validation, the pure choice of a call's limit, the AMI events
and outcome of a limited call, the Local queue members, the recording mix-in."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from ivr.ami.events import HangupSource, IvrTimeCap, TalkLimitReached, parse_event
from ivr.operators import OperatorService, interface, member_operator, state_interface
from ivr.policy.outcome import decide_ending
from ivr.protection.call import CallProtection
from ivr.protection.rules_limits import talk_limit
from ivr.protection.settings import SettingsError, parse_settings
from ivr.protection.settings_limits import LimitSettings

DESKS = {"support", "sales"}


def limits(**data) -> LimitSettings:
    return parse_settings({"limits": data}, desks=DESKS).limits


def refused(data: dict) -> str:
    with pytest.raises(SettingsError) as err:
        parse_settings({"limits": data}, desks=DESKS)
    return str(err.value)


def test_settings_examples_and_defaults():
    settings = limits(warning=30, desks={"support": {"talk_limit": 600, "warning": 60,
                                                     "warn_operator": True}},
                      flags={"harassment": 180, "repeat": 300}, max_ivr_time=900)
    assert settings.for_desk("support").talk_limit == 600
    assert settings.warning_for("support") == 60 and settings.warning_for("sales") == 30
    assert settings.for_desk("sales").talk_limit is None
    assert LimitSettings().max_ivr_time is None


def test_bad_settings_are_refused_naming_the_field():
    assert "limits.desks.support" in refused({"desks": {"support": {"talk_limit": 30,
                                                                    "warning": 30}}})
    assert "warning (30 s) must be below talk_limit" in refused(
        {"desks": {"support": {"talk_limit": 30, "warning": 30}}})
    assert "limits: desks.support.talk_limit: 20 s is not above the warning time (30 s)" in \
        refused({"desks": {"support": {"talk_limit": 20}}})  # the default 30 s warning
    assert "limits.desks.support.talk_limit" in refused(
        {"desks": {"support": {"talk_limit": -5}}})
    assert "limits.warning" in refused({"warning": -1})
    assert "limits.max_ivr_time" in refused({"max_ivr_time": 0})
    assert "flags.harassment" in refused({"flags": {"harassment": -3}})
    assert "flags.Bad Flag" in refused({"flags": {"Bad Flag": 60}})
    assert "no desk named 'nowhere'" in refused({"desks": {"nowhere": {"talk_limit": 60}}})
    assert "limits.desks.support.warning_prompt" in refused(
        {"desks": {"support": {"talk_limit": 60, "warning_prompt": "../x"}}})
    assert "limits.bogus" in refused({"bogus": 1})
    assert "limits.desks.support.talk_limit" in refused(
        {"desks": {"support": {"talk_limit": "ten"}}})


def test_the_tightest_limit_applies_with_its_rule():
    settings = limits(warning=30, desks={"support": {"talk_limit": 600}},
                      flags={"harassment": 180, "repeat": 300})
    chosen = talk_limit(settings, "support")
    assert (chosen.limit, chosen.warning, chosen.rule) == (600, 30, "limits.desks.support")
    assert (chosen.limit_ms, chosen.warning_ms) == (600000, 30000)
    flagged = CallProtection(flags=frozenset({"repeat", "harassment"}))
    assert talk_limit(settings, "support", flagged).rule == "limits.flags.harassment"
    repeat = CallProtection(flags=frozenset({"repeat"}), talk_limit=120)
    chosen = talk_limit(settings, "support", repeat)
    assert (chosen.limit, chosen.rule) == (120, "inbound.repeat")
    # No desk limit: a flag still limits the call.
    assert talk_limit(settings, "sales", flagged).limit == 180
    none = talk_limit(settings, "sales")
    assert (none.limit, none.limit_ms, none.warning_ms, none.rule) == (None, 0, 0, "none")
    # A tighter limit than the warning time warns half-way.
    assert talk_limit(settings, "support", CallProtection(talk_limit=20)).warning == 10


def test_limit_events_and_outcome():
    base = {"Event": "UserEvent", "Uniqueid": "e2e-1.5", "Timestamp": "1700000000.5"}
    assert parse_event({**base, "UserEvent": "IvrTalkLimit", "End": "limit op1002 16004",
                        "Prompt": "ja/talk_limit_closing", "Limit": "16000", "Warning": "8000",
                        "WarningPrompt": "ja/talk_limit_warning"}) == \
        TalkLimitReached("e2e-1.5", "op1002", "ja/talk_limit_closing", 1700000000.5,
                         16.0, 8.0, "ja/talk_limit_warning")
    assert parse_event({**base, "UserEvent": "IvrTimeCap", "Seconds": "30"}) == \
        IvrTimeCap("e2e-1.5", 30.0, 1700000000.5)
    agent = parse_event({"Event": "AgentConnect", "Uniqueid": "x", "Queue": "support",
                         "Interface": "Local/op1001@ivr-member/n", "HoldTime": "3"})
    assert agent.operator == "op1001"
    source = HangupSource("x", "PJSIP/trunk-00000001", "Local/op1001@ivr-member-0000001f;1")
    assert source.side == "operator"
    assert HangupSource("x", "PJSIP/trunk-1", "Local/rec@ivr-recorder-00000001;2").side == \
        "system"

    def ev(at, kind, **data):
        return {"at": at, "kind": kind, "data": data}

    timeline = [ev(1, "connected"), ev(17, "talk_limit_reached"),
                ev(22, "hangup_source", side="system")]
    assert decide_ending(connected=True, disposition="queued", events=timeline).hangup_by == \
        "limit"
    capped = [ev(1, "queue_joined"), ev(30, "ivr_time_cap"), ev(32, "hangup_source",
                                                                  side="system")]
    ending = decide_ending(connected=False, disposition="queued", events=capped)
    assert (ending.outcome.value, ending.hangup_by) == ("abandoned_in_queue", "ivr_cap")


def test_local_members_and_old_pjsip_members():
    assert interface("op1001") == "Local/op1001@ivr-member/n"
    assert state_interface("op1001") == "PJSIP/op1001"
    assert member_operator("Local/op1001@ivr-member/n") == "op1001"
    assert member_operator("PJSIP/op1001") == "op1001"
    assert member_operator("op1001") == "op1001"

    sent: list[dict] = []

    async def action(request, as_list=False):
        sent.append(request)
        if request["Action"] == "QueueStatus":
            return [{"Event": "QueueMember", "Queue": "support", "Name": "op1001",
                     "Location": "Local/op1001@ivr-member/n", "Status": "1"},
                    {"Event": "QueueMember", "Queue": "support", "Name": "PJSIP/op1002",
                     "Location": "PJSIP/op1002", "Status": "2", "InCall": "1"}]
        if request["Action"] == "QueuePause" and request["Interface"].startswith("Local/"):
            return {"Response": "Error", "Message": "Interface not found"}
        return {"Response": "Success"}

    class Calls:
        async def operator_action(self, *args, **kwargs):
            pass

    desk = SimpleNamespace(members=["op1001", "op1002"])
    journey = SimpleNamespace(desks={"support": desk})
    service = OperatorService(action, Calls(), journey, ["op1001", "op1002"])
    asyncio.run(service.login("op1001"))
    add = sent[0]
    assert (add["Action"], add["Interface"], add["StateInterface"], add["MemberName"]) == \
        ("QueueAdd", "Local/op1001@ivr-member/n", "PJSIP/op1001", "op1001")
    # A member left in astdb from before the Local members is removed at once.
    assert sent[1] == {"Action": "QueueRemove", "Queue": "support", "Interface": "PJSIP/op1001"}
    sent.clear()
    asyncio.run(service.pause("op1002", True, "break"))  # an old PJSIP member still pauses
    assert [r["Interface"] for r in sent] == ["Local/op1002@ivr-member/n", "PJSIP/op1002"]
    members = asyncio.run(service.members())
    assert [(m.operator, m.status, m.in_call) for m in members] == \
        [("op1001", "not_in_use", False), ("op1002", "in_use", True)]


def test_members_kept_from_before_move_to_local_members():
    sent: list[dict] = []

    async def action(request, as_list=False):
        sent.append(request)
        if request["Action"] == "QueueStatus":
            return [{"Event": "QueueMember", "Queue": "support", "Name": "op1002",
                     "Location": "PJSIP/op1002", "Paused": "1", "PausedReason": "lunch"},
                    {"Event": "QueueMember", "Queue": "support", "Name": "op1001",
                     "Location": "Local/op1001@ivr-member/n", "Paused": "0"},
                    {"Event": "QueueMember", "Queue": "support", "Name": "stranger",
                     "Location": "PJSIP/stranger", "Paused": "0"}]
        return {"Response": "Success"}

    class Calls:
        async def operator_action(self, *args, **kwargs):
            pass

    journey = SimpleNamespace(desks={"support": SimpleNamespace(members=["op1001", "op1002"])})
    service = OperatorService(action, Calls(), journey, ["op1001", "op1002"])
    assert asyncio.run(service.migrate_legacy_members()) == [("support", "op1002")]
    assert sent[1] == {"Action": "QueueAdd", "Queue": "support",
                       "Interface": "Local/op1002@ivr-member/n", "MemberName": "op1002",
                       "StateInterface": "PJSIP/op1002", "Paused": "true", "Reason": "lunch"}
    assert sent[2] == {"Action": "QueueRemove", "Queue": "support", "Interface": "PJSIP/op1002"}
    assert len(sent) == 3
