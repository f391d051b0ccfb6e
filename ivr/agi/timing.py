"""FastAGI command round-trips (write to answer), a prometheus histogram per command verb
for /metrics: the load bench reads it to see whether the event loop keeps up. Registered on
each web app's registry (ivr/web/app.py), not the global one."""

from __future__ import annotations

from prometheus_client import Histogram

# Seconds. Fine below 10 ms, where a healthy loop answers; coarse above, where it stalls.
BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02,
                              0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def round_trip_histogram() -> Histogram:
    return Histogram("ivr_agi_command_seconds",
                     "FastAGI command round-trip, write to answer (STREAM FILE includes the "
                     "playback)", ["command"], buckets=BUCKETS, registry=None)


ROUND_TRIPS = round_trip_histogram()


def observe(command: str, seconds: float) -> None:
    """command: the AGI command line; its verb ("GET VARIABLE", "STREAM FILE") is the label,
    never its arguments (a caller's number must not become a label)."""
    words = command.split(" ", 2)
    ROUND_TRIPS.labels(" ".join(words[:2]).upper()).observe(seconds)
