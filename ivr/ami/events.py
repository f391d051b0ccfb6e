"""AMI events the controller follows, as frozen dataclasses (the rest are ignored)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace


def _endpoint(interface: str) -> str:
    """'PJSIP/op1001' or 'PJSIP/op1001-0000002a' -> 'op1001'."""
    name = interface.split("/", 1)[-1]
    head, sep, tail = name.rpartition("-")
    if sep and len(tail) == 8 and all(c in "0123456789abcdef" for c in tail):
        return head
    return name


@dataclass(frozen=True)
class CallStart:
    """UserEvent IvrCallStart, sent by the dialplan as soon as recording runs."""

    call_id: str
    caller: str
    did: str
    recording: str
    at: float | None = None


@dataclass(frozen=True)
class Failsafe:
    call_id: str
    agi_status: str
    action: str
    at: float | None = None  # Asterisk's own time of the event (timestampevents)


@dataclass(frozen=True)
class QueueResult:
    call_id: str
    queue: str
    status: str
    at: float | None = None  # Asterisk's own time of the event (timestampevents)


@dataclass(frozen=True)
class QueueCallerJoin:
    call_id: str
    queue: str
    position: int
    at: float | None = None  # Asterisk's own time of the event (timestampevents)


@dataclass(frozen=True)
class AgentCalled:
    call_id: str
    queue: str
    operator: str
    at: float | None = None  # Asterisk's own time of the event (timestampevents)


@dataclass(frozen=True)
class AgentConnect:
    call_id: str
    queue: str
    operator: str
    hold_time: int
    ring_time: int
    at: float | None = None  # Asterisk's own time of the event (timestampevents)


@dataclass(frozen=True)
class AgentComplete:
    call_id: str
    queue: str
    operator: str
    reason: str  # "caller", "agent" or "transfer"
    at: float | None = None  # Asterisk's own time of the event (timestampevents)


@dataclass(frozen=True)
class QueueCallerAbandon:
    call_id: str
    queue: str
    hold_time: int
    at: float | None = None  # Asterisk's own time of the event (timestampevents)


@dataclass(frozen=True)
class Hangup:
    unique_id: str
    linked_id: str
    channel: str
    cause: int
    cause_text: str
    at: float | None = None  # Asterisk's own time of the event (timestampevents)


@dataclass(frozen=True)
class HangupSource:
    """UserEvent IvrHangup from the caller channel's hangup handler: which channel ended the
    call (CHANNEL(hangupsource)), compared with the caller's own channel."""

    call_id: str
    channel: str
    source: str
    at: float | None = None

    @property
    def side(self) -> str:
        """'caller' (their own channel hung up), 'operator' (another SIP channel's hang-up
        ended the bridge) or 'system' (the dialplan's Hangup(), measured as
        'dialplan/builtin', or no source at all)."""
        if self.source and self.source == self.channel:
            return "caller"
        if self.source.startswith("PJSIP/"):
            return "operator"
        return "system"


AmiEvent = (
    CallStart
    | HangupSource
    | Failsafe
    | QueueResult
    | QueueCallerJoin
    | AgentCalled
    | AgentConnect
    | AgentComplete
    | QueueCallerAbandon
    | Hangup
)


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _timestamp(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def parse_event(msg: Mapping[str, str]) -> AmiEvent | None:
    """Turn one AMI message into a typed event; None for events the controller ignores."""
    event = _parse(msg)
    at = _timestamp(msg.get("Timestamp"))
    if event is None or at is None:
        return event
    return replace(event, at=at)


def _parse(msg: Mapping[str, str]) -> AmiEvent | None:
    name = msg.get("Event", "")
    get = msg.get
    if name == "UserEvent":
        kind = get("UserEvent", "")
        if kind == "IvrCallStart":
            return CallStart(
                get("CallId", ""), get("Caller", ""), get("Did", ""), get("Recording", "")
            )
        if kind == "IvrFailsafe":
            return Failsafe(get("CallId", ""), get("AgiStatus", ""), get("Action", ""))
        if kind == "IvrHangup":
            # The channel fields of a UserEvent are Asterisk's own, never caller text.
            return HangupSource(get("Uniqueid", ""), get("Channel", ""), get("Source", ""))
        if kind == "IvrQueueResult":
            return QueueResult(get("CallId", ""), get("Queue", ""), get("Status", ""))
        return None
    if name == "QueueCallerJoin":
        return QueueCallerJoin(get("Uniqueid", ""), get("Queue", ""), _int(get("Position")))
    if name == "AgentCalled":
        return AgentCalled(
            get("Uniqueid", ""), get("Queue", ""), _endpoint(get("Interface", ""))
        )
    if name == "AgentConnect":
        return AgentConnect(
            get("Uniqueid", ""),
            get("Queue", ""),
            _endpoint(get("Interface", "")),
            _int(get("HoldTime")),
            _int(get("RingTime")),
        )
    if name == "AgentComplete":
        return AgentComplete(
            get("Uniqueid", ""), get("Queue", ""), _endpoint(get("Interface", "")),
            get("Reason", ""),
        )
    if name == "QueueCallerAbandon":
        return QueueCallerAbandon(get("Uniqueid", ""), get("Queue", ""), _int(get("HoldTime")))
    if name == "Hangup":
        return Hangup(
            get("Uniqueid", ""),
            get("Linkedid", ""),
            get("Channel", ""),
            _int(get("Cause")),
            get("Cause-txt", ""),
        )
    return None
