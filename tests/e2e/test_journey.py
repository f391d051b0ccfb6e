"""Every branch of the example caller journey (dialplan/contact-centre.yaml), with real
Asterisk, the controller and SIPp callers pressing RFC 2833 keys."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import make_stack
from tests.e2e.journey_helpers import (
    MAIN,
    by_caller,
    check_answered,
    language_menu_at,
    not_rung,
    notice_seconds,
    seconds,
    ts,
)
from tests.e2e.stack import example_journey

OPERATORS = ["op1001", "op1002", "op1003", "sv2001"]
DESK_OF = {"op1001": "sales", "op1002": "support", "op1003": "billing", "sv2001": "supervisor"}


def journey() -> dict:
    data = example_journey(open_now=True)
    # Shorter waits for no input, so the no-input path takes seconds rather than a minute.
    data["menus"]["language"]["timeout"] = 2
    data["menus"]["language"]["retries"] = 1
    return data


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    stack = make_stack(tmp_path_factory, prompt_cache, OPERATORS, journey=journey())
    stack.start_controller()
    for operator, desk in DESK_OF.items():
        stack.login(operator, desk)
        stack.operator(operator)
    yield stack
    stack.close()


def test_operators_listed(stack):
    out = stack.ivr("operators", "list").stdout
    for operator, desk in DESK_OF.items():
        assert any(line.split()[:2] == [desk, operator] for line in out.splitlines()), out


def test_each_branch_reaches_its_desk(stack):
    t = language_menu_at(stack)
    main_at = t + 1.5
    calls = {
        # caller: (keys, desk, operator, language, menu path)
        "0311000001": ([(seconds(stack, "welcome") + 2.0, "9"), (t, "1"), (main_at, "1")],
                       "sales", "op1001", "ja", "language:1 main:1"),
        "0311000002": ([(t, "2"), (main_at, "2")], "support", "op1002", "en",
                       "language:2 main:2"),
        "0311000003": ([(t, "1"), (main_at, "3"), (main_at + 1.5, "1")], "billing", "op1003",
                       "ja", "language:1 main:3 billing:1"),
        "0311000004": ([(t, "1"), (main_at, "0")], "supervisor", "sv2001", "ja",
                       "language:1 main:0"),
    }
    peers = {number: stack.caller(number, MAIN, keys=keys, hangup_after=keys[-1][0] + 8)
             for number, (keys, *_rest) in calls.items()}
    message_caller = stack.caller("0311000005", MAIN, keys=[(t, "1"), (main_at, "8")])
    for number, peer in peers.items():
        assert peer.wait(120).returncode == 0, number
    assert message_caller.wait(120).returncode == 0, "Asterisk should hang up after the message"

    for number, (_keys, desk, operator, language, path) in calls.items():
        record = by_caller(stack, number)
        check_answered(record, desk, operator, stack.phones[operator])
        assert record["language"] == language
        assert record["menu_path"] == path
        assert record["entry"] == "main"
        for other in OPERATORS:
            if other != operator:
                not_rung(stack.phones[other], record)

    # A key pressed during the notice neither skips it nor counts as a menu choice.
    first = by_caller(stack, "0311000001")
    assert ts(first["notice_ended_at"]) - ts(first["notice_started_at"]) >= notice_seconds(
        stack) - 0.2

    message = by_caller(stack, "0311000005")
    assert message["outcome"] == "message"
    assert message["menu_path"] == "language:1 main:8"
    assert message["operator"] is None and message["queue_joined_at"] is None
    kinds = [(e["kind"], e["data"].get("prompt")) for e in message["events"]]
    assert ("prompt", "hours_info") in kinds
    for phone in stack.phones.values():
        not_rung(phone, message)


def test_invalid_key_no_input_and_hangup_in_menu(stack):
    t = language_menu_at(stack)
    main_at = t + 1.5
    invalid_then = main_at + 0.3 + seconds(stack, "invalid") + 1.5
    # No key at the language menu: (prompt + 2 s + no-input feedback) twice, then the default
    # route (Japanese, main menu).
    round_ = seconds(stack, "language_select") + 2 + seconds(stack, "no_input")
    default_main = seconds(stack, "welcome") + notice_seconds(stack) + 2 * round_ + 1.5
    invalid = stack.caller("0322000001", MAIN, keys=[(t, "1"), (main_at, "7"),
                                                     (invalid_then, "2")],
                           hangup_after=invalid_then + 8)
    silent = stack.caller("0322000002", MAIN, keys=[(default_main, "3"),
                                                    (default_main + 1.5, "1")],
                          hangup_after=default_main + 9.5)
    gone = stack.caller("0322000003", MAIN, keys=[(t, "1")], hangup_after=main_at + 1.5)
    for peer in (invalid, silent, gone):
        assert peer.wait(150).returncode == 0

    record = by_caller(stack, "0322000001")
    check_answered(record, "support", "op1002", stack.phones["op1002"])
    assert record["menu_path"] == "language:1 main:7 main:2"
    kinds = [e["kind"] for e in record["events"]]
    assert "menu_invalid" in kinds
    assert ("prompt", "invalid") in [(e["kind"], e["data"].get("prompt"))
                                     for e in record["events"]]

    record = by_caller(stack, "0322000002")
    check_answered(record, "billing", "op1003", stack.phones["op1003"])
    assert record["menu_path"] == "language:- language:- main:3 billing:1"
    assert record["language"] == "ja"

    record = by_caller(stack, "0322000003")
    assert record["outcome"] == "abandoned_in_menu"
    assert record["menu_path"] == "language:1"
    assert record["queue_joined_at"] is None
    for phone in stack.phones.values():
        not_rung(phone, record)


def test_reload_while_calls_are_in_progress(stack):
    t = language_menu_at(stack)
    main_at = t + 1.5
    # A call already in the journey keeps it; the next call gets the new one.
    early = stack.caller("0333000001", MAIN, keys=[(t, "1"), (main_at + 4, "1")],
                         hangup_after=main_at + 12)
    time.sleep(3)

    changed = journey()
    changed["menus"]["main"]["choices"]["1"] = {"desk": "support"}
    # A bad file is refused with its line, and the journey in service stays.
    (stack.journey_dir / "broken.yaml").write_text(
        "menus:\n  extra:\n    prompt: main_menu\n    choices: {'1': {desk: nowhere}}\n"
        "    default: {desk: support}\n")
    refused = stack.ivr("reload", check=False)
    assert refused.returncode == 2
    assert "broken.yaml:2: menus.extra.choices.1: no desk named 'nowhere'" in refused.stderr
    (stack.journey_dir / "broken.yaml").unlink()

    stack.write_journey(changed)
    assert "reloaded" in stack.ivr("reload").stdout
    late = stack.caller("0333000002", MAIN, keys=[(t, "1"), (main_at, "1")],
                        hangup_after=main_at + 8)
    assert early.wait(120).returncode == 0
    assert late.wait(120).returncode == 0

    check_answered(by_caller(stack, "0333000001"), "sales", "op1001", stack.phones["op1001"])
    check_answered(by_caller(stack, "0333000002"), "support", "op1002", stack.phones["op1002"])
    stack.write_journey(journey())
    stack.ivr("reload")
