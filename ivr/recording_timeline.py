"""Rebuild a call's recording on the wall-clock timeline from the recorder's stereo file.

MixMonitor (on the caller's channel) writes only while a frame passes that channel; when
neither side sends RTP (silence suppression on both ends, hold without music, one-way
fault) its files lose that time. So the dialplan (``[ivr-record]``) also starts a recorder:
a Local channel running ``ChanSpy(<caller>,qESDur(...))``. ChanSpy's generator is clocked
by the recorder channel's own 20 ms timer, and with ``D`` it writes one interleaved stereo
frame on every tick, zeros when the caller's channel carried nothing: left = what the caller
said, right = what the caller heard. ``r()`` writes those frames to a headerless file
(16-bit little-endian, 8 kHz, 2 channels) named

    <recording>-timeline@<answer epoch, µs>.<epoch at ChanSpy start>.raw

ChanSpy attaches to the caller some 0.1 s after the answer and writes its last tick at the
caller's hang-up, so the file's first sample is at (last write − its length): the
difference to the answer time is put back as leading silence. The three WAVs the call
record points at (mixed ``.wav``, ``-rx.wav``, ``-tx.wav``) are replaced by ones built from
it; MixMonitor's files stay as they were if there is no usable recorder file.
"""

from __future__ import annotations

import logging
import os
import re
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("ivr.recording")

RATE = 8000
FRAME_BYTES = 4  # one stereo sample: two 16-bit channels
#: A recorder file is still being written while it changed this recently (ticks: 20 ms).
QUIET_SECONDS = 0.5
#: Leading silence beyond this is not believed (clock step, a recorder that attached late).
MAX_LEAD = 5.0

_NAME = re.compile(r"-timeline@(?P<answer>\d+(?:\.\d+)?)\.(?P<started>\d+)\.raw$")


@dataclass(frozen=True)
class Timeline:
    """One recorder file and where it sits on the call's timeline."""

    path: Path
    answered_at: float  # epoch of the caller's answer (CDR answer time)
    first_sample_at: float  # epoch of the file's first sample
    seconds: float  # length of the file

    @property
    def lead(self) -> float:
        """Silence to put before the file so that 0 s is the answer."""
        lead = self.first_sample_at - self.answered_at
        return lead if 0.0 <= lead <= MAX_LEAD else 0.0


def find_timeline(recording: Path) -> Path | None:
    """The recorder file of a recording (``.../<id>.wav``), if any."""
    stem = recording.name.removesuffix(".wav")
    found = sorted(p for p in recording.parent.glob(f"{stem}-timeline@*.raw")
                   if _NAME.search(p.name))
    return found[-1] if found else None


def read_timeline(path: Path) -> Timeline:
    m = _NAME.search(path.name)
    if m is None:
        raise ValueError(f"{path}: not a recorder file name")
    st = path.stat()
    seconds = st.st_size // FRAME_BYTES / RATE
    return Timeline(path, float(m.group("answer")), st.st_mtime - seconds, seconds)


def is_settled(path: Path, now: float | None = None, quiet: float = QUIET_SECONDS) -> bool:
    """True once the recorder stopped writing (it writes every 20 ms while it runs)."""
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return False
    return (time.time() if now is None else now) - mtime >= quiet


def legs(timeline: Timeline) -> tuple[np.ndarray, np.ndarray]:
    """(caller said, caller heard) as int16 arrays from the answer to the hang-up."""
    data = timeline.path.read_bytes()
    stereo = np.frombuffer(data[: len(data) // FRAME_BYTES * FRAME_BYTES], dtype="<i2")
    stereo = stereo.reshape(-1, 2)
    lead = np.zeros(round(timeline.lead * RATE), dtype=np.int16)
    return (np.concatenate([lead, stereo[:, 0]]), np.concatenate([lead, stereo[:, 1]]))


def mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Both sides in one track, saturating as Asterisk's audiohook mixing does."""
    return np.clip(a.astype(np.int32) + b.astype(np.int32), -32768, 32767).astype(np.int16)


def _write_wav(path: Path, samples: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.astype("<i2").tobytes())
    os.replace(tmp, path)


def rebuild(recording: Path, *, keep_raw: bool = False) -> Timeline | None:
    """Replace ``recording`` (and its -rx/-tx legs, where MixMonitor wrote them) with files
    built from the recorder's stereo file, then remove that file. None (files untouched)
    when there is no recorder file or it is empty (an empty one is removed)."""
    raw = find_timeline(recording)
    if raw is None:
        return None
    timeline = read_timeline(raw)
    if timeline.seconds <= 0:
        # The caller hung up before the recorder attached: nothing in it.
        raw.unlink(missing_ok=True)
        return None
    said, heard = legs(timeline)
    stem = recording.name.removesuffix(".wav")
    rx, tx = recording.with_name(f"{stem}-rx.wav"), recording.with_name(f"{stem}-tx.wav")
    if rx.exists() or tx.exists():
        _write_wav(rx, said)
        _write_wav(tx, heard)
    _write_wav(recording, mix(said, heard))
    if not keep_raw:
        raw.unlink(missing_ok=True)
    log.info("event=recording_timeline path=%s seconds=%.3f lead=%.3f",
             recording, len(said) / RATE, timeline.lead)
    return timeline


def _read_mono(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != RATE:
            raise ValueError(f"{path}: not 8 kHz 16-bit mono")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def mix_into(track: np.ndarray, prompt: Path, offset: float) -> np.ndarray:
    """`track` with a prompt added at `offset` seconds, saturating (unchanged when the
    offset falls outside it)."""
    sound = _read_mono(prompt)
    start = round(offset * RATE)
    if start < 0 or start >= len(track):
        return track
    end = min(len(track), start + len(sound))
    out = track.copy()
    out[start:end] = mix(track[start:end], sound[: end - start])
    return out


def mix_in(recording: Path, prompt: Path, offset: float) -> bool:
    """Add a prompt the caller heard at `offset` seconds into the recording (the mixed file
    and the -tx leg, what the caller heard), saturating; False when it falls outside."""
    stem = recording.name.removesuffix(".wav")
    done = False
    for path in (recording, recording.with_name(f"{stem}-tx.wav")):
        if not path.exists():
            continue
        track = _read_mono(path)
        mixed = mix_into(track, prompt, offset)
        if mixed is track:
            continue
        _write_wav(path, mixed)
        done = True
    if done:
        log.info("event=announcement_mixed path=%s prompt=%s offset=%.3f",
                 recording, prompt, offset)
    return done
