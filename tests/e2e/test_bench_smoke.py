"""The load bench (bench/load.py) in small: 10 concurrent, 30 calls, one baseline run and one
server run. Checks only that the harness and the journey are correct under it (every call
completed as SIPp saw it and answered by the operators' phone as it saw it, every call
recorded, both sides in every recording), never how
fast: speed is the bench's to measure, not the suite's to assert."""

from __future__ import annotations

from bench.load import bench


def test_bench_smoke(tmp_path_factory, prompt_cache):
    report = bench(tmp_path_factory.mktemp("bench") / "stack", concurrency=10, calls=30,
                   rate=5, talk=2, pairs=1, prompt_cache=prompt_cache, rest=False)
    runs = report["runs"]
    assert [r["kind"] for r in runs] == ["baseline", "server"]
    for run in runs:
        rec = run["recordings"]
        summary = {k: run[k] for k in ("kind", "attempted", "completed", "failed")}
        assert run["attempted"] == run["completed"] == 30, summary
        assert rec["present"] == 30 and rec["missing"] == 0, (summary, rec)
        assert rec["both_sides"] == 30, (summary, rec["problems"])
    # The journey's menu step: every server call went through the main menu, and SIPp's
    # RFC 2833 key reached it (one caller is enough to show it; how many took it at the
    # first prompt is the bench's figure, as it depends on timing).
    menu = runs[1]["menu"]
    assert sum(menu.values()) == 30 and all(path.startswith("main:") for path in menu), menu
    assert any(path.split()[-1] == "main:2" for path in menu), menu
