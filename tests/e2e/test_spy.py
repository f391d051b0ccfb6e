"""Listen, whisper, barge end to end: three callers (SIPp, each sending its own known noise)
talk to three operators (SIPp phones, each its own noise) at the same time; while they talk
a supervisor phone (another SIPp phone with a fixed contact, an operator endpoint of the
test's ivr.toml, sending its own noise) is rung into each call, one mode per call: listen
(`ivr spy`), whisper (the API), barge (`ivr spy`).

Who heard whom is judged from outside only: every phone's media port is captured on the
loopback interface, and each party's known noise is looked for, by correlation, in what the
others received. Never against the controller's own timestamps."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time

import numpy as np
import pytest

from tests.e2e.api_http import http
from tests.e2e.conftest import make_stack
from tests.e2e.journey_helpers import seconds
from tests.e2e.recordings import noise
from tests.e2e.rtp import alaw_encode, bursts_pcap
from tests.e2e.rtp_capture import ETH_P_ALL, PACKET_OUTGOING, RtpCapture
from tests.e2e.stack import SippPeer, Stack, wait_until
from tests.e2e.xcorr import find

DID = "0399000000"  # the example's 'other' entry: greeting, notice (ja), support desk
OPERATORS = ["op1001", "op1002", "op1003"]
SUPERVISORS = {"listen": "sv2001", "whisper": "sv2002", "barge": "sv2003"}
CALLERS = {"listen": "0355550301", "whisper": "0355550302", "barge": "0355550303"}
TALK = 20.0  # seconds each caller stays on after the intro (the spies join a few s in)
SECONDS = 90.0  # every party's noise, longer than any call
# Two independent noises of equal level mixed: a piece of one correlates ~0.7 with the mix.
FOUND = 0.45
ABSENT = 0.2  # an absent noise: ~0.05 (measured on the same captures)


def sources() -> dict[str, np.ndarray]:
    out = {}
    for n, mode in enumerate(CALLERS):
        out[CALLERS[mode]] = noise(SECONDS, seed=3100 + n)
        out[SUPERVISORS[mode]] = noise(SECONDS, seed=3200 + n)
    for n, op in enumerate(OPERATORS):
        out[op] = noise(SECONDS, seed=3300 + n)
    return out


def noise_pcap(samples: np.ndarray):
    return lambda path: bursts_pcap(path, [(0.0, alaw_encode(samples))])


class Captures:
    """Several media ports captured by one AF_PACKET socket and one thread."""

    def __init__(self, ports: dict[str, int]):
        self.by_name = {name: RtpCapture(port) for name, port in ports.items()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Captures:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind(("lo", 0))
        sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
        self._thread.start()
        return self

    def _run(self, sock: socket.socket) -> None:
        with sock:
            while not self._stop.is_set():
                try:
                    frame, addr = sock.recvfrom(65535)
                except TimeoutError:
                    continue
                if addr[2] == PACKET_OUTGOING:
                    continue
                at = time.time()
                for capture in self.by_name.values():
                    capture._packet(at, frame)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)

    def pcm(self, name: str) -> np.ndarray:
        pcm, _times = self.by_name[name].samples()
        assert len(pcm) > 8000 * 3, f"{name}: almost nothing received"
        return pcm


def media_port(peer: SippPeer) -> int:
    return int(peer.args[peer.args.index("-mp") + 1])


def sent_pieces_in(received: np.ndarray, source: np.ndarray, start: float = 2.0,
                   count: int = 8) -> list[float]:
    """Correlation of 1 s pieces of `source` (its own timeline: start, start+1, ...) with the
    best place in `received`."""
    return [round(find(received, source[round(t * 8000):round((t + 1) * 8000)]).peak, 3)
            for t in start + np.arange(count)]


def received_pieces_in(received: np.ndarray, source: np.ndarray,
                       count: int = 5) -> list[float]:
    """Correlation of 1 s pieces of what a spying phone received (after its first second,
    only stretches with sound in them) with the best place in `source`."""
    starts = [k for k in range(8000, len(received) - 8000, 8000)
              if np.sqrt(np.mean(received[k:k + 8000] ** 2)) > 0.02][:count]
    assert len(starts) == count, f"the spying phone received too little sound: {len(starts)}"
    return [round(find(source, received[k:k + 8000]).peak, 3) for k in starts]


def found(peaks: list[float]) -> bool:
    """Most pieces: a whispered stream now and then slips a frame against the other voice in
    the mix, and a piece across the slip correlates less (measured: one in ten, ~0.4)."""
    return sum(p >= FOUND for p in peaks) >= 0.75 * len(peaks)


def absent(peaks: list[float]) -> bool:
    return max(peaks) < ABSENT


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    stack = make_stack(tmp_path_factory, prompt_cache, [*OPERATORS, *SUPERVISORS.values()])
    stack.start_controller()
    yield stack
    stack.close()


def live_calls(stack: Stack) -> dict[str, dict]:
    """The callers' records while they talk: number -> record, once all are connected."""
    records = {c["caller"]: c for c in stack.calls(with_events=False)
               if c["caller"] in CALLERS.values() and c["outcome"] is None and c["operator"]}
    return records if len(records) == len(CALLERS) else {}


def test_listen_whisper_and_barge(stack):
    known = sources()
    for op in OPERATORS:
        stack.login(op, "support")
    phones = {name: stack.operator(name, pcap=noise_pcap(known[name]))
              for name in [*OPERATORS, *SUPERVISORS.values()]}
    token = stack.ivr("tokens", "create", "e2e-supervisor", "--role", "supervisor"
                      ).stdout.strip()
    wait_s = seconds(stack, "welcome") + seconds(stack, "notice") + 2.0
    callers = {number: stack.caller(number, DID, hangup_after=wait_s + TALK, accept_bye=True,
                                    pcap=noise_pcap(known[number]))
               for number in CALLERS.values()}
    ports = {name: media_port(peer) for name, peer in [*phones.items(), *callers.items()]}
    captures = Captures(ports).start()
    try:
        records = wait_until(lambda: live_calls(stack), wait_s + 20, interval=0.5,
                             what="all three callers talking to an operator")
        ids = {mode: records[number]["id"] for mode, number in CALLERS.items()}
        listen = stack.ivr("spy", ids["listen"], "--phone", SUPERVISORS["listen"],
                           "--mode", "listen", "--json")
        assert json.loads(listen.stdout)["channel"].startswith("PJSIP/trunk-"), listen.stdout
        status, body = http(stack, "POST", f"/api/v1/calls/{ids['whisper']}/spy", token,
                            {"phone": SUPERVISORS["whisper"], "mode": "whisper"})
        assert status == 202, body
        operator = records[CALLERS["whisper"]]["operator"]
        assert body["channel"].startswith(f"PJSIP/{operator}-"), body  # the operator's phone
        stack.ivr("spy", ids["barge"], "--phone", SUPERVISORS["barge"], "--mode", "barge")
        for number, peer in callers.items():
            result = peer.wait(wait_s + TALK + 60)
            assert result.returncode == 0, (number, (result.workdir / "screen.log")
                                            .read_text()[-1500:])
    finally:
        captures.stop()
    time.sleep(1.0)
    operator_of = {mode: records[number]["operator"] for mode, number in CALLERS.items()}
    # Each operator phone answered the caller the record says (its INVITE's From).
    for mode, number in CALLERS.items():
        assert phones[operator_of[mode]].invites_received(caller=number), (mode, operator_of)
    # Each supervisor's phone showed the mode and the caller's number (its INVITE's From).
    for mode, number in CALLERS.items():
        invites = [body for _t, what, body in phones[SUPERVISORS[mode]].messages()
                   if "received" in what and "| INVITE " in what]
        shown = next(x for x in invites[0].splitlines() if x.lower().startswith("from:"))
        assert f'"{mode.capitalize()} {number}" <sip:{number}@' in shown, shown
    got = {name: captures.pcm(name) for name in ports}
    report = {}

    # listen: the supervisor hears the caller and the operator; nobody hears the supervisor.
    sv, caller, op = SUPERVISORS["listen"], CALLERS["listen"], operator_of["listen"]
    report["listen"] = checks = {
        "caller_in_supervisor": received_pieces_in(got[sv], known[caller]),
        "operator_in_supervisor": received_pieces_in(got[sv], known[op]),
        "supervisor_in_caller": sent_pieces_in(got[caller], known[sv]),
        "supervisor_in_operator": sent_pieces_in(got[op], known[sv]),
        "operator_in_caller": sent_pieces_in(got[caller], known[op], start=2.0),
    }
    print("SPY-LISTEN " + json.dumps(checks))
    assert found(checks["caller_in_supervisor"]), checks
    assert found(checks["operator_in_supervisor"]), checks
    assert absent(checks["supervisor_in_caller"]), checks
    assert absent(checks["supervisor_in_operator"]), checks
    assert found(checks["operator_in_caller"]), checks  # the caller's capture works

    # whisper: the operator hears the supervisor, the caller does not; the supervisor hears
    # the caller.
    sv, caller, op = SUPERVISORS["whisper"], CALLERS["whisper"], operator_of["whisper"]
    report["whisper"] = checks = {
        "supervisor_in_operator": sent_pieces_in(got[op], known[sv]),
        "supervisor_in_caller": sent_pieces_in(got[caller], known[sv]),
        "caller_in_supervisor": received_pieces_in(got[sv], known[caller]),
        "operator_in_caller": sent_pieces_in(got[caller], known[op], start=2.0),
    }
    print("SPY-WHISPER " + json.dumps(checks))
    assert found(checks["supervisor_in_operator"]), checks
    assert absent(checks["supervisor_in_caller"]), checks
    assert found(checks["caller_in_supervisor"]), checks
    assert found(checks["operator_in_caller"]), checks

    # barge: both hear the supervisor.
    sv, caller, op = SUPERVISORS["barge"], CALLERS["barge"], operator_of["barge"]
    report["barge"] = checks = {
        "supervisor_in_caller": sent_pieces_in(got[caller], known[sv]),
        "supervisor_in_operator": sent_pieces_in(got[op], known[sv]),
    }
    print("SPY-BARGE " + json.dumps(checks))
    assert found(checks["supervisor_in_caller"]), checks
    assert found(checks["supervisor_in_operator"]), checks

    # A supervisor's noise reached no other call.
    for mode, other in (("listen", "whisper"), ("whisper", "barge"), ("barge", "listen")):
        assert absent(sent_pieces_in(got[CALLERS[other]], known[SUPERVISORS[mode]])), mode

    # The trace: the call's timeline, the audit log.
    ended = {c["caller"]: c for c in stack.calls() if c["id"] in ids.values()}
    for mode, number in CALLERS.items():
        spied = [e for e in ended[number]["events"] if e["kind"] == "supervisor_spy"]
        assert len(spied) == 1, ended[number]["events"]
        assert spied[0]["data"]["mode"] == mode
        assert spied[0]["data"]["phone"] == SUPERVISORS[mode]
    with sqlite3.connect(stack.data / "ivr.sqlite3") as db:
        rows = db.execute("SELECT actor, role, action, target, origin FROM audit_log "
                          "WHERE action LIKE 'spy.%'").fetchall()
    # The supervisors' legs are no calls: no CDR row (the fail-safe import reads them), and
    # the customer calls' rows are there (the file is written).
    cdr = (stack.data / "asterisk" / "log" / "cdr-custom" / "ivr-cdr.csv").read_text()
    assert all(number in cdr for number in CALLERS.values()), cdr[-2000:]
    assert not [line for line in cdr.splitlines() if "PJSIP/sv200" in line], cdr[-2000:]
    actions = {(action, target): (actor, role, origin)
               for actor, role, action, target, origin in rows}
    assert actions[("spy.whisper", f"call {ids['whisper']}")][:2] == ("e2e-supervisor",
                                                                       "supervisor")
    assert actions[("spy.listen", f"call {ids['listen']}")][2] == "cli"
    assert ("spy.barge", f"call {ids['barge']}") in actions


def test_refusals_name_the_problem_and_are_audited(stack):
    gone = stack.ivr("spy", "e2e-1.1", "--phone", "sv2001", "--mode", "listen", check=False)
    assert gone.returncode == 1 and "no call" in gone.stderr, gone
    stranger = stack.ivr("spy", "e2e-1.1", "--phone", "op9999", "--mode", "listen",
                         check=False)
    assert stranger.returncode == 2 and "not an operator endpoint" in stranger.stderr
    # A call that has ended (the first test's; run alone, this module has none).
    ended = next((c for c in stack.calls(with_events=False) if c["outcome"] is not None), None)
    if ended is not None:
        late = stack.ivr("spy", ended["id"], "--phone", "sv2001", "--mode", "listen",
                         check=False)
        assert late.returncode == 1 and "no live call" in late.stderr, late
    status, body = http(stack, "POST", "/api/v1/calls/e2e-1.1/spy", None,
                        {"phone": "sv2001", "mode": "listen"})
    assert status == 401, body
    with sqlite3.connect(stack.data / "ivr.sqlite3") as db:
        refused = db.execute("SELECT count(*) FROM audit_log WHERE action = 'spy.refused'"
                             ).fetchone()[0]
    assert refused >= (4 if ended is not None else 3)
    assert stack.health()["status"] == "ok"
