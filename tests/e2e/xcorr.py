"""Finding a prompt in a recording by normalised cross-correlation, and turning a position
in the caller's heard leg (MixMonitor `-tx.wav`) into wall-clock time from SIPp's trace."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests.e2e.stack import SippPeer

RATE = 8000


@dataclass(frozen=True)
class Match:
    start: float  # seconds into the recording where the template begins
    end: float  # ... and where it ends
    peak: float  # normalised cross-correlation at the match, 1.0 = identical shape
    runner_up: float  # best value more than a template's length away from the match


LEAD_IN = 0.5  # seconds a template may start before the recording does


def find(signal: np.ndarray, template: np.ndarray, rate: int = RATE) -> Match:
    """The best alignment of `template` in `signal` (both mono, same rate): Pearson
    correlation of the template with each window of the signal, computed with FFTs.

    A prompt that started playing a few milliseconds before MixMonitor wrote its first
    frame (the fail-safe plays the notice at once) begins before the recording: the signal
    is preceded by up to LEAD_IN s of zeros, and such a match has a negative start."""
    t = np.asarray(template, dtype=np.float64)
    n = len(t)
    pad = min(n - 1, int(LEAD_IN * rate))
    x = np.concatenate((np.zeros(pad), np.asarray(signal, dtype=np.float64)))
    if len(x) < n:
        raise AssertionError(f"recording ({len(x) / rate:.2f} s) shorter than the template "
                             f"({n / rate:.2f} s)")
    t = t - t.mean()
    t /= np.linalg.norm(t)
    size = 1 << int(np.ceil(np.log2(len(x) + n)))
    corr = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(t, size)), size)
    corr = corr[:len(x) - n + 1]
    c1 = np.concatenate(([0.0], np.cumsum(x)))
    c2 = np.concatenate(([0.0], np.cumsum(x * x)))
    s1 = c1[n:] - c1[:-n]
    s2 = c2[n:] - c2[:-n]
    energy = np.sqrt(np.maximum(s2 - s1 * s1 / n, 0.0))
    ncc = np.where(energy > 1e-6 * np.sqrt(n), corr / np.maximum(energy, 1e-12), 0.0)
    best = int(np.argmax(ncc))
    far = np.abs(np.arange(len(ncc)) - best) > n
    runner_up = float(ncc[far].max()) if far.any() else 0.0
    return Match((best - pad) / rate, (best - pad + n) / rate, float(ncc[best]), runner_up)


def find_in_pieces(signal: np.ndarray, prompt: np.ndarray, min_median: float,
             piece_peak: float = 0.8, piece: float = 1.0) -> tuple[float, float, int]:
    """Where the whole prompt is in a recording, piece by piece (1 s each): under a burst of
    calls the recorder loses a frame here and there (measured: up to ~0.1 s of drift and
    100 ms holes in a 16 s prompt), which spoils one long correlation but not most pieces.
    Three in four pieces must be found (peak >= piece_peak, 0.2 above anything else) within
    0.2 s of each other, and the median piece at least min_median. (offset s, median peak,
    pieces missed)"""
    step = int(piece * 8000)
    offsets, peaks, missed = [], [], 0
    starts = range(0, max(1, len(prompt) - step // 2), step)
    for i in starts:
        m = find(signal, prompt[i:i + step])
        peaks.append(m.peak)
        if m.peak >= piece_peak and m.peak - m.runner_up >= 0.2:
            offsets.append(m.start - i / 8000)
        else:
            missed += 1
    assert missed <= len(starts) // 4, (missed, len(starts), np.round(peaks, 2))
    assert max(offsets) - min(offsets) < 0.2, np.round(offsets, 3)
    assert float(np.median(peaks)) >= min_median, np.round(peaks, 2)
    return float(np.median(offsets)), float(np.median(peaks)), missed


def answered_at(caller: SippPeer) -> float:
    """When the caller received the 200 OK to its INVITE (SIPp's clock)."""
    for t, what, body in caller.messages():
        if "received" in what and "SIP/2.0 200" in what and "INVITE" in _cseq(body):
            return t
    raise AssertionError(f"no 200 OK to the INVITE in {caller.workdir}")


def bye_at(caller: SippPeer) -> float:
    """When the call ended: the BYE the caller sent or received."""
    for t, what, _body in reversed(caller.messages()):
        if "| BYE " in what:
            return t
    raise AssertionError(f"no BYE in {caller.workdir}")


def _cseq(body: str) -> str:
    return next((x for x in body.splitlines() if x.lower().startswith("cseq:")), "")
