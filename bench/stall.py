"""How long the event loop stalls while some work runs (the benches' shared meter)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def worst_stall(work: Awaitable[T]) -> tuple[float, T]:
    """Await `work` while a task ticks every 1 ms; the longest gap between ticks (s)."""
    worst, done = 0.0, False

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)  # the ticker is running before the work starts
    worst = 0.0
    try:
        result = await work
    finally:
        done = True
        await tick
    return worst, result
