"""Storage maths for the stereo archive, measured: bytes per channel-hour in WAV and FLAC.

    .venv/bin/python bench/bench_storage.py [--minutes 20] [--prompts var/prompts]

One channel-hour is one hour of one recorded call: one stereo archive file (caller left,
operator/IVR right), 16-bit, 8 kHz, written by the archive's own writer
(ivr/recordings/archive.py write_atomic). The audio is real speech:

- the caller: Debian's G.711 A-law speech (/usr/share/sip-tester/g711a.pcap, what the
  end-to-end callers send), decoded as Asterisk decodes it;
- the operator/IVR: the repo's prompts (prompts/prompts.yaml, en and ja) rendered by the
  project's own engines (espeak-ng, Open JTalk), or a rendered folder given with --prompts.

Three calls are built from them, since FLAC's size depends on what the quiet side carries:
- ``conversation`` (the figure to plan with): turns of 3-12 s; the side listening carries
  the line noise of the caller's recording (its quietest 20 ms frames, between words);
- ``both_talking``: both sides speech all the time (an upper bound);
- ``turns_silent``: turns, the listening side digital silence (a phone with silence
  suppression; a lower bound).

Then what 100 channels busy for a working day (09:00-18:00, 9 h) and a year of retention
(245 working days) take in each format. Writes bench/results/storage.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.recordings.archive import RATE, read_sides, write_atomic  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "storage.json"
FRAME = RATE // 50
CHANNELS = 100
DAY_HOURS = 9.0  # the example's office hours, 09:00-18:00, every channel busy
WORKING_DAYS = 245  # a Japanese working year: 365 - weekends - 16 public holidays - new year
TURN_S = (3.0, 12.0)


def caller_speech(seconds: float) -> np.ndarray:
    from tests.e2e.rtp import speech_alaw
    from tests.e2e.rtp_capture import alaw_decode

    # alaw_decode gives floats in [-1, 1); the archive holds 16-bit samples.
    return np.round(alaw_decode(speech_alaw(seconds)) * 32768).astype(np.int16)


def prompt_speech(folder: Path | None) -> tuple[np.ndarray, str]:
    """Every rendered prompt (8 kHz mono) end to end; where they came from."""
    if folder is None:
        from ivr.audio.prompts import load_prompt_texts, render_prompts

        with tempfile.TemporaryDirectory(prefix="ivr-bench-prompts-") as tmp:
            render_prompts(load_prompt_texts(ROOT / "prompts" / "prompts.yaml"), tmp)
            speech, count = _joined(Path(tmp))
        return speech, f"prompts/prompts.yaml rendered by the project's engines ({count})"
    speech, count = _joined(folder)
    return speech, f"{folder} ({count})"


def _joined(folder: Path) -> tuple[np.ndarray, str]:
    parts = []
    for path in sorted(folder.glob("*/*.wav")):
        data, rate = sf.read(path, dtype="int16", always_2d=True)
        if rate == RATE:
            parts.append(data[:, 0])
    if not parts:
        raise SystemExit(f"no 8 kHz prompts under {folder}")
    return np.concatenate(parts), f"{len(parts)} prompts"


def line_noise(speech: np.ndarray) -> np.ndarray:
    """The quietest tenth of the speech's 20 ms frames (the line between words), joined."""
    frames = speech[: len(speech) // FRAME * FRAME].reshape(-1, FRAME).astype(np.int32)
    loudness = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    quiet = frames[np.argsort(loudness)[: max(len(frames) // 10, 1)]]
    return quiet.reshape(-1).astype(np.int16)


def fill(source: np.ndarray, n: int, offset: int) -> np.ndarray:
    """`n` samples of `source`, looped, starting at `offset`."""
    idx = (np.arange(n) + offset) % len(source)
    return source[idx]


def calls(seconds: float, caller: np.ndarray, operator: np.ndarray,
          noise: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    n = int(seconds * RATE)
    rng = np.random.default_rng(15)
    talking_left = np.zeros(n, dtype=bool)
    at, left_turn = 0, False
    while at < n:
        length = int(rng.uniform(*TURN_S) * RATE)
        talking_left[at:at + length] = left_turn
        at, left_turn = at + length, not left_turn
    c, o = fill(caller, n, 0), fill(operator, n, 0)
    z = np.zeros(n, dtype=np.int16)
    hiss_l, hiss_r = fill(noise, n, 0), fill(noise, n, len(noise) // 2)
    return {
        "conversation": (np.where(talking_left, c, hiss_l), np.where(talking_left, hiss_r, o)),
        "both_talking": (c, o),
        "turns_silent": (np.where(talking_left, c, z), np.where(talking_left, z, o)),
    }


def measure(left: np.ndarray, right: np.ndarray, fmt: str, folder: Path) -> dict:
    path = folder / f"call.{fmt}"
    started = time.perf_counter()
    write_atomic(path, left, right, fmt)
    took = time.perf_counter() - started
    size = path.stat().st_size
    back_l, back_r, _ = read_sides(path)
    seconds = len(left) / RATE
    return {"bytes": size, "seconds": seconds,
            "bytes_per_channel_hour": round(size * 3600 / seconds),
            "bits_per_sample": round(size * 8 / (2 * len(left)), 2),
            "write_x_real_time": round(seconds / took),
            "lossless": bool(np.array_equal(back_l, left) and np.array_equal(back_r, right))}


def costs(per_hour: float) -> dict:
    day = per_hour * CHANNELS * DAY_HOURS
    return {"per_channel_hour_MB": round(per_hour / 1e6, 2),
            "day_100_channels_GB": round(day / 1e9, 1),
            "year_100_channels_TB": round(day * WORKING_DAYS / 1e12, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0,
                        help="length of each measured call")
    parser.add_argument("--prompts", type=Path,
                        help="a rendered prompts folder (<lang>/<name>.wav); default: render")
    args = parser.parse_args()
    seconds = args.minutes * 60
    caller = caller_speech(60.0)
    operator, source = prompt_speech(args.prompts)
    noise = line_noise(caller)
    noise_dbfs = 20 * np.log10(max(np.sqrt((noise.astype(np.float64) ** 2).mean()), 1e-9)
                               / 32768)
    results: dict = {"assumptions": {
        "channel_hour": "one hour of one call: one stereo archive file, 16-bit, 8 kHz",
        "channels": CHANNELS, "working_day_hours": DAY_HOURS, "working_days": WORKING_DAYS,
        "call_minutes_measured": args.minutes, "turns_s": TURN_S,
        "caller_source": "Debian sip-tester g711a.pcap speech, A-law decoded",
        "operator_source": source, "line_noise_dBFS": round(float(noise_dbfs), 1)},
        "machine": {"python": platform.python_version(), "soundfile": sf.__version__,
                    "libsndfile": sf.__libsndfile_version__},
        "calls": {}}
    with tempfile.TemporaryDirectory(prefix="ivr-bench-storage-") as tmp:
        for name, (left, right) in calls(seconds, caller, operator, noise).items():
            entry = {}
            for fmt in ("wav", "flac"):
                entry[fmt] = measure(left, right, fmt, Path(tmp))
                entry[fmt].update(costs(entry[fmt]["bytes_per_channel_hour"]))
            entry["flac_share_of_wav"] = round(entry["flac"]["bytes"] / entry["wav"]["bytes"], 3)
            results["calls"][name] = entry
    print(f"stereo archive, 8 kHz 16-bit; {args.minutes:g}-minute calls; caller: g711a.pcap "
          f"speech; operator: {source}; line noise {noise_dbfs:.1f} dBFS")
    print(f"{'call':<14} {'format':<5} {'MB/ch-hour':>10} {'bits/sample':>11} "
          f"{'100 ch x 9 h (GB)':>17} {'x 245 days (TB)':>15} {'lossless':>8}")
    for name, entry in results["calls"].items():
        for fmt in ("wav", "flac"):
            e = entry[fmt]
            print(f"{name:<14} {fmt:<5} {e['per_channel_hour_MB']:>10.2f} "
                  f"{e['bits_per_sample']:>11.2f} {e['day_100_channels_GB']:>17.1f} "
                  f"{e['year_100_channels_TB']:>15.2f} {e['lossless']!s:>8}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
