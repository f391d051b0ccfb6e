"""Reading a call's archived recording (the stereo file, ivr/recordings/archive.py) the way
the old tests read MixMonitor's files: the recorded channel's `said` and `heard` legs and
the `mixed` track, as float32 in [-1, 1] like ivr.audio.wav.read_wav.

The archive's layout: left = the customer (the caller; an outbound call's far end), right =
what the customer heard. For an outbound call the recorded channel is the operator's, so
its `said` is the right side and its `heard` the left. The file is checked to be a stereo
archive whose sha256 is the call record's before anything is read from it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ivr.audio.wav import Audio
from ivr.recordings import archive
from tests.e2e.stack import SippPeer

RATE = 8000


def _audio(samples: np.ndarray) -> Audio:
    return Audio(samples.astype(np.float32) / 32768.0, RATE)


@dataclass(frozen=True)
class Recording:
    path: Path
    left: Audio  # the customer
    right: Audio  # what the customer heard
    outbound: bool

    @property
    def said(self) -> Audio:
        """What the recorded channel said (old `-rx.wav`)."""
        return self.right if self.outbound else self.left

    @property
    def heard(self) -> Audio:
        """What the recorded channel heard (old `-tx.wav`)."""
        return self.left if self.outbound else self.right

    @property
    def mixed(self) -> Audio:
        """Both sides in one track, saturating as Asterisk mixes (the old mono `.wav`)."""
        both = self.left.samples.astype(np.float64) + self.right.samples
        return Audio(np.clip(both, -1.0, 32767 / 32768).astype(np.float32), RATE)

    @property
    def duration(self) -> float:
        return self.left.duration


def read_archive(path: str | Path, *, outbound: bool = False,
                 sha256: str | None = None) -> Recording:
    path = Path(path)
    assert path.suffix in (".flac", ".wav"), path
    assert archive.channels(path) == 2, f"{path}: not a stereo archive"
    if sha256 is not None:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256, f"{path}: sha256"
    left, right, rate = archive.read_sides(path)
    assert rate == RATE
    return Recording(path, _audio(left), _audio(right), outbound)


def call_recording(record: dict[str, Any]) -> Recording:
    """The archive of a finalised call record (`recording_sha256` set)."""
    assert record["recording_sha256"], "the call's recording is not final yet"
    return read_archive(record["recording_path"], outbound=record["direction"] == "outbound",
                        sha256=record["recording_sha256"])


def called_recording(record: dict[str, Any]) -> Recording:
    """An outbound call's called party's archive (left = them, right = what they heard)."""
    done = [e["data"] for e in record["events"] if e["kind"] == "called_recording_finalised"]
    assert done, "the called party's recording is not final yet"
    return read_archive(done[-1]["path"], sha256=done[-1]["sha256"])


def no_leftovers(record: dict[str, Any]) -> list[Path]:
    """Files of the recording other than its archive(s): none once it is final."""
    path = Path(record["recording_path"])
    stem = path.name.rsplit(".", 1)[0]
    return sorted(p for p in path.parent.glob(f"{stem}*")
                  if p.suffix not in (".flac",) and archive.channels(p) != 2)


def pcap_audio(path: Path) -> np.ndarray:
    """The A-law audio a SIPp pcap sends, on the pcap's own timeline (float, [-1, 1]):
    sample k is what goes out k/8000 s after the pcap starts; events (RFC 2833) and gaps
    are silence. The known source to look for in a recording."""
    from tests.e2e.rtp import _rtp, read_pcap
    from tests.e2e.rtp_capture import alaw_decode

    _header, packets = read_pcap(path)
    first = packets[0].at
    pieces = [(round((p.at - first) * RATE), payload) for p in packets
              for pt, _m, payload in [_rtp(p.data)] if pt == 8]
    out = np.zeros(max(at + len(data) for at, data in pieces), dtype=np.float64)
    for at, data in pieces:
        out[at:at + len(data)] = alaw_decode(data)
    return out


def noise(seconds: float, seed: int, level: float = 0.25) -> np.ndarray:
    """Band-limited (300-3400 Hz) noise: known audio that correlates only with itself."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    x = np.fft.irfft(spectrum, n)
    return level * x / np.abs(x).max()


@dataclass(frozen=True)
class Found:
    at: float  # where the piece starts in the side searched (s)
    peak: float  # its correlation there
    elsewhere: float  # the best correlation of the same piece in the other side


def found_at(side: np.ndarray, other: np.ndarray, source: np.ndarray, t: float,
             expected: float, *, piece: float = 0.3, window: float = 0.5) -> Found:
    """Look for `source[t : t + piece]` in `side` within ±window of `expected` (s, in the
    recording), and in `other` over the same stretch."""
    from tests.e2e.xcorr import find

    template = source[round(t * RATE):round((t + piece) * RATE)]
    lo = max(0, round((expected - window) * RATE))
    hi = round((expected + piece + window) * RATE)
    here = find(side[lo:hi], template)
    there = find(other[lo:hi], template)
    return Found(lo / RATE + here.start, here.peak, there.peak)


def trace_times(peer: SippPeer, since: float = 0.0) -> dict[str, float]:
    """On the peer's clock: INVITE's 200 OK (received or sent), ACK (sent or received), BYE."""
    out: dict[str, float] = {}
    for at, _what, body in peer.messages():
        if at < since:
            continue
        first = body.strip().splitlines()[0] if body.strip() else ""
        if "ok" not in out and first.startswith("SIP/2.0 200") and "INVITE" in body:
            out["ok"] = at
        elif "ok" in out and "ack" not in out and first.startswith("ACK "):
            out["ack"] = at
        elif "ack" in out and "bye" not in out and first.startswith("BYE "):
            out["bye"] = at
    assert {"ok", "ack", "bye"} <= set(out), f"incomplete SIPp trace in {peer.workdir}: {out}"
    return out


def tone_seconds(samples: np.ndarray, hz: float) -> float:
    """How long (100 ms blocks) a steady `hz` tone dominates (over 80 % of the energy)."""
    blocks = np.asarray(samples[:len(samples) // 800 * 800], dtype=np.float64).reshape(-1, 800)
    spectrum = np.abs(np.fft.rfft(blocks, axis=1)) ** 2
    freqs = np.fft.rfftfreq(800, 1 / RATE)
    share = spectrum[:, np.abs(freqs - hz) < 50].sum(axis=1) / (spectrum.sum(axis=1) + 1e-12)
    return float((share > 0.8).sum() * 0.1)


#: A known piece counts as found at this correlation (identical audio: ~1.0) ...
PIECE_PEAK = 0.9
#: ... within this of where SIPp sent it. The recorder drops or repeats a 20 ms frame now
#: and then (measured: places within ±0.1 s over a call), so pieces are short (0.3 s) ...
PIECE_PLACE = 0.15
#: ... and most, not all, must be found (a piece across a slipped frame correlates less).
PIECES_FOUND = 0.8
#: The same piece in the other side: nothing like it (measured ~0.1 for noise).
ELSEWHERE = 0.3


def assert_sent_on_side(side: np.ndarray, other: np.ndarray, source: np.ndarray,
                        start: float, until: float, offset: float, step: float = 0.5) -> int:
    """`source` (on its pcap timeline) is on `side` where SIPp sent it (`offset`: the pcap's
    0 s in the recording), from `start` to `until` s of the pcap, and never on `other`.
    Returns how many pieces were looked at."""
    # Pieces with something in them (speech has pauses; silence correlates with nothing).
    times = [t for t in np.arange(start, until, step)
             if np.sqrt(np.mean(source[round(t * RATE):round((t + 0.3) * RATE)] ** 2)) > 0.01]
    assert len(times) >= 3, (start, until)
    found = [(t, found_at(side, other, source, t, offset + t)) for t in times]
    good = [t for t, f in found if f.peak >= PIECE_PEAK and abs(f.at - offset - t) <= PIECE_PLACE]
    assert len(good) >= PIECES_FOUND * len(times), [(round(t, 2), f) for t, f in found]
    worst = max(f.elsewhere for _t, f in found)
    assert worst < ELSEWHERE, [(round(t, 2), f) for t, f in found]
    return len(times)
