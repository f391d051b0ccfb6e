"""The call record is right, end to end: who hung up, where an abandoned caller was, calls
that began while the controller was down, the journey a call started with, and an orderly
shutdown. Every call goes through real Asterisk 22 with SIPp peers."""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.conftest import make_stack
from tests.e2e.journey_helpers import by_caller, seconds, ts
from tests.e2e.stack import example_journey, wait_until

TALK = "0501110001"      # desk 'talk': op1002 answers and waits for the caller to hang up
OP_ENDS = "0501110002"   # desk 'hangdesk': op1003 answers and hangs up after 6 s
CHAIN = "0501110003"     # desk 'first' (nobody answers, 6 s) overflows to 'second'
CLOSED = "0501110004"    # closed all day: a message, then the system hangs up
OTHER = "0399000000"     # the example's 'other' entry: straight to the default desk, support


def journey(*, first_overflow: dict | None = None) -> dict:
    data = example_journey(open_now=True)
    data["schedules"]["closed_today"] = example_journey(open_now=False)["schedules"]["office"]
    data["desks"]["support"].update(max_wait=10, overflow={"message": "sorry_busy"})
    data["desks"]["talk"] = {"members": ["op1002"], "max_wait": 60}
    data["desks"]["hangdesk"] = {"members": ["op1003"], "max_wait": 60}
    data["desks"]["first"] = {"members": ["op1001"], "max_wait": 6, "ring_timeout": 4,
                              "overflow": first_overflow or {"desk": "second"}}
    data["desks"]["second"] = {"members": ["op1001"], "max_wait": 60,
                               "overflow": {"message": "sorry_busy"}}
    for name, number, start in (("talk", TALK, {"desk": "talk"}),
                                ("opends", OP_ENDS, {"desk": "hangdesk"}),
                                ("chain", CHAIN, {"desk": "first"})):
        # No greeting: the timings below count from the notice.
        data["entries"][name] = {"numbers": [number], "language": "ja", "greeting": None,
                                 "start": start}
    data["entries"]["closed"] = {"numbers": [CLOSED], "language": "ja", "greeting": None,
                                 "schedule": "closed_today", "closed": {"message": "closed"},
                                 "start": {"desk": "support"}}
    return data


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    stack = make_stack(tmp_path_factory, prompt_cache, ["op1001", "op1002", "op1003", "sv2001"],
                       journey=journey())
    stack.start_controller()
    stack.login("op1001", "first", "second", "support")  # rings, never answers
    stack.login("op1002", "talk")
    stack.login("op1003", "hangdesk")
    stack.operator("op1001", scenario="operator_noanswer.xml")
    stack.operator("op1002")
    stack.operator("op1003", scenario="operator_hangup.xml")
    yield stack
    stack.close()


def notice(stack) -> float:
    return seconds(stack, "notice")


def test_who_hung_up(stack):
    """Caller, operator and system endings, placed at once."""
    caller_ends = stack.caller("0355000001", TALK, hangup_after=notice(stack) + 6)
    operator_ends = stack.caller("0355000002", OP_ENDS)   # waits for Asterisk's BYE
    system_ends = stack.caller("0355000003", CLOSED)
    for peer in (caller_ends, operator_ends, system_ends):
        assert peer.wait(120).returncode == 0, (peer.workdir / "screen.log").read_text()[-800:]
    record = by_caller(stack, "0355000001")
    assert (record["outcome"], record["hangup_by"]) == ("answered", "caller"), record
    record = by_caller(stack, "0355000002")
    assert (record["outcome"], record["hangup_by"]) == ("answered", "operator"), record
    # The operator's BYE (SIPp's own log) came before the record's end.
    byes = [t for t, what, _ in stack.phones["op1003"].messages()
            if "sent" in what and "| BYE " in what]
    assert byes and byes[-1] <= ts(record["ended_at"]) + 0.05
    record = by_caller(stack, "0355000003")
    assert (record["outcome"], record["hangup_by"]) == ("closed_hours", "system"), record
    for record in (by_caller(stack, c) for c in ("0355000001", "0355000002", "0355000003")):
        sources = [e for e in record["events"] if e["kind"] == "hangup_source"]
        assert sources, f"no hangup source from Asterisk for {record['id']}"


def test_try_call_scenario_accepts_the_servers_hangup(stack):
    """deploy/try-call.sh's caller (accept_bye) calls a closed line for up to 60 s: the
    server's BYE after the closed message ends the call as completed, not failed; and the
    same caller still hangs up itself when the server does not."""
    closed = stack.caller("0355000006", CLOSED, hangup_after=60, accept_bye=True)
    itself = stack.caller("0355000007", TALK, hangup_after=notice(stack) + 3, accept_bye=True)
    for peer in (closed, itself):
        result = peer.wait(90)
        assert result.returncode == 0, (peer.workdir / "screen.log").read_text()[-800:]
    assert by_caller(stack, "0355000006")["hangup_by"] == "system"
    assert by_caller(stack, "0355000007")["hangup_by"] == "caller"


def test_overflow_then_hangup_in_second_queue_keeps_the_calls_journey(stack):
    """A caller overflows from 'first' to 'second' and hangs up there: abandoned_in_queue,
    not overflowed. A reload while they wait in 'first' changes first's overflow for new
    calls; this call still follows the journey it started with."""
    caller = stack.caller("0355000004", CHAIN, hangup_after=notice(stack) + 6 + 5)
    time.sleep(notice(stack) + 2)
    stack.write_journey(journey(first_overflow={"message": "closed"}))
    stack.ivr("reload")
    try:
        assert caller.wait(120).returncode == 0
        record = by_caller(stack, "0355000004")
        assert record["outcome"] == "abandoned_in_queue", record
        assert record["hangup_by"] == "caller"
        assert record["overflow_from"] == "first"
        assert record["desk"] == "second"
        overflow = [e["data"] for e in record["events"] if e["kind"] == "overflow"]
        assert overflow and overflow[0]["route"] == "desk:second", overflow
    finally:
        stack.write_journey(journey())
        stack.ivr("reload")


def test_failsafe_call_is_followed_when_the_controller_returns(stack):
    """A call that took the fail-safe path while the controller was down and is still
    waiting when it returns is adopted: its queue events are recorded and the default desk's
    overflow route runs (a message), with no foreign-key failure sending it to goodbye."""
    stack.stop_controller()
    try:
        caller = stack.caller("0355000005", OTHER)  # stays until Asterisk hangs up
        time.sleep(notice(stack) + 2)  # the notice is over; the caller waits at 'support'
    finally:
        stack.start_controller()
    assert caller.wait(120).returncode == 0
    record = by_caller(stack, "0355000005")
    assert record["failsafe"] is True
    assert record["source"] == "ami"
    assert record["outcome"] == "overflowed", record
    assert record["hangup_by"] == "system"
    kinds = [(e["kind"], e["data"].get("prompt")) for e in record["events"]]
    assert ("adopted", None) in kinds
    assert ("prompt", "sorry_busy") in kinds, kinds
    # The message was played, so the call lasted notice + wait + message at least.
    assert ts(record["ended_at"]) - ts(record["started_at"]) >= \
        notice(stack) + 10 + seconds(stack, "sorry_busy") - 1
    log = stack.controller_log()
    for problem in ("IntegrityError", "constraint failed", "agi_handler_failed",
                    "store_write_failed"):
        assert problem not in log, problem


def test_stopping_right_after_start_loses_nothing(stack):
    """Stop the server a second after it starts, while the start-up reconciliation (CDR
    import) may still run: an orderly shutdown, no 'closed database' errors."""
    stack.stop_controller()
    before = len(stack.controller_log())
    stack.start_controller()
    time.sleep(1)
    stack.stop_controller()
    assert stack.controller.returncode == 0
    tail = stack.controller_log()[before:]
    assert not re.search(r"closed database|Traceback|Task exception", tail), tail[-3000:]
    stack.start_controller()
    wait_until(lambda: stack.health().get("status") == "ok", 30, what="controller back")
