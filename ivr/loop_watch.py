"""Is the event loop keeping up? Every call's FastAGI answers, AMI events and store writes
wait on one loop, so a loop held for a quarter of a second is a quarter of a second of
silence for every caller waiting on it.

Two parts: a tick task on the loop measures how late the loop wakes it (a histogram on
/metrics, `ivr_event_loop_lag_seconds`); a watchdog thread looks at the loop's thread
while a tick is overdue and notes where it is, so that a stall's log line says what held the
loop (or, when the loop thread sits waiting in the selector, which other thread was busy).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import threading
import time
import traceback
from collections import Counter

from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram

log = logging.getLogger("ivr.loop")

# Seconds late. A healthy loop wakes a sleeper within a millisecond or two; above 50 ms a
# caller can hear it (a greeting starts late, a menu answer lags).
LAG_BUCKETS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                  0.5, 1.0, 2.5, 5.0)

# A frame whose function is one of these is a thread waiting, not working. aiosqlite's
# thread waits in a C queue's get(), so its innermost Python frame is its own loop.
_IDLE = frozenset({"wait", "select", "poll", "get", "_worker", "_wait_for_tstate_lock",
                   "sleep", "accept", "recv", "recv_into", "readinto", "epoll",
                   "_connection_worker_thread"})


def lag_histogram() -> Histogram:
    return Histogram("ivr_event_loop_lag_seconds",
                     "How late the event loop woke a task that sleeps between ticks",
                     buckets=LAG_BUCKETS, registry=None)


def gc_histogram() -> Histogram:
    return Histogram("ivr_gc_pause_seconds",
                     "Python garbage-collection passes (they hold every thread), by generation",
                     ["generation"], buckets=LAG_BUCKETS, registry=None)


def stall_counter() -> PromCounter:
    return PromCounter("ivr_event_loop_stalls",
                       "Times the event loop was held longer than the stall threshold",
                       registry=None)


class LoopWatch:
    """tick: how often the loop is asked to wake the tick task (s); stall: how late a tick
    may be before the watchdog samples the loop's thread and a log line reports it."""

    def __init__(self, *, tick: float = 0.05, stall: float = 0.2,
                 lag: Histogram | None = None, stalls: PromCounter | None = None,
                 gc_pauses: Histogram | None = None) -> None:
        self.tick = tick
        self.stall = stall
        self.lag = lag if lag is not None else lag_histogram()
        self.stalls = stalls if stalls is not None else stall_counter()
        self.gc_pauses = gc_pauses if gc_pauses is not None else gc_histogram()
        self._gc_by_generation = {g: self.gc_pauses.labels(str(g)) for g in (0, 1, 2)}
        self._gc_started = 0.0
        self._gc_since_tick = 0.0  # seconds of collection since the last tick
        self._due = 0.0          # monotonic time the next tick is due (read by the thread)
        self._samples: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._loop_thread = 0

    async def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._due = time.monotonic() + self.tick
        self._stop.clear()
        self._task = asyncio.create_task(self._ticks(), name="loop-watch")
        self._thread = threading.Thread(target=self._watch, name="loop-watch", daemon=True)
        self._thread.start()
        gc.callbacks.append(self._on_gc)

    async def stop(self) -> None:
        self._stop.set()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 1.0)
            self._thread = None

    async def _ticks(self) -> None:
        while True:  # _due was set by start() for the first tick
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            late = max(0.0, now - self._due)
            self._due = now + self.tick
            self.lag.observe(late)
            if late >= self.stall:
                self._report(late)
            self._gc_since_tick = 0.0

    def _report(self, late: float) -> None:
        self.stalls.inc()
        with self._lock:
            samples, self._samples = self._samples, Counter()
        where = "; ".join(f"{n}x {place}" for place, n in samples.most_common(4))
        # samples=0 with little gc: the whole process was off the CPUs (see the bench's
        # "waiting for a CPU"), or a C call held the GIL.
        log.warning("event=loop_stalled late_ms=%d gc_ms=%d samples=%d where=%s",
                    round(late * 1000), round(self._gc_since_tick * 1000),
                    sum(samples.values()), where or "-")

    def _on_gc(self, phase: str, info: dict) -> None:
        """gc.callbacks: time each collection (it runs in whichever thread allocated)."""
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        spent = time.perf_counter() - self._gc_started
        self._gc_since_tick += spent
        child = self._gc_by_generation.get(info.get("generation", 2))
        if child is not None:
            child.observe(spent)

    def _watch(self) -> None:
        """The watchdog thread: while a tick is overdue by more than half the threshold,
        note every 20 ms where the loop's thread is (and the busy threads beside it)."""
        while not self._stop.wait(0.02):
            if time.monotonic() - self._due < self.stall / 2:
                continue
            place = self._where()
            with self._lock:
                self._samples[place] += 1

    def _where(self) -> str:
        frames = sys._current_frames()
        loop_frame = frames.get(self._loop_thread)
        place = _innermost(loop_frame, ours=True) if loop_frame is not None else "?"
        busy = sorted(_innermost(f, ours=False) for tid, f in frames.items()
                      if tid not in (self._loop_thread, threading.get_ident())
                      and f.f_code.co_name not in _IDLE)
        return place + (f" [busy: {', '.join(busy)}]" if busy else "")


def _innermost(frame, *, ours: bool) -> str:  # type: ignore[no-untyped-def]
    """The innermost frame as file:line function; for the loop's thread, also the innermost
    frame of our own code (ivr/), which says which of our steps led there."""
    stack = traceback.extract_stack(frame, limit=30)
    top = stack[-1]
    text = f"{os.path.basename(top.filename)}:{top.lineno} {top.name}"
    if ours:
        own = next((f for f in reversed(stack) if f"{os.sep}ivr{os.sep}" in f.filename), None)
        if own is not None and own is not top:
            text += f" < {os.path.basename(own.filename)}:{own.lineno} {own.name}"
    return text


def freeze_startup_heap() -> int:
    """Once the controller is up: move every object alive now (modules, compiled statements,
    journeys, prompt tables) out of the collector's reach, so that a full collection walks
    only what calls have made since. Unfrozen, a full pass over the start-up heap held the
    loop for 100-250 ms at 100 calls (ivr_gc_pause_seconds). Reference counting still frees
    these objects; only a cycle among them would now stay. Returns the objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
