"""Reading a schedule from the journey's YAML: every value checked, errors with its path.

Pure: the same text always gives the same Schedule (policy.schedule answers questions
about it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ivr.policy.holiday_calendars import CALENDARS, is_calendar
from ivr.policy.schedule import (
    _MIDNIGHT,
    CLOSED,
    DAY_KEYS,
    MAX_RANGE_DAYS,
    ROUND_THE_CLOCK,
    WEEKDAYS_KEY,
    Hours,
    Interval,
    Path,
    Schedule,
    ScheduleError,
    _end_minutes,
    _Fail,
    _minutes,
    _to_time,
    format_interval,
)

_TOP_KEYS = frozenset({"timezone", "weekly", "holidays", "special"})
_HOLIDAY_KEYS = frozenset({"date", "from", "to", "name"})
_SPECIAL_KEYS = frozenset({"date", "from", "to", "hours"})
# Japanese schedules are often written 9:00～18:00, so the wave dashes count as separators.
_INTERVAL = re.compile(r"^\s*(\d{1,2}:\d{2})\s*[-~〜～]\s*(\d{1,2}:\d{2})\s*$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")

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
                path, f"intervals {format_interval(earlier)} and {format_interval(later)} overlap"
            )
    return intervals


# --- questions ---------------------------------------------------------------------------



def _key(key: Any) -> str | int:
    return key if isinstance(key, str | int) and not isinstance(key, bool) else repr(key)


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def _choices(options: frozenset[str]) -> str:
    return ", ".join(sorted(options))
