"""The stereo archive of a real call (Asterisk 22 + SIPp), checked against what was sent.

The caller sends known noise A, the operator's phone known noise B (both seeded, so each
correlates only with itself). The archive must hold A on the left and B on the right, each
where SIPp's own traces say it was sent (pcap time 0 = the ACK), the recording notice on the
right where the caller's media port received it (captured on the wire), and last as long as
the call (SIPp: 200 OK received → BYE). A caller who stops sending is flagged one-sided while
the archive still covers the call; a controller killed mid-call leaves nothing unindexed.
"""

from __future__ import annotations

import hashlib
import signal
import sqlite3
import time

import numpy as np
import pytest

from ivr.audio.wav import read_wav
from ivr.recordings.chain import GENESIS, link_hash
from tests.e2e.conftest import support_desk_stack
from tests.e2e.recordings import (
    assert_sent_on_side,
    call_recording,
    noise,
    pcap_audio,
    trace_times,
)
from tests.e2e.rtp import alaw_encode, bursts_pcap
from tests.e2e.rtp_capture import RtpCapture
from tests.e2e.stack import Stack, intro_seconds, wait_until
from tests.e2e.xcorr import find_in_pieces

DID = "0399000000"  # the journey's 'other' entry: greeting, notice, then the support desk
LENGTH = 0.5  # s, archive length against the call
MIN_PEAK = 0.8


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    stack = support_desk_stack(tmp_path_factory, prompt_cache)
    # The operator speaks known noise B for every call it answers.
    stack.phones.pop("op1001", None)
    stack.operator("op1001", pcap=lambda p: bursts_pcap(p, [(0.0, alaw_encode(B))]))
    yield stack
    stack.close()


A = noise(60.0, seed=1501)
B = noise(60.0, seed=1502)



def rows(stack: Stack, sql: str, *args) -> list[dict]:
    with sqlite3.connect(stack.data / "ivr.sqlite3") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(sql, args)]


def archive_row(stack: Stack, record: dict) -> dict:
    found = rows(stack, "SELECT * FROM recordings WHERE call_id = ? AND kind = 'call'",
                 record["id"])
    assert len(found) == 1, found
    return found[0]


def assert_chained(stack: Stack, row: dict) -> None:
    """The row's entry is in the chain, and the chain links from the genesis to the head
    (recomputed here from the stored texts, as a third party would)."""
    entries = rows(stack, "SELECT * FROM recording_chain ORDER BY seq")
    prev = GENESIS
    for entry in entries:
        assert entry["prev_hash"] == prev and link_hash(prev, entry["entry"]) == entry["hash"]
        prev = entry["hash"]
    mine = [e for e in entries if e["recording_id"] == row["id"]]
    assert len(mine) == 1 and mine[0]["seq"] == row["chain_seq"], (mine, row)
    assert f'"sha256":"{row["sha256"]}"' in mine[0]["entry"]


def notice_template(stack: Stack) -> np.ndarray:
    samples = read_wav(stack.data / "prompts" / "ja" / "notice.wav").samples
    voiced = np.nonzero(np.abs(samples) > 1e-3)[0]
    return samples[:voiced[-1] + 1]


def test_each_side_on_its_own_channel_notice_at_its_time_length_of_the_call(stack):
    hangup_after = intro_seconds(stack) + 10.0
    caller = stack.caller("0315000001", DID, hangup_after=hangup_after,
                          pcap=lambda p: bursts_pcap(p, [(0.0, alaw_encode(A))]))
    capture = RtpCapture(int(caller.args[caller.args.index("-mp") + 1])).start()
    try:
        result = caller.wait(120)
    finally:
        capture.stop()
    assert result.returncode == 0, (result.workdir / "screen.log").read_text()[-2000:]
    record = stack.call_record(lambda c: c["caller"] == "0315000001" and c["recording_sha256"],
                               timeout=60, what="finalised call record")
    assert record["operator"] == "op1001"
    recording = call_recording(record)  # stereo, its sha256 the record's
    left, right = recording.left.samples, recording.right.samples
    sip = trace_times(caller)
    phone = trace_times(stack.phones["op1001"], since=caller.started_at)
    call_seconds = sip["bye"] - sip["ok"]
    print(f"\nARCHIVE call {call_seconds:.3f} s, archive {recording.duration:.3f} s")
    assert abs(recording.duration - call_seconds) <= LENGTH

    # A (the caller) on the left where SIPp sent it, not on the right; B the other way round.
    sent_a = pcap_audio(caller.workdir / "caller.pcap")
    assert_sent_on_side(left, right, sent_a, 0.5, call_seconds - 1.0, sip["ack"] - sip["ok"])
    sent_b = pcap_audio(stack.phones["op1001"].workdir / "pcap" / "operator.pcap")
    assert_sent_on_side(right, left, sent_b, 0.2, sip["bye"] - phone["ack"] - 0.5,
                        phone["ack"] - sip["ok"])

    # The notice: on the right where the caller's port received it (wire clock), not left.
    notice = notice_template(stack)
    pcm, times = capture.samples()
    on_wire, _peak, _missed = find_in_pieces(pcm, notice, MIN_PEAK)
    heard_at = float(np.interp(on_wire * 8000, np.arange(len(times)), times))
    in_archive, _peak, _missed = find_in_pieces(right, notice, MIN_PEAK)
    print(f"ARCHIVE notice heard {heard_at - sip['ok']:.3f} s after the 200 OK, in the "
          f"archive at {in_archive:.3f} s")
    assert abs(sip["ok"] + in_archive - heard_at) <= 0.3, (in_archive, heard_at - sip["ok"])
    with pytest.raises(AssertionError):
        find_in_pieces(left, notice, MIN_PEAK)

    row = archive_row(stack, record)
    assert row["state"] == "final" and row["format"] == "flac" and row["origin"] == "finaliser"
    assert row["sha256"] == record["recording_sha256"]
    assert row["caller_audio"] > 0.9 and row["other_audio"] > 0.5, row
    assert "one_sided" not in row["flags"], row
    assert_chained(stack, row)


def test_a_caller_who_stops_sending_is_flagged_one_sided(stack):
    """RTP for the first 4 s only (a carrier fault): the archive still covers the call."""
    hangup_after = intro_seconds(stack) + 10.0
    caller = stack.caller("0315000002", DID, hangup_after=hangup_after,
                          pcap=lambda p: bursts_pcap(p, [(0.0, alaw_encode(A[:4 * 8000]))]))
    assert caller.wait(120).returncode == 0, (caller.workdir / "screen.log").read_text()
    record = stack.call_record(lambda c: c["caller"] == "0315000002" and c["recording_sha256"],
                               timeout=60, what="finalised call record")
    sip = trace_times(caller)
    recording = call_recording(record)
    assert abs(recording.duration - (sip["bye"] - sip["ok"])) <= LENGTH
    sent = pcap_audio(caller.workdir / "caller.pcap")
    assert_sent_on_side(recording.left.samples, recording.right.samples, sent, 0.2, 3.5,
                        sip["ack"] - sip["ok"])
    row = archive_row(stack, record)
    share = 4.0 / (sip["bye"] - sip["ok"])
    print(f"\nARCHIVE one-sided caller_audio={row['caller_audio']} (sent {share:.3f}) "
          f"other_audio={row['other_audio']} flags={row['flags']!r}")
    assert "one_sided:caller" in row["flags"].split(), row
    assert "one_sided:other" not in row["flags"].split(), row
    assert abs(row["caller_audio"] - share) < 0.05, (row, share)


def test_controller_killed_mid_call_recording_indexed_hashed_chained_analysed(stack):
    hangup_after = intro_seconds(stack) + 8.0
    caller = stack.caller("0315000003", DID, hangup_after=hangup_after,
                          pcap=lambda p: bursts_pcap(p, [(0.0, alaw_encode(A))]))
    wait_until(lambda: stack.phones["op1001"].invites_received(since=caller.started_at,
                                                               caller="0315000003"),
               60, what="operator rings")
    time.sleep(2.0)  # connected (the phone answers after 0.8 s)
    stack.controller.send_signal(signal.SIGKILL)
    stack.controller.wait(10)
    try:
        assert caller.wait(120).returncode == 0, (caller.workdir / "screen.log").read_text()
    finally:
        stack.start_controller()
    record = stack.call_record(lambda c: c["caller"] == "0315000003" and c["recording_sha256"],
                               timeout=60, what="recording finalised after the restart")
    recording = call_recording(record)
    sip = trace_times(caller)
    assert abs(recording.duration - (sip["bye"] - sip["ok"])) <= LENGTH
    row = wait_until(lambda: (r := archive_row(stack, record)) and r["chain_seq"] and r, 30,
                     what="archive row chained")
    assert row["state"] == "final"
    assert hashlib.sha256(recording.path.read_bytes()).hexdigest() == row["sha256"]
    assert (stack.data / "recordings" / row["path"]) == recording.path
    assert_chained(stack, row)
    # ... and analysed (ivr/recordings/service_analysis.py: the queue is the index).
    analysed = wait_until(lambda: (r := archive_row(stack, record))
                          and r["analysis_state"] == "done" and r, 60, what="row analysed")
    assert analysed["analysed_at"] and analysed["shouting"] == 0
    leftovers = [p.name for p in recording.path.parent.glob(f"{record['id']}*")
                 if p != recording.path]
    assert leftovers == [], leftovers
