"""AGI(agi://.../inbound): a customer call has been answered and is being recorded.

The notice plays in full (no key can skip it) before the call is routed to a desk; the
dialplan then queues the caller, so no operator's phone rings before the notice ends.
"""

from __future__ import annotations

from ivr.agi import variables as var
from ivr.agi.context import HandlerContext
from ivr.agi.protocol import AgiChannel
from ivr.model import Source
from ivr.policy.callerid import normalise_number


async def handle(agi: AgiChannel, ctx: HandlerContext) -> None:
    call_id = agi.unique_id
    recording = await agi.get_variable(var.RECORDING)
    did = await agi.get_variable(var.DID) or agi.headers.get("agi_dnid")
    await ctx.calls.call_started(
        call_id,
        caller=normalise_number(agi.headers.get("agi_callerid")),
        caller_name=agi.headers.get("agi_calleridname") or None,
        did=did,
        recording_path=f"{recording}.wav" if recording else None,
        source=Source.CONTROLLER,
    )

    await ctx.calls.notice_started(call_id, ctx.notice)
    await agi.stream_file(ctx.prompts.path(ctx.notice), escape_digits="")
    # Tell the dialplan first: should we die now, the fail-safe path must not replay it.
    await agi.set_variable(var.NOTICE_DONE, "1")
    await ctx.calls.notice_finished(call_id)

    desk = ctx.default_desk
    await ctx.calls.routed(call_id, desk, reason="default")
    await agi.set_variable(var.QUEUE, desk)
    await agi.set_variable(var.ACTION, var.ACTION_QUEUE)
