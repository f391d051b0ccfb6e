from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml

from ivr.policy.schedule import (
    Schedule,
    ScheduleError,
    hours_on,
    is_open,
    next_opening,
)
from ivr.policy.schedule_parse import parse_schedule
from ivr.policy.schedule_text import describe

TOKYO = ZoneInfo("Asia/Tokyo")
LONDON = ZoneInfo("Europe/London")

EXAMPLE = """
timezone: Asia/Tokyo
weekly:
  mon: "09:00-18:00"
  tue: "09:00-12:00, 13:00-18:00"
  wed: "09:00-18:00"
  thu: "09:00-18:00"
  fri: "09:00-18:00"
  sat: "10:00-15:00"
  sun: closed
holidays:
  - 2026-12-31
  - {date: 2027-01-01, name: 元日}
  - {from: 2026-12-29, to: 2027-01-03, name: 年末年始}
special:
  - {date: 2026-12-28, hours: "09:00-12:00"}
"""


@pytest.fixture(scope="module")
def desk() -> Schedule:
    return parse_schedule("desk", yaml.safe_load(EXAMPLE))


def jst(*args: int) -> datetime:
    return datetime(*args, tzinfo=TOKYO)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def schedule(weekly: dict, zone: str = "Asia/Tokyo", **extra) -> Schedule:
    return parse_schedule("test", {"timezone": zone, "weekly": weekly, **extra})


def error(raw) -> ScheduleError:
    with pytest.raises(ScheduleError) as info:
        parse_schedule("desk", raw)
    return info.value


# --- parsing -------------------------------------------------------------------------------


def test_example_parses(desk):
    assert desk.timezone == "Asia/Tokyo"
    assert desk.weekly[0] == ((time(9), time(18)),)
    assert desk.weekly[1] == ((time(9), time(12)), (time(13), time(18)))
    assert desk.weekly[5] == ((time(10), time(15)),)
    assert desk.weekly[6] == ()
    assert desk.holidays[date(2027, 1, 1)] == "元日"
    # Named beats unnamed, so the range names the date listed bare before it.
    assert desk.holidays[date(2026, 12, 31)] == "年末年始"
    assert sorted(desk.holidays) == [date(2026, 12, 29) + timedelta(days=n) for n in range(6)]
    assert desk.special == {date(2026, 12, 28): ((time(9), time(12)),)}


def test_dates_may_be_strings_or_date_objects():
    from_strings = schedule(
        {"mon": "09:00-18:00"},
        holidays=["2026-12-31", {"from": "2026-12-29", "to": "2026-12-30"}],
        special=[{"date": "2026-12-28", "hours": "closed"}],
    )
    from_dates = schedule(
        {"mon": "09:00-18:00"},
        holidays=[date(2026, 12, 31), {"from": date(2026, 12, 29), "to": date(2026, 12, 30)}],
        special=[{"date": date(2026, 12, 28), "hours": "closed"}],
    )
    assert from_strings == from_dates
    assert from_strings.holidays[date(2026, 12, 31)] == ""


def test_weekdays_shorthand_explicit_day_wins_and_missing_days_close():
    plan = schedule({"fri": "09:00-17:00", "weekdays": "09:00-18:00", "sat": "24h"})
    assert [plan.weekly[day] for day in range(5)] == [((time(9), time(18)),)] * 4 + [
        ((time(9), time(17)),)
    ]
    assert plan.weekly[5] == ((time(0), time(0)),)
    assert plan.weekly[6] == ()


def test_interval_forms():
    plan = schedule(
        {
            "mon": "9:00～12:00,13:00-24:00",
            "tue": ["18:00-02:00"],
            "wed": "00:00-24:00",
            "thu": False,  # what YAML makes of an unquoted `off`
        }
    )
    assert plan.weekly[0] == ((time(9), time(12)), (time(13), time(0)))
    assert plan.weekly[1] == ((time(18), time(2)),)
    assert plan.weekly[2] == ((time(0), time(0)),)
    assert plan.weekly[3] == ()


@pytest.mark.parametrize(
    ("raw", "path", "words"),
    [
        ({"weekly": {}}, ("timezone",), "missing"),
        ({"timezone": "Asia/Tokio", "weekly": {}}, ("timezone",), "unknown timezone"),
        ({"timezone": "localtime", "weekly": {}}, ("timezone",), "localtime"),
        ({"timezone": "Asia/Tokyo", "weekly": {}, "hours": {}}, ("hours",), "unknown key"),
        ({"timezone": "Asia/Tokyo", "weekly": {"tue": "09:00-25:00"}}, ("weekly", "tue"),
         "bad time '25:00'"),
        ({"timezone": "Asia/Tokyo", "weekly": {"tue": "09:60-12:00"}}, ("weekly", "tue"),
         "bad time"),
        ({"timezone": "Asia/Tokyo", "weekly": {"tue": "24:00-02:00"}}, ("weekly", "tue"),
         "cannot start"),
        ({"timezone": "Asia/Tokyo", "weekly": {"tue": "09:00-09:00"}}, ("weekly", "tue"),
         "24h"),
        ({"timezone": "Asia/Tokyo", "weekly": {"tue": "9-18"}}, ("weekly", "tue"),
         "bad interval"),
        ({"timezone": "Asia/Tokyo", "weekly": {"tue": "09:00-13:00, 12:00-18:00"}},
         ("weekly", "tue"), "overlap"),
        ({"timezone": "Asia/Tokyo", "weekly": {"tue": "20:00-02:00, 21:00-22:00"}},
         ("weekly", "tue"), "overlap"),
        ({"timezone": "Asia/Tokyo", "weekly": {"tue": ["09:00-12:00", "13:00"]}},
         ("weekly", "tue", 1), "bad interval"),
        ({"timezone": "Asia/Tokyo", "weekly": {"tuesday": "09:00-18:00"}},
         ("weekly", "tuesday"), "unknown day"),
        ({"timezone": "Asia/Tokyo", "weekly": {"tue": None}}, ("weekly", "tue"), "nothing"),
        ({"timezone": "Asia/Tokyo", "weekly": {}, "holidays": ["2026-13-01"]},
         ("holidays", 0), "bad date"),
        ({"timezone": "Asia/Tokyo", "weekly": {},
          "holidays": ["2026-12-31", {"date": "2027-01-01"},
                       {"from": "2027-01-03", "to": "2026-12-29"}]},
         ("holidays", 2, "from"), "after"),
        ({"timezone": "Asia/Tokyo", "weekly": {},
          "holidays": [{"from": "2026-12-29", "to": "2062-01-03"}]},
         ("holidays", 0, "to"), "longer"),
        ({"timezone": "Asia/Tokyo", "weekly": {}, "holidays": [{"date": "2027-01-01",
                                                                "nmae": "元日"}]},
         ("holidays", 0, "nmae"), "unknown key"),
        ({"timezone": "Asia/Tokyo", "weekly": {},
          "holidays": [datetime(2027, 1, 1, 10, 0)]}, ("holidays", 0), "date and time"),
        ({"timezone": "Asia/Tokyo", "weekly": {},
          "special": [{"date": "2026-12-28", "hours": "09:00-12:00"},
                      {"date": "2026-12-28", "hours": "13:00-15:00"}]},
         ("special", 1, "date"), "already"),
        ({"timezone": "Asia/Tokyo", "weekly": {}, "special": [{"date": "2026-12-28"}]},
         ("special", 0, "hours"), "missing"),
    ],
)
def test_parse_errors_name_the_path(raw, path, words):
    problem = error(raw)
    assert problem.path == path
    assert words in problem.message
    assert isinstance(problem, ValueError)
    assert "'desk'" in str(problem)


def test_error_text_renders_the_path():
    problem = error(yaml.safe_load(EXAMPLE.replace("2026-12-29, to", "2027-01-05, to")))
    assert str(problem).startswith("schedule 'desk': holidays[2].from: from 2027-01-05")


def test_duplicate_holidays_are_fine():
    plan = schedule({}, holidays=["2026-12-31", "2026-12-31", {"date": "2026-12-31",
                                                                "name": "大晦日"}])
    assert plan.holidays == {date(2026, 12, 31): "大晦日"}


# --- is_open -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (jst(2026, 6, 1, 8, 59, 59), False),
        (jst(2026, 6, 1, 9, 0), True),  # start inclusive
        (jst(2026, 6, 1, 17, 59, 59), True),
        (jst(2026, 6, 1, 18, 0), False),  # end exclusive
        (jst(2026, 6, 2, 11, 59, 59), True),  # Tuesday lunch break
        (jst(2026, 6, 2, 12, 0), False),
        (jst(2026, 6, 2, 12, 59, 59), False),
        (jst(2026, 6, 2, 13, 0), True),
        (jst(2026, 6, 6, 9, 59), False),  # Saturday
        (jst(2026, 6, 6, 10, 0), True),
        (jst(2026, 6, 6, 15, 0), False),
        (jst(2026, 6, 7, 12, 0), False),  # Sunday
    ],
)
def test_is_open_on_an_ordinary_week(desk, moment, expected):
    assert is_open(desk, moment) is expected


def test_holiday_list_and_range_close_the_day(desk):
    assert is_open(desk, jst(2026, 12, 25, 12, 0))  # an ordinary Friday
    for day in range(29, 32):
        assert not is_open(desk, jst(2026, 12, day, 12, 0))
    for day in range(1, 4):
        assert not is_open(desk, jst(2027, 1, day, 12, 0))
    assert is_open(desk, jst(2027, 1, 4, 12, 0))


def test_special_hours_override_weekly_and_holidays(desk):
    assert is_open(desk, jst(2026, 12, 28, 11, 59))
    assert not is_open(desk, jst(2026, 12, 28, 12, 0))  # a Monday, shortened
    plan = schedule(
        {"weekdays": "09:00-18:00"},
        holidays=[{"from": "2026-12-29", "to": "2027-01-03"}],
        special=[{"date": "2026-12-30", "hours": "10:00-14:00"},
                 {"date": "2026-12-25", "hours": "closed"}],
    )
    assert is_open(plan, jst(2026, 12, 30, 10, 0))
    assert not is_open(plan, jst(2026, 12, 31, 10, 0))
    assert not is_open(plan, jst(2026, 12, 25, 10, 0))
    assert hours_on(plan, date(2026, 12, 30)) == ((time(10), time(14)),)


def test_interval_crossing_midnight_belongs_to_its_start_day():
    plan = schedule({"fri": "18:00-02:00"}, holidays=["2026-06-06", "2026-06-12"])
    assert is_open(plan, jst(2026, 6, 5, 23, 59))
    # Saturday 6th is a holiday, but Friday's shift started before it.
    assert is_open(plan, jst(2026, 6, 6, 0, 0))
    assert is_open(plan, jst(2026, 6, 6, 1, 59, 59))
    assert not is_open(plan, jst(2026, 6, 6, 2, 0))
    # Friday 12th is a holiday, so its shift never starts and Saturday morning stays shut.
    assert not is_open(plan, jst(2026, 6, 12, 23, 0))
    assert not is_open(plan, jst(2026, 6, 13, 1, 0))


def test_until_midnight_and_round_the_clock():
    plan = schedule({"mon": "18:00-24:00", "tue": "24h"})
    assert is_open(plan, jst(2026, 6, 1, 23, 59, 59))
    assert is_open(plan, jst(2026, 6, 2, 0, 0))  # Tuesday's own 24h
    assert is_open(plan, jst(2026, 6, 2, 23, 59, 59))
    assert not is_open(plan, jst(2026, 6, 3, 0, 0))


def test_utc_now_is_read_in_tokyo_time_across_the_date_change():
    plan = schedule({"mon": "00:00-09:00"})
    # Sunday 15:00 UTC is Monday 00:00 in Tokyo.
    assert not is_open(plan, utc(2026, 5, 31, 14, 59, 59))
    assert is_open(plan, utc(2026, 5, 31, 15, 0))
    assert is_open(plan, utc(2026, 5, 31, 23, 59))
    assert not is_open(plan, utc(2026, 6, 1, 0, 0))  # Monday 09:00 JST
    # The same instant from a third zone gives the same answer.
    new_york = datetime(2026, 5, 31, 11, 0, tzinfo=ZoneInfo("America/New_York"))
    assert is_open(plan, new_york)


def test_naive_now_is_refused(desk):
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(desk, datetime(2026, 6, 1, 12, 0))


def test_london_spring_forward():
    # 2026-03-29 01:00 UTC: clocks go from 01:00 GMT to 02:00 BST.
    plan = schedule({"sat": "22:00-03:00", "sun": "09:00-17:00"}, zone="Europe/London")
    assert is_open(plan, utc(2026, 3, 28, 22, 0))  # 22:00 GMT
    assert is_open(plan, utc(2026, 3, 29, 1, 59))  # 02:59 BST
    assert not is_open(plan, utc(2026, 3, 29, 2, 0))  # 03:00 BST
    assert not is_open(plan, utc(2026, 3, 29, 7, 59))
    assert is_open(plan, utc(2026, 3, 29, 8, 0))  # 09:00 BST
    assert not is_open(plan, utc(2026, 3, 29, 16, 0))  # 17:00 BST


def test_london_fall_back_reads_a_repeated_time_as_its_first_occurrence():
    # 2026-10-25 01:00 UTC: clocks go back from 02:00 BST to 01:00 GMT.
    plan = schedule({"sun": "00:00-01:30"}, zone="Europe/London")
    assert is_open(plan, utc(2026, 10, 25, 0, 29))  # 01:29 BST
    assert not is_open(plan, utc(2026, 10, 25, 0, 30))  # 01:30 BST
    assert not is_open(plan, utc(2026, 10, 25, 1, 15))  # 01:15 GMT, the second time round


def test_tokyo_hours_are_nine_hours_ahead_of_utc_all_year():
    plan = schedule({"sun": "09:00-17:00"})
    for moment in (utc(2026, 3, 29, 0, 0), utc(2026, 10, 25, 0, 0)):
        assert is_open(plan, moment)
        assert not is_open(plan, moment - timedelta(seconds=1))


# --- next_opening --------------------------------------------------------------------------


def test_next_opening_skips_the_year_end_closure(desk):
    after_special = jst(2026, 12, 28, 12, 0)
    opening = next_opening(desk, after_special)
    assert opening == jst(2027, 1, 4, 9, 0)
    assert opening.tzinfo == TOKYO


def test_next_opening_over_a_weekend(desk):
    assert next_opening(desk, jst(2026, 6, 5, 18, 0)) == jst(2026, 6, 6, 10, 0)
    assert next_opening(desk, jst(2026, 6, 6, 15, 0)) == jst(2026, 6, 8, 9, 0)
    # Asked in UTC, answered in Tokyo time: Saturday 06:00 UTC is 15:00 JST.
    assert next_opening(desk, utc(2026, 6, 6, 6, 0)) == jst(2026, 6, 8, 9, 0)


def test_next_opening_within_the_day(desk):
    assert next_opening(desk, jst(2026, 6, 2, 12, 30)) == jst(2026, 6, 2, 13, 0)
    assert next_opening(desk, jst(2026, 6, 2, 0, 0)) == jst(2026, 6, 2, 9, 0)


def test_next_opening_is_now_when_already_open(desk):
    moment = jst(2026, 6, 1, 10, 0)
    assert next_opening(desk, moment) == moment
    overnight = schedule({"fri": "18:00-02:00"})
    assert next_opening(overnight, jst(2026, 6, 6, 1, 0)) == jst(2026, 6, 6, 1, 0)
    assert next_opening(overnight, jst(2026, 6, 6, 2, 0)) == jst(2026, 6, 12, 18, 0)


def test_next_opening_gives_up_after_a_year():
    assert next_opening(schedule({}), jst(2026, 6, 1)) is None
    closed_long = schedule(
        {"weekdays": "09:00-18:00"}, holidays=[{"from": "2026-06-01", "to": "2027-06-01"}]
    )
    assert next_opening(closed_long, jst(2026, 6, 1)) is None  # 2027-06-02 09:00 is too far
    closed_a_day_less = schedule(
        {"weekdays": "09:00-18:00"}, holidays=[{"from": "2026-06-01", "to": "2027-05-31"}]
    )
    assert next_opening(closed_a_day_less, jst(2026, 6, 1)) == jst(2027, 6, 1, 9, 0)


def test_next_opening_into_a_skipped_hour_is_the_jump():
    # 01:30 does not exist in London on 2026-03-29; the clock first passes it at 01:00 UTC.
    plan = schedule({"sun": "01:30-05:00"}, zone="Europe/London")
    opening = next_opening(plan, utc(2026, 3, 28, 12, 0))
    assert opening == utc(2026, 3, 29, 1, 0)
    # In UTC, because subtracting from a London datetime would step back in wall-clock time.
    opening = opening.astimezone(UTC)
    assert is_open(plan, opening)
    assert not is_open(plan, opening - timedelta(seconds=1))


# --- describe ------------------------------------------------------------------------------


def test_describe(desk):
    assert describe(desk) == (
        "desk (Asia/Tokyo): Mon, Wed-Fri 09:00-18:00; Tue 09:00-12:00, 13:00-18:00; "
        "Sat 10:00-15:00; Sun closed; 6 holidays; 1 special date"
    )


def test_describe_marks_overnight_and_round_the_clock():
    plan = schedule({"weekdays": "18:00-02:00", "sat": "24h", "sun": "20:00-24:00"})
    assert describe(plan) == (
        "test (Asia/Tokyo): Mon-Fri 18:00-02:00(+1); Sat 24h; Sun 20:00-24:00"
    )


# --- national holiday calendars ------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "name"),
    [
        (date(2026, 1, 1), "元日"),
        (date(2026, 1, 12), "成人の日"),  # second Monday of January
        (date(2026, 5, 6), "振替休日"),  # 憲法記念日 fell on a Sunday
        (date(2026, 9, 22), "国民の休日"),  # between 敬老の日 and 秋分の日
        (date(2027, 3, 22), "振替休日"),  # 春分の日 2027 is a Sunday
    ],
)
def test_japan_calendar_closes_national_holidays(day, name):
    from ivr.policy.schedule import holiday_on

    plan = schedule({"weekdays": "09:00-18:00"}, holidays=["japan"])
    assert holiday_on(plan, day) == name
    assert hours_on(plan, day) == ()
    assert not is_open(plan, datetime.combine(day, time(12, 0), tzinfo=TOKYO))


def test_japan_calendar_alone_and_with_dated_entries():
    from ivr.policy.schedule import holiday_on

    alone = schedule({"weekdays": "09:00-18:00"}, holidays="japan")
    assert alone.calendars == ("japan",) and alone.holidays == {}
    mixed = schedule({"weekdays": "09:00-18:00", "sat": "10:00-15:00"},
                     holidays=["Japan", {"from": "2026-12-29", "to": "2027-01-03",
                                         "name": "年末年始"}])
    assert mixed.calendars == ("japan",)
    assert holiday_on(mixed, date(2026, 12, 30)) == "年末年始"
    assert holiday_on(mixed, date(2027, 1, 1)) == "年末年始"  # the dated entry's name first
    assert holiday_on(mixed, date(2026, 1, 13)) is None  # an ordinary Tuesday
    assert is_open(mixed, jst(2026, 1, 13, 10, 0))
    # Saturday 2026-01-10 after closing: Sunday is closed and Monday 2026-01-12 is 成人の日.
    assert next_opening(mixed, jst(2026, 1, 10, 16, 0)) == jst(2026, 1, 13, 9, 0)
    assert "national holidays: japan" in describe(mixed)
    # Years ahead need no edit of the journey.
    assert holiday_on(alone, date(2030, 1, 14)) == "成人の日"


@pytest.mark.parametrize(
    ("holidays", "path"),
    [("japn", ("holidays",)), (["2026-12-31", "nihon"], ("holidays", 1))],
)
def test_unknown_calendar_is_refused(holidays, path):
    problem = error({"timezone": "Asia/Tokyo", "weekly": {}, "holidays": holidays})
    assert problem.path == path
    assert "unknown holiday calendar" in problem.message and "japan" in problem.message
