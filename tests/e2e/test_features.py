"""Operator feature codes, pressed on a SIPp operator phone (RFC 2833, speech between the
digits) and checked from outside: what the caller's media port received (captured on the
loopback interface: RFC 2833 events, and DTMF tone pairs in the decoded audio), the caller's
and phones' SIPp traces, the recording (found by correlation with the source prompt), the
block list row and the audit log in the store, and /metrics.

One stack; the calls run one after another (one operator logged in to the support desk at
a time, each phone pressing its own code)."""

from __future__ import annotations

import json
import sqlite3
import urllib.request

import numpy as np
import pytest

from ivr.audio.wav import read_wav
from tests.e2e.conftest import make_stack
from tests.e2e.journey_helpers import seconds, ts
from tests.e2e.recordings import (
    assert_sent_on_side,
    call_recording,
    noise,
    pcap_audio,
    trace_times,
)
from tests.e2e.rtp import alaw_encode, bursts_pcap, caller_pcap
from tests.e2e.rtp_capture import RtpCapture, dtmf_tones
from tests.e2e.stack import SippPeer, Stack, wait_until
from tests.e2e.xcorr import bye_at, find

DID = "0399000000"  # the example's 'other' entry: greeting, notice (ja), support desk
PRESS_AT = 3.0  # seconds after the operator answers that the code's first digit goes
MIN_PEAK = 0.8
MIN_LEAD = 0.3
SAME_TIME = 0.5  # s: the prompt in the caller's audio and in the recording


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    stack = make_stack(tmp_path_factory, prompt_cache, ["op1001", "op1002", "op1003", "sv2001"])
    stack.start_controller()
    stack.login("sv2001", "supervisor")
    stack.operator("sv2001")  # answers escalations with a steady 1 kHz tone
    yield stack
    stack.close()


def media_port(peer: SippPeer) -> int:
    return int(peer.args[peer.args.index("-mp") + 1])


def template(stack: Stack, rel: str) -> np.ndarray:
    """A prompt without its trailing digital silence: a call that ends right after the last
    word (end-and-refuse hangs up then) never carries it."""
    samples = read_wav(stack.data / "prompts" / f"{rel}.wav").samples
    voiced = np.nonzero(np.abs(samples) > 1e-3)[0]
    return samples[:voiced[-1] + 1]


def answered_by(phone: SippPeer, caller_number: str | None, since: float) -> float:
    """When the operator phone sent its 200 OK for this caller's INVITE (its own clock)."""
    invites = phone.invites_received(since=since, caller=caller_number)
    assert invites, f"{phone.workdir.name} never rang for {caller_number}"
    for t, what, body in phone.messages():
        if t >= invites[0] and "sent" in what and "SIP/2.0 200" in what and "INVITE" in body:
            return t
    raise AssertionError(f"{phone.workdir.name} never answered {caller_number}")


def feature_call(stack: Stack, operator: str, number: str, keys: list[tuple[float, str]],
                 talk: float, caller_audio: np.ndarray | None = None,
                 ) -> tuple[SippPeer, RtpCapture, dict, float]:
    """One call to the support desk answered by `operator`, whose phone presses `keys`
    (seconds after answering); the caller hangs up `talk` s after the operator answered,
    or earlier if Asterisk sends a BYE. caller_audio: what the caller sends (float samples,
    from the ACK on; default: speech)."""
    stack.login(operator, "support")
    try:
        running = stack.phones.pop(operator, None)  # a phone pressing another call's keys
        if running is not None:
            running.stop()
        phone = stack.operator(operator, pcap=lambda p: caller_pcap(p, 90.0, keys))
        wait_s = seconds(stack, "welcome") + seconds(stack, "notice") + 2.0
        pcap = None if caller_audio is None else (
            lambda p: bursts_pcap(p, [(0.0, alaw_encode(caller_audio))]))
        caller = stack.caller(number, DID, hangup_after=wait_s + talk, accept_bye=True,
                              pcap=pcap)
        capture = RtpCapture(media_port(caller)).start()
        try:
            result = caller.wait(wait_s + talk + 60)
        finally:
            capture.stop()
        pcm, times = capture.samples()  # kept beside SIPp's logs, to look at after a failure
        np.savez(caller.workdir / "received.npz", pcm=pcm, times=times,
                 events=np.array([k for _t, k in capture.events]),
                 packets=np.array([(at, ssrc, ts, len(p)) for at, ssrc, ts, p in capture.audio]))
        assert result.returncode == 0, (result.workdir / "screen.log").read_text()[-2000:]
    finally:
        stack.ivr("operators", "logout", operator, "--desk", "support")
    wanted = None if number == "anonymous" else number  # a withheld caller has no number
    record = stack.call_record(
        lambda c: c["caller"] == wanted and c["recording_sha256"]
        and ts(c["started_at"]) >= caller.started_at - 1,
        timeout=60, what=f"finalised record of {number}")
    return caller, capture, record, answered_by(phone, wanted, caller.started_at)


def no_feature_dtmf(capture: RtpCapture, code: str) -> None:
    """The caller received neither the code's RFC 2833 events nor its tones in the audio."""
    assert capture.audio, "nothing captured on the caller's media port"
    events = {key for _at, key in capture.events}
    assert not events & set(code), (code, capture.events)
    pcm, _times = capture.samples()
    tones = dtmf_tones(pcm)
    assert not [k for _t, k in tones if k in code], (code, tones)


def located(signal: np.ndarray, prompt: np.ndarray) -> float:
    """Where `prompt` starts in `signal` (s), from its one-second pieces found one by one:
    the rebuilt recording (20 ms frames from the recorder's clock) may shift a piece by a
    frame, which spoils one long correlation but not the pieces. Most pieces must be found,
    strongly and far above anything else, and agree on the start within 0.1 s."""
    starts = []
    pieces = range(0, len(prompt) - 8000 + 1, 8000)
    for k in pieces:
        match = find(signal, prompt[k:k + 8000])
        if match.peak >= MIN_PEAK and match.peak - match.runner_up >= MIN_LEAD:
            starts.append(match.start - k / 8000)
    assert len(starts) >= 0.6 * len(pieces), (starts, len(pieces))
    middle = float(np.median(starts))
    agreeing = [x for x in starts if abs(x - middle) <= 0.1]
    assert len(agreeing) >= 0.6 * len(pieces), (starts, len(pieces))
    return middle


def in_audio_and_recording(capture: RtpCapture, caller: SippPeer, record: dict,
                           prompt: np.ndarray, after: float) -> tuple[float, float]:
    """Wall-clock start of `prompt` in the caller's received audio and in the recording's
    heard leg (placed on the caller's clock by the BYE: the leg ends when the call does),
    both searched after `after`."""
    pcm, times = capture.samples()
    first = int(np.argmax(times >= after))
    heard_at = float(times[first + max(0, round(located(pcm[first:], prompt) * 8000))])
    tx = call_recording(record).heard.samples
    tx_start = bye_at(caller) - len(tx) / 8000
    skip = max(0, round((after - tx_start) * 8000))
    return heard_at, tx_start + skip / 8000 + located(tx[skip:], prompt)


def events(record: dict, kind: str) -> list[dict]:
    return [e for e in record["events"] if e["kind"] == kind]


def metric(stack: Stack, sample: str) -> float:
    """One sample of /metrics, e.g. 'ivr_operator_features_total{feature="flag"}'."""
    url = f"http://127.0.0.1:{stack.ports['web']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            head, _, value = line.rpartition(" ")
            if head == sample:
                return float(value)
    return 0.0


def test_flag_marks_the_call_and_the_caller_hears_no_digits(stack):
    # *1 is the flag; 5 is no feature: it must reach the caller (the capture sees DTMF).
    keys = [(PRESS_AT, "*"), (PRESS_AT + 0.6, "1"), (PRESS_AT + 3.0, "5")]
    _caller, capture, record, answered = feature_call(stack, "op1001", "0355550101", keys,
                                                      9.0)
    no_feature_dtmf(capture, "*1")
    assert "5" in {k for _at, k in capture.events}, capture.events
    assert "harassment" in (record["flags"] or "").split()
    flagged = events(record, "flagged")
    assert flagged and flagged[0]["data"]["operator"] == "op1001", record["events"]
    # Asterisk's time of the UserEvent: after the second digit left the phone.
    assert answered + PRESS_AT < float(flagged[0]["at"]) < answered + PRESS_AT + 3, flagged
    print("FEATURE-FLAG " + json.dumps({"event_after_second_digit": round(
        float(flagged[0]["at"]) - (answered + PRESS_AT + 0.6), 3)}))
    assert metric(stack, 'ivr_operator_features_total{feature="flag"}') >= 1
    assert "kind=harassment_flag" in stack.controller_log()


def test_notice_is_heard_and_recorded_at_the_same_time(stack):
    keys = [(PRESS_AT, "*"), (PRESS_AT + 0.6, "2")]
    talk = PRESS_AT + seconds(stack, "notice") + 5.0
    caller, capture, record, answered = feature_call(stack, "op1002", "0355550102", keys, talk)
    no_feature_dtmf(capture, "*2")
    # Searched after the operator answered: the notice before queueing is not this one.
    heard_at, recorded_at = in_audio_and_recording(capture, caller, record,
                                                   template(stack, "ja/notice"), answered)
    assert abs(heard_at - recorded_at) <= SAME_TIME, (heard_at, recorded_at)
    assert answered + PRESS_AT < heard_at < answered + PRESS_AT + 3, (answered, heard_at)
    notice = events(record, "feature_notice")
    assert notice and notice[0]["data"]["prompt"] == "ja/notice", record["events"]
    assert abs(float(notice[0]["at"]) - heard_at) < 1.0, (notice, heard_at)
    assert events(record, "feature_notice_end")[0]["data"]["status"] == "SUCCESS"
    print("FEATURE-NOTICE " + json.dumps({"heard_after_answer": round(heard_at - answered, 3),
                                          "recorded_minus_heard": round(recorded_at - heard_at,
                                                                        3)}))


def test_escalate_moves_the_caller_to_the_supervisor_desk(stack):
    keys = [(PRESS_AT, "*"), (PRESS_AT + 0.6, "3")]
    supervisor = stack.phones["sv2001"]
    sent = noise(90.0, seed=1503)  # the caller's known audio
    caller, capture, record, answered = feature_call(stack, "op1003", "0355550103", keys, 14.0,
                                                     caller_audio=sent)
    no_feature_dtmf(capture, "*3")
    rang = supervisor.invites_received(since=answered, caller="0355550103")
    assert rang, "the supervisor's phone never rang"
    assert answered + PRESS_AT < rang[0] < answered + PRESS_AT + 5, (answered, rang)
    print("FEATURE-ESCALATE " + json.dumps({"supervisor_invite_after_second_digit": round(
        rang[0] - (answered + PRESS_AT + 0.6), 3)}))
    escalated = events(record, "escalated")
    assert escalated and escalated[0]["data"]["desk"] == "supervisor", record["events"]
    assert escalated[0]["data"]["operator"] == "op1003"
    assert record["desk"] == "supervisor" and record["operator"] == "sv2001", record
    # One recording across the move: the supervisor's 1 kHz tone is in the caller's leg.
    tx = call_recording(record).heard.samples
    tx_start = bye_at(caller) - len(tx) / 8000
    tail = tx[max(0, round((rang[0] + 1.5 - tx_start) * 8000)):]
    spectrum = np.abs(np.fft.rfft(tail[:8000])) ** 2
    freqs = np.fft.rfftfreq(8000, 1 / 8000)
    assert spectrum[np.abs(freqs - 1000) < 50].sum() / spectrum.sum() > 0.5
    recorded_whole(stack, caller, record, sent)


def recorded_whole(stack: Stack, caller: SippPeer, record: dict, sent: np.ndarray) -> None:
    """The escalated call is one archive covering the call (SIPp: 200 OK → BYE) holding
    every party where SIPp sent it: the caller's noise on the left throughout (before and
    after the move), the first operator's speech on the right (from their phone's pcap,
    before the code was pressed), the supervisor's tone on the right at the end."""
    [row] = recording_rows(stack, record["id"])
    recording = call_recording(record)
    assert row["path"] in str(recording.path) and row["kind"] == "call"
    left, right = recording.left.samples, recording.right.samples
    sip = trace_times(caller)
    assert abs(recording.duration - (sip["bye"] - sip["ok"])) <= 0.5
    assert_sent_on_side(left, right, sent, 0.5, sip["bye"] - sip["ack"] - 1.0,
                        sip["ack"] - sip["ok"])
    first = stack.phones["op1003"]  # the phone that answered, then pressed *3
    phone = trace_times(first, since=caller.started_at)
    spoken = pcap_audio(first.workdir / "pcap" / "operator.pcap")
    # Its speech up to the code (the phone mutes around a key press).
    assert_sent_on_side(right, left, spoken, 0.2, PRESS_AT - 0.4, phone["ack"] - sip["ok"],
                        step=0.4)
    tail = right[round((sip["bye"] - sip["ok"] - 2.0) * 8000):][:8000]
    spectrum = np.abs(np.fft.rfft(tail)) ** 2
    freqs = np.fft.rfftfreq(len(tail), 1 / 8000)
    assert spectrum[np.abs(freqs - 1000) < 50].sum() / spectrum.sum() > 0.5


def recording_rows(stack: Stack, call_id: str) -> list[dict]:
    with sqlite3.connect(stack.data / "ivr.sqlite3") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM recordings WHERE call_id = ?",
                                            (call_id,))]


def block_rows(stack: Stack, number: str) -> list[dict]:
    with sqlite3.connect(stack.data / "ivr.sqlite3") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM blocks WHERE value = ?", (number,))]


def test_end_and_refuse_closes_ends_and_blocks(stack):
    number = "0355550104"
    keys = [(PRESS_AT, "*"), (PRESS_AT + 0.6, "9")]
    caller, capture, record, answered = feature_call(stack, "op1001", number, keys, 40.0)
    no_feature_dtmf(capture, "*9")
    # Asterisk hung up on the caller (the caller did not send the BYE).
    byes = [(t, what) for t, what, _b in caller.messages() if "| BYE " in what]
    assert byes and "received" in byes[0][1], byes
    closing = template(stack, "ja/operator_closing")
    heard_at, recorded_at = in_audio_and_recording(capture, caller, record, closing, answered)
    assert abs(heard_at - recorded_at) <= SAME_TIME, (heard_at, recorded_at)
    assert heard_at < byes[0][0] <= heard_at + len(closing) / 8000 + 1.5, (heard_at, byes)
    assert record["hangup_by"] == "operator", record
    assert events(record, "end_and_refuse")[0]["data"]["operator"] == "op1001"
    blocked = events(record, "blocked")
    assert blocked, record["events"]
    rows = wait_until(lambda: block_rows(stack, number), 10, what="block row")
    row = rows[0]
    assert row["source"] == "operator" and row["added_by"] == "op1001", row
    assert row["call_id"] == record["id"] and row["review"] == "pending", row
    assert row["reason"] == "ended by operator" and row["kind"] == "exact", row
    expires = ts(str(row["expires_at"]).replace(" ", "T") + ("" if "+" in str(
        row["expires_at"]) else "+00:00"))
    assert abs(expires - (ts(record["ended_at"]) + 30 * 86400)) < 120, (row, record)
    with sqlite3.connect(stack.data / "ivr.sqlite3") as db:
        audit = db.execute("SELECT actor, role, action, target FROM audit_log "
                           "WHERE action = 'block.add'").fetchall()
    assert ("op1001", "operator", "block.add", f"block:{row['id']}") in audit, audit
    # A later call from the number is refused by the inbound check; no operator rings.
    stack.login("op1003", "support")
    try:
        watcher = stack.operator("op1003")  # a phone that would answer, were it rung
        again = stack.caller(number, DID, hangup_after=60.0, accept_bye=True)
        assert again.wait(120).returncode == 0, again.workdir
    finally:
        stack.ivr("operators", "logout", "op1003", "--desk", "support")
    refused = stack.call_record(lambda c: c["caller"] == number and c["outcome"] == "refused",
                                timeout=60, what=f"refused record of {number}")
    assert refused["rule"] == f"block:{row['id']}", refused
    assert [w for _t, w, _b in again.messages() if "received" in w and "| BYE " in w]
    assert not watcher.invites_received(since=again.started_at, caller=number)
    print("FEATURE-END " + json.dumps({"closing_heard_after_answer": round(heard_at - answered,
                                                                           3),
                                       "bye_after_closing_start": round(byes[0][0] - heard_at,
                                                                        3)}))


def test_end_and_refuse_on_a_withheld_caller_only_tells_the_operator(stack):
    keys = [(PRESS_AT, "*"), (PRESS_AT + 0.6, "9")]
    caller, capture, record, _answered = feature_call(stack, "op1002", "anonymous", keys, 8.0)
    no_feature_dtmf(capture, "*9")
    # The caller stayed on (they hung up themselves) and no block was added.
    byes = [what for _t, what, _b in caller.messages() if "| BYE " in what]
    assert byes and "sent" in byes[0], byes
    impossible = events(record, "block_impossible")
    assert impossible and impossible[0]["data"]["reason"] == "withheld number", record
    assert not events(record, "blocked")


def test_changed_codes_apply_after_a_reload_and_bad_ones_are_refused(stack):
    """Asterisk's own view (`features show`) before and after `ivr reload`; no restart."""
    def flag_line() -> str:
        return next((line for line in stack.cli("features show").splitlines()
                     if "ivr_flag" in line), "")

    settings = stack.root / "protection.yaml"
    assert "*1" in flag_line(), stack.cli("features show")
    try:
        settings.write_text("features:\n  codes: {flag: '#4'}\n")
        assert "reloaded" in stack.ivr("reload").stdout
        assert "#4" in flag_line() and "*1" not in flag_line(), flag_line()
        settings.write_text("features:\n  codes: {flag: '*2'}\n")  # the notice's code
        refused = stack.ivr("reload", check=False)
        assert refused.returncode != 0 and "features.codes" in refused.stderr, refused
        assert "#4" in flag_line(), flag_line()  # what is in service stays
    finally:
        settings.unlink(missing_ok=True)
        stack.ivr("reload")
    assert "*1" in flag_line(), flag_line()

