"""AMI events the controller follows, as frozen dataclasses (the rest are ignored)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote

log = logging.getLogger("ivr.ami")


def _endpoint(interface: str) -> str:
    """'PJSIP/op1001', 'PJSIP/op1001-0000002a' or the queue member
    'Local/op1001@ivr-member/n' (channel 'Local/op1001@ivr-member-0000001f;1') -> 'op1001'."""
    name = interface.split("/", 1)[-1]
    if interface.startswith("Local/"):
        return name.split("@", 1)[0]
    head, sep, tail = name.rpartition("-")
    if sep and len(tail) == 8 and all(c in "0123456789abcdef" for c in tail):
        return head
    return name


@dataclass(frozen=True)
class CallStart:
    """UserEvent IvrCallStart, sent by the dialplan as soon as recording runs.

    call_id is the event's own Uniqueid and caller its CallerIDNum (both written by
    Asterisk); did arrives URI-encoded. No field is taken from caller-supplied text that
    went through the dialplan's argument splitting."""

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
class NoticeFallback:
    """UserEvent IvrNoticeFallback: the dialplan played the fallback notice instead."""

    call_id: str
    prompt: str
    problem: str
    at: float | None = None


@dataclass(frozen=True)
class NoticeFailed:
    """UserEvent IvrNoticeFailed: no notice could be played; the call is hung up."""

    call_id: str
    source: str  # "controller" (already recorded by it) or "dialplan" (fail-safe path)
    problem: str
    at: float | None = None


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
    channel: str = ""  # the caller's channel (Asterisk's name)
    member_channel: str = ""  # the queue member's channel in the caller's bridge


@dataclass(frozen=True)
class LiveSound:
    """UserEvent IvrLiveWarning / IvrLiveWarningEnd / IvrLiveBeep from [ivr-live-whisper]:
    a live-protection sound the controller ordered starts (or ends) now. It runs on a Local
    channel of its own, so the call is the CallId the controller handed it (checked against
    the calls it follows)."""

    call_id: str
    kind: str  # "warning", "warning_end" or "beep"
    prompt: str = ""
    status: str = ""
    at: float | None = None


LIVE_SOUNDS = {"IvrLiveWarning": "warning", "IvrLiveWarningEnd": "warning_end",
               "IvrLiveBeep": "beep"}
# UserEvents the controller sends itself (alerts for supervisors' tools): not followed.
OWN_USER_EVENTS = frozenset({"IvrShout"})


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
        # The operator's phone, or the queue member's Local channel when the phone hung up
        # and [ivr-member] ended (Local/op1001@ivr-member-0000001f;1).
        if self.source.startswith("PJSIP/") or (
                self.source.startswith("Local/") and "@ivr-member-" in self.source):
            return "operator"
        return "system"


@dataclass(frozen=True)
class FeatureUsed:
    """UserEvent IvrFeature: an operator feature code ran (asterisk/extensions.conf.j2,
    [ivr-feature-*]). It may come from the operator's side or a transfer channel, so the call
    is the event's Linkedid (Asterisk's own: the customer channel roots it)."""

    call_id: str
    feature: str  # one of FEATURE_EVENTS
    channel: str
    prompt: str = ""
    desk: str = ""
    status: str = ""
    at: float | None = None


FEATURE_EVENTS = frozenset({"flag", "notice", "notice_end", "escalate", "end_and_refuse",
                            "end_and_refuse_withheld"})


@dataclass(frozen=True)
class TalkLimitReached:
    """UserEvent IvrTalkLimit from [ivr-limit-closing], on the caller's channel: Dial's
    talk-time limit ended the conversation; the closing announcement plays now."""

    call_id: str
    operator: str
    prompt: str
    at: float | None = None
    limit: float | None = None  # seconds, as the dialplan applied it
    warning: float | None = None
    warning_prompt: str = ""


@dataclass(frozen=True)
class IvrTimeCap:
    """UserEvent IvrTimeCap from [ivr-cap-reached]: the caller spent the most time allowed
    in menus and queues; goodbye and hang-up."""

    call_id: str
    seconds: float
    at: float | None = None


AmiEvent = (
    FeatureUsed
    | CallStart
    | HangupSource
    | TalkLimitReached
    | IvrTimeCap
    | Failsafe
    | NoticeFallback
    | NoticeFailed
    | QueueResult
    | QueueCallerJoin
    | AgentCalled
    | AgentConnect
    | LiveSound
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


def _single(msg: Mapping[str, Any], key: str) -> str | None:
    """One header's value; None when missing or repeated (panoramisk makes a list of a
    header that appears twice: someone managed to add one, trust neither)."""
    value = msg.get(key)
    if value is None or isinstance(value, str):
        return value
    return None


def _user_event(kind: str, msg: Mapping[str, Any]) -> AmiEvent | None:
    if kind in OWN_USER_EVENTS:
        return None
    if kind in LIVE_SOUNDS:
        claimed = _single(msg, "CallId") or ""
        return LiveSound(claimed, LIVE_SOUNDS[kind], _single(msg, "Prompt") or "",
                         _single(msg, "Status") or "") if claimed else None
    call_id = _single(msg, "Uniqueid")
    if not call_id:
        log.warning("event=ami_user_event_refused kind=%s reason=no single Uniqueid", kind)
        return None
    claimed = _single(msg, "CallId")
    if claimed is not None and claimed != call_id:
        log.warning("event=ami_user_event_call_id_mismatch kind=%s uniqueid=%s callid=%r",
                    kind, call_id, claimed)

    def get(key: str) -> str:
        return _single(msg, key) or ""

    if kind == "IvrCallStart":
        return CallStart(call_id, get("CallerIDNum"), unquote(get("Did")), get("Recording"))
    if kind == "IvrFailsafe":
        return Failsafe(call_id, get("AgiStatus"), get("Action"))
    if kind == "IvrNoticeFallback":
        return NoticeFallback(call_id, get("Prompt"), get("Problem"))
    if kind == "IvrNoticeFailed":
        return NoticeFailed(call_id, get("Source"), get("Problem"))
    if kind == "IvrHangup":
        # Channel and hangup source are Asterisk's own channel names, never caller text.
        return HangupSource(call_id, get("Channel"), get("Source"))
    if kind == "IvrTalkLimit":
        # End: "limit <operator> <answered ms>" from [ivr-member] (operator names filtered).
        parts = get("End").split()
        return TalkLimitReached(call_id, parts[1] if len(parts) > 1 else "", get("Prompt"),
                                limit=_int(get("Limit")) / 1000 or None,
                                warning=_int(get("Warning")) / 1000 or None,
                                warning_prompt=get("WarningPrompt"))
    if kind == "IvrTimeCap":
        return IvrTimeCap(call_id, float(_int(get("Seconds"))))
    if kind == "IvrQueueResult":
        return QueueResult(call_id, get("Queue"), get("Status"))
    return None


def _feature(msg: Mapping[str, Any]) -> FeatureUsed | None:
    call_id = _single(msg, "Linkedid") or ""
    feature = _single(msg, "Feature") or ""
    if not call_id or feature not in FEATURE_EVENTS:
        log.warning("event=ami_feature_refused linkedid=%r feature=%r", call_id, feature[:40])
        return None
    return FeatureUsed(call_id, feature, _single(msg, "Channel") or "",
                       prompt=_single(msg, "Prompt") or "", desk=_single(msg, "Desk") or "",
                       status=_single(msg, "Status") or "")


def parse_event(msg: Mapping[str, Any]) -> AmiEvent | None:
    """Turn one AMI message into a typed event; None for events the controller ignores."""
    event = _parse(msg)
    at = _timestamp(_single(msg, "Timestamp"))
    if event is None or at is None:
        return event
    return replace(event, at=at)


def _parse(msg: Mapping[str, str]) -> AmiEvent | None:
    name = msg.get("Event", "")

    def get(key: str, default: str = "") -> str:
        return _single(msg, key) or default

    if name == "UserEvent" and get("UserEvent") == "IvrFeature":
        return _feature(msg)
    if name == "UserEvent":
        return _user_event(get("UserEvent"), msg)
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
            channel=get("Channel", ""),
            member_channel=get("DestChannel", ""),
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
