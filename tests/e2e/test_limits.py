"""Call-time limits (時間拘束), end to end with real Asterisk 22 and SIPp: the talk-time limit
(warning heard by the caller, the hang-up at the limit, both announcements in the recording
at their true times, the record), the limit holding with the controller killed mid-call, a
tighter limit and the ring display for a flagged caller, and the IVR-time cap.

Independent references only: times from SIPp's message traces, what the caller heard from
the RTP packets that reached the caller's port (captured off the wire here), announcements
found by correlation with the prompt files."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from ivr.audio.wav import read_wav
from tests.e2e.conftest import make_stack
from tests.e2e.journey_helpers import by_caller
from tests.e2e.recordings import call_recording
from tests.e2e.rtp import tone_pcap
from tests.e2e.stack import PROJECT, SippPeer, Stack, example_journey, wait_until
from tests.e2e.xcorr import find

LIMITED = "0501230001"  # desk 'limited' (op1002 answers): talk limit 16 s, warning 8 s
FLAGGED_DESK = "0501230002"  # desk 'limited_b' (op1003 answers): same limits
NOBODY = "0501230003"  # desk 'nobody' (op1001 rings, never answers), waits up to 120 s
LONG = "0501230004"  # desk 'long' (sv2001 answers): no talk limit
# The warning time is longer than the warning prompt (5.9 s): Dial plays it to the end before
# its own side leaves the bridge, so a longer prompt delays the closing (measured).
LIMIT, WARNING, FLAG_LIMIT, CAP = 16.0, 8.0, 10.0, 30.0
FLAGGED_CALLER = "0355111999"
OTHER = "0399000000"  # the example's 'other' entry: the default desk, support (op1002)
DEFAULT_LIMIT = 12.0  # the default desk's: the fail-safe path applies it
TOL = 1.0  # s: the accuracy


def journey() -> dict:
    data = example_journey(open_now=True)
    data["desks"]["limited"] = {"members": ["op1002"], "max_wait": 60}
    data["desks"]["limited_b"] = {"members": ["op1003"], "max_wait": 60}
    data["desks"]["nobody"] = {"members": ["op1001"], "max_wait": 120, "ring_timeout": 5}
    data["desks"]["long"] = {"members": ["sv2001"], "max_wait": 60}
    for name, number, desk in (("limited", LIMITED, "limited"),
                               ("limited_b", FLAGGED_DESK, "limited_b"),
                               ("nobody", NOBODY, "nobody"), ("long", LONG, "long")):
        data["entries"][name] = {"numbers": [number], "language": "ja", "greeting": None,
                                 "start": {"desk": desk}}
    return data


PROTECTION = f"""
limits:
  warning: {WARNING:g}
  desks:
    limited: {{talk_limit: {LIMIT:g}}}
    limited_b: {{talk_limit: {LIMIT:g}}}
    support: {{talk_limit: {DEFAULT_LIMIT:g}}}
  flags:
    harassment: {FLAG_LIMIT:g}
  max_ivr_time: {CAP:g}
"""
SEAM = {FLAGGED_CALLER: {"flags": ["harassment", "repeat"], "ring_prefix": "[!][R3]",
                         "alert_info": "<urn:alert:service:normal>;x=1"}}


def start_controller(stack: Stack) -> None:
    """The real controller, through tests/e2e/limits_seam.py (hands SEAM's callers a
    CallProtection as the inbound rules would)."""
    log = (stack.root / "controller.log").open("ab")
    stack.controller = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.limits_seam", "run", "-c", str(stack.config_path)],
        cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "IVR_TEST_PROTECTION": json.dumps(SEAM)},
    )
    wait_until(lambda: stack.health().get("status") == "ok"
               or stack.controller.poll() is not None, 60, what="controller healthy")
    assert stack.controller.poll() is None, stack.controller_log()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    root = tmp_path_factory.mktemp("limits-conf")
    (root / "protection.yaml").write_text(PROTECTION)
    stack = make_stack(tmp_path_factory, prompt_cache, ["op1001", "op1002", "op1003", "sv2001"],
                       extra=f'[protection]\nfile = "{root / "protection.yaml"}"\n',
                       journey=journey())
    start_controller(stack)
    stack.login("op1001", "nobody")
    stack.login("op1002", "limited", "support")
    stack.login("op1003", "limited_b")
    stack.login("sv2001", "long")
    stack.operator("op1001", scenario="operator_noanswer.xml")
    # A quiet operator: the announcements stand out in what the caller hears.
    quiet = lambda p: tone_pcap(p, 60.0, level=0.03)  # noqa: E731
    stack.operator("op1002", pcap=quiet)
    stack.operator("op1003", pcap=quiet)
    stack.operator("sv2001", pcap=quiet)
    yield stack
    stack.close()


# ---- what reached the caller, off the wire ----
class RtpCapture:
    """RTP packets to one UDP port on the loopback (AF_PACKET, root), decoded from A-law
    and placed by arrival time: what the caller's phone heard, independent of Asterisk."""

    def __init__(self, port: int):
        self.port = port
        self.packets: list[tuple[float, int, bytes]] = []
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            try:
                frame, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            at = time.time()
            if addr[2] == socket.PACKET_OUTGOING:  # loopback shows each packet twice
                continue
            ip = frame[14:]
            if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            header = (ip[0] & 0x0F) * 4
            dport = struct.unpack("!H", ip[header + 2:header + 4])[0]
            rtp = ip[header + 8:]
            if dport == self.port and len(rtp) > 12 and rtp[1] & 0x7F == 8:
                seq = struct.unpack("!H", rtp[2:4])[0]
                self.packets.append((at, seq, rtp[12:]))

    def stop(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()

    def audio(self) -> tuple[float, np.ndarray]:
        """(time of the first sample, samples): each 20 ms packet placed by its sequence
        number (loopback arrival jitter would smear the audio), the whole anchored to the
        wall clock by the median of arrival - position."""
        assert self.packets, f"no RTP reached port {self.port}"
        seqs = np.unwrap(np.array([p[1] for p in self.packets]), period=65536).astype(int)
        seqs -= seqs[0]
        start = float(np.median([p[0] for p in self.packets] - seqs * 0.02))
        out = np.zeros((int(seqs.max()) + 1) * 160)
        for k, (_at, _seq, payload) in zip(seqs, self.packets, strict=True):
            samples = alaw_decode(payload)[:160]
            out[k * 160:k * 160 + len(samples)] = samples
        return start, out


def alaw_decode(data: bytes) -> np.ndarray:
    a = np.frombuffer(data, dtype=np.uint8).astype(np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    mag = np.where(exponent == 0, (mantissa << 4) + 8,
                   ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(sign, mag, -mag).astype(np.float64)


def media_port(peer: SippPeer) -> int:
    return int(peer.args[peer.args.index("-mp") + 1])


def template(stack: Stack, name: str) -> np.ndarray:
    return read_wav(stack.data / "prompts" / "ja" / f"{name}.wav").samples.astype(np.float64)


def phone_window(phone: SippPeer, caller: str, since: float) -> tuple[float, float, str]:
    """On the operator phone's clock: the ACK of its 200 OK (talk starts), the BYE it got
    (talk ends), and the INVITE it received, for the call from `caller`."""
    invite_at, invite, call_id = None, "", None
    ack = bye = None
    for at, what, body in phone.messages():
        if at < since:
            continue
        header = {line.split(":", 1)[0].strip().lower(): line.split(":", 1)[1].strip()
                  for line in body.splitlines() if ":" in line}
        if invite_at is None and "received" in what and "| INVITE " in what \
                and f"sip:{caller}@" in header.get("from", ""):
            invite_at, invite, call_id = at, body, header.get("call-id")
        elif call_id and header.get("call-id") == call_id and "received" in what:
            if ack is None and "| ACK " in what:
                ack = at
            elif "| BYE " in what:
                bye = at
    assert invite_at and ack and bye, f"incomplete operator trace in {phone.workdir}"
    return ack, bye, invite


def caller_answered(peer: SippPeer) -> float:
    for at, what, body in peer.messages():
        if "received" in what and "SIP/2.0 200" in what and "INVITE" in body:
            return at
    raise AssertionError(f"no 200 OK in {peer.workdir}")


def test_talk_limit_warning_closing_and_record(stack):
    # The Local members list as their operators, state from the phone.
    listed = json.loads(stack.ivr("operators", "list", "--json").stdout)["members"]
    assert {(m["desk"], m["operator"], m["status"]) for m in listed} >= {
        ("limited", "op1002", "not_in_use"), ("support", "op1002", "not_in_use"),
        ("nobody", "op1001", "not_in_use")}, listed
    caller = stack.caller("0355111001", LIMITED)  # stays until Asterisk hangs up
    capture = RtpCapture(media_port(caller))
    try:
        assert caller.wait(120).returncode == 0, (caller.workdir / "screen.log").read_text()
    finally:
        capture.stop()
    ack, bye, _invite = phone_window(stack.phones["op1002"], "0355111001", caller.started_at)
    talk = bye - ack
    print(f"talk {talk:.3f} s (limit {LIMIT:g} s)")
    assert abs(talk - LIMIT) <= TOL, talk

    # The caller heard the warning at limit - warning (RTP reaching the caller's port).
    start, heard = capture.audio()
    warning = template(stack, "talk_limit_warning")
    match = find(heard, warning)
    heard_at = start + match.start
    print(f"warning heard {heard_at - ack:.3f} s after connect, peak {match.peak:.2f}")
    assert match.peak > 0.5 and match.peak > match.runner_up + 0.1, match
    assert abs(heard_at - (ack + LIMIT - WARNING)) <= TOL
    closing = find(heard, template(stack, "talk_limit_closing"))
    assert closing.peak > 0.5, closing
    assert abs(start + closing.start - bye) <= TOL, (start + closing.start, bye)

    record = by_caller(stack, "0355111001")
    assert record["hangup_by"] == "limit", record
    assert record["talk_limit"] == LIMIT
    kinds = [e["kind"] for e in record["events"]]
    assert "talk_limit_reached" in kinds
    announced = {e["data"]["purpose"]: e["at"] for e in record["events"]
                 if e["kind"] == "announcement"}
    assert set(announced) == {"talk_limit_warning", "talk_limit_closing"}, announced
    wait_until(lambda: by_caller(stack, "0355111001").get("recording_sha256"), 30,
               what="recording finalised")

    # Both announcements in the recording (what the caller heard), at their true times.
    answered = caller_answered(caller)
    recording = call_recording(by_caller(stack, "0355111001"))
    # The closing ends with the call: the recording's last frames may stop a few ms short of
    # the prompt's end, and a frame lost or repeated in a long stretch blurs the match, so
    # the first seconds of each prompt are looked for.
    closing = template(stack, "talk_limit_closing")[:2 * 8000]
    for leg, audio in (("heard", recording.heard), ("mixed", recording.mixed)):
        samples = audio.samples.astype(np.float64)
        got = find(samples, warning[:4 * 8000])
        print(f"{leg}: warning at {got.start:.3f} s, peak {got.peak:.2f}")
        assert got.peak > 0.5, (leg, got)
        assert abs(answered + got.start - heard_at) <= TOL, (leg, got, heard_at - answered)
        got = find(samples, closing)
        print(f"{leg}: closing at {got.start:.3f} s, peak {got.peak:.2f}")
        assert got.peak > 0.5, (leg, got)
        assert abs(answered + got.start - (ack + LIMIT)) <= TOL, (leg, got)


def test_flagged_caller_tighter_limit_and_ring_display(stack):
    caller = stack.caller(FLAGGED_CALLER, FLAGGED_DESK)
    assert caller.wait(120).returncode == 0, (caller.workdir / "screen.log").read_text()
    ack, bye, invite = phone_window(stack.phones["op1003"], FLAGGED_CALLER, caller.started_at)
    assert abs((bye - ack) - FLAG_LIMIT) <= TOL, bye - ack
    from_line = next(x for x in invite.splitlines() if x.lower().startswith("from:"))
    assert '"[!][R3] ' in from_line or '"[!][R3]' in from_line, from_line
    alert = [x for x in invite.splitlines() if x.lower().startswith("alert-info:")]
    assert alert == ["Alert-Info: <urn:alert:service:normal>;x=1"], alert
    # The trunk side never gets the ring display.
    for _at, _what, body in caller.messages():
        assert "[!]" not in body and "alert-info" not in body.lower(), body
    record = by_caller(stack, FLAGGED_CALLER)
    assert record["hangup_by"] == "limit" and record["talk_limit"] == FLAG_LIMIT, record
    rules = [e["data"]["rule"] for e in record["events"] if e["kind"] == "talk_limit_set"]
    assert rules == ["limits.flags.harassment"], rules


def test_ivr_time_cap(stack):
    caller = stack.caller("0355111003", NOBODY)
    assert caller.wait(120).returncode == 0, (caller.workdir / "screen.log").read_text()
    answered = caller_answered(caller)
    byes = [at for at, what, _ in caller.messages() if "received" in what and "| BYE " in what]
    assert byes, "the caller was never hung up"
    goodbye = float(read_wav(stack.data / "prompts" / "ja" / "goodbye.wav").duration)
    # The cap moves the caller to goodbye at answer + cap; the BYE follows the goodbye.
    held = byes[0] - answered - goodbye
    print(f"capped after {held:.3f} s (cap {CAP:g} s)")
    assert abs(held - CAP) <= TOL, held
    record = by_caller(stack, "0355111003")
    assert record["hangup_by"] == "ivr_cap", record


def test_ivr_time_cap_is_lifted_when_an_operator_answers(stack):
    """A caller connected before the cap talks past it: the cap (the caller's
    TIMEOUT(absolute)) was lifted on the caller's channel as the operator answered."""
    talk_until = CAP + 6.0  # s after the answer; the desk has no talk limit
    caller = stack.caller("0355111006", LONG, hangup_after=talk_until, accept_bye=True)
    assert caller.wait(120).returncode == 0, (caller.workdir / "screen.log").read_text()
    answered = caller_answered(caller)
    byes = [(at, what) for at, what, _ in caller.messages() if "| BYE " in what]
    assert byes and "sent" in byes[0][1], byes  # the caller hung up, nobody else
    assert byes[0][0] - answered >= talk_until - 0.5, (answered, byes)
    ack, bye, _ = phone_window(stack.phones["sv2001"], "0355111006", caller.started_at)
    assert ack - answered < CAP < bye - answered, (answered, ack, bye)  # connected in time
    record = by_caller(stack, "0355111006")
    assert record["hangup_by"] == "caller", record
    assert not [e for e in record["events"] if e["kind"] == "ivr_time_cap"], record["events"]


def test_limit_holds_with_the_controller_killed(stack):
    caller = stack.caller("0355111004", LIMITED)
    phone = stack.phones["op1002"]
    wait_until(lambda: phone.invites_received(since=caller.started_at, caller="0355111004"),
               60, what="operator rings")
    time.sleep(2.0)  # connected by now (the phone answers after 0.8 s)
    stack.controller.send_signal(signal.SIGKILL)
    stack.controller.wait(10)
    try:
        assert caller.wait(120).returncode == 0, (caller.workdir / "screen.log").read_text()
        ack, bye, _ = phone_window(phone, "0355111004", caller.started_at)
        print(f"talk with the controller dead {bye - ack:.3f} s")
        assert abs((bye - ack) - LIMIT) <= TOL
    finally:
        start_controller(stack)


def test_failsafe_path_applies_the_default_desks_limit(stack):
    """Controller down before the call: the fail-safe dialplan queues the caller to the
    default desk, whose limit is in the rendered dialplan."""
    stack.stop_controller()
    try:
        caller = stack.caller("0355111005", OTHER)
        assert caller.wait(120).returncode == 0, (caller.workdir / "screen.log").read_text()
        ack, bye, _ = phone_window(stack.phones["op1002"], "0355111005", caller.started_at)
        print(f"fail-safe talk {bye - ack:.3f} s")
        assert abs((bye - ack) - DEFAULT_LIMIT) <= TOL
    finally:
        start_controller(stack)
    # Imported from Asterisk's CDR: the Local member's row names the operator.
    record = by_caller(stack, "0355111005")
    assert (record["source"], record["operator"], record["outcome"]) == \
        ("cdr", "op1002", "answered"), record


def test_old_pjsip_members_move_to_local_members(stack):
    """A member Asterisk kept (astdb) from before the Local members rings the phone without
    the limit: the controller moves it over when it connects to Asterisk."""
    added = stack.cli("queue add member PJSIP/op1003 to limited_b penalty 0 as op1003 "
                      "state_interface PJSIP/op1003")
    assert "(PJSIP/op1003)" in stack.cli("queue show limited_b"), added
    stack.stop_controller()
    start_controller(stack)
    wait_until(lambda: "(PJSIP/op1003)" not in stack.cli("queue show limited_b"), 20,
               what="the old member removed")
    assert "Local/op1003@ivr-member/n" in stack.cli("queue show limited_b")
