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
  come from the ``holidays`` package for any year (see holiday_calendars.py). Reading the
  YAML is in schedule_parse.py, the one-line description in schedule_text.py:
  ``holidays: japan`` or ``holidays: [japan, {from: 2026-12-29, to: 2027-01-03}]``.
* Around DST changes a wall time that happens twice means its first occurrence, and one the
  clocks skip over means the moment of the jump (when the clock first shows a later time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ivr.policy.holiday_calendars import calendar_holiday

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


def format_interval(interval: Interval) -> str:
    start, end = interval
    if interval == (_MIDNIGHT, _MIDNIGHT):
        return ROUND_THE_CLOCK
    if end == _MIDNIGHT:
        return f"{start:%H:%M}-24:00"
    return f"{start:%H:%M}-{end:%H:%M}" + ("" if end > start else "(+1)")


def _render_path(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
