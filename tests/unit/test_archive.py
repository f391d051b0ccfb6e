"""The stereo archive file: layout, lossless FLAC, atomic writes, per-side coverage."""

from __future__ import annotations

import hashlib
import wave

import numpy as np
import pytest

from ivr.recordings import archive


def noise(seconds: float, seed: int, level: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-level, level, round(seconds * 8000)).astype(np.int16)


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_round_trip_is_lossless_and_keeps_the_sides_apart(tmp_path, fmt):
    left, right = noise(3, 1), noise(2, 2)
    path = tmp_path / f"call.{fmt}"

    facts = archive.build(path, left, right, fmt)

    got_left, got_right, rate = archive.read_sides(path)
    assert rate == 8000
    assert np.array_equal(got_left, left)
    assert np.array_equal(got_right[: len(right)], right)
    assert not got_right[len(right):].any(), "the shorter side is padded with silence"
    assert facts.duration == pytest.approx(3.0)
    assert facts.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert facts.size == path.stat().st_size
    assert facts.format == fmt
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file left"


def test_wav_layout_is_standard_stereo_left_first(tmp_path):
    """Read with the standard library, not soundfile: channel 0 is the customer."""
    left = np.full(160, 1000, dtype=np.int16)
    right = np.full(160, -2000, dtype=np.int16)
    path = tmp_path / "call.wav"
    archive.build(path, left, right, "wav")
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert set(frames[:, 0]) == {1000} and set(frames[:, 1]) == {-2000}


def test_flac_is_smaller_than_wav(tmp_path):
    speechless = np.zeros(8000 * 10, dtype=np.int16)
    speechless[8000:16000] = noise(1, 3, 500)
    a = archive.build(tmp_path / "a.wav", speechless, speechless, "wav")
    b = archive.build(tmp_path / "a.flac", speechless, speechless, "flac")
    assert b.size < a.size / 2


def test_coverage_counts_frames_that_carried_audio():
    call = np.zeros(8000 * 10, dtype=np.int16)  # 500 frames of 20 ms
    call[: 8000 * 3] = noise(3, 4)  # 150 frames of audio
    call[8000 * 5: 8000 * 5 + 160] = 4  # a G.711 step around zero: still silence
    assert archive.coverage(call) == pytest.approx(0.3)
    assert archive.coverage(np.zeros(0, dtype=np.int16)) == 0.0
    assert archive.coverage(noise(1, 5)) == 1.0


def test_coverage_in_the_facts(tmp_path):
    left = np.zeros(8000 * 4, dtype=np.int16)
    left[:8000] = noise(1, 6)
    right = noise(4, 7)
    facts = archive.build(tmp_path / "c.flac", left, right, "flac")
    assert facts.caller_audio == pytest.approx(0.25)
    assert facts.other_audio == pytest.approx(1.0)


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "call.flac"
    archive.build(path, noise(1, 8), noise(1, 9), "flac")
    before = path.read_bytes()

    def broken(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(archive.sf, "write", broken)
    with pytest.raises(OSError):
        archive.build(path, noise(2, 10), noise(2, 11), "flac")
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_unknown_format_is_named():
    with pytest.raises(ValueError, match="ogg"):
        archive.archive_name("x", "ogg")


def test_mono_files_read_as_both_sides(tmp_path):
    path = tmp_path / "mono.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.arange(100, dtype="<i2").tobytes())
    left, right, _ = archive.read_sides(path)
    assert np.array_equal(left, right)
    assert archive.channels(path) == 1
    assert archive.channels(tmp_path / "absent.wav") == 0


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_build_facts_match_a_measure_of_the_file(tmp_path, fmt):
    """build() takes length and coverage from the samples it wrote, not from reading the
    file back: they must be what an independent read of the file gives."""
    left = np.zeros(8000 * 4, dtype=np.int16)
    left[8000:16000] = noise(1, 5)
    right = noise(2.5, 6)
    path = tmp_path / f"call.{fmt}"
    built = archive.build(path, left, right, fmt)
    assert built == archive.facts(path)


def _stereo_raw(path, said: np.ndarray, heard: np.ndarray) -> None:
    """What MixMonitor's D option writes: interleaved 16-bit, left said, right heard."""
    np.stack([said, heard], axis=1).astype("<i2").tofile(path)


@pytest.mark.parametrize("swap", [False, True])
def test_archive_built_from_mixmonitors_stereo_with_announcements(tmp_path, swap):
    from ivr.recordings.service_archive import Mix, Sources, _build

    said, heard = noise(3, 7), noise(3, 8, 200)
    stem = tmp_path / "1700000000.1"
    _stereo_raw(Sources(stem).stereo, said, heard)
    prompt = tmp_path / "warning.wav"
    beep = (np.sin(np.arange(4000) * 0.3) * 8000).astype(np.int16)
    with wave.open(str(prompt), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(beep.tobytes())

    built = _build(Sources(stem), "flac", swap, None, (Mix(prompt, 1.0),))

    assert built is not None and not built.mixed
    left, right, _rate = archive.read_sides(built.facts.path)
    expected_heard = heard.astype(np.int32)
    expected_heard[8000:12000] += beep
    expected_heard = np.clip(expected_heard, -32768, 32767).astype(np.int16)
    # Outbound (swap): the recorded channel is the operator's, the far end goes left.
    said_side, heard_side = (right, left) if swap else (left, right)
    assert np.array_equal(said_side, said), "what was said is untouched"
    assert np.array_equal(heard_side, expected_heard), "the prompt is in what was heard, at 1 s"
    assert np.array_equal(built.left, left) and np.array_equal(built.right, right)
    # Already archived: measured again, never rebuilt (no samples handed on).
    again = _build(Sources(stem), "flac", swap, None, ())
    assert again is not None and again.left is None and again.facts == built.facts
