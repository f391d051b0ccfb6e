"""WAV reading/writing, resampling and level analysis (numpy + stdlib only).

Asterisk plays prompts as 8 kHz 16-bit mono ``.wav`` (slin), so everything here
converges on that format.  Reading is done with our own RIFF parser rather than
the stdlib ``wave`` module because ``wave`` refuses IEEE float, A-law/mu-law and
most WAVE_FORMAT_EXTENSIBLE files, which are exactly what admins tend to upload.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import tempfile
import wave
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = [
    "SILENCE_FLOOR_DBFS",
    "Audio",
    "AudioError",
    "WavInfo",
    "active_ratio",
    "frame_levels_dbfs",
    "is_silent",
    "normalize_peak",
    "peak_dbfs",
    "read_wav",
    "read_wav_info",
    "resample",
    "rms_dbfs",
    "trim_silence",
    "wav_duration",
    "write_wav",
]

# Levels are floored rather than -inf so they stay usable in arithmetic, JSON and
# log messages; nothing audible lives down here anyway (16-bit LSB is ~-96 dBFS).
SILENCE_FLOOR_DBFS = -120.0

_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_IEEE_FLOAT = 0x0003
_WAVE_FORMAT_ALAW = 0x0006
_WAVE_FORMAT_MULAW = 0x0007
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# The first two bytes of an EXTENSIBLE SubFormat GUID carry the plain format tag;
# the remaining 14 bytes are this fixed KSDATAFORMAT suffix.
_GUID_SUFFIX = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
# Writers that stream (and never seek back) leave this in the data size field.
_UNKNOWN_SIZE = 0xFFFFFFFF


class AudioError(ValueError):
    """A file is not usable audio; the message names the file and the reason."""


# eq=False: the generated __eq__ would compare arrays element-wise and then fail
# on bool(); compare ``samples`` explicitly instead.
@dataclass(frozen=True, eq=False)
class Audio:
    """Mono float32 samples in [-1, 1] at ``rate`` Hz (``samples`` is read-only)."""

    samples: np.ndarray
    rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate if self.rate else 0.0


@dataclass(frozen=True)
class WavInfo:
    """What the header of a WAV file says, without decoding the samples."""

    path: Path
    format: str  # "pcm", "float", "alaw" or "mulaw"
    channels: int
    rate: int
    bits: int
    frames: int
    data_offset: int
    data_size: int

    @property
    def duration(self) -> float:
        return self.frames / self.rate

    @property
    def description(self) -> str:
        kind = {"pcm": "PCM", "float": "float", "alaw": "A-law", "mulaw": "mu-law"}[self.format]
        layout = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} channels")
        return f"{self.bits}-bit {kind}, {layout}, {self.rate} Hz"


# --------------------------------------------------------------------------- reading


def read_wav_info(path: str | os.PathLike[str]) -> WavInfo:
    """Parse the RIFF/WAVE header of ``path``; raise :class:`AudioError` if unusable."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            return _parse_header(p, f, os.fstat(f.fileno()).st_size)
    except OSError as e:
        raise AudioError(f"{p}: cannot read file: {e.strerror or e}") from e


def wav_duration(path: str | os.PathLike[str]) -> float:
    """Duration in seconds, from the header only (no sample decoding)."""
    return read_wav_info(path).duration


def read_wav(path: str | os.PathLike[str]) -> Audio:
    """Decode a WAV file to mono float32 (channels are averaged)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            info = _parse_header(p, f, os.fstat(f.fileno()).st_size)
            f.seek(info.data_offset)
            raw = f.read(info.data_size)
    except OSError as e:
        raise AudioError(f"{p}: cannot read file: {e.strerror or e}") from e
    if len(raw) < info.data_size:
        # The file shrank between stat and read (someone is still writing it).
        raise AudioError(f"{p}: truncated: data chunk ended early")
    frames = _decode(raw, info)
    mono = frames.mean(axis=1, dtype=np.float64) if info.channels > 1 else frames[:, 0]
    samples = np.clip(mono, -1.0, 1.0).astype(np.float32)
    samples.setflags(write=False)
    return Audio(samples=samples, rate=info.rate)


def _parse_header(p: Path, f: BinaryIO, file_size: int) -> WavInfo:
    head = f.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX", b"RF64") or head[8:12] != b"WAVE":
        if len(head) == 0:
            raise AudioError(f"{p}: empty file (0 bytes)")
        if len(head) < 12 and b"RIFF".startswith(head[:4]):
            raise AudioError(f"{p}: truncated: file ends inside the RIFF header")
        raise AudioError(f"{p}: not a RIFF/WAVE file")
    if head[:4] != b"RIFF":
        raise AudioError(f"{p}: unsupported format: {head[:4].decode()} container")

    fmt: bytes | None = None
    data_offset = data_size = -1
    pos = 12
    while pos + 8 <= file_size:
        f.seek(pos)
        chunk_id, size = struct.unpack("<4sI", f.read(8))
        body = pos + 8
        if chunk_id == b"fmt ":
            fmt = f.read(size)
            if len(fmt) < min(size, 16):
                raise AudioError(f"{p}: truncated: fmt chunk is cut short")
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioError(f"{p}: unsupported format: data chunk before fmt chunk")
            available = file_size - body
            if size == _UNKNOWN_SIZE:
                size = available
            elif size > available:
                raise AudioError(
                    f"{p}: truncated: data chunk declares {size} bytes but only "
                    f"{available} are present"
                )
            data_offset, data_size = body, size
            break
        pos = body + size + (size & 1)  # chunks are word aligned

    if fmt is None:
        if file_size <= 12 + 8:
            raise AudioError(f"{p}: truncated: RIFF header without a fmt chunk")
        raise AudioError(f"{p}: not a usable WAVE file: no fmt chunk")
    if len(fmt) < 16:
        raise AudioError(f"{p}: truncated: fmt chunk is {len(fmt)} bytes, need 16")
    if data_offset < 0:
        raise AudioError(f"{p}: truncated: no data chunk")

    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < 40:
            raise AudioError(f"{p}: truncated: WAVE_FORMAT_EXTENSIBLE fmt chunk too short")
        guid = fmt[24:40]
        if guid[2:] != _GUID_SUFFIX:
            raise AudioError(f"{p}: unsupported format: extensible sub-format {guid.hex()}")
        tag = struct.unpack("<H", guid[:2])[0]

    kinds = {
        _WAVE_FORMAT_PCM: ("pcm", (8, 16, 24, 32)),
        _WAVE_FORMAT_IEEE_FLOAT: ("float", (32, 64)),
        _WAVE_FORMAT_ALAW: ("alaw", (8,)),
        _WAVE_FORMAT_MULAW: ("mulaw", (8,)),
    }
    if tag not in kinds:
        raise AudioError(f"{p}: unsupported format: WAVE format tag 0x{tag:04x} (compressed?)")
    kind, widths = kinds[tag]
    if bits not in widths:
        raise AudioError(f"{p}: unsupported format: {bits}-bit {kind}")
    if channels < 1:
        raise AudioError(f"{p}: unsupported format: {channels} channels")
    if rate < 1:
        raise AudioError(f"{p}: unsupported format: sample rate {rate} Hz")
    if block_align != channels * bits // 8:
        raise AudioError(
            f"{p}: unsupported format: block align {block_align} does not match "
            f"{channels} x {bits}-bit samples"
        )
    frames = data_size // block_align
    if frames == 0:
        raise AudioError(f"{p}: empty: the data chunk holds no audio frames")
    return WavInfo(
        path=p,
        format=kind,
        channels=channels,
        rate=rate,
        bits=bits,
        frames=frames,
        data_offset=data_offset,
        data_size=frames * block_align,  # a trailing partial frame is ignored
    )


def _decode(raw: bytes, info: WavInfo) -> np.ndarray:
    """Return float64 frames of shape (n, channels) scaled to [-1, 1]."""
    n = info.frames * info.channels
    if info.format == "float":
        data = np.frombuffer(raw, dtype=f"<f{info.bits // 8}", count=n).astype(np.float64)
        data = np.nan_to_num(data, nan=0.0, posinf=1.0, neginf=-1.0)
    elif info.format in ("alaw", "mulaw"):
        table = _ALAW_TABLE if info.format == "alaw" else _MULAW_TABLE
        data = table[np.frombuffer(raw, dtype=np.uint8, count=n)]
    elif info.bits == 8:
        # 8-bit WAV is the one unsigned width.
        data = (np.frombuffer(raw, dtype=np.uint8, count=n).astype(np.float64) - 128.0) / 128.0
    elif info.bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8, count=n * 3).reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        data = ints.astype(np.float64) / float(1 << 23)
    else:
        dtype = "<i2" if info.bits == 16 else "<i4"
        data = np.frombuffer(raw, dtype=dtype, count=n).astype(np.float64)
        data /= float(1 << (info.bits - 1))
    return data.reshape(info.frames, info.channels)


def _g711_tables() -> tuple[np.ndarray, np.ndarray]:
    codes = np.arange(256, dtype=np.int32)
    # mu-law (ITU-T G.711): bits are inverted on the wire.
    u = ~codes & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    mulaw = np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.float64) / 32768.0
    # A-law: even bits are inverted on the wire.
    a = codes ^ 0x55
    seg = (a & 0x70) >> 4
    mant = (a & 0x0F) << 4
    mag = np.where(seg == 0, mant + 8, (mant + 0x108) << np.maximum(seg - 1, 0))
    alaw = np.where(a & 0x80, mag, -mag).astype(np.float64) / 32768.0
    return alaw, mulaw


_ALAW_TABLE, _MULAW_TABLE = _g711_tables()


# --------------------------------------------------------------------------- writing


def write_wav(path: str | os.PathLike[str], samples: np.ndarray, rate: int = 8000) -> Path:
    """Write 16-bit mono PCM atomically; readers never see a half-written file."""
    p = Path(path)
    data = np.asarray(samples, dtype=np.float64)
    if data.ndim != 1:
        raise ValueError(f"{p}: write_wav expects mono samples, got shape {data.shape}")
    # Same scale as read_wav (x32768) so a round trip is exact to one LSB; +1.0
    # itself does not fit and is clipped to 32767.
    pcm = np.clip(np.round(np.nan_to_num(data) * 32768.0), -32768, 32767).astype("<i2")
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw:
            with wave.open(raw, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(rate)
                w.writeframes(pcm.tobytes())
            # fsync before the rename, or a crash can leave a renamed empty file.
            raw.flush()
            os.fsync(raw.fileno())
        # mkstemp creates 0600; prompts must be readable by the asterisk user.
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return p


# --------------------------------------------------------------------------- resampling

# Telephone speech only needs up to ~3.4 kHz; passing 85 % of the lower Nyquist
# and stopping at Nyquist keeps that band flat while leaving the filter short.
_PASSBAND = 0.85
_STOPBAND_DB = 80.0
_CHUNK_ROWS = 8192


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Rational (polyphase) resampling with a Kaiser-windowed sinc low-pass.

    The output has ``ceil(len * dst / src)`` samples and is time aligned with the
    input (the filter delay is compensated).  Energy above the lower Nyquist
    frequency is suppressed by about 80 dB, so nothing aliases into the band.
    """
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {src_rate} -> {dst_rate}")
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"resample expects mono samples, got shape {x.shape}")
    if src_rate == dst_rate or len(x) == 0:
        return x.astype(np.float32)

    g = math.gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    poly, half = _polyphase_filter(up, down)
    taps = poly.shape[1]
    n_out = -(-len(x) * up // down)

    # Pad so every window below is in range; index j of x lives at j + taps - 1.
    last_start = ((n_out - 1) * down + half) // up
    right = max(0, last_start + 1 - len(x))
    xpad = np.concatenate([np.zeros(taps - 1), x, np.zeros(right)])
    windows = np.lib.stride_tricks.sliding_window_view(xpad, taps)

    out = np.empty(n_out, dtype=np.float64)
    # Outputs m, m + up, m + 2up, ... share one phase of the filter and step
    # through the input by `down`, so each phase is a strided matrix-vector product.
    for m0 in range(min(up, n_out)):
        phase = (m0 * down + half) % up
        start = (m0 * down + half) // up
        h = poly[phase, ::-1]
        idx = range(m0, n_out, up)
        count = len(idx)
        for c in range(0, count, _CHUNK_ROWS):
            rows = min(_CHUNK_ROWS, count - c)
            s = start + c * down
            block = windows[s : s + (rows - 1) * down + 1 : down]
            out[m0 + c * up : m0 + (c + rows) * up : up] = block @ h
    return out.astype(np.float32)


@lru_cache(maxsize=16)
def _polyphase_filter(up: int, down: int) -> tuple[np.ndarray, int]:
    """Design the low-pass at the virtual rate ``src * up`` and split it into phases."""
    # Frequencies are normalised to the upsampled rate (1.0 == that sample rate).
    stop = 0.5 / max(up, down)
    passband = _PASSBAND * stop
    cutoff = (passband + stop) / 2
    width = 2 * math.pi * (stop - passband)
    beta = 0.1102 * (_STOPBAND_DB - 8.7)
    n = math.ceil((_STOPBAND_DB - 7.95) / (2.285 * width)) + 1
    n += 1 - n % 2  # odd length -> integer group delay
    half = n // 2
    t = np.arange(n) - half
    h = 2 * cutoff * np.sinc(2 * cutoff * t) * np.kaiser(n, beta)
    h *= up / h.sum()  # zero-stuffing divides the level by `up`; restore unity gain
    taps = -(-n // up)
    poly = np.zeros(taps * up)
    poly[:n] = h
    phases = poly.reshape(taps, up).T.copy()
    phases.setflags(write=False)
    return phases, half


# --------------------------------------------------------------------------- analysis


def _db(value: float) -> float:
    return max(20.0 * math.log10(value), SILENCE_FLOOR_DBFS) if value > 0 else SILENCE_FLOOR_DBFS


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level relative to 1.0 (a full-scale sine reads -3.01 dBFS)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return SILENCE_FLOOR_DBFS
    return _db(math.sqrt(float(np.mean(x * x))))


def peak_dbfs(samples: np.ndarray) -> float:
    x = np.asarray(samples)
    return _db(float(np.max(np.abs(x)))) if x.size else SILENCE_FLOOR_DBFS


def frame_levels_dbfs(samples: np.ndarray, rate: int, frame_ms: float = 20.0) -> np.ndarray:
    """RMS level of consecutive non-overlapping frames; a trailing partial frame counts."""
    x = np.asarray(samples, dtype=np.float64)
    size = max(1, round(rate * frame_ms / 1000.0))
    if x.size == 0:
        return np.empty(0, dtype=np.float64)
    n_frames = -(-x.size // size)
    padded = np.zeros(n_frames * size)
    padded[: x.size] = x * x
    sums = padded.reshape(n_frames, size).sum(axis=1)
    lengths = np.full(n_frames, size, dtype=np.float64)
    lengths[-1] = x.size - (n_frames - 1) * size
    power = sums / lengths
    with np.errstate(divide="ignore"):
        levels = 10.0 * np.log10(power)
    return np.maximum(levels, SILENCE_FLOOR_DBFS)


def active_ratio(
    samples: np.ndarray, rate: int, threshold_dbfs: float = -45.0, frame_ms: float = 20.0
) -> float:
    """Share of frames whose RMS level is above ``threshold_dbfs`` (0.0 for no audio)."""
    levels = frame_levels_dbfs(samples, rate, frame_ms)
    return float(np.mean(levels > threshold_dbfs)) if levels.size else 0.0


def is_silent(
    samples: np.ndarray,
    rate: int,
    threshold_dbfs: float = -45.0,
    min_active_ms: float = 200.0,
) -> bool:
    """True unless at least ``min_active_ms`` of audio is above ``threshold_dbfs``.

    An absolute duration rather than a ratio, so a short "thank you" inside a long
    quiet file still counts as content while a lone click does not.
    """
    frame_ms = 10.0
    levels = frame_levels_dbfs(samples, rate, frame_ms)
    return float(np.sum(levels > threshold_dbfs)) * frame_ms < min_active_ms


def trim_silence(
    samples: np.ndarray,
    rate: int,
    threshold_dbfs: float = -50.0,
    keep_ms: float = 150.0,
) -> np.ndarray:
    """Cut leading/trailing audio below ``threshold_dbfs``, keeping ``keep_ms`` of it."""
    x = np.asarray(samples)
    frame_ms = 5.0
    levels = frame_levels_dbfs(x, rate, frame_ms)
    loud = np.flatnonzero(levels > threshold_dbfs)
    if loud.size == 0:
        return x[:0]
    frame = max(1, round(rate * frame_ms / 1000.0))
    keep = round(rate * keep_ms / 1000.0)
    start = max(0, int(loud[0]) * frame - keep)
    end = min(x.size, (int(loud[-1]) + 1) * frame + keep)
    return x[start:end]


def normalize_peak(samples: np.ndarray, target_dbfs: float = -3.0) -> np.ndarray:
    """Scale so the absolute peak sits at ``target_dbfs``; digital silence is left alone."""
    x = np.asarray(samples, dtype=np.float32)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak == 0.0:
        return x.copy()
    return (x * np.float32(10.0 ** (target_dbfs / 20.0) / peak)).astype(np.float32)
