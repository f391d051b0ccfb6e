"""Business hours: when the desk is open, from a schedule an operator writes in YAML.

Pure policy: callers pass ``now``; nothing here reads the clock or any file of ours
(zoneinfo loads the tz database, which is the only way to know the offsets).

Decisions, so that announcements and routing agree:

* Times are wall-clock times in the schedule's own zone; ``now`` may be in any zone.
* An interval includes its start and excludes its end.
* An end earlier than its start means the interval runs past midnight into the next day
  ("18:00-02:00"). There is no way to tell that apart from a swapped typo such as
  "18:00-09:00", so it is accepted as an overnight interval; ``describe`` marks such
  intervals "(+1)" so a reviewer sees it. An end equal to its start is refused: write
  "24h" for round the clock.
* An interval belongs to the date it starts on. A Friday "18:00-02:00" stays open until
  Saturday 02:00 even when Saturday is a holiday, and is not opened at all when Friday is.
* Precedence for a date: special hours, then holidays (closed all day), then the weekly plan.
* ``holidays`` lists dated entries and may name national calendars (``japan``), whose dates
  come from the ``holidays`` package for any year (see holiday_calendars.py):
  ``holidays: japan`` or ``holidays: [japan, {from: 2026-12-29, to: 2027-01-03}]``.
* Around DST changes a wall time that happens twice means its first occurrence, and one the
  clocks skip over means the moment of the jump (when the clock first shows a later time).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ivr.policy.holiday_calendars import CALENDARS, calendar_holiday, is_calendar

Interval = tuple[time, time]
Hours = tuple[Interval, ...]
Path = tuple[str | int, ...]

DAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WEEKDAYS_KEY = "weekdays"
CLOSED = "closed"
ROUND_THE_CLOCK = "24h"
# How far next_opening looks: a year, so that an annual closure cannot hide the reopening.
LOOKAHEAD_DAYS = 366
# A holiday range longer than this is almost certainly a mistyped year (2062 for 2026).
MAX_RANGE_DAYS = 366

_TOP_KEYS = frozenset({"timezone", "weekly", "holidays", "special"})
_HOLIDAY_KEYS = frozenset({"date", "from", "to", "name"})
_SPECIAL_KEYS = frozenset({"date", "from", "to", "hours"})
# Japanese schedules are often written 9:00～18:00, so the wave dashes count as separators.
_INTERVAL = re.compile(r"^\s*(\d{1,2}:\d{2})\s*[-~〜～]\s*(\d{1,2}:\d{2})\s*$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_MIDNIGHT = time(0, 0)


class ScheduleError(ValueError):
    """A schedule that cannot be trusted; ``path`` leads to the offending value in ``raw``."""

    def __init__(self, schedule: str, path: Path, message: str) -> None:
        super().__init__(f"schedule {schedule!r}: {_render_path(path) or '(top)'}: {message}")
        self.schedule = schedule
        self.path = path
        self.message = message


# parse_schedule's error factory, which knows the schedule's name.
_Fail = Callable[[Path, str], ScheduleError]


@dataclass(frozen=True)
class Schedule:
    """Opening hours. An interval whose end is not after its start ends on the next day,
    so (00:00, 00:00) is round the clock and (18:00, 00:00) is 18:00 until midnight."""

    name: str
    timezone: str
    weekly: dict[int, Hours]
    holidays: dict[date, str] = field(default_factory=dict)
    special: dict[date, Hours] = field(default_factory=dict)
    # National holiday calendars (CALENDARS), closed on each of their holidays.
    calendars: tuple[str, ...] = ()


# --- parsing -----------------------------------------------------------------------------


def parse_schedule(name: str, raw: Mapping[str, Any]) -> Schedule:
    """Build a Schedule from its YAML form, refusing anything ambiguous or misspelt.

    Holidays may be listed more than once (a date and a range covering it); a named entry
    beats an unnamed one and otherwise the first name given is kept. Unnamed holidays get
    the name "". A date may have special hours only once, since two would contradict.
    """

    def fail(path: Path, message: str) -> ScheduleError:
        return ScheduleError(name, path, message)

    if not isinstance(raw, Mapping):
        raise fail((), f"expected a mapping, got {_kind(raw)}")
    for key in raw:
        if key not in _TOP_KEYS:
            raise fail((_key(key),), f"unknown key (expected one of {_choices(_TOP_KEYS)})")
    if "timezone" not in raw:
        raise fail(("timezone",), "missing")
    if "weekly" not in raw:
        raise fail(("weekly",), "missing (days left out are closed, but say which are open)")

    timezone = _parse_timezone(raw["timezone"], fail)
    weekly = _parse_weekly(raw["weekly"], fail)
    holidays, calendars = _parse_holidays(raw.get("holidays"), fail)
    special = _parse_special(raw.get("special"), fail)
    return Schedule(name, timezone, weekly, holidays, special, calendars)


def _parse_timezone(value: Any, fail: _Fail) -> str:
    path: Path = ("timezone",)
    if not isinstance(value, str) or not value.strip():
        raise fail(path, f"expected an IANA zone name such as Asia/Tokyo, got {_kind(value)}")
    zone = value.strip()
    # Some systems ship a "localtime" entry in the tz database: that is the server's zone,
    # exactly what naming a zone in the schedule is meant to avoid depending on.
    if zone.lower() == "localtime":
        raise fail(path, "name the zone itself (such as Asia/Tokyo), not localtime")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise fail(path, f"unknown timezone {zone!r}") from None
    return zone


def _parse_weekly(value: Any, fail: _Fail) -> dict[int, Hours]:
    if not isinstance(value, Mapping):
        raise fail(("weekly",), f"expected a mapping of days to hours, got {_kind(value)}")
    explicit: dict[int, Hours] = {}
    shorthand: Hours | None = None
    seen: dict[str, Any] = {}
    for key, hours in value.items():
        path: Path = ("weekly", _key(key))
        folded = key.strip().lower() if isinstance(key, str) else None
        if folded not in DAY_KEYS and folded != WEEKDAYS_KEY:
            raise fail(path, f"unknown day {key!r} (expected mon..sun or {WEEKDAYS_KEY})")
        assert folded is not None
        if folded in seen:
            raise fail(path, f"given twice (also as {seen[folded]!r})")
        seen[folded] = key
        parsed = _parse_hours(hours, path, fail)
        if folded == WEEKDAYS_KEY:
            shorthand = parsed
        else:
            explicit[DAY_KEYS.index(folded)] = parsed
    weekly: dict[int, Hours] = {}
    for day in range(7):
        if day in explicit:
            weekly[day] = explicit[day]
        elif shorthand is not None and day < 5:
            weekly[day] = shorthand
        else:
            weekly[day] = ()
    return weekly


def _parse_holidays(value: Any, fail: _Fail) -> tuple[dict[date, str], tuple[str, ...]]:
    if value is None:
        return {}, ()
    if isinstance(value, str):
        # `holidays: japan`: a calendar alone.
        if not is_calendar(value):
            raise fail(("holidays",), _unknown_calendar(value))
        return {}, (value.strip().lower(),)
    if not isinstance(value, list):
        raise fail(("holidays",), f"expected a list, got {_kind(value)}")
    holidays: dict[date, str] = {}
    calendars: list[str] = []
    for index, item in enumerate(value):
        path: Path = ("holidays", index)
        holiday_name = ""
        if is_calendar(item):
            if item.strip().lower() not in calendars:
                calendars.append(item.strip().lower())
            continue
        if isinstance(item, str) and not re.match(r"^\s*\d", item):
            raise fail(path, _unknown_calendar(item))
        if isinstance(item, Mapping):
            _check_keys(item, _HOLIDAY_KEYS, path, fail)
            days = _parse_dates(item, path, fail)
            if "name" in item:
                given = item["name"]
                if not isinstance(given, str):
                    raise fail((*path, "name"), f"expected text, got {_kind(given)}")
                holiday_name = given.strip()
        else:
            days = [_parse_date(item, path, fail)]
        for day in days:
            if not holidays.get(day):
                holidays[day] = holiday_name
    return holidays, tuple(calendars)


def _unknown_calendar(value: str) -> str:
    return (f"unknown holiday calendar {value.strip()!r} (known: {_choices(frozenset(CALENDARS))};"
            " or a date YYYY-MM-DD)")


def _parse_special(value: Any, fail: _Fail) -> dict[date, Hours]:
    if value is None:
        return {}
    if not isinstance(value, list):
        raise fail(("special",), f"expected a list, got {_kind(value)}")
    special: dict[date, Hours] = {}
    first_entry: dict[date, int] = {}
    for index, item in enumerate(value):
        path: Path = ("special", index)
        if not isinstance(item, Mapping):
            raise fail(path, f"expected a mapping with date and hours, got {_kind(item)}")
        _check_keys(item, _SPECIAL_KEYS, path, fail)
        days = _parse_dates(item, path, fail)
        if "hours" not in item:
            raise fail((*path, "hours"), "missing (write closed for a day off)")
        hours = _parse_hours(item["hours"], (*path, "hours"), fail)
        for day in days:
            if day in special:
                where = "date" if "date" in item else "from"
                raise fail(
                    (*path, where),
                    f"{day} already has special hours in entry {first_entry[day]}",
                )
            special[day] = hours
            first_entry[day] = index
    return special


def _check_keys(item: Mapping[Any, Any], allowed: frozenset[str], path: Path, fail: _Fail) -> None:
    for key in item:
        if key not in allowed:
            raise fail((*path, _key(key)), f"unknown key (expected one of {_choices(allowed)})")


def _parse_dates(item: Mapping[Any, Any], path: Path, fail: _Fail) -> list[date]:
    """The dates an entry covers: either ``date`` or an inclusive ``from``..``to``."""
    if "date" in item:
        if "from" in item or "to" in item:
            raise fail((*path, "date"), "give either date or from/to, not both")
        return [_parse_date(item["date"], (*path, "date"), fail)]
    if "from" not in item and "to" not in item:
        raise fail(path, "missing date (or from/to)")
    for key in ("from", "to"):
        if key not in item:
            raise fail((*path, key), "missing")
    start = _parse_date(item["from"], (*path, "from"), fail)
    end = _parse_date(item["to"], (*path, "to"), fail)
    if start > end:
        raise fail((*path, "from"), f"from {start} is after to {end}")
    length = (end - start).days + 1
    if length > MAX_RANGE_DAYS:
        raise fail((*path, "to"), f"range of {length} days is longer than {MAX_RANGE_DAYS}")
    return [start + timedelta(days=offset) for offset in range(length)]


def _parse_date(value: Any, path: Path, fail: _Fail) -> date:
    # PyYAML turns an unquoted 2026-12-31 into a date and "2026-12-31 10:00" into a datetime;
    # the latter names a moment, not a day, so it is refused rather than truncated.
    if isinstance(value, datetime):
        raise fail(path, f"expected a date, got a date and time ({value.isoformat()})")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise fail(path, f"bad date {value!r} (expected YYYY-MM-DD)") from None
    raise fail(path, f"expected a date, got {_kind(value)}")


def _parse_hours(value: Any, path: Path, fail: _Fail) -> Hours:
    # YAML 1.1 reads an unquoted `off` or `no` as False; an operator writing that means closed.
    if value is False:
        return ()
    if isinstance(value, list):
        texts = value
        paths = [(*path, index) for index in range(len(value))]
    elif isinstance(value, str):
        if value.strip().lower() == CLOSED:
            return ()
        texts = value.split(",")
        paths = [path] * len(texts)
    else:
        raise fail(path, f"expected hours such as \"09:00-18:00\" or closed, got {_kind(value)}")
    intervals: list[Interval] = []
    for text, where in zip(texts, paths, strict=True):
        if not isinstance(text, str):
            raise fail(where, f"expected an interval such as \"09:00-18:00\", got {_kind(text)}")
        intervals.append(_parse_interval(text, where, fail))
    return _check_overlaps(tuple(sorted(intervals)), path, fail)


def _parse_interval(text: str, path: Path, fail: _Fail) -> Interval:
    stripped = text.strip()
    if stripped.lower() == ROUND_THE_CLOCK:
        return (_MIDNIGHT, _MIDNIGHT)
    if not stripped:
        raise fail(path, "empty interval (stray comma?)")
    match = _INTERVAL.match(stripped)
    if match is None:
        raise fail(path, f"bad interval {stripped!r} (expected HH:MM-HH:MM, 24h or closed)")
    start_text, end_text = match.groups()
    start_minutes = _parse_minutes(start_text, path, fail)
    end_minutes = _parse_minutes(end_text, path, fail)
    if start_minutes == 24 * 60:
        raise fail(path, f"an interval cannot start at {start_text!r} (write 00:00)")
    if start_minutes == end_minutes:
        raise fail(path, f"{stripped!r} starts and ends at the same time (write 24h if meant)")
    if end_minutes == 24 * 60:
        end_minutes = 0
    return (_to_time(start_minutes), _to_time(end_minutes))


def _parse_minutes(text: str, path: Path, fail: _Fail) -> int:
    match = _TIME.match(text)
    assert match is not None
    hour, minute = int(match[1]), int(match[2])
    if minute > 59 or hour > 24 or (hour == 24 and minute != 0):
        raise fail(path, f"bad time {text!r}")
    return hour * 60 + minute


def _check_overlaps(intervals: Hours, path: Path, fail: _Fail) -> Hours:
    # Overlaps do no harm to is_open, but within one day they point at a typo worth catching.
    for earlier, later in pairwise(intervals):
        if _end_minutes(earlier) > _minutes(later[0]):
            raise fail(
                path, f"intervals {_format_interval(earlier)} and {_format_interval(later)} overlap"
            )
    return intervals


# --- questions ---------------------------------------------------------------------------


def hours_on(schedule: Schedule, day: date) -> Hours:
    """The intervals that start on this local date, after specials and holidays."""
    if day in schedule.special:
        return schedule.special[day]
    if holiday_on(schedule, day) is not None:
        return ()
    return schedule.weekly.get(day.weekday(), ())


def holiday_on(schedule: Schedule, day: date) -> str | None:
    """The holiday's name if the schedule closes ``day`` as a holiday ("" if unnamed):
    a dated entry first, then the national calendars."""
    if day in schedule.holidays:
        return schedule.holidays[day]
    for calendar in schedule.calendars:
        name = calendar_holiday(calendar, day)
        if name is not None:
            return name
    return None


def is_open(schedule: Schedule, now: datetime) -> bool:
    """Whether the desk is open at this moment; ``now`` must carry its timezone."""
    zone = ZoneInfo(schedule.timezone)
    today = _local_date(now, zone)
    # No interval lasts more than a day, so only yesterday's can still be running.
    for day in (today - timedelta(days=1), today):
        for start, end in _instants(schedule, day, zone):
            if start <= now < end:
                return True
    return False


def next_opening(schedule: Schedule, now: datetime) -> datetime | None:
    """The first moment at or after ``now`` when the desk is open, in the schedule's zone.

    That is ``now`` itself when already open, so check is_open first if "we open at ..."
    should only be said when closed. None when nothing opens within LOOKAHEAD_DAYS.
    Arithmetic on the result should be done in UTC: Python adds to an aware datetime in
    wall-clock terms, which is wrong across a DST change.
    """
    zone = ZoneInfo(schedule.timezone)
    today = _local_date(now, zone)
    horizon = now + timedelta(days=LOOKAHEAD_DAYS)
    for offset in range(-1, LOOKAHEAD_DAYS + 1):
        # Days are scanned in order and each starts after every earlier day's openings,
        # so the first day with a candidate holds the answer.
        candidates = [
            max(start, now)
            for start, end in _instants(schedule, today + timedelta(days=offset), zone)
            if end > now and start < end
        ]
        if candidates:
            opening = min(candidates)
            return opening.astimezone(zone) if opening <= horizon else None
    return None


def describe(schedule: Schedule) -> str:
    """One line for logs and the admin page, e.g.
    ``support (Asia/Tokyo): Mon-Fri 09:00-18:00; Sat-Sun closed; 6 holidays``."""
    groups: dict[Hours, list[int]] = {}
    for day in range(7):
        groups.setdefault(schedule.weekly.get(day, ()), []).append(day)
    parts = [
        f"{_format_days(days)} {_format_hours(hours)}"
        for hours, days in sorted(groups.items(), key=lambda item: item[1][0])
    ]
    if schedule.holidays:
        parts.append(_count(len(schedule.holidays), "holiday"))
    if schedule.calendars:
        parts.append("national holidays: " + ", ".join(schedule.calendars))
    if schedule.special:
        parts.append(_count(len(schedule.special), "special date"))
    return f"{schedule.name} ({schedule.timezone}): " + "; ".join(parts)


# --- helpers -----------------------------------------------------------------------------


def _local_date(now: datetime, zone: ZoneInfo) -> date:
    if now.tzinfo is None or now.utcoffset() is None:
        # A naive time would silently be read in the server's zone, which is the bug to avoid.
        raise ValueError("now must be timezone-aware")
    return now.astimezone(zone).date()


def _instants(schedule: Schedule, day: date, zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
    spans = []
    for start, end in hours_on(schedule, day):
        end_day = day if end > start else day + timedelta(days=1)
        spans.append((_instant(day, start, zone), _instant(end_day, end, zone)))
    return spans


def _instant(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The moment a wall clock in ``zone`` first shows ``clock`` on ``day`` (in UTC)."""
    wall = datetime.combine(day, clock)
    first = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the first of a repeated hour
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # The clocks jumped over this time. With fold=1 it is read with the later offset, which
    # lands before the jump; fold=0 lands after. Bisect for the jump between them.
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = int(first.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _minutes(clock: time) -> int:
    return clock.hour * 60 + clock.minute


def _end_minutes(interval: Interval) -> int:
    """Minutes after the start day's midnight, so overnight ends exceed a day."""
    start, end = interval
    return _minutes(end) + (0 if end > start else 24 * 60)


def _to_time(minutes: int) -> time:
    return time(minutes // 60, minutes % 60)


def _format_interval(interval: Interval) -> str:
    start, end = interval
    if interval == (_MIDNIGHT, _MIDNIGHT):
        return ROUND_THE_CLOCK
    if end == _MIDNIGHT:
        return f"{start:%H:%M}-24:00"
    return f"{start:%H:%M}-{end:%H:%M}" + ("" if end > start else "(+1)")


def _format_hours(hours: Hours) -> str:
    return ", ".join(_format_interval(interval) for interval in hours) if hours else CLOSED


def _format_days(days: list[int]) -> str:
    runs: list[list[int]] = []
    for day in days:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ", ".join(
        DAY_NAMES[run[0]] if len(run) == 1 else f"{DAY_NAMES[run[0]]}-{DAY_NAMES[run[-1]]}"
        for run in runs
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _render_path(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _key(key: Any) -> str | int:
    return key if isinstance(key, str | int) and not isinstance(key, bool) else repr(key)


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def _choices(options: frozenset[str]) -> str:
    return ", ".join(sorted(options))
