"""Outbound calls from operator phones (発信規制): three FastAGI entry points.

- `outbound` (the operator's channel, answered and recording): judge the dialled number
  (ivr/protection/rules_outbound.py); allowed -> the dialplan dials the trunk; denied -> the
  operator hears why and the call ends; PIN-unlockable -> the supervisor PIN (DTMF ending in
  #) opens this one call, audited; wrong every time -> the call ends, audited.
- `outbound_answered` (the called party's channel, from Dial's U() once they answer, its own
  MixMonitor already running): the recording notice, then the operator is connected.
- `outbound_result` (the operator's channel after Dial): how the dialling ended.

The operator is Asterisk's authenticated endpoint (IVR_OPERATOR = CHANNEL(endpoint)); the
number is the dialplan's FILTERed IVR_OUT_NUMBER, which is also exactly what is dialled.
"""

from __future__ import annotations

import asyncio
import time

from ivr.agi import variables as var
from ivr.agi.context import HandlerContext
from ivr.agi.notice import NoticeFailed, play_notice
from ivr.agi.protocol import AgiChannel, quote
from ivr.model import Disposition
from ivr.protection.rules_outbound import OutboundDecision, explain_outbound, operator_desks
from ivr.protection.settings import ProtectionSettings

OPERATOR = "IVR_OPERATOR"  # CHANNEL(endpoint) of the operator's phone (dialplan)
NUMBER = "IVR_OUT_NUMBER"  # the dialled number, FILTERed to 0-9 + * #
TYPED = "IVR_OUT_TYPED"  # ... FILTERed to letters, digits, + * # . _ - (what is judged)
NOTICE = "__IVR_OUT_NOTICE"  # "0": no notice for the called party (emergency numbers)
CONNECT = "IVR_OUT_CONNECT"  # "1": the controller played the notice, bridge now
ACTION_DIAL = "dial"
REFUSED_CAUSE = "21"  # Q.850 call rejected
NOTICE_GUARD = 0.5  # s between the notice's last frame and the bridge (as for inbound calls)
PIN_TIMEOUT_MS = 10000
PIN_MAX_DIGITS = 12


async def handle(agi: AgiChannel, ctx: HandlerContext) -> None:
    call_id = agi.unique_id
    operator = await agi.get_variable(OPERATOR) or None
    raw = await agi.get_variable(NUMBER) or ""
    # Judged as typed: letters make it no number (refused), separators are dropped by the
    # normalisation; what is dialled is `raw`, the digits of the same text.
    typed = await agi.get_variable(TYPED) or raw
    recording = await agi.get_variable(var.RECORDING)
    journey = ctx.journey()
    members = {name: desk.members for name, desk in journey.desks.items()} if journey else {}
    desks = operator_desks(members, operator)
    settings = ctx.protection()
    decision = explain_outbound(settings, typed, desk_names=desks, operator=operator)
    await ctx.calls.outbound_started(
        call_id, operator=operator, did=decision.number or raw[:32] or None,
        desk=desks[0] if len(desks) == 1 else None,
        recording_path=f"{recording}.wav" if recording else None)
    await ctx.calls.outbound_decided(call_id, {**decision.event(), "desks": desks})
    if decision.allowed:
        await _dial(agi, ctx, call_id, raw, decision)
    elif (decision.pin_may_unlock and ctx.outbound is not None
          and await asyncio.to_thread(ctx.outbound.pin_is_set)
          and not await _pin_locked(ctx, call_id, operator or "")):
        if await _unlock(agi, ctx, call_id, operator or "", raw, decision, settings):
            await _dial(agi, ctx, call_id, raw, decision)
    else:
        await _refuse(agi, ctx, call_id, decision.reason)


async def _pin_locked(ctx: HandlerContext, call_id: str, operator: str) -> bool:
    assert ctx.outbound is not None
    locked = await ctx.outbound.pin_locked(operator, time.time())
    if locked:
        await ctx.calls.pin_locked(call_id, operator)
    return locked


async def _dial(agi: AgiChannel, ctx: HandlerContext, call_id: str, raw: str,
                decision: OutboundDecision) -> None:
    # An emergency call is put through at once: a notice would delay the police or the fire
    # brigade by its length. It is recorded like any other.
    emergency = decision.rule.startswith("emergency:")
    await agi.set_variable(NOTICE, "0" if emergency else "1")
    await ctx.calls.disposed(call_id, Disposition.DIALLED, raw)
    await agi.set_variable(var.ACTION, ACTION_DIAL)


async def _refuse(agi: AgiChannel, ctx: HandlerContext, call_id: str, why: str) -> None:
    await ctx.calls.disposed(call_id, Disposition.REFUSED, why)
    await _play(agi, ctx, call_id, "outbound_restricted", "refusal")
    # Its last frames are still on their way to the phone: hang up after they arrived.
    await asyncio.sleep(NOTICE_GUARD)
    await agi.set_variable(var.HANGUP_CAUSE, REFUSED_CAUSE)
    await agi.set_variable(var.ACTION, var.ACTION_HANGUP)


async def _play(agi: AgiChannel, ctx: HandlerContext, call_id: str, prompt: str,
                purpose: str) -> None:
    await ctx.calls.prompt_played(call_id, prompt, purpose)
    await agi.stream_file(ctx.prompts.path(prompt), "")


async def _unlock(agi: AgiChannel, ctx: HandlerContext, call_id: str, operator: str, raw: str,
                  decision: OutboundDecision, settings: ProtectionSettings) -> bool:
    """Ask for the supervisor PIN; True when it opened the call. The digits are never
    stored or logged: only that a PIN was right or wrong."""
    assert ctx.outbound is not None
    attempts = settings.outbound.pin_attempts
    for attempt in range(1, attempts + 1):
        await ctx.calls.prompt_played(call_id, "outbound_pin", "pin request")
        res = await agi.command(f'GET DATA {quote(ctx.prompts.path("outbound_pin"))} '
                                f"{PIN_TIMEOUT_MS} {PIN_MAX_DIGITS}")
        digits = res.result if res.result.isdigit() else ""
        if await asyncio.to_thread(ctx.outbound.check_pin, digits):
            await ctx.calls.pin_result(call_id, ok=True, attempt=attempt, rule=decision.rule)
            await ctx.outbound.unlocked(operator=operator, call_id=call_id, number=raw,
                                       decision=decision)
            return True
        await ctx.calls.pin_result(call_id, ok=False, attempt=attempt, rule=decision.rule,
                                   entered=bool(digits))
        if attempt < attempts:
            await _play(agi, ctx, call_id, "outbound_pin_wrong", "pin wrong")
    await ctx.outbound.pin_refused(operator=operator, call_id=call_id, rule=decision.rule,
                                   attempts=attempts)
    await _play(agi, ctx, call_id, "outbound_pin_wrong", "pin wrong")
    await _refuse(agi, ctx, call_id, f"{decision.reason} (PIN wrong {attempts} times)")
    return False


async def handle_answered(agi: AgiChannel, ctx: HandlerContext) -> None:
    """On the called party's channel: they answered. The notice, then connect."""
    call_id = await agi.get_variable(var.CALL_ID) or ""
    if not call_id or not await ctx.calls.is_known(call_id):
        return  # the dialplan plays the notice itself
    recording = await agi.get_variable(var.RECORDING)
    await ctx.calls.called_answered(
        call_id, recording=f"{recording}-called.wav" if recording else None)
    if await agi.get_variable("IVR_OUT_NOTICE") != "0":
        outbound = ctx.protection().outbound
        # Should we fail from here on, the dialplan replays the notice in these.
        await agi.set_variable(var.NOTICE_LANGS, "&".join(outbound.notice_languages))
        try:
            await play_notice(agi, ctx.calls, call_id, ctx.prompts, outbound.notice,
                              outbound.notice_languages)
        except NoticeFailed:
            return  # the dialplan's [ivr-notice] tries the fallback, else hangs up
        # Its last frames still travel to the called party: no operator voice before.
        await asyncio.sleep(NOTICE_GUARD)
    record = await ctx.calls.get(call_id)
    await ctx.calls.connected(call_id, record.operator if record and record.operator else "", 0)
    await agi.set_variable(CONNECT, "1")


async def handle_result(agi: AgiChannel, ctx: HandlerContext) -> None:
    """After Dial on the operator's channel (the called party hung up, or never answered)."""
    call_id = agi.unique_id
    if not await ctx.calls.is_known(call_id):
        return
    status = await agi.get_variable("DIALSTATUS") or "UNKNOWN"
    answered = await agi.get_variable("ANSWEREDTIME") or ""
    await ctx.calls.dial_result(call_id, status[:32], answered[:16])
