"""The load bench's reading of /metrics histograms: quantiles of what happened between two
scrapes, whatever else the histogram held before."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from bench import load_figures as figures
from ivr.agi import timing
from ivr.loop_watch import LoopWatch


def test_the_run_is_the_difference_of_two_scrapes():
    registry = CollectorRegistry()
    watch = LoopWatch()
    trips = timing.round_trip_histogram()
    for metric in (watch.lag, watch.stalls, watch.gc_pauses, trips):
        registry.register(metric)
    watch.lag.observe(3.0)          # before the run: must not count
    trips.labels("GET VARIABLE").observe(0.2)
    before = generate_latest(registry).decode()
    for _ in range(98):
        watch.lag.observe(0.0005)
    watch.lag.observe(0.03)
    watch.lag.observe(0.3)
    watch.stalls.inc()
    watch.gc_pauses.labels("0").observe(0.001)
    watch.gc_pauses.labels("2").observe(0.07)
    for _ in range(9):
        trips.labels("GET VARIABLE").observe(0.0009)
    trips.labels("GET VARIABLE").observe(0.04)
    trips.labels("SET VARIABLE").observe(0.004)
    after = generate_latest(registry).decode()

    lag = figures.loop_lag(before, after)
    assert lag == {"n": 100, "p50_ms_le": 1.0, "p99_ms_le": 50.0, "p99.9_ms_le": 500.0,
                   "max_ms_le": 500.0, "stalls": 1, "gc_seconds": 0.071,
                   "gc_full_passes": 1, "gc_full_max_ms_le": 100.0}
    agi = figures.agi_round_trips(before, after)
    assert agi["GET VARIABLE"] == {"n": 10, "p50_ms_le": 1.0, "p99_ms_le": 50.0,
                                   "max_ms_le": 50.0}
    assert agi["SET VARIABLE"]["p50_ms_le"] == 5.0
    assert figures.loop_lag(after, after) == {}


def test_the_writers_transactions_per_call_are_read_from_two_scrapes():
    from prometheus_client.core import CounterMetricFamily

    class Writer:
        batches, hurried = 40, 10

        def collect(self):
            # As ivr/web/app.py names them (the exposition adds _total).
            yield CounterMetricFamily("ivr_store_write_batches", "", value=self.batches)
            yield CounterMetricFamily("ivr_store_write_batches_hurried", "",
                                      value=self.hurried)

    registry = CollectorRegistry()
    writer = Writer()
    registry.register(writer)
    before = generate_latest(registry).decode()
    writer.batches, writer.hurried = 40 + 50, 10 + 30
    after = generate_latest(registry).decode()
    assert figures.write_batches(before, after, 10) == {"batches": 5.0, "hurried": 3.0}
    assert figures.write_batches(before, after, 0) == {}
