"""Recordings keep the wall-clock timeline when neither side sends RTP.

Real Asterisk 22 + SIPp, with the wall-clock recorder on (`[recording] timeline = true`).
The caller and the operator's phone both stop sending RTP mid-call (silence suppression /
DTX on both ends: no packets at all, not silent packets); then the caller sends a marker
chirp at a known time. Every recording file must last as long as the call (SIPp's own
clock: 200 OK received → BYE sent) and the chirp must sit in the caller's leg where it was
sent. MixMonitor alone compresses the silent stretches away: without the setting the
archive is shorter than the call by the silent time (test_without_timeline_recorder).
"""

from __future__ import annotations

import numpy as np
import pytest

from ivr.audio.wav import wav_duration
from tests.e2e.conftest import support_desk_stack
from tests.e2e.recordings import call_recording
from tests.e2e.rtp import alaw_encode, bursts_pcap, speech_alaw
from tests.e2e.stack import SippPeer, intro_seconds

DID = "0399000000"  # the journey's 'other' entry: greeting, notice, then the support desk
TOLERANCE = 0.5  # s, recording length against the call
MARKER_TOLERANCE = 0.1  # s, the marker's place in the caller's leg


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    stack = support_desk_stack(tmp_path_factory, prompt_cache,
                               "[recording]\ntimeline = true\n")
    yield stack
    stack.close()



def marker(seconds: float = 0.4, rate: int = 8000) -> np.ndarray:
    """A rising chirp (1.2 → 2.4 kHz): nothing else in a call looks like it."""
    t = np.arange(int(seconds * rate)) / rate
    return 0.5 * np.sin(2 * np.pi * (1200 * t + 0.5 * (1200 / seconds) * t * t))


def tone(seconds: float, freq: float = 1000.0) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * freq * np.arange(int(seconds * 8000)) / 8000)


def call_window(peer: SippPeer) -> tuple[float, float, float]:
    """(200 OK received, ACK sent = RTP play starts, BYE sent) on SIPp's clock."""
    ok = ack = bye = None
    for at, what, body in peer.messages():
        first = body.strip().splitlines()[0] if body.strip() else ""
        if ok is None and "received" in what and first.startswith("SIP/2.0 200") \
                and "INVITE" in body:
            ok = at
        elif ack is None and "sent" in what and first.startswith("ACK "):
            ack = at
        elif "sent" in what and first.startswith("BYE "):
            bye = at
    assert ok and ack and bye, f"incomplete SIPp trace in {peer.workdir}"
    return ok, ack, bye


def find_marker(samples: np.ndarray, rate: int = 8000) -> tuple[float, float]:
    """(offset in s, peak / median of the normalised cross-correlation)."""
    ref = marker()
    x = samples.astype(float)
    corr = np.abs(np.correlate(x, ref, mode="valid"))
    energy = np.sqrt(np.convolve(x * x, np.ones(len(ref)), mode="valid")) + 1e-9
    score = corr / energy
    k = int(np.argmax(score))
    return k / rate, float(score[k] / (np.median(score) + 1e-9))


def pcm(audio) -> np.ndarray:
    """A side of the archive back as 16-bit sample values."""
    return np.round(audio.samples.astype(np.float64) * 32768).astype(np.int32)


def assert_durations(record: dict, call_seconds: float) -> dict[str, float]:
    """The archive (both sides: one stereo file) covers the call; so does each side."""
    recording = call_recording(record)
    durations = {"archive": recording.duration,
                 "left": recording.left.duration, "right": recording.right.duration}
    print(f"call {call_seconds:.3f} s, recordings {durations}")
    for leg, seconds in durations.items():
        assert abs(seconds - call_seconds) <= TOLERANCE, (
            f"{leg} recording lasts {seconds:.3f} s, the call {call_seconds:.3f} s")
    assert abs(record["recording_duration"] - durations["archive"]) < 0.01
    return durations


def test_both_sides_silent_then_marker(stack):
    intro = intro_seconds(stack)
    speech_until = intro + 4.0  # the caller talks through the IVR and into the call ...
    marker_at = intro + 13.0  # ... then nothing for ~9 s, then the marker ...
    hangup_after = intro + 17.0  # ... then nothing again until hanging up
    # The operator talks for 3 s after answering, then sends nothing.
    stack.operator("op1001", pcap=lambda p: bursts_pcap(p, [(0.0, alaw_encode(tone(3.0)))]))
    caller = stack.caller(
        "0312000001", DID, hangup_after=hangup_after,
        pcap=lambda p: bursts_pcap(p, [(0.0, speech_alaw(speech_until)),
                                       (marker_at, alaw_encode(marker()))]))
    result = caller.wait(120)
    assert result.returncode == 0, (result.workdir / "screen.log").read_text()[-2000:]
    ok, ack, bye = call_window(caller)
    call_seconds = bye - ok

    record = stack.call_record(
        lambda c: c["caller"] == "0312000001" and c["recording_sha256"], timeout=40,
        what="finalised call record")
    assert record["operator"] == "op1001"
    assert_durations(record, call_seconds)

    recording = call_recording(record)
    rx = pcm(recording.left)
    expected = (ack - ok) + marker_at  # pcap time 0 is when SIPp starts playing
    found, strength = find_marker(rx)
    print(f"marker expected {expected:.3f} s, found {found:.3f} s "
          f"({found - expected:+.3f} s, peak/median {strength:.0f})")
    assert strength > 20, "no marker in the caller's leg"
    assert abs(found - expected) <= MARKER_TOLERANCE

    # Where nobody sent anything, the legs are silent; the operator's 3 s of tone are in
    # what the caller heard once connected (after the intro), not in what the caller said.
    gap = rx[int((speech_until + 0.5) * 8000):int((marker_at - 0.5) * 8000)]
    assert np.abs(gap.astype(int)).max() < 50
    tx = pcm(recording.right)
    assert np.abs(tx[int((speech_until + 4.0) * 8000):int((marker_at - 0.5) * 8000)]
                  .astype(int)).max() < 50
    window = slice(int(intro * 8000), int((speech_until + 4.0) * 8000))
    assert 2.5 <= tone_seconds(tx[window]) <= 3.5
    assert tone_seconds(rx[window]) < 0.2


def tone_seconds(samples: np.ndarray, freq: float = 1000.0) -> float:
    """How long (100 ms blocks) the operator's 1 kHz tone dominates."""
    blocks = samples[:len(samples) // 800 * 800].astype(float).reshape(-1, 800)
    spectrum = np.abs(np.fft.rfft(blocks, axis=1)) ** 2
    freqs = np.fft.rfftfreq(800, 1 / 8000)
    share = spectrum[:, np.abs(freqs - freq) < 50].sum(axis=1) / (spectrum.sum(axis=1) + 1e-9)
    return float((share > 0.8).sum() * 0.1)


def test_failsafe_silent_caller_and_operator(stack):
    """Controller down: the dialplan alone records, plays the notice and queues; caller
    and operator send nothing once connected."""
    notice = wav_duration(stack.data / "prompts" / "ja" / "notice.wav")
    stack.stop_controller()
    try:
        # The phone answers a new call with RTP of its own: stop the earlier one's SIPp.
        stack.phones.pop("op1001").stop()
        stack.operator("op1001", pcap=lambda p: bursts_pcap(p, [(0.0, speech_alaw(0.2))]))
        caller = stack.caller("0312000002", DID, hangup_after=notice + 12.0,
                              pcap=lambda p: bursts_pcap(p, [(0.0, speech_alaw(0.2))]))
        result = caller.wait(120)
        assert result.returncode == 0, (result.workdir / "screen.log").read_text()[-2000:]
    finally:
        stack.start_controller()
    ok, _ack, bye = call_window(caller)
    record = stack.call_record(
        lambda c: c["caller"] == "0312000002" and c["recording_sha256"], timeout=60,
        what="fail-safe call imported and finalised")
    assert record["failsafe"] is True
    assert record["operator"] == "op1001"
    assert_durations(record, bye - ok)
    # The recorder's Local channels are no calls: nothing else came in through the CDR.
    assert sorted(c["caller"] for c in stack.calls(False)) == ["0312000001", "0312000002"]
