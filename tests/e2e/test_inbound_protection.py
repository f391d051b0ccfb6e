"""Inbound restrictions (着信規制) end to end: real Asterisk 22, SIPp callers and phones.

Refused calls are proved from outside the controller: no operator phone received an INVITE
(SIPp's traces), the caller received a BYE, and the refusal prompt is found by correlation
in what the caller received on the wire (RTP captured on loopback) and in the recording; the
record's prompt event agrees with the wire within half a second. One stack for the module;
the calls of each test are placed at once.
"""

from __future__ import annotations

import asyncio
import json
import time
import tomllib

import numpy as np
import pytest
import yaml

from ivr.audio.wav import frame_levels_dbfs, read_wav
from ivr.protection.store_blocks import BlockStore
from ivr.store import CallStore, Database
from tests.e2e.conftest import make_stack
from tests.e2e.journey_helpers import seconds, ts
from tests.e2e.recordings import call_recording
from tests.e2e.sniff import RtpSniffer, media_port
from tests.e2e.stack import SippPeer, Stack, example_journey
from tests.e2e.xcorr import find, find_in_pieces

BLK, WH_ALLOW, WH_REFUSE, WH_DESK, REP = (f"050111800{i}" for i in range(5))
ALERT = "<urn:alert:service:normal>"
# (label, From without tag, extra headers, the reason the carrier meant, record caller_name)
WITHHELD = [
    ("display", '"Anonymous" <sip:anonymous@anonymous.invalid>', (), "anonymous", "Anonymous"),
    # No display name: AGI reports the name as `unknown`, the record keeps that.
    ("privacy", "<sip:anonymous@anonymous.invalid>", ("Privacy: id",), "anonymous", "unknown"),
    ("payphone", '"Coin line/payphone" <sip:anonymous@anonymous.invalid>', (), "payphone",
     "Coin line/payphone"),
    ("other-service", '"Interaction with other service" <sip:anonymous@anonymous.invalid>', (),
     "unavailable", "Interaction with other service"),
    ("no-reason", '"Customer" <sip:anonymous@anonymous.invalid>', (), "unknown", "Customer"),
]
REASONS = ("anonymous", "payphone", "unavailable", "unknown")
MIN_PEAK = 0.9  # the prompt as sent: an unambiguous match
MIN_LEAD = 0.3


def journey() -> dict:
    data = example_journey(open_now=True)
    for name, did, desk in (("blk", BLK, "support"), ("wh_allow", WH_ALLOW, "support"),
                            ("wh_refuse", WH_REFUSE, "support"),
                            ("wh_desk", WH_DESK, "support"), ("rep", REP, "sales")):
        data["entries"][name] = {"numbers": [did], "language": "ja", "greeting": None,
                                 "start": {"desk": desk}}
    return data


def protection() -> dict:
    def every(value) -> dict:
        return {reason: value for reason in REASONS}

    return {"inbound": {
        "supervisor_desk": "supervisor",
        "entries": {
            "wh_allow": {"withheld": every("allow")},
            "wh_refuse": {"withheld": every("refuse")},
            "wh_desk": {"withheld": every({"desk": "billing"})},
            "rep": {"repeat": [
                {"window": "day", "calls": 2, "action": "flag"},
                {"window": "day", "calls": 3, "action": "supervisor"},
                {"window": "day", "calls": 4, "action": "limit", "talk_limit": 90},
                {"window": "hour", "calls": 5, "action": "refuse", "block_for": "1h"},
            ]},
        },
        "ring": {"alert_info": {"repeat": ALERT}},
    }}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    root = tmp_path_factory.mktemp("protection")
    settings = root / "protection.yaml"
    settings.write_text(yaml.safe_dump(protection(), allow_unicode=True))
    stack = make_stack(tmp_path_factory, prompt_cache, ["op1001", "op1002", "op1003", "sv2001"],
                       extra=f'[protection]\nfile = "{settings}"\n', journey=journey())
    stack.start_controller()
    stack.login("op1001", "support")
    stack.login("op1002", "sales")
    stack.login("op1003", "billing")
    stack.login("sv2001", "supervisor")
    for op in ("op1001", "op1002", "op1003", "sv2001"):
        stack.operator(op)
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def sniffer(stack):
    rtp = tomllib.loads(stack.config_path.read_text())["asterisk"]
    sniffer = RtpSniffer(rtp["rtp_start"], rtp["rtp_end"]).start()
    yield sniffer
    sniffer.stop()


def store(stack: Stack, work):
    """Run `work(db)` against the stack's database (as `ivr calls` does)."""
    async def run():
        async with Database(stack.data / "ivr.sqlite3") as db:
            return await work(db)
    return asyncio.run(run())


def finished(peer: SippPeer, timeout: float = 120) -> None:
    result = peer.wait(timeout)
    assert result.returncode == 0, (peer.workdir / "screen.log").read_text()[-1500:]


def record_of(stack: Stack, predicate, what: str) -> dict:
    """The call's finalised record (outcome and recording hash: the call is over); never
    one of the earlier calls seed_calls() put in the store (they look finalised at once)."""
    return stack.call_record(lambda c: predicate(c) and c["node"] != "seed" and c["outcome"]
                             and (c["recording_sha256"] or not c["recording_path"]),
                             timeout=90, what=what)


def template(stack: Stack, prompt: str) -> np.ndarray:
    """The prompt up to its last word (prompts end in a little digital silence)."""
    audio = read_wav(stack.data / "prompts" / "ja" / f"{prompt}.wav")
    assert audio.rate == 8000
    levels = frame_levels_dbfs(audio.samples, 8000, 10.0)
    return audio.samples[:(int(np.nonzero(levels > -40)[0][-1]) + 1) * 80]


def assert_refused(stack: Stack, sniffer: RtpSniffer, caller: SippPeer, record: dict,
                   rule: str, prompt: str, from_user: str) -> dict:
    """Refused as seen from outside: BYE from Asterisk, no operator rang, the prompt on the
    wire and in the recording, the prompt event at the time the wire says."""
    assert record["outcome"] == "refused" and record["disposition"] == "refused", record
    assert record["rule"] == rule, record
    assert record["hangup_by"] == "system", record
    assert record["connected_at"] is None and record["queue_joined_at"] is None
    received = [what for _t, what, _b in caller.messages()
                if "received" in what and "| BYE " in what]
    assert received, f"{caller.workdir}: no BYE from Asterisk"
    start, end = ts(record["started_at"]) - 1, ts(record["ended_at"]) + 1
    for name, phone in stack.phones.items():
        rang = [t for t in phone.invites_received(since=start, caller=from_user) if t <= end]
        assert not rang, f"{name} rang for refused {from_user}: {rang}"
    # On the wire, as the caller received it.
    port = media_port(caller)
    sniffer.write_pcap(port, caller.workdir / "received.pcap")
    heard, first_at = sniffer.audio(port)
    assert first_at is not None, f"no RTP reached {caller.workdir} on port {port}"
    wire = find(heard, template(stack, prompt))
    assert wire.peak >= MIN_PEAK and wire.peak - wire.runner_up >= MIN_LEAD, wire
    # In the recording: the leg the caller heard, and the mix of both directions (the
    # caller kept talking). Piece by piece: under load the recorder may slip a 20 ms frame.
    recording = call_recording(record)
    tx = recording.heard.samples
    leg_at, leg_peak, leg_missed = find_in_pieces(tx, template(stack, prompt), MIN_PEAK)
    # The caller's own speech is mixed in: lower peaks, same place.
    mix_at, mix_peak, _ = find_in_pieces(recording.mixed.samples, template(stack, prompt),
                                         0.7, 0.5)
    assert abs(mix_at - leg_at) < 0.1, (mix_at, leg_at)
    # The record names the prompt and when it began; the wire agrees.
    events = [e for e in record["events"] if e["kind"] == "prompt"
              and e["data"]["prompt"] == prompt]
    assert len(events) == 1, record["events"]
    heard_at = first_at + wire.start
    assert abs(heard_at - events[0]["at"]) < 0.5, (heard_at, events[0])
    figures = {"call": record["id"], "rule": rule, "wire_peak": round(wire.peak, 3),
               "leg_peak": round(leg_peak, 3), "mix_peak": round(mix_peak, 3),
               "leg_at_s": round(leg_at, 3), "leg_pieces_missed": leg_missed,
               "event_to_wire_s": round(heard_at - events[0]["at"], 3)}
    print(f"\nREFUSED-FIGURES {json.dumps(figures)}")
    return figures


def test_block_list(stack, sniffer):
    """Exact (added in +81 form, called in national form, and the reverse), prefix and
    pattern blocks refuse; an expired block does not."""
    added = {}
    for value, flag in (("+81 3-5550-0001", None), ("0355500002", None), ("0120", "--prefix"),
                        ("_0990XXXXXX", "--pattern")):
        run = stack.ivr("block", value, *([flag] if flag else []), "--reason", "e2e 暴言",
                        "--expires", "1d")
        added[value] = run.stdout.split(":")[0] + ":" + run.stdout.split(":")[1]
    expired = store(stack, lambda db: BlockStore(db).add(
        kind="exact", value="0355500003", reason="old", source="admin", added_by="e2e",
        expires_at=time.time() - 60))
    cases = [("0355500001", added["+81 3-5550-0001"]), ("+81355500002", added["0355500002"]),
             ("0120555001", added["0120"]), ("0990123456", added["_0990XXXXXX"])]
    callers = {number: stack.caller(number, BLK) for number, _ in cases}
    allowed = stack.caller("0355500003", BLK, hangup_after=seconds(stack, "notice") + 3)
    for peer in (*callers.values(), allowed):
        finished(peer)
    for number, rule in cases:
        national = "0" + number[3:] if number.startswith("+81") else number
        record = record_of(stack, lambda c, n=national: c["caller"] == n, f"record of {number}")
        assert_refused(stack, sniffer, callers[number], record, rule, "refused", number)
    record = record_of(stack, lambda c: c["caller"] == "0355500003", "expired block's call")
    assert record["outcome"] != "refused" and record["rule"] is None, record
    assert record["desk"] == "support" and f"block:{expired.id}" not in json.dumps(record)
    listed = json.loads(stack.ivr("blocks", "list", "--json").stdout)["blocks"]
    assert {b["rule"] for b in listed} == set(added.values())


def test_withheld_by_reason_and_setting(stack, sniffer):
    """Each carrier reason under allow, refuse and desk. Withheld callers all present
    `anonymous` to the operators' phones, so the refused ones go first, alone: no phone may
    get an INVITE from `anonymous` while they are on."""
    calls = {(label, "refuse"): stack.caller("anonymous", WH_REFUSE, from_=from_,
                                             headers=headers)
             for label, from_, headers, _reason, _name in WITHHELD}
    for peer in calls.values():
        finished(peer)
    wait = seconds(stack, "notice") + 4
    for label, from_, headers, _reason, _name in WITHHELD:
        calls[(label, "allow")] = stack.caller("anonymous", WH_ALLOW, hangup_after=wait,
                                              from_=from_, headers=headers)
        calls[(label, "desk")] = stack.caller("anonymous", WH_DESK, hangup_after=wait,
                                             from_=from_, headers=headers)
    for peer in calls.values():
        finished(peer)
    for label, _from, _headers, reason, name in WITHHELD:
        for setting, did in (("refuse", WH_REFUSE), ("allow", WH_ALLOW), ("desk", WH_DESK)):
            record = record_of(stack, lambda c, d=did, n=name: c["did"] == d and c["caller"]
                               is None and c["caller_name"] == n, f"{label} {setting}")
            decided = [e["data"] for e in record["events"] if e["kind"] == "protection"]
            assert decided and decided[0]["withheld"] == reason, (label, setting, decided)
            assert record["rule"] == f"withheld:{reason}", (label, setting, record)
            assert "withheld" in (record["flags"] or "").split()
            if setting == "refuse":
                assert_refused(stack, sniffer, calls[(label, setting)], record,
                               f"withheld:{reason}", "withheld_refused", "anonymous")
                continue
            assert record["outcome"] != "refused", (label, setting, record)
            assert record["desk"] == ("billing" if setting == "desk" else "support")
            joined = [e["data"]["desk"] for e in record["events"] if e["kind"] == "queue_joined"]
            assert joined == [record["desk"]], (label, setting, record["events"])
    # The desk setting's calls rang billing's operator (one at a time: ringinuse=no), and
    # only the allow setting's rang support's.
    start = min(calls[(label, "allow")].started_at for label, *_ in WITHHELD)
    assert stack.phones["op1003"].invites_received(since=start, caller="anonymous")
    assert stack.phones["op1001"].invites_received(since=start, caller="anonymous")


def seed_calls(stack: Stack, number: str, ages: list[float]) -> None:
    """Earlier calls from the number (as another node would have recorded them)."""
    async def work(db):
        calls = CallStore(db)
        now = time.time()
        for i, age in enumerate(ages):
            call_id = f"seed-{number}-{i}"
            await calls.ensure_call(call_id, node="seed", started_at=now - age,
                                    source="controller")
            await calls.update(call_id, caller=number, ended_at=now - age + 30,
                               outcome="answered")
        await calls.flush()
    store(stack, work)


def test_repeat_caller_steps(stack, sniffer):
    """flag (2nd call today), supervisor (3rd), limit (4th), refuse (5th in the hour: an
    expiring block with its provenance), then the next call refused by that block."""
    flag, sup, lim, ref = "0366600001", "0366600002", "0366600003", "0366600004"
    seed_calls(stack, flag, [7200])
    seed_calls(stack, sup, [7200, 5000])
    seed_calls(stack, lim, [7200, 5000, 4000])
    seed_calls(stack, ref, [3000, 2000, 1000, 500])
    notice = seconds(stack, "notice")
    peers = {flag: stack.caller(flag, REP, hangup_after=notice + 6)}
    # The limit step's caller goes to the supervisor desk too (steps add up) and leaves soon
    # after queueing; `sup` waits longer than app_queue's retry (5 s), so the supervisor's
    # one phone (ringinuse=no) rings for it whichever caller it took first.
    peers[sup] = stack.caller(sup, REP, hangup_after=notice + 14)
    peers[lim] = stack.caller(lim, REP, hangup_after=seconds(stack, "notice") + 1.5)
    peers[ref] = stack.caller(ref, REP)
    finished(peers[ref])
    again = stack.caller(ref, REP)
    for peer in (*peers.values(), again):
        finished(peer)

    record = record_of(stack, lambda c: c["caller"] == flag, "flag step")
    assert (record["rule"], record["flags"], record["repeat_count"]) == \
        ("repeat:day>=2", "repeat", 2), record
    assert record["desk"] == "sales"
    ring = [b for t, w, b in stack.phones["op1002"].messages()
            if "received" in w and "| INVITE " in w and f"sip:{flag}@" in b]
    assert ring, "the sales operator never rang for the flagged caller"
    from_line = next(x for x in ring[0].splitlines() if x.lower().startswith("from:"))
    assert "[!][R2]" in from_line, from_line
    assert f"Alert-Info: {ALERT}" in ring[0], ring[0]

    record = record_of(stack, lambda c: c["caller"] == sup, "supervisor step")
    assert record["rule"] == "repeat:day>=3" and record["desk"] == "supervisor", record
    assert set(record["flags"].split()) == {"repeat", "supervisor"}
    assert stack.phones["sv2001"].invites_received(since=peers[sup].started_at, caller=sup)
    assert not stack.phones["op1002"].invites_received(since=peers[sup].started_at, caller=sup)

    record = record_of(stack, lambda c: c["caller"] == lim, "limit step")
    assert record["talk_limit"] == 90, record
    assert record["rule"] == "repeat:day>=3" and record["repeat_count"] == 4
    assert "limited" in record["flags"].split()

    first = record_of(stack, lambda c: c["caller"] == ref and c["rule"] == "repeat:hour>=5",
                      "refuse step")
    assert_refused(stack, sniffer, peers[ref], first, "repeat:hour>=5", "repeat_refused", ref)
    blocks = [b for b in json.loads(stack.ivr("blocks", "list", "--json").stdout)["blocks"]
              if b["value"] == ref]
    assert len(blocks) == 1, blocks
    auto = blocks[0]
    assert (auto["source"], auto["call_id"], auto["kind"]) == ("repeat", first["id"], "exact")
    assert "repeat:hour>=5" in auto["reason"] and "5 calls" in auto["reason"], auto
    assert abs(auto["expires_at"] - (ts(first["started_at"]) + 3600)) < 10, auto
    second = record_of(stack, lambda c: c["caller"] == ref and c["id"] != first["id"],
                       "the next call")
    assert_refused(stack, sniffer, again, second, auto["rule"], "refused", ref)
    audit = json.loads(stack.ivr("audit", "--json").stdout)
    entries = audit if isinstance(audit, list) else audit.get("audit", [])
    assert any(e["target"] == auto["rule"] and e["origin"] == "repeat" for e in entries)


def test_rules_test_explains(stack):
    """`ivr rules test` answers from the same rules and the same store, adding nothing."""
    added = stack.ivr("block", "0570", "--prefix", "--reason", "ナビダイヤル").stdout
    rule = ":".join(added.split(":")[:2])
    before = stack.ivr("blocks", "list", "--json").stdout
    shown = json.loads(stack.ivr("rules", "test", "+81-570-000-111", "--json").stdout)
    assert (shown["action"], shown["rule"], shown["prompt"]) == ("refuse", rule, "refused")
    assert stack.ivr("blocks", "list", "--json").stdout == before
    run = stack.ivr("rules", "test", "x", "--withheld", "payphone", "--entry", "wh_desk")
    assert "route to desk billing" in run.stdout and "withheld:payphone" in run.stdout
    bad = stack.ivr("block", "_09[9", "--pattern", "--reason", "x", check=False)
    assert bad.returncode == 2 and "pattern" in bad.stderr
