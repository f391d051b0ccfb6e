"""Schedules in words, for logs and the admin pages: one line per schedule."""

from __future__ import annotations

from ivr.policy.schedule import CLOSED, DAY_NAMES, Hours, Schedule, format_interval


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


def _format_hours(hours: Hours) -> str:
    return ", ".join(format_interval(interval) for interval in hours) if hours else CLOSED


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
