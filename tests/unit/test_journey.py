from pathlib import Path

import pytest
import yaml

from ivr.audio.prompts import load_prompt_texts
from ivr.journey import JourneyError, Menu, Route, load_journey
from ivr.policy.menu import answer

PROJECT = Path(__file__).resolve().parents[2]
EXAMPLE = PROJECT / "dialplan" / "contact-centre.yaml"
OPERATORS = ["op1001", "op1002", "op1003", "sv2001"]
PROMPTS = load_prompt_texts(PROJECT / "prompts" / "prompts.yaml")


def load(tmp_path: Path, text: str, name: str = "j.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return load_journey([path], operators=OPERATORS, prompts=PROMPTS)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(JourneyError) as info:
        load(tmp_path, text)
    return info.value.problems


MINIMAL = """
desks:
  support: {members: [op1001]}
menus:
  main:
    prompt: main_menu
    choices:
      "1": {desk: support}
    default: {desk: support}
entries:
  main:
    numbers: ["0501234567"]
    start: {menu: main}
"""


def test_example_journey_is_valid():
    journey = load_journey([EXAMPLE], operators=OPERATORS, prompts=PROMPTS)
    assert set(journey.desks) == {"sales", "support", "billing", "supervisor"}
    assert journey.entry_for("0501234567")[0] == "main"
    assert journey.entry_for("+81501234567")[0] == "main"
    assert journey.entry_for("0399999999")[0] == "other"
    assert journey.entry_for(None)[0] == "other"
    assert journey.menus["main"].choices["0"].desk == "supervisor"


def test_minimal_journey(tmp_path):
    journey = load(tmp_path, MINIMAL)
    assert journey.entry_for("0501234567")[0] == "main"
    assert journey.entry_for("0000") is None  # no default entry: the controller's default desk


def test_unknown_key_names_file_and_line(tmp_path):
    text = MINIMAL.replace("    retries", "").replace(
        "    prompt: main_menu\n", "    prompt: main_menu\n    retrys: 3\n")
    (problem,) = problems(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'j.yaml'}:7: menus.main.retrys: unknown key")


def test_route_with_two_targets(tmp_path):
    text = MINIMAL.replace('"1": {desk: support}', '"1": {desk: support, menu: main}')
    (problem,) = problems(tmp_path, text)
    assert ":8: menus.main.choices.1" in problem
    assert "exactly one of" in problem


def test_unknown_desk_and_menu(tmp_path):
    text = MINIMAL.replace('"1": {desk: support}', '"1": {desk: salse}').replace(
        "start: {menu: main}", "start: {menu: mian}")
    found = problems(tmp_path, text)
    assert any("no desk named 'salse'" in p for p in found)
    assert any("no menu named 'mian'" in p and "entries.main.start" in p for p in found)


def test_bad_key_in_choices(tmp_path):
    text = MINIMAL.replace('"1": {desk: support}', '"12": {desk: support}')
    (problem,) = problems(tmp_path, text)
    assert "menus.main.choices.12" in problem


def test_unreachable_menu(tmp_path):
    text = MINIMAL.replace("entries:", """  orphan:
    prompt: main_menu
    choices: {"1": {desk: support}}
    default: {desk: support}
entries:""")
    (problem,) = problems(tmp_path, text)
    assert "menus.orphan: unreachable" in problem
    assert ":10:" in problem


def test_loop_with_no_exit(tmp_path):
    text = MINIMAL.replace("""    choices:
      "1": {desk: support}
    default: {desk: support}""", """    choices:
      "1": {menu: other}
    default: {menu: other}
  other:
    prompt: billing_menu
    choices:
      "1": {menu: main}
      "9": {repeat: true}
    default: {menu: main}""")
    found = problems(tmp_path, text)
    assert any("menus.main: a loop with no exit" in p for p in found)
    assert any("menus.other: a loop with no exit" in p for p in found)


def test_default_must_leave_the_menu(tmp_path):
    text = MINIMAL.replace("default: {desk: support}", "default: {repeat: true}")
    (problem,) = problems(tmp_path, text)
    assert "menus.main.default" in problem and "loop forever" in problem


def test_overflow_loop(tmp_path):
    text = MINIMAL.replace("  support: {members: [op1001]}", """  support: {overflow: {desk: sales}}
  sales: {overflow: {desk: support}}""")
    found = problems(tmp_path, text)
    assert any("overflow loop support -> sales -> support" in p for p in found)


def test_unknown_prompt_and_operator(tmp_path):
    text = MINIMAL.replace("prompt: main_menu", "prompt: no_such_prompt").replace(
        "members: [op1001]", "members: [op9999]")
    found = problems(tmp_path, text)
    assert any("prompt 'no_such_prompt' is used" in p for p in found)
    assert any("op9999" in p for p in found)


def test_duplicate_number_and_definitions_across_files(tmp_path):
    (tmp_path / "a.yaml").write_text(MINIMAL)
    (tmp_path / "b.yaml").write_text("""
desks:
  support: {}
entries:
  second:
    numbers: ["0501234567"]
    start: {desk: support}
""")
    with pytest.raises(JourneyError) as info:
        load_journey([tmp_path / "a.yaml", tmp_path / "b.yaml"], operators=OPERATORS,
                     prompts=PROMPTS)
    (problem,) = info.value.problems
    assert f"{tmp_path / 'b.yaml'}:3: desks.support is already defined at " in problem


def test_bad_yaml_and_bad_schedule(tmp_path):
    (problem,) = problems(tmp_path, "desks: [unclosed\n")
    assert "not valid YAML" in problem
    text = MINIMAL + """
schedules:
  office:
    timezone: Asia/Tokyo
    weekly: {mon: "25:00-18:00"}
"""
    (problem,) = problems(tmp_path, text)
    assert "schedules.office.weekly.mon" in problem


def test_schedule_reference_checked(tmp_path):
    text = MINIMAL.replace("start: {menu: main}", "start: {menu: main}\n    schedule: office")
    (problem,) = problems(tmp_path, text)
    assert "no schedule named 'office'" in problem


def test_every_example_prompt_exists_in_both_languages():
    journey = load_journey([EXAMPLE], operators=OPERATORS, prompts=PROMPTS)
    for name in journey.prompts_used():
        assert set(PROMPTS[name]) >= {"ja", "en"}, name


def test_example_file_parses_as_plain_yaml():
    data = yaml.safe_load(EXAMPLE.read_text())
    assert set(data) == {"schedules", "desks", "menus", "entries"}


MENU = Menu(prompt="main_menu", choices={"1": Route(desk="sales"), "9": Route(repeat=True)},
            retries=2, default=Route(desk="support"))


def test_menu_choice():
    step = answer(MENU, "1", 0)
    assert step.route == Route(desk="sales") and step.feedback is None


def test_menu_invalid_then_retry_then_default():
    step = answer(MENU, "5", 0)
    assert step.route is None and step.feedback == "invalid" and step.failures == 1
    step = answer(MENU, None, step.failures)
    assert step.route is None and step.feedback == "no_input" and step.failures == 2
    step = answer(MENU, None, step.failures)
    assert step.route == Route(desk="support") and step.result == "no_input"


def test_zero_retries_goes_straight_to_default():
    menu = MENU.model_copy(update={"retries": 0})
    assert answer(menu, "7", 0).route == Route(desk="support")


def test_unknown_holiday_calendar_names_file_and_line(tmp_path):
    text = MINIMAL + """
schedules:
  office:
    timezone: Asia/Tokyo
    weekly: {weekdays: "09:00-18:00"}
    holidays:
      - {from: 2026-12-29, to: 2027-01-03}
      - japn
"""
    (problem,) = problems(tmp_path, text)
    line = text.splitlines().index("      - japn") + 1
    assert problem.startswith(f"{tmp_path / 'j.yaml'}:{line}: schedules.office.holidays.1:")
    assert "unknown holiday calendar 'japn' (known: japan" in problem


def test_example_journey_closes_on_japanese_holidays():
    from datetime import date

    from ivr.policy.schedule import holiday_on

    journey = load_journey([EXAMPLE], operators=OPERATORS, prompts=PROMPTS)
    office = journey.schedules["office"]
    assert office.calendars == ("japan",)
    assert holiday_on(office, date(2026, 5, 6)) == "振替休日"
    assert holiday_on(office, date(2026, 12, 31)) == "年末年始"
