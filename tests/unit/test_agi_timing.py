"""The FastAGI round-trip histogram /metrics exports (read by bench/load.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from ivr.agi import timing


def test_verb_is_the_label_and_buckets_are_cumulative(monkeypatch):
    registry = CollectorRegistry()
    fresh = timing.round_trip_histogram()
    registry.register(fresh)
    monkeypatch.setattr(timing, "ROUND_TRIPS", fresh)
    timing.observe("GET VARIABLE IVR_CALLER_0312345678", 0.0004)
    timing.observe("get variable X", 0.004)
    timing.observe("STREAM FILE /p/ja/notice \"\"", 7.0)

    def bucket(verb: str, le: str) -> float | None:
        return registry.get_sample_value("ivr_agi_command_seconds_bucket",
                                         {"command": verb, "le": le})

    labels = {s.labels["command"] for m in registry.collect() for s in m.samples}
    assert sorted(labels) == ["GET VARIABLE", "STREAM FILE"]
    assert bucket("GET VARIABLE", "0.0005") == 1 and bucket("GET VARIABLE", "0.005") == 2
    assert bucket("GET VARIABLE", "+Inf") == 2
    assert bucket("STREAM FILE", "5.0") == 0
    total = registry.get_sample_value("ivr_agi_command_seconds_sum",
                                      {"command": "GET VARIABLE"})
    assert total is not None and abs(total - 0.0044) < 1e-9
