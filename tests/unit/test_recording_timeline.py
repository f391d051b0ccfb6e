"""Rebuilding recordings on the wall-clock timeline from the ChanSpy recorder's stereo file."""

from __future__ import annotations

import os
import time
import wave
from pathlib import Path

import numpy as np

from ivr import recording_timeline as rt
from ivr.recording import RecordingFinaliser


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(samples.astype("<i2").tobytes())


def read(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def make_call(folder: Path, *, answered: float, lead: float, left: np.ndarray,
              right: np.ndarray, legs: bool = True, ended: float | None = None) -> Path:
    """MixMonitor's (short, compressed) files plus the recorder's stereo file, whose first
    sample is `lead` s after the answer and whose mtime is its last write."""
    recording = folder / "node-1795615828.7.wav"
    short = np.full(800, 7, dtype=np.int16)
    write_wav(recording, short)
    if legs:
        write_wav(folder / "node-1795615828.7-rx.wav", short)
        write_wav(folder / "node-1795615828.7-tx.wav", short)
    raw = folder / f"node-1795615828.7-timeline@{answered:.6f}.{int(answered)}.raw"
    stereo = np.stack([left, right], axis=1).astype("<i2")
    raw.write_bytes(stereo.tobytes())
    end = ended if ended is not None else answered + lead + len(left) / 8000
    os.utime(raw, (end, end))
    return recording


def test_lead_and_legs_put_audio_at_its_true_time(tmp_path):
    answered = time.time() - 60
    left = np.zeros(8000 * 10, dtype=np.int16)
    left[8000 * 7:8000 * 7 + 400] = 1000  # the caller at 7.0 s of the recorder's file
    right = np.zeros_like(left)
    right[8000 * 2:8000 * 3] = -2000  # the caller heard something at 2.0 s
    recording = make_call(tmp_path, answered=answered, lead=0.12, left=left, right=right)

    timeline = rt.rebuild(recording)

    assert timeline is not None
    assert abs(timeline.lead - 0.12) < 0.002
    rx = read(tmp_path / "node-1795615828.7-rx.wav")
    tx = read(tmp_path / "node-1795615828.7-tx.wav")
    mixed = read(recording)
    assert len(rx) == len(tx) == len(mixed) == 8000 * 10 + round(0.12 * 8000)
    assert abs(np.flatnonzero(rx)[0] / 8000 - 7.12) < 0.002
    assert abs(np.flatnonzero(tx)[0] / 8000 - 2.12) < 0.002
    assert set(np.unique(mixed)) == {-2000, 0, 1000}
    assert not list(tmp_path.glob("*.raw")), "the recorder file is removed once used"


def test_mixing_saturates_like_asterisk():
    a = np.array([30000, -30000, 5], dtype=np.int16)
    b = np.array([10000, -10000, -5], dtype=np.int16)
    assert rt.mix(a, b).tolist() == [32767, -32768, 0]


def test_only_the_mixed_file_when_legs_are_not_split(tmp_path):
    left = np.ones(1600, dtype=np.int16)
    recording = make_call(tmp_path, answered=time.time() - 10, lead=0.0, left=left,
                          right=left, legs=False)
    rt.rebuild(recording)
    assert len(read(recording)) == 1600
    assert not (tmp_path / "node-1795615828.7-rx.wav").exists()


def test_unbelievable_lead_is_ignored(tmp_path):
    left = np.ones(1600, dtype=np.int16)
    recording = make_call(tmp_path, answered=time.time() - 100, lead=30.0, left=left,
                          right=left)
    assert rt.rebuild(recording).lead == 0.0
    assert len(read(recording)) == 1600


def test_no_recorder_file_leaves_mixmonitor_files(tmp_path):
    recording = tmp_path / "x.wav"
    write_wav(recording, np.full(800, 7, dtype=np.int16))
    assert rt.rebuild(recording) is None
    assert len(read(recording)) == 800


def test_empty_recorder_file_is_dropped(tmp_path):
    recording = make_call(tmp_path, answered=time.time() - 10, lead=0.0,
                          left=np.zeros(0, dtype=np.int16), right=np.zeros(0, dtype=np.int16))
    assert rt.rebuild(recording) is None
    assert len(read(recording)) == 800
    assert not list(tmp_path.glob("*.raw"))


def test_recorder_still_writing_is_not_settled(tmp_path):
    raw = tmp_path / "x-timeline@1.000000.1.raw"
    raw.write_bytes(b"\0" * 64)
    assert not rt.is_settled(raw)
    assert rt.is_settled(raw, now=time.time() + 1)
    assert not rt.is_settled(tmp_path / "missing.raw")


class FakeCalls:
    def __init__(self):
        self.finalised: list[tuple[str, float, str]] = []

    async def recording_finalised(self, call_id, duration, sha256):
        self.finalised.append((call_id, duration, sha256))

    async def recording_missing(self, call_id, path, problem):  # pragma: no cover
        raise AssertionError(problem)


async def test_finaliser_stores_the_rebuilt_duration(tmp_path):
    left = np.zeros(8000 * 4, dtype=np.int16)
    answered = time.time() - 30
    recording = make_call(tmp_path, answered=answered, lead=0.1, left=left, right=left)
    calls = FakeCalls()
    facts = await RecordingFinaliser(calls).finalise("c1", recording)
    assert facts is not None and abs(facts.duration - 4.1) < 0.001
    assert calls.finalised[0][0] == "c1"


def test_a_prompt_is_mixed_into_the_recording_at_its_time(tmp_path):
    recording, tx = tmp_path / "c.wav", tmp_path / "c-tx.wav"
    for path in (recording, tx):
        write_wav(path, np.full(8000 * 10, 100))
    prompt = tmp_path / "p.wav"
    write_wav(prompt, np.full(8000, 1000))
    assert rt.mix_in(recording, prompt, 4.0)
    for path in (recording, tx):
        data = read(path)
        assert len(data) == 80000
        assert (data[:32000] == 100).all() and (data[32000:40000] == 1100).all()
        assert (data[40000:] == 100).all()
    assert not rt.mix_in(recording, prompt, 12.0)  # after the end: nothing to do
