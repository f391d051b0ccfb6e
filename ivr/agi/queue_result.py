"""AGI(agi://.../queue_result): Queue() returned without an operator (timeout, nobody logged
in, everyone left). The desk's overflow route decides: another desk, a message, or hang-up."""

from __future__ import annotations

from ivr.agi import variables as var
from ivr.agi.context import HandlerContext
from ivr.agi.desk import queue_to_desk
from ivr.agi.notice import NoticeFailed, end_without_notice, play_notice
from ivr.agi.protocol import AgiChannel
from ivr.model import Disposition

MAX_OVERFLOWS = 3


async def handle(agi: AgiChannel, ctx: HandlerContext) -> None:
    call_id = await agi.get_variable(var.CALL_ID) or agi.unique_id
    desk = await agi.get_variable(var.QUEUE) or ""
    status = await agi.get_variable("QUEUESTATUS") or "UNKNOWN"
    hops = int(await agi.get_variable(var.OVERFLOWS) or "0")
    language = await agi.get_variable(var.LANGUAGE) or ctx.prompts.language
    if not await ctx.calls.is_known(call_id):
        # A call that began while the controller was down (fail-safe): follow it from here.
        recording = await agi.get_variable(var.RECORDING)
        await ctx.calls.adopt(
            call_id, caller=agi.headers.get("agi_callerid"),
            did=await agi.get_variable(var.DID),
            recording_path=f"{recording}.wav" if recording else None,
            failsafe=await agi.get_variable(var.FAILSAFE_DONE) == "1",
        )
    await ctx.calls.queue_result(call_id, desk, status)

    journey = ctx.call_journey(await agi.get_variable(var.JOURNEY))
    route = journey.desks[desk].overflow if journey and desk in journey.desks else None
    if route is None or (route.desk and hops >= MAX_OVERFLOWS):
        await ctx.calls.overflowed(call_id, desk, status, "goodbye")
        await ctx.calls.disposed(call_id, Disposition.OVERFLOW, "goodbye")
        await agi.stream_file(ctx.prompts.path("goodbye", language), "")
        await agi.set_variable(var.ACTION, var.ACTION_HANGUP)
        return
    await ctx.calls.overflowed(call_id, desk, status, route.describe())
    if route.desk:
        assert journey is not None
        target = journey.desks[route.desk]
        if target.notice and target.notice != ctx.notice:
            try:
                await play_notice(agi, ctx.calls, call_id, ctx.prompts, target.notice,
                                  [language])
            except NoticeFailed as exc:
                await end_without_notice(agi, ctx.calls, call_id, exc)
                return
        await agi.set_variable(var.OVERFLOWS, str(hops + 1))
        await queue_to_desk(agi, ctx.calls, call_id, route.desk, target,
                            reason=f"overflow from {desk} ({status})",
                            limits=ctx.protection().limits)
        return
    await ctx.calls.disposed(call_id, Disposition.OVERFLOW, route.describe())
    if route.message:
        await ctx.calls.prompt_played(call_id, route.message, "overflow message")
        await agi.stream_file(ctx.prompts.path(route.message, language), "")
    await agi.set_variable(var.ACTION, var.ACTION_HANGUP)
