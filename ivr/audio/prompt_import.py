"""An admin's own recording turned into a prompt (``ivr prompts import``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from ivr.audio.wav import (
    AudioError,
    frame_levels_dbfs,
    is_silent,
    normalize_peak,
    peak_dbfs,
    read_wav,
    read_wav_info,
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
    "ImportResult",
    "import_prompt",
]

# Shared by rendered and imported prompts, so both sound alike on the line.
PROMPT_RATE: Final = 8000
TARGET_PEAK_DBFS: Final = -3.0
# Prompts start and end with exactly this much digital silence: engines start speaking
# in their first 10 ms (abrupt on a phone) and append a long pause, and a fixed margin
# keeps chained prompts evenly spaced.
EDGE_SILENCE_MS: Final = 150.0
TRIM_THRESHOLD_DBFS: Final = -50.0


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
    """Convert an admin's WAV recording to an 8 kHz 16-bit mono prompt.

    Leading/trailing silence is trimmed to EDGE_SILENCE_MS and the peak is set to
    TARGET_PEAK_DBFS so recordings match the level of rendered prompts.  Raises
    :class:`AudioError` saying why a file is refused.
    """
    src = Path(src_path)
    info = read_wav_info(src)  # refuses non-WAV, unsupported, truncated and empty files
    # From the header, so an hour-long upload is refused before decoding it.
    if info.duration > max_seconds:
        raise AudioError(f"{src}: too long: {info.duration:.1f} s, the limit is {max_seconds:g} s")
    audio = read_wav(src)
    x = resample(audio.samples, audio.rate, PROMPT_RATE)
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
        source_rms_dbfs=rms_dbfs(audio.samples),
        source_peak_dbfs=source_peak,
        gain_db=TARGET_PEAK_DBFS - source_peak,
    )
