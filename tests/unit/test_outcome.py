"""How a call ended: outcome and who hung up, from the record's facts and its timeline."""

from ivr.ami.events import HangupSource, parse_event
from ivr.model import Disposition, Outcome
from ivr.policy.outcome import decide_ending, decide_outcome


def ev(at: float, kind: str, **data):
    return {"at": at, "kind": kind, "data": data}


def test_simple_outcomes():
    assert decide_outcome(connected=True, disposition="overflow") == Outcome.ANSWERED
    assert decide_outcome(connected=False, disposition=Disposition.CLOSED) == \
        Outcome.CLOSED_HOURS
    assert decide_outcome(connected=False, disposition=None,
                          events=[ev(1, "queue_joined"), ev(2, "queue_result",
                                                            status="JOINEMPTY")]) == \
        Outcome.OVERFLOWED
    assert decide_outcome(connected=False, disposition=None, events=[ev(1, "queue_joined")]) \
        == Outcome.ABANDONED_IN_QUEUE
    assert decide_outcome(connected=False, disposition=Disposition.MESSAGE) == Outcome.MESSAGE
    assert decide_outcome(connected=False, disposition=None) == Outcome.ABANDONED_IN_MENU


def test_overflowed_to_a_second_desk_then_hung_up_while_waiting_is_abandoned():
    timeline = [ev(1, "routed", desk="sales"), ev(2, "queue_joined", desk="sales"),
                ev(30, "queue_result", desk="sales", status="TIMEOUT"),
                ev(30.1, "overflow", desk="sales"), ev(30.2, "routed", desk="support"),
                ev(31, "queue_joined", desk="support")]
    ending = decide_ending(connected=False, disposition=Disposition.QUEUED, events=timeline)
    assert ending.outcome == Outcome.ABANDONED_IN_QUEUE
    assert ending.hangup_by == "caller"
    # The same timeline, ending in the overflow's goodbye: overflowed, ended by the system.
    ending = decide_ending(connected=False, disposition=Disposition.OVERFLOW,
                           events=[*timeline[:4]])
    assert ending.outcome == Outcome.OVERFLOWED and ending.hangup_by == "system"


def test_order_is_asterisks_time_not_arrival():
    # The queue_result was stored after the second queue_joined but happened before it.
    timeline = [ev(2, "queue_joined"), ev(31, "queue_joined"),
                ev(30, "queue_result", status="TIMEOUT")]
    assert decide_outcome(connected=False, disposition=None, events=timeline) == \
        Outcome.ABANDONED_IN_QUEUE


def test_hangup_by():
    answered = [ev(1, "connected")]
    # Asterisk's hangup source names the side.
    for side in ("caller", "operator"):
        ending = decide_ending(connected=True, disposition=Disposition.QUEUED,
                               events=[*answered, ev(9, "hangup_source", side=side)])
        assert ending.hangup_by == side
    # No hangup source (the event was lost): app_queue's reason.
    ending = decide_ending(connected=True, disposition=Disposition.QUEUED,
                           events=[*answered, ev(9, "conversation_ended", reason="agent")])
    assert ending.hangup_by == "operator"
    # The dialplan ended it (message, closed hours): system.
    for disposition in (Disposition.MESSAGE, Disposition.CLOSED, Disposition.HANGUP):
        assert decide_ending(connected=False, disposition=disposition,
                             events=[ev(5, "hangup_source", side="system")]).hangup_by == \
            "system"
        assert decide_ending(connected=False, disposition=disposition, events=[]).hangup_by \
            == "system"
    # A caller who hangs up in a menu.
    assert decide_ending(connected=False, disposition=None,
                         events=[ev(5, "hangup_source", side="caller")]).hangup_by == "caller"
    assert decide_ending(connected=False, disposition=None, events=[]).hangup_by == "caller"


def test_hangup_source_event():
    base = {"Event": "UserEvent", "UserEvent": "IvrHangup", "Uniqueid": "e2e-1.5",
            "Channel": "PJSIP/trunk-00000005", "Timestamp": "1700000000.250000"}
    assert parse_event({**base, "Source": "PJSIP/trunk-00000005"}) == \
        HangupSource("e2e-1.5", "PJSIP/trunk-00000005", "PJSIP/trunk-00000005",
                     1700000000.25)
    assert parse_event({**base, "Source": "PJSIP/trunk-00000005"}).side == "caller"
    assert parse_event({**base, "Source": "PJSIP/op1001-00000006"}).side == "operator"
    assert parse_event({**base, "Source": ""}).side == "system"
    assert parse_event({**base, "Source": "dialplan/builtin"}).side == "system"
