"""Cool-down after a hard call, end to end with real Asterisk 22 and SIPp: three calls at once,
one ended by the talk-time limit, one flagged by the operator's code (*1), one calm. The
references are Asterisk's and SIPp's own: app_queue's queue_log (PAUSE / UNPAUSE lines with
Asterisk's timestamps and the pause reason), Asterisk's `queue show`, AMI QueueStatus (through
`ivr operators list`), and the SIPp phones' and callers' message traces."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.request

import pytest

from tests.e2e.conftest import make_stack
from tests.e2e.journey_helpers import seconds
from tests.e2e.rtp import caller_pcap
from tests.e2e.stack import SippPeer, Stack, example_journey, wait_until

LIMITED, FLAGGED, CALM = "0501240001", "0501240002", "0501240003"
LIMIT = 5.0          # desk 'limited' (op1002): the limit ends the call
COOL = 3.0           # the default wrap-up
FLAG_COOL = 6.0      # desk 'flagdesk' (op1001, presses *1): its own wrap-up
TALK = 6.0           # the flagged and the calm caller hang up this long after connecting
PRESS_AT = 2.0       # s after answering, op1001's phone presses *1
SLACK = 1.5          # s: queue_log's times are whole seconds (truncated)

PROTECTION = f"""
limits:
  warning: 0
  desks:
    limited: {{talk_limit: {LIMIT:g}}}
cooldown:
  seconds: {COOL:g}
  after: [flagged, warned, limited, refused]
  desks:
    flagdesk: {{seconds: {FLAG_COOL:g}}}
"""


def journey() -> dict:
    data = example_journey(open_now=True)
    for name, number, op in (("limited", LIMITED, "op1002"), ("flagdesk", FLAGGED, "op1001"),
                             ("calm", CALM, "op1003")):
        data["desks"][name] = {"members": [op], "max_wait": 60}
        data["entries"][name] = {"numbers": [number], "language": "ja", "greeting": None,
                                 "start": {"desk": name}}
    return data


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    root = tmp_path_factory.mktemp("cooldown-conf")
    (root / "protection.yaml").write_text(PROTECTION)
    stack = make_stack(tmp_path_factory, prompt_cache, ["op1001", "op1002", "op1003", "sv2001"],
                       extra=f'[protection]\nfile = "{root / "protection.yaml"}"\n',
                       journey=journey())
    stack.start_controller()
    stack.login("op1002", "limited")
    stack.login("op1001", "flagdesk")
    stack.login("op1003", "calm")
    stack.operator("op1002")
    stack.operator("op1003")
    keys = [(PRESS_AT, "*"), (PRESS_AT + 0.6, "1")]
    stack.operator("op1001", pcap=lambda p: caller_pcap(p, 90.0, keys))
    yield stack
    stack.close()


def queue_log(stack: Stack) -> list[tuple[float, str, str, str, str]]:
    """app_queue's log: (Asterisk's time, queue, member, PAUSE/UNPAUSE, reason)."""
    path = stack.data / "asterisk" / "log" / "queue_log"
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        parts = line.split("|")
        if len(parts) >= 5 and parts[4] in ("PAUSE", "UNPAUSE"):
            out.append((float(parts[0]), parts[2], parts[3], parts[4],
                        parts[5] if len(parts) > 5 else ""))
    return out


def pauses(stack: Stack, queue: str, member: str) -> list[tuple[float, str, str]]:
    return [(at, what, why) for at, q, m, what, why in queue_log(stack)
            if q == queue and m == member]


def until_of(reason: str) -> float:
    match = re.fullmatch(r"ivr-cooldown until=(\d+) call=(\S+)", reason)
    assert match, reason
    return float(match.group(1))


def sip_at(peer: SippPeer, direction: str, method: str, since: float) -> float:
    """The first `method` request the peer sent/received (its own clock)."""
    for at, what, _body in peer.messages():
        if at >= since and direction in what and f"| {method} " in what:
            return at
    raise AssertionError(f"no {method} {direction} in {peer.workdir}")


def metric(stack: Stack, sample: str) -> float:
    url = f"http://127.0.0.1:{stack.ports['web']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            head, _, value = line.rpartition(" ")
            if head == sample:
                return float(value)
    return 0.0


def record_of(stack: Stack, caller: str) -> dict:
    return stack.call_record(lambda c: c["caller"] == caller and c["outcome"], timeout=30,
                             what=f"record of {caller}")


def test_hard_calls_pause_the_operator_for_the_wrap_up_and_calm_ones_do_not(stack):
    wait_s = seconds(stack, "notice") + 2.0
    limited = stack.caller("0355660001", LIMITED)  # Asterisk hangs up (limit, closing)
    flagged = stack.caller("0355660002", FLAGGED, hangup_after=wait_s + TALK, accept_bye=True)
    calm = stack.caller("0355660003", CALM, hangup_after=wait_s + TALK, accept_bye=True)

    # While op1001 is in cool-down (its desk's 6 s), Asterisk lists the pause with its reason:
    # `queue show` (Asterisk's CLI) and QueueStatus (AMI, as `ivr operators list` shows it).
    assert flagged.wait(90).returncode == 0, (flagged.workdir / "screen.log").read_text()
    # (The pause is renewed at the hang-up with a later end: read both until they agree.)
    def both_views() -> tuple[str, dict] | None:
        shown = re.search(r"paused:(ivr-cooldown until=\d+ call=\S+)",
                          stack.cli("queue show flagdesk"))
        listed = json.loads(stack.ivr("operators", "list", "--json").stdout)["members"]
        member = next(m for m in listed if m["operator"] == "op1001")
        if shown and member["paused"] and member["pause_reason"] == shown.group(1):
            return shown.group(1), member
        return None

    wait_until(both_views, 5, interval=0.2,
               what="op1001 paused with one reason in `queue show` and `ivr operators list`")
    for peer in (limited, calm):
        assert peer.wait(90).returncode == 0, (peer.workdir / "screen.log").read_text()

    records = {c: record_of(stack, c) for c in ("0355660001", "0355660002", "0355660003")}
    assert records["0355660001"]["hangup_by"] == "limit", records["0355660001"]
    assert "harassment" in (records["0355660002"]["flags"] or ""), records["0355660002"]
    # Every cool-down is over: the UNPAUSE lines are there.
    wait_until(lambda: len([p for p in queue_log(stack) if p[3] == "UNPAUSE"]) >= 2, 15,
               what="both cool-downs lifted")
    time.sleep(1.0)
    print("QUEUE_LOG", json.dumps(queue_log(stack)))

    # ---- the limited call: op1002 paused at the limit, unpaused COOL s after the hang-up ----
    log = pauses(stack, "limited", "op1002")
    assert [w for _at, w, _r in log][-1] == "UNPAUSE" and log[0][1] == "PAUSE", log
    assert all(w == "PAUSE" for _at, w, _r in log[:-1]), log
    call_id = records["0355660001"]["id"]
    assert all(r.endswith(f"call={call_id}") for _at, _w, r in log), (log, call_id)
    phone_bye = sip_at(stack.phones["op1002"], "received", "BYE", limited.started_at)
    caller_bye = sip_at(limited, "received", "BYE", limited.started_at)
    first_pause, last_pause, unpause = log[0][0], log[-2][0], log[-1][0]
    print(f"limited: phone BYE {phone_bye:.3f}, caller BYE {caller_bye:.3f} "
          f"(+{caller_bye - phone_bye:.2f}), PAUSE {[a for a, _w, _r in log[:-1]]}, "
          f"UNPAUSE {unpause:.0f} (+{unpause - caller_bye:.2f} after the caller's BYE)")
    # Paused at the limit, while the caller still heard the closing (the phone was free).
    assert phone_bye - SLACK <= first_pause <= phone_bye + 1.0, (first_pause, phone_bye)
    assert caller_bye - phone_bye > 2.5  # the closing: the early pause mattered
    # The last pause's reason says when it ends: COOL s after the hang-up; it did.
    assert abs(until_of(log[-2][2]) - (caller_bye + COOL)) <= SLACK, log
    assert COOL - SLACK <= unpause - caller_bye <= COOL + SLACK + 1.0, (unpause, caller_bye)
    assert COOL - SLACK - 1.0 <= unpause - last_pause <= COOL + SLACK + 1.0, log

    # ---- the flagged call: op1001 paused when flagged, unpaused FLAG_COOL s after ----
    log = pauses(stack, "flagdesk", "op1001")
    assert log and log[0][1] == "PAUSE" and log[-1][1] == "UNPAUSE", log
    caller_bye = sip_at(flagged, "sent", "BYE", flagged.started_at)
    answered = next(at for at, what, body in stack.phones["op1001"].messages()
                    if at >= flagged.started_at and "sent" in what
                    and "SIP/2.0 200" in what and "INVITE" in body)
    unpause = log[-1][0]
    print(f"flagged: answered {answered:.3f}, PAUSE {[a for a, _w, _r in log[:-1]]}, "
          f"caller BYE {caller_bye:.3f}, UNPAUSE {unpause:.0f} "
          f"(+{unpause - caller_bye:.2f})")
    assert answered + PRESS_AT - SLACK <= log[0][0] <= answered + PRESS_AT + 3.0, log
    assert FLAG_COOL - SLACK <= unpause - caller_bye <= FLAG_COOL + SLACK + 1.0, log

    # ---- the calm call: op1003 never paused ----
    assert pauses(stack, "calm", "op1003") == []
    assert "paused" not in stack.cli("queue show calm")

    # ---- the record, operator_events, /metrics, the log ----
    def started(caller: str) -> list[dict]:
        return [e["data"] for e in record_of(stack, caller)["events"]
                if e["kind"] == "cooldown_started"]

    [limited_cd] = started("0355660001")
    assert (limited_cd["operator"], limited_cd["seconds"], limited_cd["triggers"],
            limited_cd["desks"]) == ("op1002", COOL, ["limited"], ["limited"]), limited_cd
    [flagged_cd] = started("0355660002")
    assert (flagged_cd["operator"], flagged_cd["seconds"], flagged_cd["triggers"]) == \
        ("op1001", FLAG_COOL, ["flagged"]), flagged_cd
    assert started("0355660003") == []
    with sqlite3.connect(stack.data / "ivr.sqlite3") as db:
        rows = db.execute("SELECT operator, desk, action FROM operator_events "
                          "WHERE by_whom = 'cooldown' ORDER BY id").fetchall()
    assert {r for r in rows if r[2] == "unpause"} == {("op1002", "limited", "unpause"),
                                                      ("op1001", "flagdesk", "unpause")}, rows
    assert ("op1002", "limited", "pause") in rows and ("op1001", "flagdesk", "pause") in rows
    assert not [r for r in rows if r[0] == "op1003"], rows
    assert metric(stack, 'ivr_operator_cooldowns_total{trigger="limited"}') == 1
    assert metric(stack, 'ivr_operator_cooldowns_total{trigger="flagged"}') == 1
    assert metric(stack, "ivr_operator_cooldown_lifts_total") == 2
    assert "event=cooldown_over operator=op1002" in stack.controller_log()
    # Nobody is left paused.
    for desk in ("limited", "flagdesk", "calm"):
        assert "paused" not in stack.cli(f"queue show {desk}"), stack.cli(f"queue show {desk}")
