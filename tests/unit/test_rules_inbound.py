"""The inbound decision, pure: number and context in, decision with the rule id out."""

from __future__ import annotations

import pytest

from ivr.protection.rules_inbound import decide_inbound, matching_block, withheld_reason
from ivr.protection.settings import SettingsError, parse_settings
from ivr.protection.settings_inbound import InboundSettings
from ivr.protection.store_blocks import Block

NOW = 1_800_000_000.0
NUM = "0312345678"


def block(id: int, kind: str, value: str, *, entry: str | None = None,
          expires_at: float | None = None, removed_at: float | None = None) -> Block:
    return Block(id=id, kind=kind, value=value, entry=entry, reason=f"r{id}", source="admin",
                 added_by="alice", added_at=NOW - 100, expires_at=expires_at,
                 removed_at=removed_at)


def settings(**inbound) -> InboundSettings:
    return parse_settings({"inbound": inbound}).inbound


STEPPED = settings(
    supervisor_desk="supervisor",
    entries={"default": {"repeat": [
        {"window": "day", "calls": 2, "action": "flag"},
        {"window": "day", "calls": 3, "action": "supervisor"},
        {"window": "hour", "calls": 4, "action": "limit", "talk_limit": "5m"},
        {"window": "hour", "calls": 6, "action": "refuse", "block_for": "1d"},
    ]}},
    ring={"alert_info": {"repeat": "<urn:alert:service:normal>"}},
)


def decide(number, *, blocks=(), counts=None, s=None, entry="main", **kw):
    return decide_inbound(number=number, entry=entry, now=NOW, blocks=list(blocks),
                          counts=counts or {}, settings=s or InboundSettings(), **kw)


@pytest.mark.parametrize("raw", [NUM, "+81 3-1234-5678", "81312345678", "０３１２３４５６７８",
                                 "+81312345678", "003-1234-5678".replace("00", "0", 1)])
def test_exact_block_in_any_form(raw):
    d = decide(raw, blocks=[block(12, "exact", NUM)])
    assert (d.action, d.rule, d.prompt) == ("refuse", "block:12", "refused")


@pytest.mark.parametrize("raw", ["", " ", "x" * 1000, "1" * 1000, "03-1234-abcd", "電話番号",
                                 "0312345678\n", "+", "anonymous", "\u202e0312345678",
                                 "0312345678;drop", None])
def test_odd_input_never_raises_and_is_not_blocked_by_accident(raw):
    d = decide(raw, blocks=[block(1, "pattern", "_X!"), block(2, "prefix", "0")])
    number_known = d.withheld is None
    if number_known:  # it normalised to digits: then the catch-all blocks it
        assert d.rule in ("block:1", "block:2")
    else:
        assert d.action == "allow" and d.rule == "withheld:unknown"


def test_expired_removed_and_other_entry_blocks_do_not_apply():
    blocks = [block(1, "exact", NUM, expires_at=NOW), block(2, "exact", NUM, removed_at=NOW - 1),
              block(3, "exact", NUM, entry="sales"), block(4, "exact", "0312345679")]
    d = decide(NUM, blocks=blocks)
    assert d.action == "allow" and d.rule is None
    assert decide(NUM, blocks=blocks, entry="sales").rule == "block:3"
    assert decide(NUM, blocks=[block(5, "exact", NUM, expires_at=NOW + 1)]).rule == "block:5"


def test_most_specific_block_names_the_decision():
    blocks = [block(1, "pattern", "_03XXXXXXXX"), block(2, "prefix", "03"),
              block(3, "prefix", "0312"), block(4, "exact", NUM), block(5, "exact", NUM)]
    assert matching_block(NUM, "main", blocks, NOW).id == 4  # exact; the older of two
    assert matching_block(NUM, "main", blocks[:3], NOW).id == 3  # the longer prefix
    assert matching_block(NUM, "main", blocks[:1], NOW).id == 1
    assert matching_block("0612345678", "main", blocks, NOW) is None


@pytest.mark.parametrize(("number", "name", "privacy", "reason"), [
    (None, "Anonymous", None, "anonymous"),
    (None, '"anonymous"', None, "anonymous"),
    (None, "", "id", "anonymous"),
    (None, "unknown", "header;id", "anonymous"),
    (NUM, "", "id", "anonymous"),  # a number came, but the caller asked to hide it
    (NUM, "", "none", None),
    (None, "Coin line/payphone", None, "payphone"),
    (None, "coin  line/payphone", "id", "payphone"),
    (None, "Interaction with other service", None, "unavailable"),
    (None, "Unavailable", None, "unavailable"),
    (None, "", None, "unknown"),
    (None, "山田", None, "unknown"),
    (None, "x" * 1000, None, "unknown"),
    (NUM, "Anonymous", None, None),
])
def test_withheld_reason(number, name, privacy, reason):
    assert withheld_reason(number, name, privacy) == reason


def test_withheld_settings_per_entry_with_default():
    s = settings(entries={
        "default": {"withheld": {"anonymous": "refuse", "payphone": {"desk": "support"},
                                 "unavailable": "desk: billing"}},
        "main": {"withheld": {"anonymous": {"refuse": "closed"}, "unknown": "refuse"}},
    })
    d = decide(None, s=s, name="Anonymous", entry="sales")
    assert (d.action, d.rule, d.prompt) == ("refuse", "withheld:anonymous", "withheld_refused")
    d = decide("anonymous", s=s, name="Anonymous", entry="main")
    assert (d.action, d.prompt) == ("refuse", "closed")
    d = decide(None, s=s, name="Coin line/payphone", entry="main")
    assert (d.action, d.desk, d.rule) == ("desk", "support", "withheld:payphone")
    assert "withheld" in d.protection.flags
    assert decide(None, s=s, name="Unavailable").desk == "billing"
    assert decide(None, s=s, entry="main").action == "refuse"  # unknown, main's own
    assert decide(None, s=s, entry="sales").action == "allow"  # unknown, nobody says
    assert decide(None, s=s, withheld="payphone", entry=None).desk == "support"


@pytest.mark.parametrize(("day", "hour", "action", "rule", "desk", "limit", "flags"), [
    (1, 1, "allow", None, None, None, set()),
    (2, 1, "allow", "repeat:day>=2", None, None, {"repeat"}),
    (3, 1, "desk", "repeat:day>=3", "supervisor", None, {"repeat", "supervisor"}),
    (4, 4, "desk", "repeat:day>=3", "supervisor", 300, {"repeat", "supervisor", "limited"}),
    (9, 6, "refuse", "repeat:hour>=6", None, 300, {"repeat", "supervisor", "limited"}),
])
def test_repeat_steps_add_up(day, hour, action, rule, desk, limit, flags):
    d = decide(NUM, s=STEPPED, counts={"hour": hour, "day": day, "week": day})
    assert (d.action, d.rule, d.desk) == (action, rule, desk)
    assert d.protection.talk_limit == limit and set(d.protection.flags) == flags
    if action == "refuse":
        assert d.prompt == "repeat_refused"
        auto = d.auto_block
        assert auto is not None and auto.number == NUM and auto.expires_in == 86400
        assert (auto.rule, auto.count, auto.entry) == ("repeat:hour>=6", 6, None)
        assert d.protection.repeat_count == 6
    else:
        assert d.auto_block is None


def test_ring_display():
    d = decide(NUM, s=STEPPED, counts={"hour": 1, "day": 3, "week": 3})
    assert d.protection.ring_prefix == "[!][R3]"
    assert d.protection.alert_info == "<urn:alert:service:normal>"
    assert d.protection.repeat_count == 3
    quiet = settings(ring={"prefix": False})
    assert decide(NUM, s=quiet, counts={"day": 5}).protection.ring_prefix == ""
    plain = decide(NUM, counts={"hour": 1, "day": 1})
    assert plain.protection.ring_prefix == "" and plain.protection.alert_info == ""
    assert decide(NUM, counts={"day": 2}).protection.ring_prefix == "[R2]"


def test_block_beats_withheld_and_repeat():
    d = decide(NUM, s=STEPPED, privacy="id", counts={"hour": 9, "day": 9},
               blocks=[block(7, "prefix", "03")])
    assert (d.action, d.rule, d.auto_block) == ("refuse", "block:7", None)


def test_supervisor_step_beats_withheld_desk():
    s = settings(entries={"default": {
        "withheld": {"anonymous": {"desk": "support"}},
        "repeat": [{"window": "day", "calls": 2, "action": "supervisor"}]}})
    d = decide(NUM, s=s, privacy="id", counts={"day": 2, "hour": 2})
    assert (d.action, d.desk, d.rule) == ("desk", "supervisor", "repeat:day>=2")
    assert {"withheld", "repeat", "supervisor"} <= d.protection.flags


@pytest.mark.parametrize(("doc", "field"), [
    ({"entries": {"default": {"withheld": {"anonymous": "deny"}}}}, "anonymous"),
    ({"entries": {"default": {"withheld": {"hidden": "refuse"}}}}, "hidden"),
    ({"entries": {"default": {"withheld": {"anonymous": "desk:"}}}}, "desk"),
    ({"entries": {"default": {"repeat": [{"window": "year", "calls": 3, "action": "flag"}]}}},
     "window"),
    ({"entries": {"default": {"repeat": [{"window": "day", "calls": 3, "action": "limit"}]}}},
     "talk_limit"),
    ({"entries": {"default": {"repeat": [{"window": "day", "calls": 0, "action": "flag"}]}}},
     "calls"),
    ({"entries": {"default": {"repeat": [{"window": "day", "calls": 3, "action": "refuse",
                                          "block_for": "-1d"}]}}}, "block_for"),
    ({"ring": {"alert_info": {"repeat": "<http://x/ring>\r\nX-Evil: 1"}}}, "alert_info"),
    ({"ring": {"alert_info": {"repeat": "<a>,<b>"}}}, "alert_info"),
    ({"ring": {"alert_info": {"repeat": "${SHELL(id)}"}}}, "alert_info"),
    ({"ring": {"repeat": '"R{count}"'}}, "repeat"),
    ({"prompts": {"blocked": "../../etc/passwd"}}, "blocked"),
])
def test_bad_settings_name_the_field(doc, field):
    with pytest.raises(SettingsError) as err:
        parse_settings({"inbound": doc})
    assert field in str(err.value)


def test_unknown_desks_and_entries():
    doc = {"inbound": {"entries": {"nowhere": {}, "default": {
        "withheld": {"payphone": {"desk": "ghost"}},
        "repeat": [{"window": "day", "calls": 3, "action": "supervisor"}]}},
        "supervisor_desk": "boss"}}
    with pytest.raises(SettingsError) as err:
        parse_settings(doc, desks={"support"}, entries={"main"})
    text = str(err.value)
    assert "inbound.entries.nowhere" in text and "ghost" in text and "boss" in text
    parse_settings({"inbound": {"entries": {"main": {}}}}, desks=set(), entries={"main"})
