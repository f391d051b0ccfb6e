"""An admin's own recording turned into a prompt (``ivr prompts import``).

Uploads are read with libsndfile (``soundfile``), a well-kept library that knows WAV in all
its variants (PCM, float, A-law/mu-law, ADPCM, extensible, RF64), FLAC, Ogg Vorbis/Opus and
MP3, rather than a hand-written RIFF reader. What Asterisk plays stays the same: 8 kHz
16-bit mono WAV, resampled by ``ivr.audio.wav.resample``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import soundfile as sf

from ivr.audio.wav import (
    AudioError,
    frame_levels_dbfs,
    is_silent,
    normalize_peak,
    peak_dbfs,
    resample,
    rms_dbfs,
    trim_silence,
    write_wav,
)

__all__ = [
    "EDGE_SILENCE_MS",
    "PROMPT_RATE",
    "TARGET_PEAK_DBFS",
    "TRIM_THRESHOLD_DBFS",
    "UPLOAD_FORMATS",
    "ImportResult",
    "import_prompt",
    "read_upload",
    "upload_info",
]

# Shared by rendered and imported prompts, so both sound alike on the line.
PROMPT_RATE: Final = 8000
TARGET_PEAK_DBFS: Final = -3.0
# Prompts start and end with exactly this much digital silence: engines start speaking
# in their first 10 ms (abrupt on a phone) and append a long pause, and a fixed margin
# keeps chained prompts evenly spaced.
EDGE_SILENCE_MS: Final = 150.0
TRIM_THRESHOLD_DBFS: Final = -50.0
# What an admin may upload (libsndfile's names); anything else libsndfile happens to read
# (AIFF, CAF, ...) is refused with a clear message rather than half supported.
UPLOAD_FORMATS: Final = {"WAV": "WAV", "WAVEX": "WAV", "RF64": "WAV", "FLAC": "FLAC",
                         "OGG": "Ogg", "MP3": "MP3"}
_PCM_KINDS: Final = {"PCM_U8": "8-bit PCM", "PCM_S8": "8-bit PCM", "PCM_16": "16-bit PCM",
                     "PCM_24": "24-bit PCM", "PCM_32": "32-bit PCM", "FLOAT": "32-bit float",
                     "DOUBLE": "64-bit float", "ALAW": "8-bit A-law", "ULAW": "8-bit mu-law"}


@dataclass(frozen=True)
class UploadInfo:
    """What an upload's header says, before its samples are decoded."""

    path: Path
    format: str  # WAV | FLAC | Ogg | MP3
    description: str  # e.g. "24-bit PCM, stereo, 44100 Hz" or "MP3, mono, 44100 Hz"
    channels: int
    rate: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.rate


def upload_info(path: Path) -> UploadInfo:
    """Open an upload's header; :class:`AudioError` names the file and the problem."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise AudioError(f"{path}: cannot read file: {e.strerror or e}") from e
    if size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"{path}: not an audio file that can be imported (WAV, FLAC, Ogg or "
                         f"MP3): {_reason(e)}") from e
    kind = UPLOAD_FORMATS.get(info.format)
    if kind is None:
        raise AudioError(f"{path}: unsupported format: {info.format_info}; upload WAV, FLAC, "
                         "Ogg or MP3")
    if info.samplerate < 1 or info.channels < 1:
        raise AudioError(f"{path}: unsupported format: {info.channels} channels at "
                         f"{info.samplerate} Hz")
    if info.frames <= 0:
        raise AudioError(f"{path}: empty: the file holds no audio frames")
    layout = {1: "mono", 2: "stereo"}.get(info.channels, f"{info.channels} channels")
    coding = {"WAV": "", "FLAC": "FLAC ", "MP3": "MP3"}.get(kind, f"{kind} ")
    if kind != "MP3":
        coding += _PCM_KINDS.get(info.subtype, info.subtype_info)
    return UploadInfo(path=path, format=kind, description=f"{coding}, {layout}, "
                      f"{info.samplerate} Hz", channels=info.channels, rate=info.samplerate,
                      frames=info.frames)


def read_upload(path: Path) -> tuple[np.ndarray, int]:
    """Decode an upload to mono float32 in [-1, 1] (channels averaged) and its rate."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"{path}: damaged or truncated audio: {_reason(e)}") from e
    if data.shape[0] == 0:
        raise AudioError(f"{path}: empty: the file holds no audio frames")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    mono = np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(mono, -1.0, 1.0).astype(np.float32), int(rate)


def _reason(e: Exception) -> str:
    text = getattr(e, "error_string", None) or str(e)
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text


@dataclass(frozen=True)
class ImportResult:
    path: Path
    duration_s: float
    source_format: str  # e.g. "24-bit PCM, stereo, 48000 Hz"
    source_duration_s: float
    source_rms_dbfs: float
    source_peak_dbfs: float
    gain_db: float  # applied to reach TARGET_PEAK_DBFS


def import_prompt(
    src_path: str | os.PathLike[str],
    dest_path: str | os.PathLike[str],
    *,
    max_seconds: float = 180.0,
    silence_threshold_dbfs: float = -45.0,
) -> ImportResult:
    """Convert an admin's recording (WAV, FLAC, Ogg or MP3) to an 8 kHz 16-bit mono prompt.

    Leading/trailing silence is trimmed to EDGE_SILENCE_MS and the peak is set to
    TARGET_PEAK_DBFS so recordings match the level of rendered prompts.  Raises
    :class:`AudioError` saying why a file is refused.
    """
    src = Path(src_path)
    info = upload_info(src)  # refuses non-audio, unsupported and empty files
    # From the header, so an hour-long upload is refused before decoding it.
    if info.duration > max_seconds:
        raise AudioError(f"{src}: too long: {info.duration:.1f} s, the limit is {max_seconds:g} s")
    samples, rate = read_upload(src)
    x = resample(samples, rate, PROMPT_RATE)
    if is_silent(x, PROMPT_RATE, silence_threshold_dbfs):
        loudest = float(np.max(frame_levels_dbfs(x, PROMPT_RATE, 10.0), initial=-120.0))
        raise AudioError(
            f"{src}: silent: overall level {rms_dbfs(x):.1f} dBFS, loudest 10 ms "
            f"{loudest:.1f} dBFS; need at least 0.2 s above {silence_threshold_dbfs:g} dBFS"
        )
    source_peak = peak_dbfs(x)
    y = normalize_peak(x, TARGET_PEAK_DBFS)
    y = trim_silence(y, PROMPT_RATE, TRIM_THRESHOLD_DBFS, EDGE_SILENCE_MS)
    dest = Path(dest_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_wav(dest, y, PROMPT_RATE)
    return ImportResult(
        path=dest,
        duration_s=len(y) / PROMPT_RATE,
        source_format=info.description,
        source_duration_s=info.duration,
        source_rms_dbfs=rms_dbfs(samples),
        source_peak_dbfs=source_peak,
        gain_db=TARGET_PEAK_DBFS - source_peak,
    )
