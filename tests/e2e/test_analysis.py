"""A loud caller is found by the recording analysis; a calm one is not.

Real Asterisk 22 + SIPp. The caller's RTP is Debian's speech pcap, and for one call a 4 s
stretch of it made 18 dB louder with numpy. After the hang-up the archive (stereo FLAC) is
indexed and the analysis worker stores its result in the index row: the loud call must have
one shouting episode on the caller's side where the loud stretch was sent (±1 s; the time is
SIPp's, from its 200 OK and the start of the pcap), on no other side; the calm call none.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from ivr.audio.wav import _ALAW_TABLE
from tests.e2e.conftest import support_desk_stack
from tests.e2e.rtp import alaw_encode, bursts_pcap, speech_alaw, tone_pcap
from tests.e2e.stack import SippPeer, Stack, intro_seconds, wait_until

DID = "0399000000"  # the journey's 'other' entry: greeting, notice, then the support desk
TOLERANCE = 1.0  # s, an episode's place against where the loud stretch was sent
LOUD_S = 4.0
LOUD_GAIN_DB = 18.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    stack = support_desk_stack(tmp_path_factory, prompt_cache)
    yield stack
    stack.close()



def caller_audio(seconds: float, loud_at: float | None) -> bytes:
    """Debian's speech as A-law; from `loud_at`, LOUD_S of it LOUD_GAIN_DB louder."""
    speech = _ALAW_TABLE[np.frombuffer(speech_alaw(seconds), dtype=np.uint8)].copy()
    if loud_at is not None:
        k = slice(int(loud_at * 8000), int((loud_at + LOUD_S) * 8000))
        speech[k] = np.clip(speech[k] * 10 ** (LOUD_GAIN_DB / 20), -1.0, 1.0)
    return alaw_encode(speech)


def answered_and_started(peer: SippPeer) -> tuple[float, float]:
    """(200 OK received, ACK sent = the pcap starts playing) on SIPp's clock."""
    ok = ack = None
    for at, what, body in peer.messages():
        first = body.strip().splitlines()[0] if body.strip() else ""
        if ok is None and "received" in what and first.startswith("SIP/2.0 200") \
                and "INVITE" in body:
            ok = at
        elif ack is None and "sent" in what and first.startswith("ACK "):
            ack = at
    assert ok and ack, f"incomplete SIPp trace in {peer.workdir}"
    return ok, ack


def analysed_row(stack: Stack, call_id: str) -> dict:
    """The call's index row once the worker has dealt with it (read from the store)."""
    def done():
        with sqlite3.connect(stack.data / "ivr.sqlite3") as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM recordings WHERE call_id = ? AND kind = 'call'",
                             (call_id,)).fetchone()
        return dict(row) if row and row["analysis_state"] in ("done", "failed") else None

    return wait_until(done, 60, interval=0.5, what=f"analysis of {call_id}")


def place_call(stack: Stack, number: str, loud_at: float | None, seconds: float) -> dict:
    import json

    stack.operator("op1001", pcap=lambda p: tone_pcap(p, 120.0, level=0.1))
    caller = stack.caller(number, DID, hangup_after=seconds,
                          pcap=lambda p: bursts_pcap(p, [(0.0, caller_audio(seconds, loud_at))]))
    result = caller.wait(120)
    assert result.returncode == 0, (result.workdir / "screen.log").read_text()[-2000:]
    ok, ack = answered_and_started(caller)
    record = stack.call_record(lambda c: c["caller"] == number and c["recording_sha256"],
                               timeout=40, what="finalised call record")
    row = analysed_row(stack, record["id"])
    assert row["analysis_state"] == "done", row
    assert row["state"] == "final" and row["sha256"] == record["recording_sha256"]
    analysis = json.loads(row["analysis"])
    analysis["_pcap_start"] = ack - ok  # the pcap's time 0 in the recording
    analysis["_row"] = row
    return analysis


def test_a_loud_caller_has_one_episode_at_the_right_time(stack):
    intro = intro_seconds(stack)
    loud_at = intro + 8.0  # talking to the operator, then raising the voice
    analysis = place_call(stack, "0312000101", loud_at, intro + 20.0)
    expected = analysis["_pcap_start"] + loud_at
    episodes = analysis["caller"]["episodes"]
    print(f"loud stretch sent at {expected:.2f}-{expected + LOUD_S:.2f} s; episodes "
          f"{episodes}; caller baseline {analysis['caller']['baseline_dbfs']} dBFS")
    assert len(episodes) == 1, episodes
    assert abs(episodes[0]["start"] - expected) <= TOLERANCE
    assert abs(episodes[0]["end"] - (expected + LOUD_S)) <= TOLERANCE
    assert analysis["other"]["episodes"] == []
    assert analysis["_row"]["shouting"] == 1
    # The figures the search and the picture use are there and plausible.
    assert 0.5 < analysis["caller"]["talk_ratio"] <= 1.0
    assert len(analysis["caller"]["loudness"]) == pytest.approx(analysis["duration"] * 10, abs=1)


def test_a_calm_caller_has_none(stack):
    intro = intro_seconds(stack)
    analysis = place_call(stack, "0312000102", None, intro + 20.0)
    print(f"calm call: caller baseline {analysis['caller']['baseline_dbfs']} dBFS, "
          f"episodes {analysis['caller']['episodes']} / {analysis['other']['episodes']}")
    assert analysis["caller"]["baseline_dbfs"] is not None  # the caller did talk
    assert analysis["caller"]["episodes"] == [] and analysis["other"]["episodes"] == []
    assert analysis["_row"]["shouting"] == 0
