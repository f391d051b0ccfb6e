"""FastAGI command round-trips (write to answer), kept as a histogram per command verb for
/metrics: the load bench reads it to see whether the event loop keeps up. A plain module
state, no locks: every command runs on the controller's one event loop."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict

# Seconds. Fine below 10 ms, where a healthy loop answers; coarse above, where it stalls.
BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02,
                              0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, count in zip((*(str(b) for b in BUCKETS), "+Inf"), self.counts,
                                strict=True):
            running += count
            out.append((bound, running))
        return out


ROUND_TRIPS: dict[str, Histogram] = defaultdict(Histogram)


def observe(command: str, seconds: float) -> None:
    """command: the AGI command line; its verb ("GET VARIABLE", "STREAM FILE") is the label,
    never its arguments (a caller's number must not become a label)."""
    words = command.split(" ", 2)
    ROUND_TRIPS[" ".join(words[:2]).upper()].observe(seconds)
