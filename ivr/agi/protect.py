"""The inbound restriction at the start of a customer call (the FastAGI edge of
ivr/protection/service_inbound.py): what the carrier sent in, the decision out, recorded."""

from __future__ import annotations

import logging

from ivr.agi import variables as var
from ivr.agi.context import HandlerContext
from ivr.agi.protocol import AgiChannel, AgiHangup
from ivr.protection.rules_inbound import InboundDecision
from ivr.protection.service_inbound import InboundService

log = logging.getLogger("ivr.protection")

# No decision could be made (store unreachable, a bug): the caller is let through. A
# customer losing a call to a database hiccup is worse than one unwanted call reaching an
# operator, who can still end it; the failure is in the log and the record.
LET_THROUGH = InboundDecision("allow", why=["no decision: see protection_failed"])


async def decide_call(agi: AgiChannel, ctx: HandlerContext, call_id: str,
                      entry: str | None) -> InboundDecision:
    try:
        privacy = await agi.get_variable(var.PRIVACY)
        service = InboundService(ctx.calls.store.db)
        decision, added = await service.decide(
            ctx.protection(), caller=agi.headers.get("agi_callerid"), entry=entry,
            name=agi.headers.get("agi_calleridname"), privacy=privacy, call_id=call_id)
    except AgiHangup:
        raise
    except Exception as exc:  # never drop the call over its restriction check
        log.exception("event=protection_failed call_id=%s", call_id)
        await ctx.calls.protection_decided(call_id, action="allow", rule=None,
                                           flags=frozenset(), repeat_count=None,
                                           talk_limit=None, problem=repr(exc)[:300])
        return LET_THROUGH
    p = decision.protection
    detail: dict[str, object] = {"why": decision.why}
    if decision.withheld:
        detail["withheld"] = decision.withheld
    if decision.desk:
        detail["desk"] = decision.desk
    if added is not None:
        detail["block"] = added.rule_id
    await ctx.calls.protection_decided(call_id, action=decision.action, rule=decision.rule,
                                       flags=p.flags, repeat_count=p.repeat_count,
                                       talk_limit=p.talk_limit, **detail)
    return decision
