"""AMI events the controller follows, as frozen dataclasses (the rest are ignored)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


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


@dataclass(frozen=True)
class Failsafe:
    call_id: str
    agi_status: str
    action: str


@dataclass(frozen=True)
class NoticeFallback:
    """UserEvent IvrNoticeFallback: the dialplan played the fallback notice instead."""

    call_id: str
    prompt: str
    problem: str


@dataclass(frozen=True)
class NoticeFailed:
    """UserEvent IvrNoticeFailed: no notice could be played; the call is hung up."""

    call_id: str
    source: str  # "controller" (already recorded by it) or "dialplan" (fail-safe path)
    problem: str


@dataclass(frozen=True)
class QueueResult:
    call_id: str
    queue: str
    status: str


@dataclass(frozen=True)
class QueueCallerJoin:
    call_id: str
    queue: str
    position: int


@dataclass(frozen=True)
class AgentCalled:
    call_id: str
    queue: str
    operator: str


@dataclass(frozen=True)
class AgentConnect:
    call_id: str
    queue: str
    operator: str
    hold_time: int
    ring_time: int


@dataclass(frozen=True)
class AgentComplete:
    call_id: str
    queue: str
    operator: str
    reason: str  # "caller", "agent" or "transfer"


@dataclass(frozen=True)
class QueueCallerAbandon:
    call_id: str
    queue: str
    hold_time: int


@dataclass(frozen=True)
class Hangup:
    unique_id: str
    linked_id: str
    channel: str
    cause: int
    cause_text: str


AmiEvent = (
    CallStart
    | Failsafe
    | NoticeFallback
    | NoticeFailed
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


def parse_event(msg: Mapping[str, str]) -> AmiEvent | None:
    """Turn one AMI message into a typed event; None for events the controller ignores."""
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
        if kind == "IvrNoticeFallback":
            return NoticeFallback(get("CallId", ""), get("Prompt", ""), get("Problem", ""))
        if kind == "IvrNoticeFailed":
            return NoticeFailed(get("CallId", ""), get("Source", ""), get("Problem", ""))
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
