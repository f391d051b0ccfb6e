"""One recorded call end to end, through real Asterisk 22 and SIPp, and the fail-safe path."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ivr.audio.wav import active_ratio, wav_duration
from tests.e2e.conftest import support_desk_stack
from tests.e2e.recordings import call_recording, no_leftovers
from tests.e2e.stack import Stack, intro_seconds, wait_until

CALLER = "0312345678"
DID = "0399000000"  # not a journey number: the 'other' entry, straight to the support desk


def ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    stack = support_desk_stack(tmp_path_factory, prompt_cache)
    yield stack
    stack.close()


def notice_seconds(stack: Stack) -> float:
    return wav_duration(stack.data / "prompts" / "ja" / "notice.wav")



def segment(samples: np.ndarray, rate: int, start: float, end: float) -> np.ndarray:
    return samples[int(max(0.0, start) * rate):int(max(0.0, end) * rate)]


def tone_share(samples: np.ndarray, freq: float = 1000.0, rate: int = 8000) -> float:
    """Share of the energy within 50 Hz of `freq`: the SIPp operator speaks a 1 kHz tone."""
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    total = spectrum.sum()
    return float(spectrum[np.abs(freqs - freq) < 50].sum() / total) if total > 0 else 0.0


def test_health_reports_every_part_up(stack):
    health = stack.health()
    assert health == {"status": "ok", "asterisk": "up", "ami": "up", "fastagi": "up",
                      "database": "up"}


def test_recorded_call_reaches_operator_after_notice(stack):
    operator = stack.operator("op1001")
    started = time.time()
    caller = stack.caller(CALLER, DID, hangup_after=intro_seconds(stack) + 9)
    result = caller.wait(90)
    assert result.returncode == 0, (result.workdir / "screen.log").read_text()[-2000:]

    record = stack.call_record(
        lambda c: c["caller"] == CALLER and c["recording_sha256"], timeout=40,
        what="finalised call record",
    )
    assert record["did"] == DID
    assert record["desk"] == "support"
    assert record["operator"] == "op1001"
    assert record["outcome"] == "answered"
    assert record["hangup_by"] == "caller"
    assert record["source"] == "controller"
    assert record["failsafe"] is False

    times = [ts(record[k]) for k in ("started_at", "notice_started_at", "notice_ended_at",
                                      "queue_joined_at", "connected_at", "ended_at")]
    assert times == sorted(times), record
    assert record["entry"] == "other"
    # The notice played in full: at least its own length between start and end.
    assert times[2] - times[1] >= notice_seconds(stack) - 0.3

    # The operator's phone rang only after the notice had finished (SIPp's own clock).
    invites = operator.invites_received(since=started)
    assert len(invites) == 1, "the operator should have rung once"
    assert invites[0] >= ts(record["notice_ended_at"]) - 0.05, (invites, record)

    kinds = [e["kind"] for e in record["events"]]
    for kind in ("call_started", "notice_started", "notice_finished", "routed",
                 "queue_joined", "operator_ringing", "connected", "hung_up",
                 "recording_finalised"):
        assert kind in kinds, kinds
    assert kinds.index("notice_finished") < kinds.index("operator_ringing")

    # The recording: a stereo archive covering the whole call, with both sides in it
    # (call_recording checks the file's sha256 against the record's).
    recording = call_recording(record)
    assert recording.path.exists() and not no_leftovers(record)
    call_seconds = ts(record["ended_at"]) - ts(record["started_at"])
    assert abs(record["recording_duration"] - call_seconds) < 1.0, (record, call_seconds)
    mixed = recording.mixed
    assert mixed.rate == 8000
    assert abs(len(mixed.samples) / mixed.rate - record["recording_duration"]) < 0.1
    assert active_ratio(mixed.samples, mixed.rate) > 0.3

    talk_from = ts(record["connected_at"]) - ts(record["started_at"])
    notice = intro_seconds(stack)
    # Both sides are in the recording: the caller's speech throughout, the operator's
    # tone once connected (and not before).
    talk = segment(mixed.samples, 8000, talk_from + 0.5, talk_from + 6.0)
    assert tone_share(talk) > 0.3, "no operator audio in the recording"
    assert tone_share(segment(mixed.samples, 8000, 0.5, notice - 0.5)) < 0.1
    assert active_ratio(segment(mixed.samples, 8000, talk_from + 0.5, talk_from + 6.0),
                        8000) > 0.9

    # The two sides apart: what the caller said (left), and what the caller heard (right).
    rx, tx = recording.left, recording.right
    assert active_ratio(segment(rx.samples, 8000, 1.0, call_seconds - 1.0), 8000) > 0.6
    assert tone_share(segment(rx.samples, 8000, talk_from + 0.5, talk_from + 6.0)) < 0.1
    assert active_ratio(segment(tx.samples, 8000, 0.3, notice - 0.3), 8000) > 0.5
    assert tone_share(segment(tx.samples, 8000, talk_from + 0.5, talk_from + 6.0)) > 0.8


def test_caller_hanging_up_during_notice_is_abandoned_in_menu(stack):
    operator = stack.operator("op1001")
    started = time.time()
    # Half-way through the notice: after the greeting (welcome), before the notice's end.
    welcome = wav_duration(stack.data / "prompts" / "ja" / "welcome.wav")
    caller = stack.caller("0399990000", DID, hangup_after=welcome + notice_seconds(stack) / 2)
    assert caller.wait(60).returncode == 0
    record = stack.call_record(
        lambda c: c["caller"] == "0399990000" and c["outcome"], timeout=30,
        what="abandoned call",
    )
    assert record["outcome"] == "abandoned_in_menu"
    assert record["notice_started_at"] is not None, "the caller left before the notice began"
    assert record["notice_ended_at"] is None
    assert not operator.invites_received(since=started, caller="0399990000")
    assert record["queue_joined_at"] is None
    assert record["operator"] is None
    wait_until(lambda: [c for c in stack.calls(False)
                        if c["id"] == record["id"] and c["recording_sha256"]], 30,
               what="recording finalised")


def test_failsafe_when_controller_is_down(stack):
    stack.stop_controller()
    try:
        operator = stack.operator("op1001")
        started = time.time()
        # Not knowing the entry, the fail-safe plays the notice in every entry's notice
        # languages: Japanese, then English.
        both = notice_seconds(stack) + wav_duration(stack.data / "prompts" / "en" / "notice.wav")
        caller = stack.caller("0311112222", DID, hangup_after=both + 7)
        result = caller.wait(90)
        assert result.returncode == 0, (result.workdir / "screen.log").read_text()[-2000:]
        invites = operator.invites_received(since=started)
        assert invites, "with the controller down the operator never rang"
        # The notice played in full before the operator rang.
        assert invites[0] - started >= both
    finally:
        stack.start_controller()

    # On its return the controller imports the call from Asterisk's CDR.
    record = stack.call_record(lambda c: c["caller"] == "0311112222" and c["recording_sha256"],
                               timeout=40, what="fail-safe call imported")
    assert record["source"] == "cdr"
    assert record["failsafe"] is True
    assert record["did"] == DID  # written into the CDR at the hang-up ([ivr-cdr-facts])
    assert record["desk"] == "support"
    assert record["operator"] == "op1001"
    assert record["outcome"] == "answered"
    tx = call_recording(record).right
    assert active_ratio(segment(tx.samples, 8000, 0.3, notice_seconds(stack) - 0.3), 8000) > 0.5


def test_ami_reconnects_after_asterisk_restart(stack):
    stack.stop_asterisk()
    wait_until(lambda: stack.health().get("ami") == "down", 20, what="AMI seen down")
    stack.start_asterisk()
    wait_until(lambda: stack.health().get("status") == "ok", 30, what="AMI back up")
    operator = stack.operator("op1001")
    started = time.time()
    caller = stack.caller("0322223333", DID, hangup_after=intro_seconds(stack) + 5)
    assert caller.wait(90).returncode == 0
    record = stack.call_record(lambda c: c["caller"] == "0322223333" and c["outcome"],
                               timeout=30, what="call after restart")
    assert record["outcome"] == "answered"
    assert record["source"] == "controller"
    assert operator.invites_received(since=started)


def test_metrics_count_calls(stack):
    import re
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{stack.ports['web']}/metrics") as resp:
        text = resp.read().decode()
    answered = re.search(r'^ivr_calls_ended_total\{outcome="answered"\} (\S+)$', text, re.M)
    assert answered and float(answered.group(1)) >= 1, text
    assert re.search(r"^ivr_ami_connected 1\.0$", text, re.M)
    assert re.search(r"^ivr_calls_active 0\.0$", text, re.M)
