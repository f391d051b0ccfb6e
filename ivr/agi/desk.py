"""Handing a caller to a desk: what the dialplan's [ivr-queue] needs to run Queue()."""

from __future__ import annotations

from ivr.agi import variables as var
from ivr.agi.protocol import AgiChannel
from ivr.journey import Desk
from ivr.protection.call import NONE, CallProtection
from ivr.service import CallService


async def queue_to_desk(
    agi: AgiChannel, calls: CallService, call_id: str, name: str, desk: Desk | None, reason: str,
    protection: CallProtection = NONE,
) -> None:
    """Record the routing, then tell the dialplan which queue and how long to wait (empty:
    the dialplan's default wait, for a desk the journey does not define)."""
    await calls.routed(call_id, name, reason=reason)
    await set_ring_display(agi, protection)
    await agi.set_variable(var.QUEUE, name)
    await agi.set_variable(var.QUEUE_TIMEOUT, str(desk.max_wait) if desk else "")
    await agi.set_variable(var.ACTION, var.ACTION_QUEUE)


async def set_ring_display(agi: AgiChannel, protection: CallProtection) -> None:
    """Flags, ring prefix and Alert-Info for the operator's phone, inherited (`__`) by the
    queue's member channels. Only what is there is set: an overflow to another desk (which
    passes no protection) keeps what the first queueing set."""
    for name, value in ((var.FLAGS, " ".join(sorted(protection.flags))),
                        (var.RING_PREFIX, protection.ring_prefix),
                        (var.ALERT_INFO, protection.alert_info)):
        if value:
            await agi.set_variable(f"__{name}", value)
