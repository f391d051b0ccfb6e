"""The sounds live protection plays that are not speech: the operator's second-stage beep.

Written at set-up as a WAV next to the prompts. (PlayTones on the whisper channel did not
reach the operator, measured: a tone generator on a Local channel is not whispered on; a
file played there is.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ivr.audio.wav import write_wav

RATE = 8000
BEEP = "tones/live_beep"  # under the prompts folder, without the extension
# (Hz, ms): two short beeps and a higher long one; 0 Hz is a pause.
BEEP_PATTERN = ((880, 200), (0, 150), (880, 200), (0, 150), (1320, 400))
LEVEL = 10 ** (-12 / 20)  # -12 dBFS peak: clear over a raised voice, not painful


def beep_samples() -> np.ndarray:
    parts = []
    for hz, ms in BEEP_PATTERN:
        t = np.arange(round(RATE * ms / 1000)) / RATE
        tone = LEVEL * np.sin(2 * np.pi * hz * t) if hz else np.zeros_like(t)
        ramp = min(len(t) // 2, 40)  # 5 ms fades: no clicks
        if hz and ramp:
            tone[:ramp] *= np.linspace(0, 1, ramp)
            tone[-ramp:] *= np.linspace(1, 0, ramp)
        parts.append(tone)
    return np.concatenate(parts)


def write_live_sounds(prompts_dir: Path) -> Path:
    """The beep, rewritten only when missing or different (set-up runs often)."""
    path = prompts_dir / f"{BEEP}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.wav")
    write_wav(tmp, beep_samples(), RATE)
    if path.exists() and path.read_bytes() == tmp.read_bytes():
        tmp.unlink()
    else:
        tmp.replace(path)
    return path
