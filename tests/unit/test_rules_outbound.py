"""The outbound rule engine (pure): number and context in, decision with a rule id out."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.protection.rules_outbound import comparable_number, explain_outbound, operator_desks
from ivr.protection.settings import SettingsError, load_settings_file, parse_settings
from ivr.protection.settings_outbound import compile_pattern

EXAMPLE = Path(__file__).resolve().parents[2] / "protection.yaml"


@pytest.fixture(scope="module")
def example():
    return load_settings_file(EXAMPLE)


def settings(**outbound):
    return parse_settings({"outbound": outbound})


@pytest.mark.parametrize("number, rule, allowed, pin", [
    ("110", "emergency:110", True, False),
    ("119", "emergency:119", True, False),
    ("0120123456", "outbound:freedial", True, False),
    ("0800-123-4567", "outbound:freedial-0800", True, False),
    ("0101 555 123 4567", "outbound:intl", False, True),
    ("+1 555 123 4567", "outbound:intl", False, True),
    ("0990123456", "outbound:dial-q2", False, False),
    ("186-0990-123-456", "outbound:dial-q2", False, False),
    ("0570-000-123", "outbound:navi-dial", False, True),
    ("0180-99-1234", "outbound:teledome", False, False),
    ("001 1 555 123 4567", "outbound:carrier-select", False, False),
    ("0033-03-1234-5678", "outbound:carrier-select", False, False),
    ("0041", "outbound:carrier-select", False, False),
    ("0061", "outbound:carrier-select", False, False),
    ("*67", "outbound:service-star", False, False),
    ("#31#0312345678", "outbound:service-hash", False, False),
    ("03-1234-5678", "default:allow", True, False),
    ("+81 3-1234-5678", "default:allow", True, False),
    ("81312345678", "default:allow", True, False),
])
def test_example_rules(example, number, rule, allowed, pin):
    decision = explain_outbound(example, number, desk_names=["support"], operator="op1001")
    assert (decision.rule, decision.allowed, decision.pin_may_unlock) == (rule, allowed, pin)
    assert decision.reason


@pytest.mark.parametrize("raw", ["", "   ", None, "x" * 1000, "9" * 1000,
                                 "03１２34５678abc", "電話", "0990;Dial(PJSIP/x)", "\u202e110",
                                 "+", "anonymous"])
def test_odd_input_is_refused_not_crashed(example, raw):
    decision = explain_outbound(example, raw, desk_names=[], operator=None)
    assert decision == explain_outbound(example, raw)
    assert (decision.allowed, decision.rule, decision.number) == (False, "invalid:number", None)


def test_whitespace_is_a_separator_as_in_caller_ids(example):
    # normalise_number drops separators (line breaks too); the digits left are judged whole.
    assert explain_outbound(example, "0990\n123456").rule == "outbound:dial-q2"


def test_national_and_plus81_forms_are_one_number():
    s = settings(rules=[{"id": "x", "exact": "0312345678", "action": "deny"}])
    for raw in ("0312345678", "+81 3-1234-5678", "81312345678", "(03) 1234-5678",
                "０３１２３４５６７８", "1840312345678", "00810312345678"[:0] + "+81312345678"):
        assert explain_outbound(s, raw).rule == "outbound:x", raw
    assert comparable_number("+44 20 7946 0000") == "0104420794600 00".replace(" ", "")


def test_emergency_beats_deny_all_and_every_rule():
    s = settings(rules=[{"id": "all", "pattern": "_X!", "action": "deny"},
                        {"id": "exact110", "exact": "110", "action": "deny"}],
                 default="deny",
                 operator_defaults={"op1003": {"action": "deny"}})
    for raw in ("110", "118", "119", "186110"):
        d = explain_outbound(s, raw, operator="op1003", desk_names=["support"])
        assert d.allowed and d.rule.startswith("emergency:") and not d.pin_may_unlock
    assert not explain_outbound(s, "1100", operator="op1003").allowed


def test_emergency_numbers_are_configurable():
    s = settings(emergency=["112"], default="deny")
    assert explain_outbound(s, "112").rule == "emergency:112"
    assert explain_outbound(s, "110").rule == "default:deny"


def test_scope_and_defaults_per_desk_and_operator():
    s = settings(
        rules=[{"id": "sales-intl", "prefix": "010", "action": "allow",
                "scope": {"desks": ["sales"]}},
               {"id": "trainee-list", "exact": "0312345678", "action": "allow",
                "scope": {"operators": ["op1003"]}}],
        desk_defaults={"billing": {"action": "deny", "reason": "billing dials nobody"},
                       "support": {"action": "allow"}},
        operator_defaults={"op1003": {"action": "deny", "pin_unlocks": True}},
    )
    assert explain_outbound(s, "0101555", desk_names=["sales"]).rule == "outbound:sales-intl"
    assert explain_outbound(s, "0101555", desk_names=["support"]).rule == "default:desk:support"
    # The strictest desk default wins for an operator at two desks.
    d = explain_outbound(s, "0312345679", desk_names=["support", "billing"], operator="op1")
    assert (d.allowed, d.rule, d.reason) == (False, "default:desk:billing", "billing dials nobody")
    trainee = explain_outbound(s, "0312345679", desk_names=["support"], operator="op1003")
    assert (trainee.allowed, trainee.rule, trainee.pin_may_unlock) == (
        False, "default:operator:op1003", True)
    assert explain_outbound(s, "0312345678", operator="op1003").allowed


@pytest.mark.parametrize("pattern, yes, no", [
    ("_0990XXXXXX", ["0990123456"], ["099012345", "09901234567", "1990123456"]),
    ("_0[57]0.", ["0501", "0701234"], ["050", "0601"]),
    ("_NXX", ["200", "999"], ["100", "20"]),
    ("_Z!", ["1", "9", "91234"], ["0", ""]),
    ("_*X.", ["*67", "*1234"], ["*", "#67"]),
])
def test_asterisk_patterns(pattern, yes, no):
    compiled = compile_pattern(pattern)
    assert all(compiled.fullmatch(n) for n in yes)
    assert not any(compiled.fullmatch(n) for n in no)


@pytest.mark.parametrize("pattern", ["0990", "_", "_(a+)+$", "_09.9", "_[a-z]", "_[]",
                                     "_X" * 30, "_.*", "_\\d"])
def test_bad_patterns_are_refused_naming_the_field(pattern):
    with pytest.raises(SettingsError) as err:
        settings(rules=[{"id": "p", "pattern": pattern, "action": "deny"}])
    assert "outbound.rules.0.pattern" in str(err.value)


@pytest.mark.parametrize("rule, field", [
    ({"id": "a", "action": "deny"}, "outbound.rules.0"),
    ({"id": "a", "exact": "1", "prefix": "2", "action": "deny"}, "outbound.rules.0"),
    ({"id": "a", "exact": "03-1234", "action": "deny"}, "outbound.rules.0.exact"),
    ({"id": "a", "exact": "0312\n", "action": "deny"}, "outbound.rules.0.exact"),
    ({"id": "A b", "exact": "1", "action": "deny"}, "outbound.rules.0.id"),
    ({"id": "a", "exact": "1", "action": "block"}, "outbound.rules.0.action"),
    ({"id": "a", "exact": "1", "action": "deny", "reason": "x\ny"}, "outbound.rules.0.reason"),
    ({"id": "a", "exact": "1", "action": "allow", "pin_unlocks": True}, "outbound.rules.0"),
])
def test_bad_rules_name_the_field(rule, field):
    with pytest.raises(SettingsError) as err:
        settings(rules=[rule])
    assert field in str(err.value)


def test_duplicate_ids_and_bad_emergency_numbers():
    with pytest.raises(SettingsError, match="used twice"):
        settings(rules=[{"id": "a", "exact": "1", "action": "deny"}] * 2)
    with pytest.raises(SettingsError, match=r"outbound\.emergency"):
        settings(emergency=["11a"])


def test_unknown_desks_and_operators_are_reported():
    data = {"outbound": {
        "rules": [{"id": "a", "exact": "1", "action": "deny",
                   "scope": {"desks": ["nowhere"], "operators": ["op9"]}}],
        "desk_defaults": {"gone": {"action": "deny"}},
        "operator_defaults": {"op8": {"action": "deny"}}}}
    with pytest.raises(SettingsError) as err:
        parse_settings(data, desks={"support"}, entries=set(), operators={"op1001"})
    text = str(err.value)
    for part in ("outbound.rules.0.scope.desks: no desk named 'nowhere'",
                 "outbound.rules.0.scope.operators: no operator named 'op9'",
                 "outbound.desk_defaults.gone", "outbound.operator_defaults.op8"):
        assert part in text


def test_operator_desks_from_members():
    members = {"sales": ["op1001"], "support": ["op1001", "op1002"], "billing": []}
    assert operator_desks(members, "op1001") == ["sales", "support"]
    assert operator_desks(members, None) == []
