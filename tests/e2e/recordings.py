"""Reading a call's archived recording (the stereo file, ivr/recordings/archive.py) the way
the old tests read MixMonitor's files: the recorded channel's `said` and `heard` legs and
the `mixed` track, as float32 in [-1, 1] like ivr.audio.wav.read_wav.

The archive's layout: left = the customer (the caller; an outbound call's far end), right =
what the customer heard. For an outbound call the recorded channel is the operator's, so
its `said` is the right side and its `heard` the left. The file is checked to be a stereo
archive whose sha256 is the call record's before anything is read from it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ivr.audio.wav import Audio
from ivr.recordings import archive

RATE = 8000


def _audio(samples: np.ndarray) -> Audio:
    return Audio(samples.astype(np.float32) / 32768.0, RATE)


@dataclass(frozen=True)
class Recording:
    path: Path
    left: Audio  # the customer
    right: Audio  # what the customer heard
    outbound: bool

    @property
    def said(self) -> Audio:
        """What the recorded channel said (old `-rx.wav`)."""
        return self.right if self.outbound else self.left

    @property
    def heard(self) -> Audio:
        """What the recorded channel heard (old `-tx.wav`)."""
        return self.left if self.outbound else self.right

    @property
    def mixed(self) -> Audio:
        """Both sides in one track, saturating as Asterisk mixes (the old mono `.wav`)."""
        both = self.left.samples.astype(np.float64) + self.right.samples
        return Audio(np.clip(both, -1.0, 32767 / 32768).astype(np.float32), RATE)

    @property
    def duration(self) -> float:
        return self.left.duration


def read_archive(path: str | Path, *, outbound: bool = False,
                 sha256: str | None = None) -> Recording:
    path = Path(path)
    assert path.suffix in (".flac", ".wav"), path
    assert archive.channels(path) == 2, f"{path}: not a stereo archive"
    if sha256 is not None:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256, f"{path}: sha256"
    left, right, rate = archive.read_sides(path)
    assert rate == RATE
    return Recording(path, _audio(left), _audio(right), outbound)


def call_recording(record: dict[str, Any]) -> Recording:
    """The archive of a finalised call record (`recording_sha256` set)."""
    assert record["recording_sha256"], "the call's recording is not final yet"
    return read_archive(record["recording_path"], outbound=record["direction"] == "outbound",
                        sha256=record["recording_sha256"])


def called_recording(record: dict[str, Any]) -> Recording:
    """An outbound call's called party's archive (left = them, right = what they heard)."""
    done = [e["data"] for e in record["events"] if e["kind"] == "called_recording_finalised"]
    assert done, "the called party's recording is not final yet"
    return read_archive(done[-1]["path"], sha256=done[-1]["sha256"])


def no_leftovers(record: dict[str, Any]) -> list[Path]:
    """Files of the recording other than its archive(s): none once it is final."""
    path = Path(record["recording_path"])
    stem = path.name.rsplit(".", 1)[0]
    return sorted(p for p in path.parent.glob(f"{stem}*")
                  if p.suffix not in (".flac",) and archive.channels(p) != 2)
