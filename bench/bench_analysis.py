"""Recording analysis speed on one core, and what running it in a thread costs the event loop.

    .venv/bin/python bench/bench_analysis.py [--minutes 10] [--repeat 20]

A synthetic 8 kHz stereo call (talk-like noise in turns, two loud stretches) is analysed
(ivr/recordings/analysis.py) again and again, pinned to one CPU with BLAS threads off; the
figure is call seconds per second of analysis ("× real time"). Also measured: the whole
worker step for a FLAC archive (sha256 + decode + analysis), and the event loop's longest
stall while that step runs in a thread (asyncio.to_thread) next to it, against a process
pool's cost per job. Writes bench/results/analysis.json.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stall import worst_stall  # noqa: E402  (bench/stall.py: run as a script, bench/ is on the path)

from ivr.recordings.analysis import analyse  # noqa: E402
from ivr.recordings.archive import sha256_of, write_atomic  # noqa: E402
from ivr.recordings.service_analysis import analyse_file  # noqa: E402

RATE = 8000
RESULTS = Path(__file__).resolve().parent / "results" / "analysis.json"


def talk(seconds: float, level_dbfs: float, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * RATE)
    syllables = rng.uniform(0.3, 1.0, n // 1200 + 1) * 10 ** (level_dbfs / 20)
    envelope = np.repeat(syllables, 1200)[:n]
    envelope[rng.random(n // 1200 + 1).repeat(1200)[:n] < 0.15] = 0.0  # pauses
    return rng.normal(0, 1, n) * envelope


def synthetic_call(minutes: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Turns of 3-20 s, now one side, now the other; two loud stretches of the caller."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * RATE)
    sides = [np.zeros(n), np.zeros(n)]
    at, who = 0, 0
    while at < n:
        length = min(int(rng.uniform(3, 20) * RATE), n - at)
        sides[who][at:at + length] = talk(length / RATE, -26.0, rng)
        at += length
        who = 1 - who
    for start in (0.3, 0.7):
        k = int(start * n)
        sides[0][k:k + 5 * RATE] = talk(5.0, -6.0, rng)
    left, right = (np.clip(s * 32767, -32768, 32767).astype(np.int16) for s in sides)
    return left, right


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


async def loop_stall(job, jobs: int) -> float:
    """Longest gap (s) between the 1 ms ticks of a task while `jobs` run one after another."""

    async def run_all() -> None:
        for _ in range(jobs):
            await job()
            await asyncio.sleep(0)  # a job run on the loop itself never lets the ticker in

    worst, _ = await worst_stall(run_all())
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})

    left, right = synthetic_call(args.minutes)
    call_s = len(left) / RATE
    result = analyse(left, right, RATE)
    analysis_times = timed(lambda: analyse(left, right, RATE), args.repeat)
    best, median = min(analysis_times), statistics.median(analysis_times)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "call.flac"
        write_atomic(path, left, right, "flac")
        size, digest = sha256_of(path)
        step_times = timed(lambda: analyse_file(path, digest), max(5, args.repeat // 2))

        async def in_thread() -> None:
            await asyncio.to_thread(analyse_file, path, digest)

        async def on_loop() -> None:
            analyse_file(path, digest)

        jobs = 10
        stall_thread = asyncio.run(loop_stall(in_thread, jobs))
        stall_loop = asyncio.run(loop_stall(on_loop, jobs))
        with ProcessPoolExecutor(max_workers=1) as pool:
            pool.submit(analyse_file, path, digest).result()  # start-up not counted

            async def in_process() -> None:
                await asyncio.get_running_loop().run_in_executor(pool, analyse_file, path,
                                                                 digest)

            started = time.perf_counter()
            stall_process = asyncio.run(loop_stall(in_process, jobs))
            process_job = (time.perf_counter() - started - 0.05) / jobs
        started = time.perf_counter()
        asyncio.run(loop_stall(in_thread, jobs))
        thread_job = (time.perf_counter() - started - 0.05) / jobs

    figures = {
        "call_seconds": call_s,
        "channels": 2,
        "rate": RATE,
        "cpu": cpu,
        "analysis_best_s": round(best, 5),
        "analysis_median_s": round(median, 5),
        "realtime_factor_best": round(call_s / best),
        "realtime_factor_median": round(call_s / median),
        "worker_step_median_s": round(statistics.median(step_times), 5),
        "worker_step_realtime_factor": round(call_s / statistics.median(step_times)),
        "flac_bytes": size,
        "analysis_json_bytes": len(json.dumps(result)),
        "episodes_found": result["shouting"],
        "loop_stall_thread_ms": round(stall_thread * 1000, 2),
        "loop_stall_on_loop_ms": round(stall_loop * 1000, 2),
        "loop_stall_process_ms": round(stall_process * 1000, 2),
        "job_thread_s": round(thread_job, 5),
        "job_process_s": round(process_job, 5),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.processor() or platform.machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"analysis of a {call_s / 60:g}-minute 8 kHz stereo call on one core (cpu {cpu}): "
          f"best {best * 1000:.1f} ms, median {median * 1000:.1f} ms = "
          f"{figures['realtime_factor_median']}x real time (median), "
          f"{figures['realtime_factor_best']}x (best); target >= 1000x")
    print(f"worker step (sha256 + FLAC decode + analysis, {size} bytes): "
          f"{figures['worker_step_median_s'] * 1000:.1f} ms = "
          f"{figures['worker_step_realtime_factor']}x real time")
    print(f"event loop's longest stall during 10 jobs: in a thread "
          f"{figures['loop_stall_thread_ms']} ms, in a process "
          f"{figures['loop_stall_process_ms']} ms, on the loop itself "
          f"{figures['loop_stall_on_loop_ms']} ms; per job: thread "
          f"{thread_job * 1000:.1f} ms, process {process_job * 1000:.1f} ms")
    print(f"analysis JSON {figures['analysis_json_bytes']} bytes, "
          f"{result['shouting']} episodes found (2 made)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
