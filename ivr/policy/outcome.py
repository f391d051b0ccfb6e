"""How a call ended, decided from the facts the record holds."""

from __future__ import annotations

from ivr.model import Outcome


def decide_outcome(
    *,
    connected: bool,
    queue_joined: bool,
    queue_status: str | None,
) -> Outcome:
    if connected:
        return Outcome.ANSWERED
    if queue_status == "TIMEOUT":
        return Outcome.QUEUE_TIMEOUT
    if queue_joined:
        return Outcome.ABANDONED_IN_QUEUE
    return Outcome.ABANDONED_IN_MENU


def hangup_side(agent_complete_reason: str | None) -> str | None:
    """app_queue's AgentComplete reason names who ended the conversation."""
    return {"caller": "caller", "agent": "operator", "transfer": "transfer"}.get(
        agent_complete_reason or ""
    )
