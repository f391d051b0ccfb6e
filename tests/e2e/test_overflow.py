"""Desks without an operator: overflow after the maximum wait, nobody logged in, the caller
hanging up in the queue, and the after-hours path."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import make_stack
from tests.e2e.journey_helpers import (
    MAIN,
    by_caller,
    check_answered,
    language_menu_at,
    not_rung,
    seconds,
    ts,
)
from tests.e2e.stack import example_journey

HOLIDAY_LINE = "0501110000"


def journey() -> dict:
    data = example_journey(open_now=True)
    data["desks"]["sales"]["max_wait"] = 8
    data["desks"]["sales"]["ring_timeout"] = 5
    closed = example_journey(open_now=False)["schedules"]["office"]
    data["schedules"]["holiday"] = closed
    data["entries"]["holiday_line"] = {
        "numbers": [HOLIDAY_LINE], "language": "ja", "schedule": "holiday",
        "closed": {"message": "closed"}, "start": {"desk": "support"},
    }
    return data


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    stack = make_stack(tmp_path_factory, prompt_cache, ["op1001", "op1002", "op1003", "sv2001"],
                       journey=journey())
    stack.start_controller()
    stack.login("op1001", "sales")     # rings, never answers
    stack.login("op1002", "support")   # answers
    stack.operator("op1001", scenario="operator_noanswer.xml")
    stack.operator("op1002")
    yield stack
    stack.close()


def test_overflow_after_max_wait(stack):
    t = language_menu_at(stack)
    caller = stack.caller("0344000001", MAIN, keys=[(t, "1"), (t + 1.5, "1")],
                          hangup_after=t + 1.5 + 8 + 8)
    assert caller.wait(120).returncode == 0
    record = by_caller(stack, "0344000001")
    check_answered(record, "support", "op1002", stack.phones["op1002"])
    assert record["overflow_from"] == "sales"
    assert stack.phones["op1001"].invites_received(since=ts(record["started_at"]))
    overflow = [e for e in record["events"] if e["kind"] == "overflow"]
    assert overflow and overflow[0]["data"]["status"] == "TIMEOUT"
    waited = ts(record["connected_at"]) - ts(record["queue_joined_at"])
    assert waited >= 8


def test_nobody_logged_in_overflows_at_once(stack):
    t = language_menu_at(stack)
    caller = stack.caller("0344000002", MAIN, keys=[(t, "1"), (t + 1.5, "3"), (t + 3.0, "1")],
                          hangup_after=t + 3.0 + 9)
    assert caller.wait(120).returncode == 0
    record = by_caller(stack, "0344000002")
    check_answered(record, "support", "op1002", stack.phones["op1002"])
    assert record["overflow_from"] == "billing"
    overflow = [e for e in record["events"] if e["kind"] == "overflow"]
    assert overflow[0]["data"]["status"] == "JOINEMPTY"


def test_hangup_in_queue(stack):
    t = language_menu_at(stack)
    caller = stack.caller("0344000003", MAIN, keys=[(t, "1"), (t + 1.5, "1")],
                          hangup_after=t + 1.5 + 4)
    assert caller.wait(120).returncode == 0
    record = by_caller(stack, "0344000003")
    assert record["outcome"] == "abandoned_in_queue"
    assert record["desk"] == "sales"
    assert record["operator"] is None
    assert stack.phones["op1001"].invites_received(since=ts(record["started_at"]))
    not_rung(stack.phones["op1002"], record)


def test_overflow_to_message_when_support_is_empty(stack):
    stack.ivr("operators", "logout", "op1002")
    try:
        t = language_menu_at(stack)
        caller = stack.caller("0344000004", MAIN, keys=[(t, "1"), (t + 1.5, "2")])
        assert caller.wait(120).returncode == 0
    finally:
        stack.login("op1002", "support")
    record = by_caller(stack, "0344000004")
    assert record["outcome"] == "overflowed"
    assert record["desk"] == "support"
    assert ("prompt", "sorry_busy") in [(e["kind"], e["data"].get("prompt"))
                                        for e in record["events"]]
    not_rung(stack.phones["op1002"], record)


def test_after_hours(stack):
    caller = stack.caller("0344000005", HOLIDAY_LINE)
    assert caller.wait(90).returncode == 0
    record = by_caller(stack, "0344000005")
    assert record["outcome"] == "closed_hours"
    assert record["entry"] == "holiday_line"
    assert record["notice_started_at"] is None  # no operator, so no notice
    assert ("prompt", "closed") in [(e["kind"], e["data"].get("prompt"))
                                    for e in record["events"]]
    call_seconds = ts(record["ended_at"]) - ts(record["started_at"])
    assert call_seconds >= seconds(stack, "closed") - 0.3
    for phone in stack.phones.values():
        not_rung(phone, record)


def test_paused_operator_is_not_rung(stack):
    stack.ivr("operators", "pause", "op1002", "--reason", "break")
    try:
        listing = stack.ivr("operators", "list", "--json").stdout
        assert '"paused": true' in listing and '"pause_reason": "break"' in listing
        t = language_menu_at(stack)
        caller = stack.caller("0344000006", MAIN, keys=[(t, "1"), (t + 1.5, "2")])
        assert caller.wait(120).returncode == 0
    finally:
        stack.ivr("operators", "unpause", "op1002")
    record = by_caller(stack, "0344000006")
    assert record["outcome"] == "overflowed"
    not_rung(stack.phones["op1002"], record)


def test_imported_recording_replaces_a_prompt(stack, tmp_path):
    import numpy as np

    from ivr.audio.wav import write_wav

    # An admin's own greeting: 44.1 kHz, a 440 Hz tone; and a file that is not audio.
    source = tmp_path / "greeting.wav"
    t = np.arange(int(44100 * 2.5)) / 44100
    write_wav(source, 0.4 * np.sin(2 * np.pi * 440 * t), rate=44100)
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    refused = stack.ivr("prompts", "import", str(bad), "--name", "welcome", "--lang", "ja",
                        check=False)
    assert refused.returncode == 2 and "refused" in refused.stderr
    stack.ivr("prompts", "import", str(source), "--name", "welcome", "--lang", "ja")

    caller = stack.caller("0344000007", "0399000000", hangup_after=2.5)
    assert caller.wait(60).returncode == 0
    record = by_caller(stack, "0344000007")
    wait_finalised = stack.call_record(
        lambda c: c["id"] == record["id"] and c["recording_sha256"], timeout=30,
        what="recording")
    from tests.e2e.recordings import call_recording

    heard = call_recording(wait_finalised).heard.samples[int(0.3 * 8000):int(2.0 * 8000)]
    spectrum = np.abs(np.fft.rfft(heard)) ** 2
    freqs = np.fft.rfftfreq(len(heard), 1 / 8000)
    assert spectrum[np.abs(freqs - 440) < 30].sum() / spectrum.sum() > 0.5
