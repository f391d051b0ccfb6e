"""How a call ended, decided from the facts the record holds."""

from __future__ import annotations

from ivr.model import Disposition, Outcome


def decide_outcome(
    *,
    connected: bool,
    queue_joined: bool,
    queue_status: str | None = None,
    disposition: str | None = None,
) -> Outcome:
    """Answered beats everything; then how the controller ended the IVR part; then where
    the caller was when they hung up."""
    if connected:
        return Outcome.ANSWERED
    if disposition == Disposition.NOTICE_FAILED:
        return Outcome.FAILED
    if disposition == Disposition.CLOSED:
        return Outcome.CLOSED_HOURS
    if disposition == Disposition.OVERFLOW or queue_status in OVERFLOW_STATUSES:
        return Outcome.OVERFLOWED
    if disposition == Disposition.MESSAGE:
        return Outcome.MESSAGE
    if queue_joined or disposition == Disposition.QUEUED:
        return Outcome.ABANDONED_IN_QUEUE
    return Outcome.ABANDONED_IN_MENU


# QUEUESTATUS values after which the caller did not reach anyone through no fault of theirs.
OVERFLOW_STATUSES = frozenset(
    {"TIMEOUT", "FULL", "JOINEMPTY", "LEAVEEMPTY", "JOINUNAVAIL", "LEAVEUNAVAIL"}
)


def hangup_side(agent_complete_reason: str | None) -> str | None:
    """app_queue's AgentComplete reason names who ended the conversation."""
    return {"caller": "caller", "agent": "operator", "transfer": "transfer"}.get(
        agent_complete_reason or ""
    )
