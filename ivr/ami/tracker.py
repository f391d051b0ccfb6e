"""Following calls through AMI events into the call record."""

from __future__ import annotations

import logging

from ivr.ami import events as ev
from ivr.model import Source
from ivr.policy.callerid import normalise_number
from ivr.service import CallService

log = logging.getLogger("ivr.tracker")


class CallTracker:
    def __init__(self, calls: CallService):
        self.calls = calls

    async def handle(self, event: ev.AmiEvent) -> None:
        match event:
            case ev.CallStart(call_id=call_id, caller=caller, did=did, recording=rec):
                # The same rule as the FastAGI path: a number, or nothing.
                await self.calls.call_started(
                    call_id, caller=normalise_number(caller), did=did,
                    recording_path=f"{rec}.wav" if rec else None, source=Source.AMI,
                )
            case ev.Failsafe(call_id=call_id, agi_status=status, action=action):
                if await self.calls.is_known(call_id):
                    reason = f"agi={status or '-'} action={action or '-'}"
                    await self.calls.failsafe(call_id, reason)
            case ev.QueueCallerJoin(call_id=call_id, queue=queue, position=position):
                if await self.calls.is_known(call_id):
                    await self.calls.queue_joined(call_id, queue, position)
            case ev.AgentCalled(call_id=call_id, operator=operator):
                if await self.calls.is_known(call_id):
                    await self.calls.operator_ringing(call_id, operator)
            case ev.AgentConnect(call_id=call_id, operator=operator, hold_time=hold):
                if await self.calls.is_known(call_id):
                    await self.calls.connected(call_id, operator, hold)
            case ev.AgentComplete(call_id=call_id, operator=operator, reason=reason):
                if await self.calls.is_known(call_id):
                    await self.calls.conversation_ended(call_id, operator, reason)
            case ev.QueueCallerAbandon(call_id=call_id, hold_time=hold):
                if await self.calls.is_known(call_id):
                    await self.calls.queue_abandoned(call_id, hold)
            case ev.QueueResult(call_id=call_id, queue=queue, status=status):
                if await self.calls.is_known(call_id):
                    await self.calls.queue_result(call_id, queue, status)
            case ev.Hangup(unique_id=unique_id, cause=cause, cause_text=text):
                # Only the customer's own channel ends the call; operator legs come and go.
                if await self.calls.is_known(unique_id):
                    await self.calls.hung_up(unique_id, cause, text)
