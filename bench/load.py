"""Load benchmark of the whole caller journey, the server side by side with plain dialplan.

    make bench                                  # 100 concurrent, 2 baseline/server pairs
    .venv/bin/python -m bench.load [--concurrency 100] [--calls 200] [--rate 10] [--talk 10]
                                   [--pairs 2] [--kinds baseline,server] [--profile] [--no-rest]
                                   [--knee [--knee-steps 100,150,200,250]
                                           [--knee-kinds server|baseline,server]]

As root, after `make setup`. Starts Asterisk 22 and `ivr run` in a folder of their own
(bench/load_stack.py), then repeats a cycle of runs (--kinds): baseline (the same journey as
plain dialplan, no controller), server, baseline, server... (baseline variants price one way
of recording or one piece of the server's dialplan each: bench/load_stack.py). Each run is
one SIPp placing --calls calls (at most --concurrency at once, --rate new ones a second)
through the example's greeting, notice and main menu (answered with an RFC 2833 key) to
the support desk, with continuous 20 ms RTP, answered by SIPp operators, talking --talk
seconds, the caller hanging up. Figures per run (bench/load_figures.py): calls completed
(SIPp's call ended normally and the operators' phone answered it) and why not, how the
menu was answered, the greeting's and the notice's first sound at the caller (by
correlation), RTP gaps and loss at the caller, CPU-seconds per call of Asterisk
and the controller (from /proc), the controller's memory, descriptors, asyncio tasks and
FastAGI round-trips, at load and at rest (3 calls before each server run, unless
--no-rest), and every call's recording checked from its file. --knee then
steps the concurrency up (server runs; with --knee-kinds baseline,server the plain dialplan
first, for the knee's ratio on the same machine) until a call fails, a recording is
incomplete or the RTP gap p99 passes 60 ms.

Writes bench/results/load-<time>.json and .md (and with --profile, py-spy's samples of the
controller per server run in bench/results/profile-<time>/). Asterisk's own CPU varies ~20 %
between runs of the same load: read the ratio within each cycle, not across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import load_figures as figures
from bench import load_report
from bench.load_probe import (
    CallerRtp,
    Sampler,
    asterisk_pid,
    machine_busy,
    metrics_text,
    proc_cpu,
    runqueue_wait,
)
from bench.load_rest import at_rest
from bench.load_stack import (
    ASTERISK_RTP,
    BASELINE_DID,
    BASELINE_FOLDER,
    BASELINES,
    CALLER_RTP_BASE,
    SERVER_DID,
    SERVER_KINDS,
    asterisk_quiet,
    build_stack,
    calls_json,
    install_baseline,
    menu_answers,
    operator_media_port,
    server_archives,
    set_live,
    shout_at,
    start_callers,
)
from tests.e2e.ami_tap import AmiTap
from tests.e2e.stack import Stack, prompt_seconds

RESULTS = Path(__file__).resolve().parent / "results"
GAP_LIMIT_MS = 60.0  # the knee: RTP gap p99 at the caller above this is no longer carried


def one_run(stack: Stack, kind: str, index: int, *, concurrency: int, calls: int,
            rate: float, talk: float, profile: Path | None = None,
            rest: bool = False) -> dict:
    """One SIPp run against the server or the baseline; its figures as a dict. profile: a
    folder for a py-spy profile of the controller (server runs only); rest: the controller
    at rest first (bench/load_rest.py, server runs only)."""
    server = kind in SERVER_KINDS
    if server:
        live = kind != "server-nolive"
        if getattr(stack, "bench_live", None) != live:
            set_live(stack, live)
            stack.bench_live = live  # type: ignore[attr-defined]
    else:
        install_baseline(stack)
        # ChanSpy's r() makes no folders (MixMonitor does): the spy-only variant needs it.
        rec_root = stack.data / "recordings"
        folder = rec_root / BASELINE_FOLDER
        folder.mkdir(exist_ok=True)
        owner = rec_root.stat()
        os.chown(folder, owner.st_uid, owner.st_gid)
    asterisk_quiet(stack)
    resting = at_rest(stack, index) if rest and server else None
    ast = asterisk_pid(stack.asterisk.pid)
    ctl = stack.controller.pid
    capture = CallerRtp(ASTERISK_RTP, (CALLER_RTP_BASE, CALLER_RTP_BASE + 9999),
                        operator_media_port(stack)).start()
    sampler = Sampler(ctl, stack.ports["web"]).start()
    metrics_before = metrics_text(stack.ports["web"])
    phone = next(iter(stack.phones.values()))
    cpu0 = {"asterisk": proc_cpu(ast), "controller": proc_cpu(ctl),
            "sipp_operator": proc_cpu(phone.proc.pid)}
    busy0, total0 = machine_busy()
    waited0 = runqueue_wait(ctl)
    spy = (start_profile(ctl, profile / f"profile-run{index:02d}.txt")
           if profile is not None and server else None)
    tap = AmiTap(stack) if kind == "server-shout" else None
    started = time.time()
    callers = start_callers(stack, stack.root / f"run-{index:02d}-{kind}",
                            did=SERVER_DID if server else BASELINES[kind].did,
                            prefix=f"037{index:02d}", calls=calls, concurrency=concurrency,
                            rate=rate, talk=talk, shout=kind == "server-shout")
    sipp_cpu = 0.0
    while callers.peer.proc.poll() is None:
        sipp_cpu = max(sipp_cpu, proc_cpu(callers.peer.proc.pid))
        time.sleep(0.5)
    sipp_done = time.time()
    capture.stop()
    calls_seen = figures.sipp_calls(callers.peer.workdir / "messages.log")
    answered = [c.caller for c in calls_seen.values() if c.ok is not None]
    recorder_files: int | None = None
    menu: dict[str, int] | None = None
    if server:
        # The server's per-call work after the hang-up (archive, hash, analysis) is part of
        # its cost: CPU is read once every answered call's recording is final.
        archives = server_archives(stack, answered, timeout=120 + calls * 0.5)
        recordings = figures.check_archives(calls_seen, archives)
        menu = menu_answers(stack, answered)
    else:
        asterisk_quiet(stack)  # MixMonitor closes its files when the channel is gone
        folder = stack.data / "recordings" / BASELINE_FOLDER
        recordings = figures.check_baseline(calls_seen, folder, BASELINES[kind].recording)
        # The recorder baseline's ChanSpy files, to show the recorder did run.
        recorder_files = len(list(folder.glob("*-timeline*")))
        shutil.rmtree(folder, ignore_errors=True)  # a 200-call run leaves ~200 MB here
    reached = figures.operator_answered(phone.workdir / "messages.log", started)
    for c in calls_seen.values():
        if c.completed and c.caller not in reached:
            c.failure = "never reached an operator"
    ended = time.time()
    shouting = None
    if tap is not None:
        tap.close()
        shouting = shout_figures(stack, calls_seen, tap.events,
                                 shout_at(callers.hangup_after, talk))
    if spy is not None:
        stop_profile(spy)
    cpu = {"asterisk": proc_cpu(ast) - cpu0["asterisk"],
           "controller": proc_cpu(ctl) - cpu0["controller"],
           "sipp_operator": proc_cpu(phone.proc.pid) - cpu0["sipp_operator"],
           "sipp_callers": sipp_cpu}
    busy1, total1 = machine_busy()
    waited = runqueue_wait(ctl) - waited0
    sampler.stop()
    greeting = prompt_seconds(stack, "welcome")
    prompts = stack.data / "prompts" / "ja"
    rtp = figures.rtp_figures(calls_seen, capture.packets, prompts / "notice.wav", greeting,
                              prompts / "welcome.wav")
    completed = sum(c.completed for c in calls_seen.values())
    failures: dict[str, int] = {}
    for c in calls_seen.values():
        if not c.completed:
            failures[c.failure] = failures.get(c.failure, 0) + 1
    if len(calls_seen) < calls:
        failures["never placed by SIPp"] = calls - len(calls_seen)
    per_call = {k: round(v / completed, 4) if completed else None for k, v in cpu.items()}
    metrics_after = metrics_text(stack.ports["web"])
    return {
        "kind": kind, "index": index, "concurrency": concurrency, "calls": calls,
        "rate": rate, "talk": talk, "hangup_after": round(callers.hangup_after, 2),
        "started": started, "sipp_seconds": round(sipp_done - started, 1),
        "measured_seconds": round(ended - started, 1), "sipp_exit": callers.peer.proc.returncode,
        "attempted": len(calls_seen), "completed": completed, "failed": failures,
        "peak_concurrent": figures.peak_concurrent(calls_seen), "menu": menu,
        "at_rest": resting,
        "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
        "cpu_per_call": per_call,
        "machine_cores_busy": round((busy1 - busy0) / max(1, total1 - total0)
                                    * os.cpu_count(), 2),
        "load_avg_peak": max(sampler.load, default=None),
        "controller": {"rss_peak_mb": sampler.peak_rss_mb(),
                       "rss_first_last_mb": [round(x / 1024, 1) for x in
                                             (sampler.rss_kb[:1] + sampler.rss_kb[-1:])],
                       "fds_peak": max(sampler.fds, default=None),
                       "loop_runqueue_wait_s": round(waited, 2),
                       "asyncio_tasks_peak": max(sampler.tasks, default=None),
                       "agi_round_trip": figures.agi_round_trips(metrics_before, metrics_after),
                       "loop_lag": figures.loop_lag(metrics_before, metrics_after),
                       "store_statements_per_call": figures.store_statements(
                           metrics_before, metrics_after, completed),
                       "store_write_batches_per_call": figures.write_batches(
                           metrics_before, metrics_after, completed)},
        # The greeting's first sound (by correlation), and the first RTP packet of any kind.
        "first_audio_ms": figures.quantiles(rtp.first_audio, 1000),
        "first_packet_ms": figures.quantiles(rtp.first_packet, 1000),
        "notice_first_packet_ms": figures.quantiles(rtp.notice_at, 1000),
        # The same, less the greeting's length: what the server adds on its way to the notice.
        "notice_after_greeting_ms": figures.quantiles([t - greeting for t in rtp.notice_at],
                                                      1000),
        "notice_not_found": rtp.notice_missed, "calls_without_rtp": rtp.no_rtp,
        "rtp_gap_ms": figures.quantiles(rtp.gaps, 1000),
        "rtp_loss": round(1 - rtp.received / rtp.expected, 5) if rtp.expected else None,
        "shouting": shouting,
        "recordings": {"present": recordings.present, "recorder_files": recorder_files,
                       "missing": len(recordings.missing),
                       "length_within_0_5s": recordings.length_ok,
                       "length_off_s": figures.quantiles(recordings.length_off, 1, 3),
                       "both_sides": recordings.both_sides,
                       "problems": recordings.problems[:20]},
    }


def shout_figures(stack: Stack, calls_seen: dict, events: list[dict], loud_at: float) -> dict:
    """Onset to alert for each shouting caller: the onset is SIPp's 200 OK (the ACK, the
    pcap's 0 s, follows at once) + where the pcap turns loud; the alert is Asterisk's own
    timestamp on the IvrShout event."""
    by_caller = {c.caller: c for c in calls_seen.values() if c.ok is not None}
    ids = {call["id"]: call["caller"] for call in calls_json(stack, len(calls_seen) + 50)}
    after = []
    for event in events:
        call = by_caller.get(ids.get(event.get("CallId", ""), ""))
        if event.get("Stage") == "started" and call is not None:
            after.append(float(event["Timestamp"]) - (call.ok + loud_at))
    return {"callers": len(by_caller), "alerted": len(after),
            "alert_after_ms": figures.quantiles(after, 1000),
            "alert_after_max_ms": round(max(after) * 1000) if after else None}


def start_profile(pid: int, out: Path) -> subprocess.Popen:
    """py-spy sampling the controller (100 Hz, collapsed stacks per thread, only samples
    holding the GIL: Python work, not waits) until stop_profile: where its CPU goes,
    without touching its code."""
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "100", "--threads",
                             "--gil", "--format", "raw", "--output", str(out),
                             "--nonblocking"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def stop_profile(spy: subprocess.Popen) -> None:
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(timeout=60)
    except subprocess.TimeoutExpired:
        spy.kill()


def healthy(run: dict) -> bool:
    """The knee's test: every call completed, recorded whole, and RTP on time."""
    rec = run["recordings"]
    gap = run["rtp_gap_ms"].get("p99", 1e9)
    return (run["completed"] == run["calls"] and rec["present"] == run["calls"]
            and rec["length_within_0_5s"] == run["calls"] and rec["both_sides"] == run["calls"]
            and gap <= GAP_LIMIT_MS)


def bench(root: Path, *, concurrency: int, calls: int, rate: float, talk: float, pairs: int,
          knee_steps: list[int] | None = None, prompt_cache: Path | None = None,
          kinds: tuple[str, ...] = ("baseline", "server"),
          save: Callable[[dict], None] | None = None, profile: Path | None = None,
          rest: bool = True, knee_kinds: tuple[str, ...] = ("server",)) -> dict:
    """save: called with the report so far after every run (an interrupted bench keeps
    what it measured); rest: each server run measures the controller at rest first."""
    endpoints = max([concurrency, *(knee_steps or [])])
    stack = build_stack(root, endpoints, talk, prompt_cache)
    runs: list[dict] = []
    knees: dict[str, dict] = {}

    def report() -> dict:
        return {"machine": {"host": platform.node(), "cores": os.cpu_count(),
                            "python": platform.python_version(),
                            "kernel": platform.release()},
                "settings": {"concurrency": concurrency, "calls": calls, "rate": rate,
                             "talk": talk, "pairs": pairs, "operators": endpoints,
                             "entry": SERVER_DID, "baseline_entry": BASELINE_DID},
                "runs": runs, "pairs": load_report.pair_ratios(runs),
                "knee": knees.get("server"), "knees": knees}

    def done(run: dict) -> None:
        print(load_report.one_line(run), flush=True)
        if save is not None:
            save(report())

    try:
        index = 0
        for _pair in range(pairs):
            for kind in kinds:
                index += 1
                runs.append(one_run(stack, kind, index, concurrency=concurrency, calls=calls,
                                    rate=rate, talk=talk, profile=profile, rest=rest))
                done(runs[-1])
        for knee_kind in knee_kinds if knee_steps else ():
            knee = knees[knee_kind] = {"steps": [], "knee": None}
            for step in knee_steps or ():
                index += 1
                # Fast enough to reach the step before the first calls end (~25 s each).
                run = one_run(stack, knee_kind, index, concurrency=step, calls=step * 2,
                              rate=max(rate, step / 20), talk=talk)
                knee["steps"].append(run)
                done(run)
                if not healthy(run):
                    break
                knee["knee"] = step
    finally:
        stack.close()
    return report()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--calls", type=int, help="per run (default: 2 x concurrency)")
    parser.add_argument("--rate", type=float, default=10.0, help="new calls per second")
    parser.add_argument("--talk", type=float, default=10.0, help="seconds with the operator")
    parser.add_argument("--pairs", type=int, default=2,
                        help="how many times the cycle of --kinds runs")
    parser.add_argument("--kinds", default="baseline,server",
                        help="the runs of each cycle, in order: server (live protection on, "
                             "calm callers), server-nolive (off), server-shout (on, every "
                             "caller shouts once: onset-to-alert latency) and any of "
                             + ", ".join(BASELINES) + " (plain dialplan recorded by MixMonitor's "
                             "legs; + the ChanSpy recorder; ChanSpy alone; MixMonitor's "
                             "interleaved stereo; no recording; stereo + the IVR-time "
                             "watchdog waiting with Wait(); the same with Read())")
    parser.add_argument("--knee", action="store_true", help="then step the load up")
    parser.add_argument("--knee-steps", default="100,150,200,250")
    parser.add_argument("--knee-kinds", default="server",
                        help="whose knee --knee finds, in order (e.g. baseline,server: the "
                             "plain dialplan's knee on the same machine, for the ratio)")
    parser.add_argument("--keep", action="store_true", help="keep the stack's folder")
    parser.add_argument("--no-rest", action="store_true",
                        help="skip the controller-at-rest measurement (3 calls before each "
                             "server run: FastAGI round-trips and CPU per call at rest)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the controller with py-spy in server runs (collapsed "
                             "stacks in bench/results/profile-<time>/)")
    args = parser.parse_args(argv)
    for option, given in (("--kinds", args.kinds), ("--knee-kinds", args.knee_kinds)):
        unknown = set(given.split(",")) - {*SERVER_KINDS, *BASELINES}
        if unknown:
            parser.error(f"{option}: unknown {', '.join(sorted(unknown))}")
    if os.geteuid() != 0:
        parser.error("run as root (Asterisk in its chroot, raw sockets for the RTP capture)")
    root = Path(tempfile.mkdtemp(prefix="ivr-bench-"))
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())

    def save(report: dict) -> None:
        (RESULTS / f"load-{stamp}.json").write_text(json.dumps(report, indent=1))
        (RESULTS / f"load-{stamp}.md").write_text(load_report.markdown(report))

    try:
        report = bench(root / "stack", concurrency=args.concurrency,
                       calls=args.calls or 2 * args.concurrency, rate=args.rate,
                       talk=args.talk, pairs=args.pairs,
                       kinds=tuple(k for k in args.kinds.split(",") if k),
                       knee_steps=[int(x) for x in args.knee_steps.split(",")]
                       if args.knee else None, save=save,
                       profile=RESULTS / f"profile-{stamp}" if args.profile else None,
                       rest=not args.no_rest,
                       knee_kinds=tuple(k for k in args.knee_kinds.split(",") if k))
    finally:
        # The controller's warnings (loop stalls and what held the loop, store retries)
        # outlive the stack's folder: a bad run can be read afterwards without --keep.
        warnings = keep_warnings(root / "stack" / "controller.log",
                                 RESULTS / f"load-{stamp}-controller-warnings.log")
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    save(report)
    print(f"wrote {RESULTS}/load-{stamp}.json and .md, {warnings} controller warnings"
          + (f" (stack kept in {root})" if args.keep else ""))
    return 0


def keep_warnings(log: Path, to: Path) -> int:
    """The WARNING and ERROR lines of the controller's log, copied to `to`; how many."""
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines(keepends=True)
                 if " WARNING " in line or " ERROR " in line]
    except OSError:
        return 0
    to.write_text("".join(lines))
    return len(lines)


if __name__ == "__main__":
    sys.exit(main())
