"""Admins' own recordings, which replace rendered prompts."""

from __future__ import annotations

import shutil
from pathlib import Path

from ivr.audio.prompts import import_prompt
from ivr.config import Config


def recordings_dir(config: Config) -> Path:
    return config.data_dir / "prompt-recordings"


def import_recording(config: Config, source: Path, name: str, language: str) -> str:
    target = recordings_dir(config) / language / f"{name}.wav"
    target.parent.mkdir(parents=True, exist_ok=True)
    result = import_prompt(source, target)
    apply_recordings(config)
    return str(result)


def apply_recordings(config: Config) -> int:
    """Put every imported recording in place of its rendered prompt; returns how many."""
    count = 0
    base = recordings_dir(config)
    for recording in sorted(base.glob("*/*.wav")):
        target = config.prompts_dir / recording.parent.name / recording.name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(recording, tmp)
        tmp.replace(target)
        count += 1
    return count
