"""The loop watch: lateness on /metrics, and a stall's log line naming what held the loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time

from prometheus_client import CollectorRegistry

from ivr.loop_watch import LoopWatch, freeze_startup_heap


def hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # blocking on purpose: the stall the watch must name


def spin_beside_the_loop(stop: list[bool]) -> None:
    while not stop:  # pure Python: holds the GIL between switch intervals
        sum(range(2000))


async def test_a_held_loop_is_counted_and_its_log_line_names_the_holder(caplog):
    registry = CollectorRegistry()
    watch = LoopWatch(tick=0.02, stall=0.1)
    registry.register(watch.lag)
    registry.register(watch.stalls)
    registry.register(watch.gc_pauses)
    await watch.start()
    try:
        await asyncio.sleep(0.1)  # a few ordinary ticks first
        gc.collect()  # a full pass, timed
        with caplog.at_level(logging.WARNING, logger="ivr.loop"):
            hold_the_loop(0.4)
            await asyncio.sleep(0.1)  # the tick that was held reports
    finally:
        await watch.stop()
    assert registry.get_sample_value("ivr_event_loop_stalls_total") == 1
    # The held tick was at least 0.25 s late; the ordinary ones land in lower buckets.
    total = registry.get_sample_value("ivr_event_loop_lag_seconds_count")
    below_quarter = registry.get_sample_value("ivr_event_loop_lag_seconds_bucket",
                                              {"le": "0.25"})
    assert total is not None and total >= 3
    assert below_quarter == total - 1
    full = registry.get_sample_value("ivr_gc_pause_seconds_count", {"generation": "2"})
    assert full is not None and full >= 1
    lines = [r.getMessage() for r in caplog.records if "loop_stalled" in r.getMessage()]
    assert len(lines) == 1
    assert "hold_the_loop" in lines[0], lines[0]
    assert "late_ms=" in lines[0] and "samples=0" not in lines[0]


async def test_a_busy_thread_beside_a_held_loop_is_named(caplog):
    watch = LoopWatch(tick=0.02, stall=0.1)
    stop: list[bool] = []
    spinner = threading.Thread(target=spin_beside_the_loop, args=(stop,), daemon=True)
    await watch.start()
    spinner.start()
    try:
        await asyncio.sleep(0.1)
        with caplog.at_level(logging.WARNING, logger="ivr.loop"):
            hold_the_loop(0.4)
            await asyncio.sleep(0.1)
    finally:
        stop.append(True)
        spinner.join()
        await watch.stop()
    lines = [r.getMessage() for r in caplog.records if "loop_stalled" in r.getMessage()]
    assert lines and "spin_beside_the_loop" in lines[0], lines


def test_the_start_up_heap_is_frozen_out_of_full_collections():
    try:
        frozen = freeze_startup_heap()
        assert frozen == gc.get_freeze_count() and frozen > 1000
        # A full pass no longer walks the frozen objects: it sees far fewer than were frozen.
        walked = len(gc.get_objects())
        assert walked < frozen
    finally:
        gc.unfreeze()
