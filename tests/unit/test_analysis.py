"""The recording analysis (ivr/recordings/analysis.py) on signals built with numpy, whose
loud stretches, talk and silence are known by construction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ivr.recordings import analysis
from ivr.recordings.analysis import ANALYSIS_VERSION, analyse

RATE = 8000


def speech_like(seconds: float, level_dbfs: float = -26.0, seed: int = 1,
                pauses: bool = True) -> np.ndarray:
    """Noise shaped like talk: 120-300 ms syllables, each a few dB louder or quieter than
    the speaker's level, gaps between them and (`pauses`) 0.4 s pauses between some words
    (float, in [-1, 1])."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    envelope = np.zeros(n)
    at = 0
    while at < n:
        length = int(rng.uniform(0.12, 0.3) * RATE)
        gain = 10 ** ((level_dbfs + rng.normal(0, 3)) / 20)
        envelope[at:at + length] = gain * np.hanning(len(envelope[at:at + length]))
        gaps, odds = ([0.03, 0.05, 0.08, 0.4], [0.4, 0.3, 0.2, 0.1]) if pauses else \
            ([0.03, 0.05, 0.08], [0.4, 0.4, 0.2])
        at += length + int(rng.choice(gaps, p=odds) * RATE)
    # The Hann envelope has an RMS of about 0.61: bring the syllables back to the level.
    return np.clip(rng.normal(0, 1, n) * envelope / 0.61, -1, 1)


def pcm(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE))


def test_a_loud_segment_is_one_episode_at_its_time() -> None:
    calm = speech_like(60.0, -28.0)
    loud_from, loud_to = 31.3, 35.8
    loud = speech_like(loud_to - loud_from, -8.0, seed=7)  # 20 dB above this speaker
    caller = calm.copy()
    caller[int(loud_from * RATE):int(loud_from * RATE) + len(loud)] = loud
    result = analyse(pcm(caller), pcm(speech_like(60.0, -26.0, seed=3)), RATE)

    episodes = result["caller"]["episodes"]
    assert len(episodes) == 1, episodes
    assert episodes[0]["start"] == pytest.approx(loud_from, abs=0.2)
    assert episodes[0]["end"] == pytest.approx(loud_to, abs=0.2)
    assert episodes[0]["above_baseline_db"] > analysis.SHOUT_ABOVE_DB
    assert result["caller"]["baseline_dbfs"] == pytest.approx(-28.0, abs=3.0)
    assert result["other"]["episodes"] == []
    assert result["shouting"] == 1


def test_talk_without_pauses_still_has_a_baseline() -> None:
    # Someone who never pauses has no quiet tenth: their talk is not taken for noise.
    caller = speech_like(60.0, -28.0, pauses=False)
    caller[40 * RATE:44 * RATE] = speech_like(4.0, -8.0, seed=7, pauses=False)
    [episode] = analyse(pcm(caller), pcm(silence(60.0)), RATE)["caller"]["episodes"]
    assert episode["start"] == pytest.approx(40.0, abs=0.2)
    assert episode["end"] == pytest.approx(44.0, abs=0.2)


def test_calm_speech_has_no_episode() -> None:
    for seed in range(5):
        result = analyse(pcm(speech_like(120.0, -24.0, seed=seed)),
                         pcm(speech_like(120.0, -30.0, seed=seed + 10)), RATE)
        assert result["shouting"] == 0, (seed, result["caller"]["episodes"],
                                         result["other"]["episodes"])


def test_loud_is_relative_to_the_speaker_and_above_the_floor() -> None:
    # A loud talker all along is that speaker's baseline: nothing stands out.
    assert analyse(pcm(speech_like(60.0, -10.0)), pcm(silence(60.0)), RATE)["shouting"] == 0
    # A very quiet speaker who gets 12 dB louder is still below the absolute floor.
    quiet = speech_like(60.0, -50.0)
    quiet[20 * RATE:25 * RATE] = speech_like(5.0, -38.0, seed=5)
    assert analyse(pcm(quiet), pcm(silence(60.0)), RATE)["caller"]["episodes"] == []


def test_a_short_outburst_is_not_an_episode() -> None:
    caller = speech_like(60.0, -28.0)
    caller[30 * RATE:int(30.5 * RATE)] = speech_like(0.5, -6.0, seed=9)
    assert analyse(pcm(caller), pcm(silence(60.0)), RATE)["shouting"] == 0


def test_talk_silence_overlap_and_monologue_on_constructed_turns() -> None:
    # caller talks 0-10 s and 25-30 s; the operator 8-25 s; nobody 30-40 s. Without word
    # pauses, so each turn is talk from its first to its last syllable.
    caller = np.concatenate([speech_like(10.0, pauses=False), silence(15.0),
                             speech_like(5.0, seed=2, pauses=False), silence(10.0)])
    other = np.concatenate([silence(8.0), speech_like(17.0, seed=3, pauses=False),
                            silence(15.0)])
    result = analyse(pcm(caller), pcm(other), RATE)

    assert result["duration"] == 40.0
    assert result["caller"]["talk_s"] == pytest.approx(15.0, abs=0.6)
    assert result["caller"]["talk_ratio"] == pytest.approx(15 / 40, abs=0.02)
    assert result["other"]["talk_ratio"] == pytest.approx(17 / 40, abs=0.02)
    assert result["caller"]["silence_ratio"] == pytest.approx(25 / 40, abs=0.03)
    assert result["overlap_s"] == pytest.approx(2.0, abs=0.5)
    # The operator alone from 10 to 25 s; the caller alone 0-8 s.
    assert result["other"]["longest_monologue_s"] == pytest.approx(15.0, abs=0.6)
    assert result["other"]["longest_monologue_start"] == pytest.approx(10.0, abs=0.6)
    assert result["caller"]["longest_monologue_s"] == pytest.approx(8.0, abs=0.6)
    assert result["longest_monologue"]["side"] == "other"
    assert result["longest_monologue"]["s"] == result["other"]["longest_monologue_s"]


def test_short_pauses_stay_in_a_monologue_long_ones_end_it() -> None:
    caller = np.concatenate([speech_like(6.0), silence(1.5), speech_like(6.0, seed=4),
                             silence(4.0), speech_like(3.0, seed=6)])
    result = analyse(pcm(caller), pcm(silence(len(caller) / RATE)), RATE)
    assert result["caller"]["longest_monologue_s"] == pytest.approx(13.5, abs=0.6)
    assert result["caller"]["longest_monologue_start"] == pytest.approx(0.0, abs=0.3)


def test_loudness_is_compact_and_the_result_is_json() -> None:
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(RATE * 2) / RATE)  # -9.03 dBFS
    result = analyse(pcm(tone), pcm(silence(1.0)), RATE)  # sides of unequal length
    assert result["version"] == ANALYSIS_VERSION
    assert len(result["caller"]["loudness"]) == len(result["other"]["loudness"]) == 20
    assert set(result["caller"]["loudness"]) == {-9}
    assert set(result["other"]["loudness"]) == {int(analysis.FLOOR_DBFS)}
    assert result["other"]["silence_ratio"] == 1.0 and result["other"]["talk_ratio"] == 0.0
    assert result["other"]["baseline_dbfs"] is None
    assert json.loads(json.dumps(result)) == result


def test_empty_and_bad_input() -> None:
    empty = np.zeros(0, dtype=np.int16)
    result = analyse(empty, empty, RATE)
    assert result["duration"] == 0.0 and result["shouting"] == 0
    with pytest.raises(ValueError, match="one channel"):
        analyse(np.zeros((10, 2), dtype=np.int16), empty, RATE)
    with pytest.raises(ValueError, match="sample rate"):
        analyse(empty, empty, 0)


# --------------------------------------------------------------------------- picture


def test_picture_marks_the_episode_where_it_happened() -> None:
    import xml.etree.ElementTree as ET

    from ivr.recordings import picture

    caller = speech_like(60.0, -28.0)
    caller[30 * RATE:35 * RATE] = speech_like(5.0, -8.0, seed=7)
    result = analyse(pcm(caller), pcm(speech_like(60.0, seed=3)), RATE)
    svg = picture.render_svg(result, title="call <c1> & co")
    root = ET.fromstring(svg)  # well-formed, the title escaped
    ns = "{http://www.w3.org/2000/svg}"
    bands = [r for r in root.iter(f"{ns}rect") if r.get("fill") == "#e53935"]
    assert len(bands) == 1
    plot_w = picture.WIDTH - picture.LEFT - picture.RIGHT
    start = (float(bands[0].get("x")) - picture.LEFT) / plot_w * result["duration"]
    assert start == pytest.approx(result["caller"]["episodes"][0]["start"], abs=0.1)
    assert start == pytest.approx(30.0, abs=0.3)
    lines = list(root.iter(f"{ns}polyline"))
    assert len(lines) == 2 and len(lines[0].get("points").split()) == 600
    assert "call &lt;c1&gt; &amp; co" in svg

    with pytest.raises(ValueError, match=r"not an analysis.*no file"):
        picture.render_svg({"version": ANALYSIS_VERSION, "error": "no file"})


def test_a_pause_inside_an_outburst_does_not_split_it() -> None:
    caller = speech_like(60.0, -28.0)
    caller[20 * RATE:int(22.5 * RATE)] = speech_like(2.5, -8.0, seed=7)
    caller[int(22.5 * RATE):24 * RATE] = 0.0  # 1.5 s to breathe
    caller[24 * RATE:26 * RATE] = speech_like(2.0, -8.0, seed=8)
    caller[40 * RATE:int(41.5 * RATE)] = speech_like(1.5, -8.0, seed=9)  # 14 s later: another
    episodes = analyse(pcm(caller), pcm(silence(60.0)), RATE)["caller"]["episodes"]
    # (a syllable gap may end a stretch of noise-made talk up to 0.3 s early)
    assert [(e["start"], e["end"]) for e in episodes] == [
        pytest.approx((20.0, 26.0), abs=0.35), pytest.approx((40.0, 41.5), abs=0.35)]


def test_levels_are_the_same_across_blocks() -> None:
    x = pcm(speech_like(1300.0, -26.0))[:-123]  # > 2 blocks of 10 min, a partial window
    levels = analysis.window_levels(x, 800)
    whole = x.astype(np.float64)
    padded = np.zeros(len(levels) * 800)
    padded[:len(whole)] = whole
    power = (padded.reshape(-1, 800) ** 2).sum(axis=1)
    power[-1] /= 800 - 123
    power[:-1] /= 800
    expected = np.maximum(10 * np.log10(np.maximum(power, 1e-30) / 32768.0 ** 2), -90.0)
    assert np.allclose(levels, expected, atol=1e-3)

