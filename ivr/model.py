"""The call record: what the controller knows about one call, and its public JSON shape."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    ANSWERED = "answered"
    ABANDONED_IN_MENU = "abandoned_in_menu"
    ABANDONED_IN_QUEUE = "abandoned_in_queue"
    CLOSED_HOURS = "closed_hours"
    OVERFLOWED = "overflowed"
    MESSAGE = "message"
    FAILED = "failed"
    REFUSED = "refused"  # a restriction ended it (block list, withheld, repeat, outbound rule)
    UNANSWERED = "unanswered"  # outbound: the called party never answered (busy, no answer)


class Disposition(StrEnum):
    """How the controller ended the IVR part of a call (before any operator)."""

    QUEUED = "queued"
    CLOSED = "closed"
    MESSAGE = "message"
    OVERFLOW = "overflow"
    HANGUP = "hangup"
    NOTICE_FAILED = "notice_failed"  # no notice could be played: hung up, no operator
    REFUSED = "refused"  # a restriction refused the call (the record's `rule` says which)
    DIALLED = "dialled"  # outbound: sent to the trunk


class Source(StrEnum):
    """Who first told the store about the call."""

    CONTROLLER = "controller"  # the FastAGI handler
    AMI = "ami"  # AMI events only (FastAGI failed)
    CDR = "cdr"  # imported from Asterisk's CDR file (controller was down)


TIME_FIELDS = (
    "started_at",
    "answered_at",
    "notice_started_at",
    "notice_ended_at",
    "queue_joined_at",
    "connected_at",
    "ended_at",
)


@dataclass(frozen=True)
class CallRecord:
    id: str
    node: str
    direction: str
    caller: str | None
    caller_name: str | None
    did: str | None
    started_at: float
    answered_at: float | None
    notice_started_at: float | None
    notice_ended_at: float | None
    queue_joined_at: float | None
    connected_at: float | None
    ended_at: float | None
    desk: str | None
    operator: str | None
    outcome: str | None
    hangup_cause: int | None
    hangup_by: str | None
    recording_path: str | None
    recording_duration: float | None
    recording_sha256: str | None
    failsafe: bool
    source: str
    updated_at: float
    entry: str | None = None
    language: str | None = None
    menu_path: str | None = None
    disposition: str | None = None
    overflow_from: str | None = None
    rule: str | None = None
    flags: str | None = None
    repeat_count: int | None = None
    talk_limit: float | None = None

    @classmethod
    def from_row(cls, row: Any) -> CallRecord:
        """From a row of the calls table (any mapping); times may be datetimes (the store's
        columns) or epoch seconds, and become epoch seconds."""
        keys = row.keys()
        values = {f.name: _seconds(row[f.name]) for f in fields(cls) if f.name in keys}
        values["failsafe"] = bool(values["failsafe"])
        return cls(**values)

    @property
    def wait_seconds(self) -> float | None:
        if self.queue_joined_at is None:
            return None
        end = self.connected_at or self.ended_at
        return None if end is None else round(end - self.queue_joined_at, 3)

    @property
    def talk_seconds(self) -> float | None:
        if self.connected_at is None or self.ended_at is None:
            return None
        return round(self.ended_at - self.connected_at, 3)

    def to_json(self) -> dict[str, Any]:
        """The documented shape of `ivr calls --json` and the API (see README)."""
        data = asdict(self)
        data.pop("updated_at")
        for name in TIME_FIELDS:
            data[name] = iso(data[name])
        data["wait_seconds"] = self.wait_seconds
        data["talk_seconds"] = self.talk_seconds
        return data


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def _seconds(value: Any) -> Any:
    if not isinstance(value, datetime):
        return value
    # SQLite hands timestamps back without a zone; the store writes them in UTC.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
