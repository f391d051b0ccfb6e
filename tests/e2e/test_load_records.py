"""The call record stays whole under load: many simultaneous answered calls, each must end
with an outcome, who hung up, the conversation's end and a finalised recording.

Under 150 concurrent calls a record once lacked `hangup_by` and `conversation_ended` although
Asterisk's queue log had the call's completion; this test places CALLS calls at once through
real Asterisk and SIPp and checks every record against what SIPp saw."""

from __future__ import annotations

import socket

import pytest

from tests.e2e.conftest import make_stack
from tests.e2e.journey_helpers import seconds
from tests.e2e.rtp import caller_pcap
from tests.e2e.scenarios import caller_scenario
from tests.e2e.stack import (
    SippPeer,
    example_journey,
    free_port,
    free_udp_pair_base,
    wait_until,
)

CALLS = 40
OPERATORS = [f"op{2001 + n}" for n in range(CALLS)]
DID = "0399000000"  # the 'other' entry: greeting, notice, support desk


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    journey = example_journey(open_now=True)
    journey["desks"]["support"]["members"] = OPERATORS
    for desk in ("sales", "billing", "supervisor"):
        journey["desks"][desk]["members"] = OPERATORS[:1]
    stack = make_stack(tmp_path_factory, prompt_cache, OPERATORS, journey=journey,
                       shared_phone=True)
    stack.start_controller()
    for op in OPERATORS:
        stack.login(op, "support")
    stack.operator(OPERATORS[0])  # one SIPp phone answers for every endpoint
    yield stack
    stack.close()


def test_every_record_is_whole_under_load(stack):
    talk = 6.0
    hangup_after = seconds(stack, "welcome") + seconds(stack, "notice") + 2 + talk
    workdir = stack.root / "sipp-load"
    workdir.mkdir()
    callers = [f"03770{n:05d}" for n in range(CALLS)]
    (workdir / "callers.csv").write_text("SEQUENTIAL\n" + "".join(f"{c};\n" for c in callers))
    caller_pcap(workdir / "caller.pcap", hangup_after)
    (workdir / "caller.xml").write_text(
        caller_scenario(pcap="caller.pcap", hangup_after=hangup_after))
    peer = SippPeer(workdir, [
        f"127.0.0.1:{stack.ports['sip']}", "-sf", str(workdir / "caller.xml"), "-s", DID,
        "-inf", str(workdir / "callers.csv"), "-m", str(CALLS), "-l", str(CALLS),
        "-r", "10", "-i", "127.0.0.1", "-p", str(free_port(socket.SOCK_DGRAM)),
        "-mi", "127.0.0.1", "-mp", str(free_udp_pair_base()), "-t", "u1",
        "-timeout", "180s", "-timeout_error",
    ]).start()
    stack.peers.append(peer)
    result = peer.wait(240)
    assert result.returncode == 0, (workdir / "screen.log").read_text()[-1500:]

    def all_final():
        records = {c["caller"]: c for c in stack.calls() if c["caller"] in set(callers)}
        done = [c for c in records.values() if c["outcome"] and c["recording_sha256"]]
        return records if len(done) == CALLS else None

    records = wait_until(all_final, 60, interval=1, what=f"{CALLS} finished records")
    problems = []
    for caller, record in records.items():
        kinds = [e["kind"] for e in record["events"]]
        if record["outcome"] != "answered":
            problems.append(f"{caller}: outcome {record['outcome']}")
        if record["hangup_by"] != "caller":
            problems.append(f"{caller}: hangup_by {record['hangup_by']}")
        for kind in ("conversation_ended", "hangup_source", "hung_up", "recording_finalised"):
            if kind not in kinds:
                problems.append(f"{caller}: no {kind}")
    assert not problems, problems
    # SIPp's own count: every call it placed completed.
    answered_by_phone = len(stack.phones[OPERATORS[0]].invites_received(since=result.started_at))
    assert answered_by_phone >= CALLS
