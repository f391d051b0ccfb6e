"""The analysis queue and its worker: every final recording gets analysed, once, off the
event loop, even across restarts.

The queue is the index itself: a row's ``analysis_state`` is ``pending`` until the worker
stores the analysis (``done``) or gives up on the file (``failed``, the reason logged). A
crash mid-analysis leaves the row pending, so the next start picks it up; nothing is kept
in memory that a restart could lose. The archive service wakes the worker when a recording
becomes final; a periodic poll is the safety net (a missed wake, another process' rows).

The numpy work runs in a thread (``asyncio.to_thread``): libsndfile decoding and numpy's
array loops release the GIL, and a 10-minute call takes a few milliseconds (bench/
bench_analysis.py measures both the speed and how long the event loop is held up), so a
process pool would add start-up, pickling of the samples and a second copy of the memory
for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import sqlalchemy as sa

from ivr.recordings.analysis import analyse
from ivr.recordings.archive import read_sides, sha256_of
from ivr.recordings.store_index import AnalysisState, RecordingIndex, RecordingRow, State
from ivr.store.tables import recordings

log = logging.getLogger("ivr.recordings.analysis")

POLL_S = 30.0  # the restart/safety-net poll; a wake from the archive service is immediate
BATCH = 20  # rows taken from the queue per query


class AnalysisError(Exception):
    """A recording that cannot be analysed; the message says why (it goes to the log)."""


def analyse_file(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """Read an archive file and analyse it (blocking: run it in a thread). With `sha256`,
    the file must still be the one the index hashed: the analysis is of the evidence."""
    if not path.is_file():
        raise AnalysisError(f"{path}: no such file")
    try:
        if sha256 is not None:
            _size, digest = sha256_of(path)
            if digest != sha256:
                raise AnalysisError(f"{path}: sha256 {digest[:16]}… is not the indexed "
                                    f"{sha256[:16]}… (the file changed since it was archived)")
        sides = sf.info(str(path)).channels
        if sides not in (1, 2):
            raise AnalysisError(f"{path}: {sides} channels, not a call recording")
        left, right, rate = read_sides(path)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AnalysisError(f"{path}: cannot read: {exc}") from exc
    return analyse_sides(left, right, rate, sha256=sha256, channels=sides)


def analyse_sides(left: np.ndarray, right: np.ndarray, rate: int, *, sha256: str | None,
                  channels: int = 2) -> dict[str, Any]:
    """The analysis of a recording's samples (the archive service passes the ones it has
    just written, so a new recording is not decoded again)."""
    if channels == 1:
        # A recording without separate legs: both voices are in one channel; analysed as
        # the caller's side, so "other" reads as silent and overlap as none.
        right = right[:0]
    result = analyse(left, right, rate)
    result["channels"] = channels
    if sha256 is not None:
        result["sha256"] = sha256
    return result


class AnalysisWorker:
    def __init__(self, index: RecordingIndex, recordings_dir: Path, *,
                 node: str | None = None, poll_s: float = POLL_S, batch: int = BATCH,
                 clock: Callable[[], float] = time.time,
                 analyse_path: Callable[[Path, str | None], dict[str, Any]] = analyse_file):
        self.index = index
        self.recordings_dir = Path(recordings_dir)
        self.node = node
        self.poll_s = poll_s
        self.batch = batch
        self.clock = clock
        self.analyse_path = analyse_path
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        """Run until stopped: the pending rows first (those a restart left), then whatever
        a wake or the poll finds."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="recording-analysis")

    def wake(self, *_args: Any, **_kwargs: Any) -> None:
        """A recording became final (the archive service's on_final hook): look now."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop taking rows. An analysis in its thread is abandoned, its row stays pending
        and is done again at the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_idle(self) -> None:
        """Until the queue as seen last is empty (tests; a clean shutdown)."""
        await self._idle.wait()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is down: try again at the next poll
                log.error("event=analysis_queue_error error=%r", str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def pending(self) -> list[RecordingRow]:
        """This node's final recordings waiting for analysis, oldest first (another node's
        files are on that node's disk)."""
        stmt = (sa.select(recordings)
                .where(recordings.c.analysis_state == AnalysisState.PENDING,
                       recordings.c.state == State.FINAL)
                .order_by(recordings.c.id).limit(self.batch))
        if self.node:
            stmt = stmt.where(recordings.c.node.in_((self.node, "")))
        return await self.index.select(stmt)

    async def drain(self) -> int:
        """Analyse pending rows until none is left; returns how many were taken."""
        self._idle.clear()
        seen: set[int] = set()
        try:
            while True:
                rows = [r for r in await self.pending() if r.id not in seen]
                if not rows:
                    return len(seen)
                for row in rows:
                    seen.add(row.id)
                    await self.analyse_row(row)
        finally:
            self._idle.set()

    async def analyse_row(self, row: RecordingRow) -> str:
        """Analyse one row's file and store the outcome; returns the new analysis_state."""
        started = time.perf_counter()
        path = self.recordings_dir / row.path
        try:
            if Path(row.path).is_absolute() or ".." in Path(row.path).parts:
                raise AnalysisError(f"{row.path!r}: not a path inside the recordings folder")
            result = await asyncio.to_thread(self.analyse_path, path, row.sha256)
        except Exception as exc:  # one bad file (or a bug it hits) must not block the queue
            reason = str(exc) if isinstance(exc, AnalysisError) else \
                f"{type(exc).__name__}: {exc}"
            log.warning("event=analysis_failed call_id=%s recording_id=%d path=%s reason=%r",
                        row.call_id, row.id, row.path, reason)
            await self.index.update(row.id, analysis_state=AnalysisState.FAILED,
                                    analysis={"error": reason}, analysed_at=self.clock(),
                                    shouting=None)
            return AnalysisState.FAILED
        await self.index.update(row.id, analysis_state=AnalysisState.DONE, analysis=result,
                                shouting=result["shouting"], analysed_at=self.clock())
        episodes = [f"{side}@{ep['start']}" for side in ("caller", "other")
                    for ep in result[side]["episodes"]]
        log.info("event=analysis_done call_id=%s recording_id=%d shouting=%d episodes=%s "
                 "seconds=%.3f", row.call_id, row.id, result["shouting"],
                 ",".join(episodes) or "-", time.perf_counter() - started)
        return AnalysisState.DONE
