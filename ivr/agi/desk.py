"""Handing a caller to a desk: what the dialplan's [ivr-queue] needs to run Queue()."""

from __future__ import annotations

from ivr.agi import variables as var
from ivr.agi.protocol import AgiChannel
from ivr.journey import Desk
from ivr.protection.call import NONE, CallProtection
from ivr.protection.rules_limits import talk_limit
from ivr.protection.settings_limits import LimitSettings
from ivr.service import CallService


async def queue_to_desk(
    agi: AgiChannel, calls: CallService, call_id: str, name: str, desk: Desk | None, reason: str,
    protection: CallProtection = NONE, limits: LimitSettings | None = None,
) -> None:
    """Record the routing, then tell the dialplan which queue and how long to wait (empty:
    the dialplan's default wait, for a desk the journey does not define)."""
    await calls.routed(call_id, name, reason=reason)
    await ring_display(agi, protection)
    if limits is not None:
        await apply_talk_limit(agi, calls, call_id, name, protection, limits)
    await agi.set_variable(var.QUEUE, name)
    await agi.set_variable(var.QUEUE_TIMEOUT, str(desk.max_wait) if desk else "")
    await agi.set_variable(var.ACTION, var.ACTION_QUEUE)


async def ring_display(agi: AgiChannel, protection: CallProtection) -> None:
    """What the operator's phone shows while it rings ([ivr-member] filters both; they are
    set on the operator's leg only, never sent to the trunk)."""
    if protection.flags:
        await agi.set_variable(f"__{var.FLAGS}", " ".join(sorted(protection.flags)))
    if protection.ring_prefix:
        await agi.set_variable(f"__{var.RING_PREFIX}", protection.ring_prefix)
    if protection.alert_info:
        await agi.set_variable(f"__{var.ALERT_INFO}", protection.alert_info)


async def apply_talk_limit(agi: AgiChannel, calls: CallService, call_id: str, desk: str,
                           protection: CallProtection, limits: LimitSettings) -> None:
    """The member dialplan ([ivr-member]) runs Dial(...,L(limit:warning)) from these
    inheritable variables: Asterisk ends the talk, controller or not. "0" is no limit (an
    empty value would fall back to the fail-safe's global, the default desk's limit)."""
    chosen = talk_limit(limits, desk, protection)
    await agi.set_variable(f"__{var.TALK_LIMIT}", str(chosen.limit_ms))
    await agi.set_variable(f"__{var.TALK_WARNING}", str(chosen.warning_ms))
    await agi.set_variable(f"__{var.TALK_WARN_OPERATOR}", "1" if chosen.warn_operator else "0")
    await agi.set_variable(f"__{var.TALK_WARNING_PROMPT}", chosen.warning_prompt)
    await agi.set_variable(f"__{var.TALK_CLOSING_PROMPT}", chosen.closing_prompt)
    language = await agi.get_variable(var.LANGUAGE) or ""
    if language:
        await agi.set_variable(f"__{var.LIMIT_LANG}", language)
    lang = f"{language}/" if language else ""  # none: the prompts' default language
    await calls.talk_limit_set(call_id, desk, chosen.limit, chosen.warning, chosen.rule,
                               warning_prompt=f"{lang}{chosen.warning_prompt}",
                               closing_prompt=f"{lang}{chosen.closing_prompt}")
