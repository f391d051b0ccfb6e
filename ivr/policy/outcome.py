"""How a call ended, decided from the facts the record and its timeline hold.

Pure: the store calls `decide_ending` inside the one transaction that closes the call, with
the call's events in the order Asterisk reported them, so the result never depends on which
of two tasks (the FastAGI handler, the AMI tracker) happened to write first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ivr.model import Disposition, Outcome

# QUEUESTATUS values after which the caller did not reach anyone through no fault of theirs.
OVERFLOW_STATUSES = frozenset(
    {"TIMEOUT", "FULL", "JOINEMPTY", "LEAVEEMPTY", "JOINUNAVAIL", "LEAVEUNAVAIL"}
)

# Dispositions where the controller, not a person, ended the call.
SYSTEM_ENDINGS = frozenset(
    {Disposition.CLOSED, Disposition.MESSAGE, Disposition.HANGUP, Disposition.OVERFLOW,
     Disposition.NOTICE_FAILED, Disposition.REFUSED}
)


@dataclass(frozen=True)
class Ending:
    outcome: Outcome
    hangup_by: str  # caller | operator | system | limit (talk-time) | ivr_cap


def _ordered(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    # Stable: events with the same time keep the order they were stored in.
    return sorted(events, key=lambda e: e["at"])


def decide_outcome(
    *, connected: bool, disposition: str | None, events: Iterable[Mapping[str, Any]] = ()
) -> Outcome:
    """Answered beats everything; then how the controller ended the IVR part; then where
    the caller was when they hung up (the last queue fact in the timeline)."""
    if connected:
        return Outcome.ANSWERED
    if disposition == Disposition.NOTICE_FAILED:
        return Outcome.FAILED
    if disposition == Disposition.REFUSED:
        return Outcome.REFUSED
    if disposition == Disposition.CLOSED:
        return Outcome.CLOSED_HOURS
    if disposition == Disposition.OVERFLOW:
        return Outcome.OVERFLOWED
    if disposition == Disposition.MESSAGE:
        return Outcome.MESSAGE
    where: str | None = None
    for event in _ordered(events):
        kind = event["kind"]
        if kind in ("routed", "queue_joined"):
            where = "queue"
        elif kind == "queue_result":
            status = (event.get("data") or {}).get("status")
            # Queue() gave up on the caller; a later routed/queue_joined means another desk
            # took them on (overflow to a desk), so they were waiting again.
            where = "overflowed" if status in OVERFLOW_STATUSES else "queue"
    if where == "overflowed":
        return Outcome.OVERFLOWED
    if where == "queue" or disposition == Disposition.QUEUED:
        return Outcome.ABANDONED_IN_QUEUE
    return Outcome.ABANDONED_IN_MENU


def hangup_side(agent_complete_reason: str | None) -> str | None:
    """app_queue's AgentComplete reason names who ended the conversation."""
    return {"caller": "caller", "agent": "operator", "transfer": "operator"}.get(
        agent_complete_reason or ""
    )


def decide_hangup_by(
    *, outcome: Outcome, disposition: str | None, events: Iterable[Mapping[str, Any]]
) -> str:
    """Who ended the call: Asterisk's own word first (the hangup handler's
    CHANNEL(hangupsource)), then app_queue's AgentComplete reason, then how the IVR ended."""
    source: str | None = None
    complete: str | None = None
    for event in _ordered(events):
        data = event.get("data") or {}
        if event["kind"] == "end_and_refuse":
            # The operator's feature code: the dialplan hung up on their word.
            return "operator"
        # The dialplan ended the call because of a limit ([ivr-limit-closing], [ivr-cap-reached]).
        if event["kind"] == "talk_limit_reached":
            return "limit"
        if event["kind"] == "ivr_time_cap":
            return "ivr_cap"
        if event["kind"] == "hangup_source":
            source = data.get("side")
        elif event["kind"] == "conversation_ended":
            complete = hangup_side(data.get("reason"))
    if source in ("caller", "operator"):
        return source
    if source == "system" and (disposition in SYSTEM_ENDINGS or complete is None):
        return "system"
    if complete is not None:
        return complete
    if disposition in SYSTEM_ENDINGS:
        return "system"
    return "caller"


def decide_ending(
    *, connected: bool, disposition: str | None, events: Iterable[Mapping[str, Any]]
) -> Ending:
    timeline = list(events)
    outcome = decide_outcome(connected=connected, disposition=disposition, events=timeline)
    return Ending(outcome, decide_hangup_by(outcome=outcome, disposition=disposition,
                                            events=timeline))
