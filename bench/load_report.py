"""The load bench's report: a line per run while it goes, the baseline/server ratios per
adjacent pair, and the Markdown summary written next to the JSON."""

from __future__ import annotations

import time


def one_line(run: dict) -> str:
    rec = run["recordings"]
    cpu = run["cpu_per_call"]
    return (f"{run['index']:2d} {run['kind']:8s} c={run['concurrency']} "
            f"peak {run['peak_concurrent']} "
            f"completed {run['completed']}/{run['calls']} "
            f"rec whole {min(rec['length_within_0_5s'], rec['both_sides'])}/{run['calls']} "
            f"cpu/call ast {cpu['asterisk']} ctl {cpu['controller']} "
            f"gap p99 {run['rtp_gap_ms'].get('p99')} ms "
            f"notice p99 {run['notice_first_packet_ms'].get('p99')} ms "
            f"machine {run['machine_cores_busy']} cores")


def _server_cpu(run: dict) -> float | None:
    cpu = run["cpu_per_call"]
    if cpu["asterisk"] is None:
        return None
    return cpu["asterisk"] + (cpu["controller"] or 0.0)


def pair_ratios(runs: list[dict]) -> list[dict]:
    """For each baseline run and the runs after it up to the next baseline run (one pair, at
    the same load): server CPU per call (Asterisk + controller) over the baseline's
    (Asterisk; its idle controller serves no baseline call), and each baseline variant's
    Asterisk over the baseline's (what that way of recording costs)."""
    out = []
    for i, a in enumerate(runs):
        if a["kind"] != "baseline" or not a["cpu_per_call"]["asterisk"]:
            continue
        group = []
        for r in runs[i + 1:]:
            if r["kind"] == "baseline" or r["concurrency"] != a["concurrency"]:
                break
            group.append(r)
        base = a["cpu_per_call"]["asterisk"]
        row: dict = {"baseline_run": a["index"], "baseline_cpu_per_call": base,
                     "variants": {r["kind"]: round(r["cpu_per_call"]["asterisk"] / base, 3)
                                  for r in group if r["kind"].startswith("baseline-")
                                  and r["cpu_per_call"]["asterisk"]}}
        # Live protection's price: the server with it on over the server with it off.
        servers = {r["kind"]: _server_cpu(r) for r in group
                   if r["kind"].startswith("server") and _server_cpu(r) is not None}
        row["servers"] = {k: round(v, 4) for k, v in servers.items()}
        if servers.get("server-nolive"):
            row["live_cost"] = {k: round(v / servers["server-nolive"], 3)
                                for k, v in servers.items() if k != "server-nolive"}
        server = next((r for r in group if r["kind"] == "server"), None)
        if server is not None and _server_cpu(server) is not None:
            row.update({"server_run": server["index"],
                        "server_cpu_per_call": round(_server_cpu(server), 4),
                        "asterisk_only_ratio": round(server["cpu_per_call"]["asterisk"] / base,
                                                     3),
                        "ratio": round(_server_cpu(server) / base, 3)})
        out.append(row)
    return out


def _q(d: dict) -> str:
    return f"{d.get('p50', '–')} / {d.get('p95', '–')} / {d.get('p99', '–')}" if d else "–"


ROWS = [
    ("calls completed / attempted", lambda r: f"{r['completed']} / {r['attempted']}"),
    ("peak concurrent (SIPp: answered, not hung up)", lambda r: f"{r['peak_concurrent']}"),
    ("failed (why)", lambda r: ", ".join(f"{k}: {v}" for k, v in r["failed"].items()) or "0"),
    ("recordings present", lambda r: f"{r['recordings']['present']}"),
    ("recordings within 0.5 s of the call",
     lambda r: f"{r['recordings']['length_within_0_5s']}"),
    ("recordings with both sides", lambda r: f"{r['recordings']['both_sides']}"),
    ("main menu: RFC 2833 key taken at the first prompt / answered (server's records)",
     lambda r: _menu(r)),
    ("first audio (the greeting's first sound) after 200 OK, ms (p50/p95/p99)",
     lambda r: _q(r["first_audio_ms"])),
    ("first RTP packet after 200 OK, ms (p50/p95/p99)",
     lambda r: _q(r.get("first_packet_ms", {}))),
    ("notice's first packet after 200 OK, ms (p50/p95/p99)",
     lambda r: _q(r["notice_first_packet_ms"])),
    ("... less the greeting's length, ms (p50/p95/p99)",
     lambda r: _q(r.get("notice_after_greeting_ms", {}))),
    ("RTP gap at the caller, ms (p50/p95/p99)", lambda r: _q(r["rtp_gap_ms"])),
    ("RTP gap max, ms", lambda r: f"{r['rtp_gap_ms'].get('max', '–')}"),
    ("RTP loss at the caller", lambda r: f"{r['rtp_loss']}"),
    ("Asterisk CPU-s per call", lambda r: f"{r['cpu_per_call']['asterisk']}"),
    ("controller CPU-s per call", lambda r: f"{r['cpu_per_call']['controller']}"),
    ("SIPp callers / operator CPU-s", lambda r: f"{r['cpu_seconds']['sipp_callers']} / "
                                                f"{r['cpu_seconds']['sipp_operator']}"),
    ("machine cores busy (avg over the run)", lambda r: f"{r['machine_cores_busy']}"),
    ("controller RSS peak, MB (first→last sample)",
     lambda r: f"{r['controller']['rss_peak_mb']} ({r['controller']['rss_first_last_mb']})"),
    ("controller fds peak / asyncio tasks peak",
     lambda r: f"{r['controller']['fds_peak']} / {r['controller']['asyncio_tasks_peak']}"),
    ("controller's loop thread: s waiting for a CPU (whole run)",
     lambda r: f"{r['controller'].get('loop_runqueue_wait_s', '–')}"),
    ("controller's loop: lateness of a 50 ms tick, ms (p50/p99/p99.9/max ≤; stalls ≥ 0.2 s)",
     lambda r: _lag(r["controller"].get("loop_lag"))),
    ("controller's garbage collection: s in all, full passes (the longest ≤ ms)",
     lambda r: _gc(r["controller"].get("loop_lag"))),
    ("controller CPU-s per call at rest (3 calls, before the load)",
     lambda r: f"{(r.get('at_rest') or {}).get('controller_cpu_per_call', '–')}"),
    ("FastAGI GET VARIABLE p50/p99 ≤ ms, at load",
     lambda r: _agi(r["controller"], "GET VARIABLE")),
    ("... at rest", lambda r: _agi(r.get("at_rest"), "GET VARIABLE")),
    ("FastAGI SET VARIABLE p50/p99 ≤ ms, at load",
     lambda r: _agi(r["controller"], "SET VARIABLE")),
    ("... at rest", lambda r: _agi(r.get("at_rest"), "SET VARIABLE")),
    ("controller's database statements per call (total; the three most)",
     lambda r: _statements(r["controller"].get("store_statements_per_call"))),
    ("... the writer's transactions per call (of them closed early: someone waited)",
     lambda r: _batches(r["controller"].get("store_write_batches_per_call"))),
    ("shouting callers alerted / answered (server-shout)", lambda r: _shout(r, "count")),
    ("onset → IvrShout alert, ms (p50/p95/p99; max)", lambda r: _shout(r, "after")),
]


def _lag(lag: dict | None) -> str:
    if not lag:
        return "–"
    return (f"{lag['p50_ms_le']:g} / {lag['p99_ms_le']:g} / {lag['p99.9_ms_le']:g} / "
            f"{lag['max_ms_le']:g}; {lag['stalls']:g}")


def _gc(lag: dict | None) -> str:
    if not lag or "gc_seconds" not in lag:
        return "–"
    return f"{lag['gc_seconds']:g}, {lag['gc_full_passes']:g} (≤ {lag['gc_full_max_ms_le']:g})"


def _batches(per_call: dict | None) -> str:
    if not per_call:
        return "–"
    return f"{per_call['batches']:g} ({per_call['hurried']:g})"


def _statements(per_call: dict | None) -> str:
    if not per_call:
        return "–"
    top = [f"{k} {v:g}" for k, v in list(per_call.items())[1:4]]
    return f"{per_call['total']:g} ({', '.join(top)})"


def _menu(run: dict) -> str:
    menu = run.get("menu")
    if not menu:
        return "–"
    others = ", ".join(f"{k}: {v}" for k, v in menu.items() if k != "main:2")
    return f"{menu.get('main:2', 0)} / {sum(menu.values())}" + (f" ({others})" if others else "")


def _shout(run: dict, what: str) -> str:
    shout = run.get("shouting")
    if not shout:
        return "–"
    if what == "count":
        return f"{shout['alerted']} / {shout['callers']}"
    return f"{_q(shout['alert_after_ms'])}; {shout['alert_after_max_ms']}"


def _agi(figures: dict | None, verb: str) -> str:
    row = (figures or {}).get("agi_round_trip", {}).get(verb)
    if not row:
        return "–"
    return f"{row['p50_ms_le']:g} / {row['p99_ms_le']:g} (n={row['n']:g})"


def _table(runs: list[dict]) -> list[str]:
    head = "| | " + " | ".join(f"#{r['index']} {r['kind']} c={r['concurrency']}"
                                for r in runs) + " |"
    lines = [head, "|---" * (len(runs) + 1) + "|"]
    for label, fn in ROWS:
        lines.append(f"| {label} | " + " | ".join(str(fn(r)) for r in runs) + " |")
    return lines


def markdown(report: dict) -> str:
    s = report["settings"]
    m = report["machine"]
    out = [f"# Load bench, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
           f"{m['cores']} cores, kernel {m['kernel']}. {s['concurrency']} concurrent, "
           f"{s['calls']} calls per run at {s['rate']:g}/s, {s['talk']:g} s talk, "
           f"{s['operators']} operator endpoints on one SIPp phone; SIPp on the same machine. "
           f"Server: entry {s['entry']} (greeting, notice, the main menu answered with an "
           "RFC 2833 key, support desk) with protection.yaml in force; baseline: the same "
           f"journey as plain dialplan ({s['baseline_entry']}).",
           "", "## Runs", ""]
    out += _table(report["runs"])
    out += ["", "## CPU per call, server ÷ baseline (adjacent pairs)", "",
            "| pair | baseline CPU-s/call | server CPU-s/call (Asterisk + controller) | "
            "Asterisk-only ratio | ratio | baseline variants' Asterisk ÷ baseline |",
            "|---|---|---|---|---|---|"]
    for p in report["pairs"]:
        variants = ", ".join(f"{k} {v}" for k, v in p["variants"].items()) or "–"
        out.append(f"| #{p['baseline_run']} → #{p.get('server_run', '–')} | "
                   f"{p['baseline_cpu_per_call']} | {p.get('server_cpu_per_call', '–')} | "
                   f"{p.get('asterisk_only_ratio', '–')} | {p.get('ratio', '–')} | "
                   f"{variants} |")
    live = [p for p in report["pairs"] if p.get("live_cost")]
    if live:
        out += ["", "## Live protection's price (server CPU-s per call ÷ server-nolive's)", "",
                "| pair | server-nolive | server (on, calm callers) | server-shout (on, every "
                "caller shouts once) |", "|---|---|---|---|"]
        for p in live:
            cost, cpu = p["live_cost"], p["servers"]
            out.append(f"| #{p['baseline_run']} | {cpu['server-nolive']} | "
                       f"{cpu.get('server', '–')} ({cost.get('server', '–')}) | "
                       f"{cpu.get('server-shout', '–')} ({cost.get('server-shout', '–')}) |")
    # Older reports have only "knee" (the server's).
    knees = report.get("knees") or ({"server": report["knee"]} if report.get("knee") else {})
    for kind, knee in knees.items():
        out += ["", f"## Knee ({kind}): {knee['knee']} concurrent", ""]
        out += _table(knee["steps"])
    if {"server", "baseline"} <= knees.keys() and knees["baseline"]["knee"]:
        out += ["", "Knee, server ÷ plain dialplan: "
                f"{(knees['server']['knee'] or 0) / knees['baseline']['knee']:.2f}"]
    problems = [(r["index"], p) for r in report["runs"]
                + [run for knee in knees.values() for run in knee["steps"]]
                for p in r["recordings"]["problems"]]
    if problems:
        out += ["", "## Recording problems (first 20 per run)", ""]
        out += [f"- run #{i}: {p}" for i, p in problems]
    return "\n".join(out) + "\n"
