"""Archiving speed: turning a call's two legs into the stereo file and measuring it.

    .venv/bin/python bench/bench_archive.py [--minutes 10] [--repeat 5]

A synthetic 8 kHz call (talk-like noise in turns, silences between) is written as the
stereo archive (ivr/recordings/archive.py: write_atomic with fsync) and measured (facts:
decode, sha256, per-side coverage), in WAV and FLAC; figures are call seconds per second of
work ("× real time") and bytes per channel-hour. Writes bench/results/archive.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ivr.recordings.archive import facts, write_atomic

RATE = 8000
RESULTS = Path(__file__).resolve().parent / "results" / "archive.json"


def call(minutes: float, seed: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Turns of 2-6 s, one side talking at a time, 0.5-2 s pauses; band-limited noise."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * RATE)
    left, right = np.zeros(n, np.int16), np.zeros(n, np.int16)
    at, side = 0, 0
    while at < n:
        turn = int(rng.uniform(2, 6) * RATE)
        voice = np.convolve(rng.standard_normal(turn), np.ones(4) / 4, mode="same")
        (left if side == 0 else right)[at:at + turn] = (voice * 3000).astype(np.int16)[:n - at]
        at += turn + int(rng.uniform(0.5, 2) * RATE)
        side ^= 1
    return left, right


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    left, right = call(args.minutes)
    seconds = len(left) / RATE
    out: dict = {"call_seconds": seconds, "machine": platform.processor() or platform.machine(),
                 "python": platform.python_version(), "formats": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("wav", "flac"):
            path = Path(tmp) / f"call.{fmt}"
            writes, measures = [], []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                write_atomic(path, left, right, fmt)
                t1 = time.perf_counter()
                measured = facts(path)
                measures.append(time.perf_counter() - t1)
                writes.append(t1 - t0)
            size = path.stat().st_size
            out["formats"][fmt] = {
                "write_s": round(statistics.median(writes), 4),
                "measure_s": round(statistics.median(measures), 4),
                "write_x_realtime": round(seconds / statistics.median(writes)),
                "measure_x_realtime": round(seconds / statistics.median(measures)),
                "bytes": size,
                "bytes_per_channel_hour": round(size / 2 / (seconds / 3600)),
                "caller_audio": measured.caller_audio, "other_audio": measured.other_audio,
            }
            print(f"{fmt}: write {statistics.median(writes) * 1000:.0f} ms "
                  f"({seconds / statistics.median(writes):.0f}x real time), measure "
                  f"{statistics.median(measures) * 1000:.0f} ms "
                  f"({seconds / statistics.median(measures):.0f}x), "
                  f"{size / 2 / (seconds / 3600) / 1e6:.1f} MB per channel-hour")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
