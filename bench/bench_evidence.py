"""Evidence speed: `ivr recordings verify` over an archive, and one call's export.

    .venv/bin/python bench/bench_evidence.py [--recordings 200] [--minutes 5]

A synthetic 8 kHz stereo FLAC call (talk-like noise in turns) is copied into a recordings
folder `--recordings` times, each indexed and chained in a fresh SQLite store as the archive
does it. Measured: the whole verify (chain links, rows against entries, every file hashed in
threads) in recordings/s, MB/s and hours of calls per second; the event loop's longest stall
while it runs (hashing stays off the loop); one export (bundle folder + SHA256SUMS) and one
export as a tar. Writes bench/results/evidence.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stall import worst_stall

from ivr.protection.service_settings import Actor
from ivr.protection.store_audit import AuditStore
from ivr.recordings.chain import final_entry
from ivr.recordings.files import hash_file
from ivr.recordings.service_evidence import EvidenceService
from ivr.recordings.store_chain import ChainStore
from ivr.recordings.store_index import RecordingIndex, State
from ivr.recordings.verify import row_fields
from ivr.store import Database

RATE = 8000
RESULTS = Path(__file__).resolve().parent / "results" / "evidence.json"


def synthetic_call(path: Path, minutes: float, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * RATE)
    sides = [np.zeros(n), np.zeros(n)]
    at, who = 0, 0
    while at < n:
        length = min(int(rng.uniform(3, 20) * RATE), n - at)
        envelope = np.repeat(rng.uniform(0.02, 0.1, length // 1200 + 1), 1200)[:length]
        sides[who][at:at + length] = rng.normal(0, 1, length) * envelope
        at += length
        who = 1 - who
    sf.write(path, np.stack(sides, axis=1), RATE, format="FLAC", subtype="PCM_16")


async def fill(db: Database, root: Path, source: Path, count: int, seconds: float) -> None:
    index, chain = RecordingIndex(db), ChainStore(db)
    size, sha = hash_file(source) or (0, "")
    for i in range(count):
        rel = f"2026/11/25/bench-{i:05d}.flac"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / rel)
        rid = await index.add(call_id=f"1764000000.{i}", kind="call", path=rel, format="flac",
                              state=State.FINAL, desk="support", started_at=1.764e9 + i,
                              duration=seconds, size=size, sha256=sha,
                              finalised_at=1.764e9 + i + seconds)
        row = await index.get(rid)
        assert row is not None
        entry = await chain.append(kind="final", recording_id=rid, call_id=row.call_id,
                                   entry=final_entry(row_fields(row)))
        await index.update(rid, chain_seq=entry.seq)


async def main(recordings: int, minutes: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="ivr-bench-evidence-") as tmp:
        root = Path(tmp) / "recordings"
        root.mkdir()
        source = Path(tmp) / "call.flac"
        synthetic_call(source, minutes)
        async with Database(f"sqlite+aiosqlite:///{tmp}/ivr.sqlite3") as db:
            await fill(db, root, source, recordings, minutes * 60)
            service = EvidenceService(RecordingIndex(db), ChainStore(db), root,
                                      audit=AuditStore(db))
            started = time.perf_counter()
            stall, report = await worst_stall(service.verify())
            verify_s = time.perf_counter() - started
            assert report.intact and report.files == recordings, report.problems
            actor = Actor("bench", "admin", "cli")
            started = time.perf_counter()
            await service.export("1764000000.0", Path(tmp) / "out", actor=actor)
            export_s = time.perf_counter() - started
            started = time.perf_counter()
            await service.export_tar("1764000000.1", actor=actor, out_dir=Path(tmp) / "tar")
            tar_s = time.perf_counter() - started
        size = source.stat().st_size
    total_mb = size * recordings / 1e6
    return {
        "recordings": recordings, "minutes_each": minutes, "flac_bytes_each": size,
        "verify_seconds": round(verify_s, 3),
        "verify_recordings_per_s": round(recordings / verify_s, 1),
        "verify_mb_per_s": round(total_mb / verify_s, 1),
        "verify_call_hours_per_s": round(recordings * minutes / 60 / verify_s, 1),
        "verify_worst_loop_stall_ms": round(stall * 1000, 1),
        "export_seconds": round(export_s, 3), "export_tar_seconds": round(tar_s, 3),
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": len(__import__("os").sched_getaffinity(0)),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
    figures = asyncio.run(main(args.recordings, args.minutes))
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {RESULTS}")
