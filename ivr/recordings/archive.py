"""The archive file: one stereo recording per call side pair (pure file work, no store).

Layout, for every reader (tests, analysis, export): channel 0 (left) is the customer (the
caller of an inbound call, the far end of an outbound one), channel 1 (right) is what the
customer heard (IVR, queue, operator). 16-bit, 8 kHz, WAV or FLAC (lossless) through
libsndfile (``soundfile``). Files are written atomically: a temporary file in the same
folder, fsync, ``os.replace``, fsync of the folder; a crash leaves the old file or the new
one, never half of one.

Coverage: the share of 20 ms frames of a side that carried audio. The ChanSpy timeline
(ivr/recording_timeline.py) writes zeros for every tick on which no frame arrived, and a
muted phone sends digital silence: both count as "no audio". Comfort noise and a quiet room
are above the threshold and count as audio.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ivr.recordings.files import sha256_of

RATE = 8000
FRAME = RATE // 50  # 20 ms, one RTP packet
#: A frame whose samples all stay within this is digital silence (G.711's smallest steps
#: around zero decode to a few units; real room noise is well above).
SILENCE_PEAK = 8
FILE_MODE = 0o640
FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16")}


@dataclass(frozen=True)
class ArchiveFacts:
    """What the index stores of an archive file."""

    path: Path
    format: str
    size: int
    sha256: str
    duration: float
    caller_audio: float  # coverage of the left side, 0..1
    other_audio: float  # coverage of the right side, 0..1


def coverage(samples: np.ndarray, rate: int = RATE) -> float:
    """Share of 20 ms frames holding anything but digital silence (0.0 for no samples)."""
    frame = max(1, rate // 50)
    n = len(samples) // frame * frame
    tail = len(samples) - n
    if len(samples) == 0:
        return 0.0
    peaks = np.abs(samples[:n].astype(np.int32)).reshape(-1, frame).max(axis=1)
    carried = int(np.count_nonzero(peaks > SILENCE_PEAK))
    frames = len(peaks)
    if tail:
        frames += 1
        carried += int(np.abs(samples[n:].astype(np.int32)).max() > SILENCE_PEAK)
    return carried / frames


def stereo(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """(n, 2) int16; the shorter side is padded with silence (both cover the whole call)."""
    n = max(len(left), len(right))
    out = np.zeros((n, 2), dtype=np.int16)
    out[: len(left), 0] = left
    out[: len(right), 1] = right
    return out


def archive_name(stem: str, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"archive format {fmt!r}: not one of {', '.join(FORMATS)}")
    return f"{stem}.{fmt}"


def write_atomic(path: Path, left: np.ndarray, right: np.ndarray, fmt: str,
                 rate: int = RATE) -> None:
    """Write the stereo file at `path` in `fmt` (wav|flac) so that it appears whole or not."""
    container, subtype = FORMATS[fmt]
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        # Evidence: readable by the service's group at most, never by others.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            sf.write(fh, stereo(left, right), rate, format=container, subtype=subtype)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_sides(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(left, right, rate) of an archive file as int16 arrays. A mono file (a recording made
    without separate legs, or not archived yet) gives the same samples on both sides."""
    data, rate = sf.read(str(path), dtype="int16", always_2d=True)
    if data.shape[1] == 1:
        mono = np.ascontiguousarray(data[:, 0])
        return mono, mono.copy(), int(rate)
    return (np.ascontiguousarray(data[:, 0]), np.ascontiguousarray(data[:, 1]), int(rate))


def read_mono(path: Path) -> np.ndarray:
    """A single-channel recording file (MixMonitor's mix or a leg) as int16."""
    data, _rate = sf.read(str(path), dtype="int16", always_2d=True)
    return np.ascontiguousarray(data[:, 0]) if data.shape[1] == 1 else \
        np.ascontiguousarray(data.mean(axis=1).astype(np.int16))


def channels(path: Path) -> int:
    """0 when the file is not a readable sound file."""
    try:
        return int(sf.info(str(path)).channels)
    except (RuntimeError, OSError, sf.LibsndfileError):
        return 0


def _facts(path: Path, fmt: str, left: np.ndarray, right: np.ndarray,
           rate: int = RATE) -> ArchiveFacts:
    """An archive file's facts: size and sha256 from the file, length and per-side coverage
    from its samples (blocking)."""
    size, sha = sha256_of(path)
    return ArchiveFacts(path=path, format=fmt, size=size, sha256=sha,
                        duration=len(left) / rate if rate else 0.0,
                        caller_audio=round(coverage(left, rate), 4),
                        other_audio=round(coverage(right, rate), 4))


def facts(path: Path) -> ArchiveFacts:
    """Measure an archive file: size, sha256, length, per-side coverage (blocking)."""
    left, right, rate = read_sides(path)
    return _facts(path, path.suffix.lstrip(".").lower(), left, right, rate)


def build(path: Path, left: np.ndarray, right: np.ndarray, fmt: str) -> ArchiveFacts:
    """Write the archive and measure it (blocking: run it in a thread). Length and coverage
    come from the samples written (the format is lossless), size and sha256 from the file
    on disk."""
    write_atomic(path, left, right, fmt)
    both = stereo(left, right)  # as written: the shorter side padded
    return _facts(path, fmt, both[:, 0], both[:, 1])
