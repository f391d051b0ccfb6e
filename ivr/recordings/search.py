"""Searching the recordings index: a validated query (RecordingQuery) and the SQL it means.

Pure: no I/O. The service (ivr/recordings/service_search.py) runs the statements on
RecordingIndex.select; the CLI and the API both hand it the same query, so a filter means the
same thing at every edge. Bad input raises AdminError naming the parameter at fault.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from ivr.policy.callerid import DEFAULT_COUNTRY, normalise_number
from ivr.protection.admin_errors import AdminError
from ivr.recordings.store_index import State
from ivr.store.tables import recordings, to_datetime

MAX_PER_PAGE = 500
# An Asterisk unique id (1764000000.42, or with a system-name prefix). Nothing else is a call
# id: no separators a path could use, no leading dot, no "..".
CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
KINDS = ("call", "called")  # a call's own recording; an outbound call's far end
STATES = (State.RECORDING, State.FINAL, State.MISSING, State.EXPIRED)
_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:+-]{0,63}$")  # desk, operator, outcome, flag
_AGO = re.compile(r"^(\d{1,5})\s*([mhdw])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def valid_call_id(value: object) -> bool:
    return isinstance(value, str) and bool(CALL_ID.match(value)) and ".." not in value


def check_call_id(value: object, field: str = "call_id") -> str:
    """The call id, or AdminError(400): nothing else may go near the index or a file."""
    if not valid_call_id(value):
        raise AdminError("not a call id (letters, digits, '.', '_', '-'; up to 128)",
                         field=field, status=400)
    return str(value)


def parse_when(raw: str, *, end: bool, now: float) -> float:
    """Epoch seconds; an ISO 8601 time (UTC without a zone); a date (its start, or with
    `end` its end); or an age: 30m, 12h, 7d, 2w ago."""
    text = raw.strip()
    ago = _AGO.match(text)
    if ago:
        return now - int(ago.group(1)) * _UNITS[ago.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("a time is epoch seconds, ISO 8601 (2026-11-25 or "
                         "2026-11-25T09:00:00+09:00) or an age (30m, 12h, 7d, 2w)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if end and len(text) == 10:  # a bare date: through the end of that day
        when += timedelta(days=1)
    return when.timestamp()


class RecordingQuery(BaseModel):
    """What to look for; every filter is optional and they combine with AND."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    number: str | None = None  # the caller's or the dialled number, any written form
    desk: str | None = None
    operator: str | None = None  # extension / operator name as the call record has it
    since: float | None = None  # started at or after (epoch seconds)
    until: float | None = None  # started before
    outcome: str | None = None
    flag: str | None = None  # one flag of the row's space-separated flags
    min_duration: float | None = None  # seconds
    max_duration: float | None = None
    shouting: bool | None = None  # True: analysed with shouting; False: analysed without
    state: str | None = None
    kind: str | None = None
    page: int = 1
    per_page: int = 50

    @field_validator("desk", "operator", "outcome", "flag")
    @classmethod
    def _word(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _WORD.match(value):
            raise ValueError("letters, digits and _ . @ : + - only (up to 64)")
        return value

    @field_validator("number")
    @classmethod
    def _number(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or len(value) > 64):
            raise ValueError("a phone number, up to 64 characters")
        return value

    @field_validator("min_duration", "max_duration")
    @classmethod
    def _duration(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value <= 7 * 86400:
            raise ValueError("seconds between 0 and 604800")
        return value

    @field_validator("state")
    @classmethod
    def _state(cls, value: str | None) -> str | None:
        if value is not None and value not in STATES:
            raise ValueError(f"one of {', '.join(STATES)}")
        return value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str | None) -> str | None:
        if value is not None and value not in KINDS:
            raise ValueError(f"one of {', '.join(KINDS)}")
        return value

    @field_validator("page")
    @classmethod
    def _page(cls, value: int) -> int:
        if not 1 <= value <= 1_000_000:
            raise ValueError("a whole number from 1")
        return value

    @field_validator("per_page")
    @classmethod
    def _per_page(cls, value: int) -> int:
        if not 1 <= value <= MAX_PER_PAGE:
            raise ValueError(f"a whole number from 1 to {MAX_PER_PAGE}")
        return value

    @model_validator(mode="after")
    def _ranges(self) -> RecordingQuery:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("to: must be later than from")
        if (self.min_duration is not None and self.max_duration is not None
                and self.min_duration > self.max_duration):
            raise ValueError("max_duration: must not be less than min_duration")
        return self

    def filters(self) -> dict[str, Any]:
        """The filters given (for the access log and the reply)."""
        return self.model_dump(exclude_none=True, exclude={"page", "per_page"})


# The outside names of the parameters (CLI options and API query) -> the model's fields.
PARAMETERS = {"number": "number", "desk": "desk", "operator": "operator", "from": "since",
              "to": "until", "outcome": "outcome", "flag": "flag",
              "min_duration": "min_duration", "max_duration": "max_duration",
              "shouting": "shouting", "state": "state", "kind": "kind", "page": "page",
              "per_page": "per_page"}
_OUTSIDE = {inside: outside for outside, inside in PARAMETERS.items()}
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def build_query(params: dict[str, Any], *, now: float | None = None) -> RecordingQuery:
    """A RecordingQuery from outside parameters (strings from a URL, or CLI values); an
    AdminError (422, or 400 for an unknown parameter) names the parameter at fault."""
    now = time.time() if now is None else now
    values: dict[str, Any] = {}
    for name, raw in params.items():
        key = name.replace("-", "_")
        if key not in PARAMETERS:
            raise AdminError(f"unknown parameter {name[:40]!r}; known: "
                             f"{', '.join(sorted(PARAMETERS))}", field=name[:40], status=400)
        if raw is None or raw == "":
            continue
        if isinstance(raw, str) and "\x00" in raw:
            raise AdminError(f"{key}: NUL byte", field=key, status=400)
        if key in ("from", "to") and isinstance(raw, str):
            try:
                raw = parse_when(raw, end=key == "to", now=now)
            except ValueError as exc:
                raise AdminError(f"{key}: {exc}", field=key) from None
        if key == "shouting" and isinstance(raw, str):
            if raw.lower() not in _TRUE | _FALSE:
                raise AdminError("shouting: true or false", field=key)
            raw = raw.lower() in _TRUE
        values[PARAMETERS[key]] = raw
    try:
        return RecordingQuery(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = _OUTSIDE.get(str(error["loc"][0]), str(error["loc"][0])) if error["loc"] else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        if not field:  # a check across fields names its own ("to: ...")
            field, _, message = message.partition(": ")
        raise AdminError(f"{field}: {message}", field=field) from None


def number_forms(raw: str, country: str = DEFAULT_COUNTRY) -> list[str]:
    """The stored form of a number as the block list normalises it; AdminError if it is no
    number at all."""
    number = normalise_number(raw, country)
    if number is None:
        raise AdminError("number: not a phone number (digits, '+', separators)",
                         field="number")
    return [number]


def where_clauses(query: RecordingQuery, country: str = DEFAULT_COUNTRY) -> list[Any]:
    c = recordings.c
    where: list[Any] = []
    if query.number is not None:
        forms = number_forms(query.number, country)
        where.append(sa.or_(c.caller.in_(forms), c.did.in_(forms)))
    if query.desk is not None:
        where.append(c.desk == query.desk)
    if query.operator is not None:
        where.append(c.operator == query.operator)
    if query.since is not None:
        where.append(c.started_at >= to_datetime(query.since))
    if query.until is not None:
        where.append(c.started_at < to_datetime(query.until))
    if query.outcome is not None:
        where.append(c.outcome == query.outcome)
    if query.flag is not None:  # whole words of the space-separated list, LIKE-safe
        padded = sa.literal(" ") + c.flags + sa.literal(" ")
        where.append(padded.contains(f" {query.flag} ", autoescape=True))
    if query.min_duration is not None:
        where.append(c.duration >= query.min_duration)
    if query.max_duration is not None:
        where.append(c.duration <= query.max_duration)
    if query.shouting is True:
        where.append(c.shouting > 0)
    elif query.shouting is False:
        where.append(sa.and_(c.analysis_state == "done", sa.func.coalesce(c.shouting, 0) == 0))
    if query.state is not None:
        where.append(c.state == query.state)
    if query.kind is not None:
        where.append(c.kind == query.kind)
    return where


def page_statement(query: RecordingQuery, country: str = DEFAULT_COUNTRY) -> sa.Select[Any]:
    """One page, newest first (rows without a start time last, then by id)."""
    return (sa.select(recordings).where(*where_clauses(query, country))
            .order_by(recordings.c.started_at.desc().nulls_last(), recordings.c.id.desc())
            .limit(query.per_page).offset((query.page - 1) * query.per_page))


def count_statement(query: RecordingQuery, country: str = DEFAULT_COUNTRY) -> sa.Select[Any]:
    return (sa.select(sa.func.count()).select_from(recordings)
            .where(*where_clauses(query, country)))
