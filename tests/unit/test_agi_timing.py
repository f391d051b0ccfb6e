"""The FastAGI round-trip histogram /metrics exports (read by bench/load.py)."""

from __future__ import annotations

from ivr.agi import timing


def test_verb_is_the_label_and_buckets_are_cumulative(monkeypatch):
    monkeypatch.setattr(timing, "ROUND_TRIPS", type(timing.ROUND_TRIPS)(timing.Histogram))
    timing.observe("GET VARIABLE IVR_CALLER_0312345678", 0.0004)
    timing.observe("get variable X", 0.004)
    timing.observe("STREAM FILE /p/ja/notice \"\"", 7.0)
    assert sorted(timing.ROUND_TRIPS) == ["GET VARIABLE", "STREAM FILE"]
    cum = dict(timing.ROUND_TRIPS["GET VARIABLE"].cumulative())
    assert cum["0.0005"] == 1 and cum["0.005"] == 2 and cum["+Inf"] == 2
    assert dict(timing.ROUND_TRIPS["STREAM FILE"].cumulative())["5.0"] == 0
    assert abs(timing.ROUND_TRIPS["GET VARIABLE"].total - 0.0044) < 1e-9
