"""The controller at rest, for the report's "at rest vs at load" rows: before a server run's
load, REST_CALLS calls placed together (the same journey, a short talk), their recordings
finalised, and the controller's FastAGI round-trips (from /metrics) and CPU (from /proc) over
just those calls."""

from __future__ import annotations

from bench import load_figures as figures
from bench.load_probe import metrics_text, proc_cpu
from bench.load_stack import SERVER_DID, asterisk_quiet, server_archives, start_callers
from tests.e2e.stack import Stack

REST_CALLS = 3


def at_rest(stack: Stack, index: int) -> dict:
    ctl = stack.controller.pid
    before = metrics_text(stack.ports["web"])
    cpu0 = proc_cpu(ctl)
    callers = start_callers(stack, stack.root / f"run-{index:02d}-rest", did=SERVER_DID,
                            prefix=f"038{index:02d}", calls=REST_CALLS,
                            concurrency=REST_CALLS, rate=10, talk=1.0)
    callers.peer.wait(callers.hangup_after + 60)
    calls_seen = figures.sipp_calls(callers.peer.workdir / "messages.log")
    answered = [c.caller for c in calls_seen.values() if c.ok is not None]
    server_archives(stack, answered, timeout=60)
    cpu = proc_cpu(ctl) - cpu0
    completed = sum(c.completed for c in calls_seen.values())
    asterisk_quiet(stack)
    return {"calls": REST_CALLS, "completed": completed,
            "controller_cpu_per_call": round(cpu / completed, 4) if completed else None,
            "agi_round_trip": figures.agi_round_trips(before, metrics_text(stack.ports["web"]))}
