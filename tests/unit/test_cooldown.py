"""Cool-down after a hard call: the pure decision (ivr/cooldown/policy.py), the pause reason's
round trip, and the service against a fake Asterisk queue (pause per desk, a supervisor's pause
kept, the sweep lifting only expired cool-downs, nothing raised into the call path)."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import replace
from typing import Any

import pytest

from ivr.cooldown.policy import decide, expired, parse_reason, reason
from ivr.cooldown.service import CooldownService
from ivr.cooldown.settings import CooldownSettings
from ivr.model import CallRecord
from ivr.protection.settings import SECTIONS, SettingsError, parse_settings

T0 = 1_800_000_000.0


def record(**kw: Any) -> CallRecord:
    base = dict(id="e2e-1800000000.7", node="n1", direction="inbound", caller="0312345678",
                caller_name=None, did="0399000000", started_at=T0, answered_at=T0,
                notice_started_at=None, notice_ended_at=None, queue_joined_at=T0 + 10,
                connected_at=T0 + 12, ended_at=T0 + 100, desk="support", operator="op1001",
                outcome="answered", hangup_cause=16, hangup_by="caller", recording_path=None,
                recording_duration=None, recording_sha256=None, failsafe=False, source="ami",
                updated_at=T0 + 100)
    return CallRecord(**(base | kw))


def ev(kind: str, **data: Any) -> dict[str, Any]:
    return {"kind": kind, "at": T0 + 50, "data": data}


def settings(**data: Any) -> CooldownSettings:
    return parse_settings({"cooldown": data}, desks={"support", "sales"}).cooldown


CALM = [ev("call_started"), ev("connected", operator="op1001"),
        ev("conversation_ended", operator="op1001", reason="caller"), ev("hung_up")]
ON = settings(seconds=60)


# ---- the decision ----
@pytest.mark.parametrize("event,trigger", [
    (ev("flagged", flag="harassment", operator="op1001"), "flagged"),
    (ev("shout_warning", operator="op1001"), "warned"),
    (ev("talk_limit_reached", operator="op1001"), "limited"),
    (ev("end_and_refuse", operator="op1001", prompt="ja/operator_closing"), "refused"),
])
def test_each_trigger_earns_a_cooldown(event, trigger):
    got = decide(record(), [*CALM, event], ON)
    assert got is not None and got.triggers == (trigger,) and got.seconds == 60
    assert got.operators == ("op1001",)


def test_a_calm_call_earns_none():
    assert decide(record(), CALM, ON) is None
    # Flags from the inbound rules (the caller's history) are no trigger, nor are the
    # operator's other codes or the limit's warning announcement.
    calm = [*CALM, ev("protection", flags=["harassment", "repeat"]),
            ev("feature_notice", operator="op1001"), ev("escalated", operator="op1001"),
            ev("announcement", purpose="talk_limit_warning"), ev("block_impossible")]
    assert decide(record(flags="harassment repeat"), calm, ON) is None


def test_off_by_default_and_with_zero():
    hard = [*CALM, ev("talk_limit_reached", operator="op1001")]
    assert decide(record(), hard, CooldownSettings()) is None
    assert decide(record(), hard, settings(seconds=0)) is None
    assert decide(record(), hard, settings(seconds=60, desks={"support": {"seconds": 0}})) \
        is None


def test_per_desk_seconds_and_triggers():
    s = settings(seconds=60, after=["limited"], desks={"support": {"seconds": 120},
                                                      "sales": {"after": ["refused"]}})
    limited = [*CALM, ev("talk_limit_reached", operator="op1001")]
    assert decide(record(desk="support"), limited, s).seconds == 120
    assert decide(record(desk="other"), limited, s).seconds == 60
    assert decide(record(desk=None), limited, s).seconds == 60
    assert decide(record(desk="sales"), limited, s) is None  # sales: only refused
    refused = [*CALM, ev("end_and_refuse", operator="op1001")]
    assert decide(record(desk="sales"), refused, s).seconds == 60
    # Not in `after`: no trigger.
    assert decide(record(desk="other"), [*CALM, ev("flagged", operator="op1001")], s) is None


def test_triggers_in_order_and_the_operators_who_were_on_the_call():
    events = [*CALM, ev("end_and_refuse", operator="op1002"),
              ev("flagged", operator="op1001"), ev("talk_limit_reached", operator="")]
    got = decide(record(operator="op1003"), events, ON)
    assert got.triggers == ("flagged", "limited", "refused")
    # The event's operator; the record's when the event names none.
    assert got.operators == ("op1002", "op1001", "op1003")
    assert decide(record(operator=None), [ev("talk_limit_reached")], ON) is None


def test_settings_section_is_validated_and_served():
    assert "cooldown" in SECTIONS
    with pytest.raises(SettingsError, match=r"cooldown\.after"):
        parse_settings({"cooldown": {"after": ["shouting"]}})
    with pytest.raises(SettingsError, match=r"cooldown\.seconds"):
        parse_settings({"cooldown": {"seconds": -1}})
    with pytest.raises(SettingsError, match=r"cooldown\.seconds"):
        parse_settings({"cooldown": {"seconds": 7200}})
    with pytest.raises(SettingsError, match=r"cooldown\.desks\.nowhere"):
        parse_settings({"cooldown": {"desks": {"nowhere": {"seconds": 5}}}}, desks={"support"})
    with pytest.raises(SettingsError, match=r"cooldown\.desks\.support\.secs"):
        parse_settings({"cooldown": {"desks": {"support": {"secs": 5}}}})
    doc = parse_settings({"cooldown": {"seconds": 3, "after": ["limited"]}}).document()
    assert doc["cooldown"] == {"seconds": 3.0, "after": ["limited"], "desks": {}}
    assert parse_settings(doc).cooldown.for_desk("x") == (3.0, ("limited",))


# ---- the pause reason ----
def test_reason_round_trip():
    text = reason(T0 + 60.2, "e2e-1800000000.7")
    assert text == "ivr-cooldown until=1800000061 call=e2e-1800000000.7"
    assert parse_reason(text) == (1800000061.0, "e2e-1800000000.7")
    assert ";" not in text and "|" not in text and len(text) <= 80
    long = reason(T0, "x" * 200 + ";|")
    assert len(long) == 80 and parse_reason(long) is not None
    assert not expired(text, T0 + 60) and expired(text, T0 + 61)
    for other in ("", None, "break", "ivr-cooldown", "lunch until=1 call=x",
                  "ivr-cooldown until=soon call=x", text + " extra"):
        assert parse_reason(other) is None and not expired(other, T0 + 10**6)


# ---- the service against a fake app_queue ----
class FakeQueues:
    """app_queue's members through AMI: QueueStatus lists them, QueuePause per queue."""

    def __init__(self, members: dict[tuple[str, str], dict[str, str]]):
        self.members = members  # (queue, location) -> {"Paused": "0"/"1", "PausedReason"}
        self.actions: list[dict[str, str]] = []
        self.fail = False

    async def action(self, request: dict[str, str], as_list: bool | None = None,
                     timeout: float | None = None) -> Any:
        if self.fail:
            raise ConnectionError("AMI not connected")
        self.actions.append(dict(request))
        if request["Action"] == "QueueStatus":
            return [{"Response": "Success"}, *[
                {"Event": "QueueMember", "Queue": q, "Location": loc,
                 "Name": loc.split("/")[1].split("@")[0], **state}
                for (q, loc), state in self.members.items()], {"Event": "QueueStatusComplete"}]
        if request["Action"] == "QueuePause":
            state = self.members.get((request["Queue"], request["Interface"]))
            if state is None:
                return {"Response": "Error", "Message": "Interface not found"}
            paused = request["Paused"] == "true"
            state["Paused"] = "1" if paused else "0"
            state["PausedReason"] = request.get("Reason", "") if paused else ""
            return {"Response": "Success"}
        raise AssertionError(request)

    def pauses(self) -> list[tuple[str, str, str]]:
        return [(a["Queue"], a["Paused"], a["Interface"]) for a in self.actions
                if a["Action"] == "QueuePause"]


class FakeCalls:
    def __init__(self, rec: CallRecord, events: list[dict[str, Any]]):
        self.rec, self.evs = rec, events
        self.active: set[str] = set()
        self.recorded: list[tuple[str, str, dict[str, Any]]] = []
        self.rows: list[tuple[str, str | None, str, str, str]] = []

    async def get_with_events(self, call_id):
        return (self.rec, self.evs) if call_id == self.rec.id else (None, [])

    async def feature_event(self, call_id, kind, at=None, **data):
        self.recorded.append((call_id, kind, data))

    async def operator_action(self, operator, desk, action, detail="", by_whom=""):
        self.rows.append((operator, desk, action, detail, by_whom))


def local(op: str) -> str:
    return f"Local/{op}@ivr-member/n"


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def service(queues, calls, clock, seconds=60, **kw) -> CooldownService:
    return CooldownService(queues.action, calls, lambda: settings(seconds=seconds, **kw),
                           ["op1001", "op1002"], clock=clock, sweep_every=3600)


HARD = [*CALM, ev("talk_limit_reached", operator="op1001")]


async def test_pause_at_every_desk_then_lift_when_over():
    queues = FakeQueues({("support", local("op1001")): {"Paused": "0"},
                         ("sales", local("op1001")): {"Paused": "0"},
                         ("support", local("op1002")): {"Paused": "0"}})
    rec = record()
    calls, clock = FakeCalls(rec, HARD), Clock(T0 + 100.5)
    cool = service(queues, calls, clock)
    got = await cool.apply(rec.id, final=True)
    assert got is not None and got.triggers == ("limited",)
    want = reason(T0 + 160, rec.id)
    for desk in ("support", "sales"):
        assert queues.members[(desk, local("op1001"))] == {"Paused": "1", "PausedReason": want}
    assert queues.members[("support", local("op1002"))] == {"Paused": "0"}
    [(call_id, kind, data)] = calls.recorded
    assert (call_id, kind) == (rec.id, "cooldown_started")
    assert data == {"operator": "op1001", "seconds": 60.0, "until": T0 + 160,
                    "triggers": ["limited"], "desks": ["support", "sales"]}
    assert sorted(r[1] for r in calls.rows if r[2] == "pause") == ["sales", "support"]
    assert all(r[3] == want and r[4] == "cooldown" for r in calls.rows)
    assert cool.started["limited"] == 1

    clock.now = T0 + 159.9
    assert await cool.sweep() == []
    clock.now = T0 + 160.0
    assert sorted(await cool.sweep()) == [("sales", "op1001"), ("support", "op1001")]
    assert all(m["Paused"] == "0" for m in queues.members.values())
    assert sorted(r[1] for r in calls.rows if r[2] == "unpause") == ["sales", "support"]
    assert cool.lifted == 2
    assert await cool.sweep() == []  # nothing left to lift
    await cool.stop()


async def test_a_pause_someone_else_set_is_kept_and_never_lifted():
    queues = FakeQueues({("support", local("op1001")): {"Paused": "1", "PausedReason": "break"},
                         ("sales", local("op1001")): {"Paused": "1", "PausedReason": ""},
                         ("support", local("op1002")): {"Paused": "0"}})
    calls, clock = FakeCalls(record(), HARD), Clock(T0 + 100.5)
    cool = service(queues, calls, clock)
    await cool.apply(record().id, final=True)
    assert queues.pauses() == []  # neither desk's pause replaced
    assert calls.recorded == []   # not paused anywhere: no cool-down in the record
    clock.now = T0 + 10_000
    assert await cool.sweep() == []
    assert queues.members[("support", local("op1001"))]["PausedReason"] == "break"
    assert queues.members[("sales", local("op1001"))]["Paused"] == "1"

    # A supervisor re-pauses during a cool-down: the reason changed, the sweep leaves it.
    queues.members[("support", local("op1002"))] = {
        "Paused": "1", "PausedReason": reason(T0, "other-call")}
    queues.members[("sales", local("op1002"))] = {
        "Paused": "1", "PausedReason": "supervisor: talk to me first"}
    assert await cool.sweep() == [("support", "op1002")]
    assert queues.members[("sales", local("op1002"))]["Paused"] == "1"
    await cool.stop()


async def test_a_longer_cooldown_held_is_kept_and_a_shorter_one_extended():
    queues = FakeQueues({("support", local("op1001")): {
        "Paused": "1", "PausedReason": reason(T0 + 500, "earlier")}})
    calls, clock = FakeCalls(record(), HARD), Clock(T0 + 100.5)
    cool = service(queues, calls, clock)
    await cool.apply(record().id, final=True)
    assert queues.pauses() == []
    assert queues.members[("support", local("op1001"))]["PausedReason"] == \
        reason(T0 + 500, "earlier")
    assert calls.recorded[0][2]["desks"] == ["support"]
    queues.members[("support", local("op1001"))]["PausedReason"] = reason(T0 + 120, "earlier")
    await cool.apply(record().id, final=True)
    assert queues.members[("support", local("op1001"))]["PausedReason"] == \
        reason(T0 + 160, record().id)
    await cool.stop()


async def test_early_pause_at_the_trigger_and_not_lifted_while_the_call_goes_on():
    queues = FakeQueues({("support", local("op1001")): {"Paused": "0"}})
    rec = record(ended_at=None, outcome=None)
    calls, clock = FakeCalls(rec, [*CALM[:2], ev("flagged", operator="op1001")]), Clock(T0 + 50)
    calls.active.add(rec.id)
    cool = service(queues, calls, clock, seconds=10)
    cool.event_recorded(rec.id, "flagged", {"operator": "op1001"})
    cool.event_recorded(rec.id, "connected", {"operator": "op1001"})  # no trigger
    await asyncio.gather(*cool._tasks)
    assert queues.members[("support", local("op1001"))] == {
        "Paused": "1", "PausedReason": reason(T0 + 60, rec.id)}
    assert calls.recorded == []  # the record's event comes with the call's end
    clock.now = T0 + 90
    assert await cool.sweep() == []  # over, but the call is still in progress here
    # The call ends at T0 + 95: the cool-down runs from the hang-up.
    calls.active.discard(rec.id)
    calls.rec = replace(rec, ended_at=T0 + 95)
    cool.call_ended(calls.rec)
    await asyncio.gather(*cool._tasks)
    assert queues.members[("support", local("op1001"))]["PausedReason"] == \
        reason(T0 + 105, rec.id)
    assert [k for _c, k, _d in calls.recorded] == ["cooldown_started"]
    clock.now = T0 + 105
    assert await cool.sweep() == [("support", "op1001")]
    await cool.stop()


async def test_nothing_to_do_and_nothing_raised():
    queues = FakeQueues({("support", local("op1002")): {"Paused": "0"}})
    # A calm call: no AMI action at all.
    calls, clock = FakeCalls(record(), CALM), Clock(T0 + 100.5)
    cool = service(queues, calls, clock)
    assert await cool.apply(record().id, final=True) is None
    assert queues.actions == []
    # The operator is not logged in anywhere: logged, no error, no event.
    calls.evs = HARD
    assert await cool.apply(record().id, final=True) is not None
    assert queues.pauses() == [] and calls.recorded == []
    # Not an operator of ivr.toml.
    calls.rec = record(operator="intruder")
    calls.evs = [ev("talk_limit_reached")]
    await cool.apply(record().id, final=True)
    assert queues.pauses() == []
    # Learnt of the call after its cool-down would have ended (controller down meanwhile).
    calls.rec, calls.evs = record(), HARD
    queues.members[("support", local("op1001"))] = {"Paused": "0"}
    clock.now = T0 + 1000
    await cool.apply(record().id, final=True)
    assert queues.pauses() == []
    # AMI gone: nothing raised, the sweep too.
    clock.now = T0 + 100.5
    queues.fail = True
    assert await cool.apply(record().id, final=True) is None
    await cool.sweep_safely()
    # An unknown call.
    queues.fail = False
    assert await cool.apply("nope", final=True) is None
    await cool.stop()


async def test_the_periodic_sweep_runs_at_start():
    queues = FakeQueues({("support", local("op1001")): {
        "Paused": "1", "PausedReason": reason(T0, "before-a-restart")}})
    cool = CooldownService(queues.action, FakeCalls(record(), CALM), lambda: ON,
                           ["op1001"], clock=Clock(T0 + 5), sweep_every=0.05)
    await cool.start()
    for _ in range(50):
        if queues.members[("support", local("op1001"))]["Paused"] == "0":
            break
        await asyncio.sleep(0.02)
    await cool.stop()
    assert queues.members[("support", local("op1001"))]["Paused"] == "0"


async def test_lifted_at_its_end_without_waiting_for_the_periodic_sweep():
    queues = FakeQueues({("support", local("op1001")): {"Paused": "0"}})
    now = time.time()
    calls = FakeCalls(record(ended_at=now), HARD)
    cool = CooldownService(queues.action, calls, lambda: settings(seconds=1), ["op1001"],
                           sweep_every=3600)  # the real clock
    await cool.apply(calls.rec.id, final=True)
    until = parse_reason(queues.members[("support", local("op1001"))]["PausedReason"])[0]
    assert until == math.ceil(now + 1)
    while queues.members[("support", local("op1001"))]["Paused"] == "1":
        assert time.time() < until + 1.0, "not lifted at its end"
        await asyncio.sleep(0.02)
    assert until <= time.time() < until + 0.5
    await cool.stop()


async def test_the_end_of_a_call_decides_from_the_timeline_it_is_handed_without_a_read():
    queues = FakeQueues({("support", local("op1001")): {"Paused": "0"}})
    rec = record()
    calls, clock = FakeCalls(rec, CALM), Clock(T0 + 100.5)  # the store would say "calm"
    reads = []
    real = calls.get_with_events

    async def counted(call_id):
        reads.append(call_id)
        return await real(call_id)

    calls.get_with_events = counted
    cool = service(queues, calls, clock)
    cool.call_ended(rec, HARD)  # the timeline the ending read: a hard call
    await asyncio.gather(*cool._tasks)
    assert reads == []
    assert queues.members[("support", local("op1001"))]["Paused"] == "1"
    cool.call_ended(rec)  # no timeline handed: read from the store (calm: nothing more)
    await asyncio.gather(*cool._tasks)
    assert reads == [rec.id]
    await cool.stop()
