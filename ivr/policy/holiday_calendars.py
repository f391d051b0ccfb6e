"""National holiday calendars a schedule can name (``holidays: [japan, ...]``).

The dates come from the ``holidays`` package (python-holidays, pinned in pyproject.toml),
which follows each country's law: for Japan 振替休日 (a holiday falling on a Sunday moves
to the next working day), 国民の休日 (a day between two holidays) and the equinoxes as
announced. Years are computed on demand, so a schedule stays right in years to come
without editing the journey; upgrade the package when the law changes.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from typing import Final

import holidays

__all__ = ["CALENDARS", "calendar_holiday", "is_calendar"]

# name in the journey -> (python-holidays country code, language of the holiday names)
CALENDARS: Final[dict[str, tuple[str, str]]] = {"japan": ("JP", "ja")}


def is_calendar(name: object) -> bool:
    return isinstance(name, str) and name.strip().lower() in CALENDARS


@cache
def _calendar(name: str) -> holidays.HolidayBase:
    country, language = CALENDARS[name]
    return holidays.country_holidays(country, language=language)


def calendar_holiday(name: str, day: date) -> str | None:
    """The holiday's name (in the calendar's language) if ``day`` is one, else None."""
    found = _calendar(name).get(day)
    return None if found is None else str(found)
