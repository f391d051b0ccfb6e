"""What a recording shows about how a call went, from levels alone (pure numpy, no I/O).

Input: the two sides of an archived stereo recording (caller left, operator/IVR right) as
int16 samples. Output: a JSON-able dict (``ANALYSIS_VERSION``) with, per side, loudness over
time (dBFS in short windows), shouting episodes, silence and talk ratios and the longest
monologue, plus the overlap of both sides talking.

It measures loudness, not words or meaning: a raised voice is found, an insult said calmly is
not; a speaker who shouts from the first to the last second has that as their baseline.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, Final

import numpy as np

ANALYSIS_VERSION: Final = 1

# 100 ms: short enough to place an episode well inside the ±1 s a supervisor needs, long
# enough that one window spans a couple of pitch periods and syllable fragments.
WINDOW_S: Final = 0.1
# Levels are floored here: a 16-bit file's quietest non-zero sample is about -90 dBFS, so
# nothing below carries information; it also keeps digital silence finite in JSON.
FLOOR_DBFS: Final = -90.0

# Below this a window is silence (no RTP, digital silence, a muted phone). G.711 comfort
# noise and line hiss sit around -60..-70 dBFS, so they count as silence too.
SILENCE_DBFS: Final = -55.0
# A window is talk when it is above this absolute level AND well above the side's own noise
# floor. Nominal telephone speech is about -26 dBFS (ITU-T P.56's -26 dBov); -45 dBFS leaves
# room for a quiet speaker while rejecting background noise.
TALK_DBFS: Final = -45.0
TALK_ABOVE_NOISE_DB: Final = 10.0
NOISE_PERCENTILE: Final = 10.0  # the side's noise floor: its quietest tenth of windows
# A "floor" louder than this is someone talking without pause (no quiet tenth), not noise.
NOISE_MAX_DBFS: Final = -45.0
# Pauses between syllables and words shorter than this stay inside one stretch of talk.
TALK_GAP_S: Final = 0.3
# Talk shorter than this (a click, a cough, a key beep) is not talk.
TALK_MIN_S: Final = 0.2

# A monologue is one side talking while the other says nothing; the speaker's own pauses up
# to this long (breathing, thinking) do not end it.
MONOLOGUE_PAUSE_S: Final = 2.0

# Shouting: the side's level, smoothed over SHOUT_SMOOTH_S so single stressed syllables do
# not count, is at least SHOUT_ABOVE_DB above that speaker's own baseline (the median level
# of its talk windows in this call) for at least SHOUT_MIN_S, and above SHOUT_FLOOR_DBFS so a
# very quiet speaker talking normally is not "shouting". 10 dB is about twice as loud to the
# ear; normal speech varies by a few dB around its median.
SHOUT_ABOVE_DB: Final = 10.0
SHOUT_FLOOR_DBFS: Final = -20.0
SHOUT_SMOOTH_S: Final = 0.5
SHOUT_MIN_S: Final = 1.0  # loud time within an episode
# Loud stretches this close are one episode: taking a breath, or the other side getting a
# word in, does not split an outburst in two.
SHOUT_GAP_S: Final = 2.0
# Below this much talk a side has no baseline to compare with: no episodes are claimed.
BASELINE_MIN_S: Final = 3.0

SIDES: Final = ("caller", "other")
CHUNK_WINDOWS: Final = 6000  # 10 minutes of windows per block of samples


def analyse(caller: np.ndarray, other: np.ndarray, rate: int = 8000) -> dict[str, Any]:
    """Analyse one call's two sides (int16, same rate; the shorter is padded with silence)."""
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    window = max(1, round(rate * WINDOW_S))
    n = max(len(caller), len(other))
    levels = {"caller": window_levels(caller, window, n), "other": window_levels(other, window, n)}
    talk = {side: talk_windows(lv) for side, lv in levels.items()}
    both = talk["caller"] & talk["other"]
    result: dict[str, Any] = {
        "version": ANALYSIS_VERSION,
        "duration": round(n / rate, 2),
        "window_s": WINDOW_S,
        "floor_dbfs": FLOOR_DBFS,
        "overlap_s": _seconds(int(both.sum())),
        "overlap_ratio": _ratio(both),
    }
    for side, partner in (("caller", "other"), ("other", "caller")):
        result[side] = side_summary(levels[side], talk[side], talk[partner])
    longest = max(SIDES, key=lambda s: result[s]["longest_monologue_s"])
    result["longest_monologue"] = {"side": longest, **{
        k: result[longest][f"longest_monologue_{k}"] for k in ("s", "start")}}
    result["shouting"] = sum(len(result[s]["episodes"]) for s in SIDES)
    return result


def window_levels(samples: np.ndarray, window: int, length: int | None = None) -> np.ndarray:
    """RMS level (dBFS, full scale = 32768, floored at FLOOR_DBFS) of consecutive windows;
    `length` pads with silence (a side that stopped early); a last partial window counts."""
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"one side is one channel, got shape {x.shape}")
    length = max(len(x), length or 0)
    count = -(-length // window)
    power = np.zeros(count, dtype=np.float64)
    # In blocks of CHUNK_WINDOWS, so a long call never needs a float copy of a whole side.
    for first in range(0, -(-len(x) // window), CHUNK_WINDOWS):
        part = x[first * window:(first + CHUNK_WINDOWS) * window]
        n = -(-len(part) // window)
        block = np.zeros(n * window, dtype=np.float32)
        block[:len(part)] = part
        block = block.reshape(n, window)
        power[first:first + n] = np.einsum("ij,ij->i", block, block, dtype=np.float64)
    sizes = np.full(count, window, dtype=np.float64)
    if count:
        sizes[-1] = length - (count - 1) * window
    power /= sizes * 32768.0 ** 2
    with np.errstate(divide="ignore"):
        levels = 10.0 * np.log10(power)
    return np.maximum(levels, FLOOR_DBFS)


def talk_windows(levels: np.ndarray) -> np.ndarray:
    """Windows in which the side is talking: above the absolute and the noise threshold,
    short pauses bridged, short blips dropped."""
    if levels.size == 0:
        return np.zeros(0, dtype=bool)
    noise = min(float(np.percentile(levels, NOISE_PERCENTILE)), NOISE_MAX_DBFS)
    loud = levels > max(TALK_DBFS, noise + TALK_ABOVE_NOISE_DB)
    loud = fill_gaps(loud, _windows(TALK_GAP_S))
    return drop_short(loud, _windows(TALK_MIN_S))


def side_summary(levels: np.ndarray, talk: np.ndarray, partner_talk: np.ndarray
                 ) -> dict[str, Any]:
    voiced = levels[talk]
    baseline = float(np.median(voiced)) if voiced.size >= _windows(BASELINE_MIN_S) else None
    episodes = shouting_episodes(levels, baseline) if baseline is not None else []
    mono_len, mono_start = longest_monologue(talk, partner_talk)
    return {
        "loudness": [int(v) for v in np.rint(levels)],
        "baseline_dbfs": None if baseline is None else round(baseline, 1),
        "noise_dbfs": round(float(np.percentile(levels, NOISE_PERCENTILE)), 1)
        if levels.size else FLOOR_DBFS,
        "talk_s": _seconds(int(talk.sum())),
        "talk_ratio": _ratio(talk),
        "silence_ratio": _ratio(levels < SILENCE_DBFS),
        "longest_monologue_s": _seconds(mono_len),
        "longest_monologue_start": _seconds(mono_start),
        "episodes": episodes,
    }


def shouting_episodes(levels: np.ndarray, baseline: float) -> list[dict[str, float]]:
    """Sustained stretches well above the speaker's own baseline (see SHOUT_*)."""
    threshold = max(baseline + SHOUT_ABOVE_DB, SHOUT_FLOOR_DBFS)
    smooth = smoothed(levels, _windows(SHOUT_SMOOTH_S))
    joined: list[list[int]] = []  # [first, last, loud windows]
    for start, end in runs(smooth >= threshold):
        # The smoothing spreads a stretch by half its width each way: its edges are the
        # first and last unsmoothed windows above the threshold.
        above = np.flatnonzero(levels[start:end] >= threshold)
        if above.size == 0:
            continue
        first, last = start + int(above[0]), start + int(above[-1]) + 1
        if joined and first - joined[-1][1] <= _windows(SHOUT_GAP_S):
            joined[-1][1] = last
            joined[-1][2] += last - first
        else:
            joined.append([first, last, last - first])
    episodes = []
    for first, last, loud in joined:
        if loud < _windows(SHOUT_MIN_S):
            continue
        peak = float(levels[first:last].max())
        episodes.append({
            "start": _seconds(first), "end": _seconds(last),
            "peak_dbfs": round(peak, 1), "above_baseline_db": round(peak - baseline, 1),
        })
    return episodes


def longest_monologue(talk: np.ndarray, partner_talk: np.ndarray) -> tuple[int, int]:
    """(length, start) in windows of the longest stretch of this side's talk, its own pauses
    up to MONOLOGUE_PAUSE_S bridged, during which the partner never talks."""
    alone = fill_gaps(talk, _windows(MONOLOGUE_PAUSE_S)) & ~partner_talk
    best = (0, 0)
    for start, end in runs(alone):
        own = np.flatnonzero(talk[start:end])
        if own.size:  # trim to this side's own talk (a bridge cut by the partner may dangle)
            length = int(own[-1]) - int(own[0]) + 1
            if length > best[0]:
                best = (length, start + int(own[0]))
    return best


# --------------------------------------------------------------------------- run helpers


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    if mask.size == 0:
        return []
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(),
                    strict=True))


def fill_gaps(mask: np.ndarray, longest: int) -> np.ndarray:
    """Set False runs of at most `longest` windows that lie between two True runs."""
    out = mask.copy()
    spans = runs(mask)
    for (_, end), (start, _) in pairwise(spans):
        if start - end <= longest:
            out[end:start] = True
    return out


def drop_short(mask: np.ndarray, shortest: int) -> np.ndarray:
    """Clear True runs shorter than `shortest` windows."""
    out = mask.copy()
    for start, end in runs(mask):
        if end - start < shortest:
            out[start:end] = False
    return out


def smoothed(levels: np.ndarray, width: int) -> np.ndarray:
    """Levels averaged as power over `width` windows centred on each window."""
    if width <= 1 or levels.size == 0:
        return levels
    power = 10.0 ** (levels / 10.0)
    kernel = np.ones(width) / width
    avg = np.convolve(np.pad(power, (width // 2, width - 1 - width // 2), mode="edge"),
                      kernel, mode="valid")
    return 10.0 * np.log10(np.maximum(avg, 10.0 ** (FLOOR_DBFS / 10.0)))


def _windows(seconds: float) -> int:
    return max(1, round(seconds / WINDOW_S))


def _seconds(windows: int) -> float:
    return round(windows * WINDOW_S, 1)


def _ratio(mask: np.ndarray) -> float:
    return round(float(mask.mean()), 3) if mask.size else 0.0
