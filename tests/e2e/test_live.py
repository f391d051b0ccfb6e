"""Live protection with a real call (Asterisk 22 + SIPp): a caller whose voice turns loud at a
known moment of its pcap is found shouting, the operator hears them softened, the caller is
warned, and the recording keeps the caller as they were.

References, none of them the controller's clock: SIPp's trace (the ACK is the pcap's 0 s),
the pcap's own timeline (where the loud stretch is), Asterisk's timestamp on the IvrShout
AMI event (the alert), the RTP each phone received (captured on the wire, decoded), and
the archive's samples.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from ivr.audio.wav import read_wav
from ivr.live.sounds import beep_samples
from tests.e2e.ami_tap import AmiTap
from tests.e2e.conftest import make_stack
from tests.e2e.recordings import call_recording, noise, trace_times
from tests.e2e.rtp import alaw_encode, bursts_pcap
from tests.e2e.rtp_capture import RtpCapture
from tests.e2e.stack import intro_seconds
from tests.e2e.xcorr import find, find_in_pieces

OPERATORS = ["op1001", "op1002"]  # both calls are answered at once
DID = "0399000000"  # the 'other' entry: greeting, notice, the support desk
RATE = 8000
SOFTEN_DB = 12.0
WARNING_AFTER = 3.0
SECOND_AFTER = 3.5  # the operator's beep: after 6.5 s of shouting
PROTECTION = f"""
live:
  enabled: true
  soften_db: [{SOFTEN_DB:g}]
  warning_after: {WARNING_AFTER:g}
  second_stage: offer_end
  second_after: {SECOND_AFTER:g}
"""
CALM, LOUD = 0.06, 0.8  # peak levels of the caller's noise (RMS about -36 and -14 dBFS)
ALERT_WITHIN = 3.0  # s from the loud onset to the alert (the bound)
LEVEL_DB = 1.5  # received levels against the expected, A-law and jitter included
RECORDED_DB = 1.0  # the recording's caller side against the source


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    root = tmp_path_factory.mktemp("live-conf")
    (root / "protection.yaml").write_text(PROTECTION)
    stack = make_stack(tmp_path_factory, prompt_cache, [*OPERATORS, "op1003", "sv2001"],
                       extra=f'[protection]\nfile = "{root / "protection.yaml"}"\n')
    stack.start_controller()
    # Quiet operators: what the caller hears is mostly the warning when it plays.
    quiet = noise(120.0, seed=1701, level=0.01)
    for operator in OPERATORS:
        stack.login(operator, "support")
        stack.operator(operator, pcap=lambda p: bursts_pcap(p, [(0.0, alaw_encode(quiet))]))
    yield stack
    stack.close()


def media_port(peer) -> int:
    return int(peer.args[peer.args.index("-mp") + 1])


def level_between(samples: np.ndarray, times: np.ndarray, start: float, end: float) -> float:
    """The RMS level (dBFS) of what arrived between two wall-clock times."""
    chosen = samples[(times >= start) & (times < end)]
    assert len(chosen) > RATE, (start, end, len(chosen))
    return float(10 * np.log10(np.mean(chosen ** 2)))


def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def test_shouting_alerted_softened_warned_recorded_as_it_was(stack):
    intro = intro_seconds(stack) + 1.5  # greeting, notice, guard and the operator's answer
    loud_at, loud_for, calm_after = intro + 6.0, 9.0, 9.0
    hangup_after = loud_at + loud_for + calm_after
    calm = noise(hangup_after, seed=1702, level=CALM)
    loud = noise(loud_for, seed=1703, level=LOUD)
    sent = calm.copy()
    sent[round(loud_at * RATE):round(loud_at * RATE) + len(loud)] = loud
    tap = AmiTap(stack)
    caller = stack.caller("0317000001", DID, hangup_after=hangup_after,
                          pcap=lambda p: bursts_pcap(p, [(0.0, alaw_encode(sent))]))
    calm_caller = stack.caller("0317000002", DID, hangup_after=intro + 8.0,
                               pcap=lambda p: bursts_pcap(p, [(0.0, alaw_encode(calm))]))
    heard = RtpCapture(media_port(caller)).start()
    at_phones = {op: RtpCapture(media_port(stack.phones[op])).start() for op in OPERATORS}
    try:
        result = caller.wait(180)
        calm_result = calm_caller.wait(180)
    finally:
        heard.stop()
        for capture in at_phones.values():
            capture.stop()
        time.sleep(1.0)
        tap.close()
    assert result.returncode == 0, (result.workdir / "screen.log").read_text()[-2000:]
    assert calm_result.returncode == 0
    sip = trace_times(caller)
    onset = sip["ack"] + loud_at  # the pcap's 0 s is the ACK (SIPp plays it from there)
    loud_end = onset + loud_for

    # The alert: Asterisk's own time on the IvrShout event, within 3 s of the onset.
    record = stack.call_record(lambda c: c["caller"] == "0317000001" and c["recording_sha256"],
                               timeout=90, what="finalised call record")
    started = [e for e in tap.events if e.get("CallId") == record["id"]
               and e.get("Stage") == "started"]
    assert len(started) == 1, tap.events
    alert_after = float(started[0]["Timestamp"]) - onset
    print(f"\nLIVE alert {alert_after:.2f} s after the loud onset")
    assert 0.0 < alert_after <= ALERT_WITHIN, alert_after

    kinds = [e["kind"] for e in record["events"]]
    for kind in ("shout_started", "shout_softened", "shout_warning", "shout_ended",
                 "announcement", "shout_second_stage", "shout_beep"):
        assert kind in kinds, kinds
    ended = next(e for e in record["events"] if e["kind"] == "shout_ended")
    assert ended["data"]["restored"] is True

    # What the operator heard: the caller as sent while calm, lowered by the step while
    # shouting (once the step was taken), as sent again after the release.
    assert record["operator"] in OPERATORS, record["operator"]
    pcm, times = at_phones[record["operator"]].samples()
    calm_db, loud_db = rms_db(calm[:8 * RATE]), rms_db(loud)
    before = level_between(pcm, times, onset - 4.0, onset - 0.5)
    # (From the step, taken within the alert time, to the beep, which comes later.)
    softened = level_between(pcm, times, onset + ALERT_WITHIN + 1.0,
                             onset + WARNING_AFTER + SECOND_AFTER)
    after = level_between(pcm, times, loud_end + 6.0, sip["bye"] - 0.5)
    print(f"LIVE operator heard calm {before:.1f} (sent {calm_db:.1f}), shouting "
          f"{softened:.1f} (sent {loud_db:.1f}, step {SOFTEN_DB:g}), after {after:.1f} dBFS")
    assert abs(before - calm_db) <= LEVEL_DB
    assert abs(softened - (loud_db - SOFTEN_DB)) <= LEVEL_DB
    assert abs(after - calm_db) <= LEVEL_DB

    # The recording keeps the caller's voice as it was, softening or not.
    recording = call_recording(record)
    offset = sip["ack"] - sip["ok"]  # the pcap's 0 s in the recording
    left = recording.left.samples
    a, b = round((offset + loud_at + 0.5) * RATE), round((offset + loud_at + loud_for - 0.5) * RATE)
    recorded = rms_db(left[a:b])
    print(f"LIVE recording's caller side while shouting {recorded:.2f} dBFS, sent {loud_db:.2f}")
    assert abs(recorded - loud_db) <= RECORDED_DB

    # The warning: in what the caller's phone received, after the warning time of shouting;
    # not at the operator; and in the recording's heard side where the caller heard it.
    prompt = read_wav(stack.data / "prompts" / "ja" / "shout_warning.wav").samples
    voiced = np.nonzero(np.abs(prompt) > 1e-3)[0]
    prompt = prompt[voiced[0]:voiced[-1] + 1]
    caller_pcm, caller_times = heard.samples()
    found, peak, _missed = find_in_pieces(caller_pcm, prompt, 0.8)
    warned_at = float(np.interp(found * RATE, np.arange(len(caller_times)), caller_times))
    print(f"LIVE warning heard {warned_at - onset:.2f} s after the onset (peak {peak:.2f})")
    assert WARNING_AFTER <= warned_at - onset <= WARNING_AFTER + ALERT_WITHIN + 1.0
    with pytest.raises(AssertionError):
        find_in_pieces(pcm, prompt, 0.8)
    in_archive, _peak, _missed = find_in_pieces(recording.right.samples, prompt, 0.8)
    assert abs(sip["ok"] + in_archive - warned_at) <= 0.5, (in_archive, warned_at - sip["ok"])

    # The second stage: the beep reached the operator, not the caller.
    chosen = (times >= onset + WARNING_AFTER + SECOND_AFTER) & (times < loud_end + 4.0)
    # The beep's own samples (ivr/live/sounds.py), looked for by correlation: tone energy
    # alone is no proof (the warning's speech, playing to the caller then, has 880 Hz in it).
    beep = beep_samples()
    at_operator = find(pcm[chosen], beep)
    at_caller = find(caller_pcm[(caller_times >= onset + WARNING_AFTER + SECOND_AFTER)
                                & (caller_times < loud_end + 4.0)], beep)
    print(f"LIVE beep at the operator: correlation {at_operator.peak:.2f}; at the caller: "
          f"{at_caller.peak:.2f}")
    assert at_operator.peak >= 0.8 and at_caller.peak < 0.3

    # A calm call raises nothing.
    calm_record = stack.call_record(
        lambda c: c["caller"] == "0317000002" and c["recording_sha256"], timeout=90,
        what="the calm call's record")
    assert calm_record["operator"] in OPERATORS, calm_record  # it was connected, and followed
    assert not [e for e in calm_record["events"] if e["kind"].startswith("shout")]
    assert not [e for e in tap.events if e.get("CallId") == calm_record["id"]]


def test_second_stage_escalate_takes_the_shouting_caller_to_the_supervisor(stack):
    """`second_stage: escalate`, set through the settings as an admin would: the caller's own
    channel goes to the supervisor desk (sv2001's phone rings with them), the operator's leg
    ends, the recording goes on through both."""
    stack.login("sv2001", "supervisor")
    stack.operator("sv2001")
    escalate = ('{"enabled": true, "soften_db": [6], "warning_after": 0, '
                '"second_stage": "escalate", "second_after": 1, "escalate_desk": "supervisor", '
                '"desks": {"supervisor": {"enabled": false}}}')
    (stack.root / "live-escalate.json").write_text(escalate)
    stack.ivr("settings", "set", "live", str(stack.root / "live-escalate.json"))
    time.sleep(2.0)  # applied to the next call within a second
    intro = intro_seconds(stack) + 1.5
    loud_at, hangup_after = intro + 5.0, intro + 25.0
    sent = noise(hangup_after, seed=1704, level=CALM)
    sent[round(loud_at * RATE):round((loud_at + 5.0) * RATE)] = noise(5.0, seed=1705,
                                                                       level=LOUD)
    caller = stack.caller("0317000003", DID, hangup_after=hangup_after,
                          pcap=lambda p: bursts_pcap(p, [(0.0, alaw_encode(sent))]))
    result = caller.wait(180)
    assert result.returncode == 0, (result.workdir / "screen.log").read_text()[-2000:]
    sip = trace_times(caller)
    rung = stack.phones["sv2001"].invites_received(since=sip["ack"] + loud_at,
                                                   caller="0317000003")
    print(f"\nLIVE escalated: the supervisor's phone rang {rung[0] - sip['ack'] - loud_at:.2f} s "
          "after the loud onset" if rung else "\nLIVE escalated: the supervisor never rang")
    assert rung, "the supervisor's phone never rang for the shouting caller"
    record = stack.call_record(lambda c: c["caller"] == "0317000003" and c["recording_sha256"],
                               timeout=90, what="the escalated call's record")
    stage = [e for e in record["events"] if e["kind"] == "shout_second_stage"]
    assert stage and stage[0]["data"]["stage"] == "escalate" and stage[0]["data"]["ok"]
    escalated = [e for e in record["events"] if e["kind"] == "escalated"]
    assert escalated and escalated[0]["data"]["desk"] == "supervisor", record["events"]
    assert record["operator"] == "sv2001"  # the last operator: the supervisor answered
    # One recording across both desks, as long as the call.
    recording = call_recording(record)
    assert abs(recording.duration - (sip["bye"] - sip["ok"])) <= 0.5
