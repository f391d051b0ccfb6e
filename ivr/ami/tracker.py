"""Following calls through AMI events into the call record.

Events arrive here one at a time, in Asterisk's order (AmiClient has one consumer), and carry
Asterisk's own timestamps, which become the times in the call record.
"""

from __future__ import annotations

import logging
import time

from ivr.ami import events as ev
from ivr.live.service import LiveProtection
from ivr.model import Disposition, Source
from ivr.protection.service_features import FeatureService
from ivr.service import CallService

log = logging.getLogger("ivr.tracker")


class CallTracker:
    def __init__(self, calls: CallService, features: FeatureService | None = None,
                 live: LiveProtection | None = None):
        self.calls = calls
        self.features = features
        self.live = live

    async def handle(self, event: ev.AmiEvent) -> None:
        match event:
            case ev.FeatureUsed():
                if self.features is not None and await self.calls.is_known(event.call_id):
                    await self.features.used_feature(
                        event.call_id, event.feature, at=event.at, channel=event.channel,
                        prompt=event.prompt, desk=event.desk, status=event.status)
            case ev.CallStart(call_id=call_id, caller=caller, did=did, recording=rec, at=at):
                # The service normalises the caller number, as on the FastAGI path.
                await self.calls.call_started(
                    call_id, caller=caller, did=did, recording_path=f"{rec}.wav" if rec else None,
                    source=Source.AMI, started_at=at,
                )
            case ev.Failsafe(call_id=call_id, agi_status=status, action=action):
                if await self.calls.is_known(call_id):
                    reason = f"agi={status or '-'} action={action or '-'}"
                    await self.calls.failsafe(call_id, reason)
            case ev.NoticeFallback(call_id=call_id, prompt=prompt, problem=problem):
                if await self.calls.is_known(call_id):
                    await self.calls.notice_failed(call_id, prompt, "", problem)
                    await self.calls.notice_fallback(call_id, prompt, "fallback/notice")
            case ev.NoticeFailed(call_id=call_id, source=source, problem=problem):
                # The controller records its own failures as they happen.
                if source != "controller" and await self.calls.is_known(call_id):
                    await self.calls.notice_failed(call_id, "fallback/notice", "", problem)
                    await self.calls.disposed(call_id, Disposition.NOTICE_FAILED, problem)
            case ev.QueueCallerJoin(call_id=call_id, queue=queue, position=position, at=at):
                if await self.calls.is_known(call_id):
                    await self.calls.queue_joined(call_id, queue, position, at)
            case ev.AgentCalled(call_id=call_id, operator=operator, at=at):
                if await self.calls.is_known(call_id):
                    await self.calls.operator_ringing(call_id, operator, at)
            case ev.AgentConnect(call_id=call_id, operator=operator, hold_time=hold, at=at):
                if await self.calls.is_known(call_id):
                    await self.calls.connected(call_id, operator, hold, at)
                    if self.live is not None:
                        await self.live.connected(
                            call_id, desk=event.queue, operator=operator,
                            caller_channel=event.channel, member_channel=event.member_channel)
            case ev.LiveSound():
                if self.live is not None:
                    await self.live.sound(event)
            case ev.AgentComplete(call_id=call_id, operator=operator, reason=reason, at=at):
                if self.live is not None:
                    await self.live.disconnected(call_id)
                if await self.calls.is_known(call_id):
                    await self.calls.conversation_ended(call_id, operator, reason, at)
                    await self.calls.limit_warning_heard(call_id, until=at or time.time())
            case ev.TalkLimitReached(call_id=call_id, operator=operator, prompt=prompt, at=at):
                if await self.calls.is_known(call_id):
                    await self.calls.talk_limit_reached(
                        call_id, operator, prompt, at, applied=(
                            event.limit, event.warning or 0.0, event.warning_prompt))
            case ev.IvrTimeCap(call_id=call_id, seconds=seconds, at=at):
                if await self.calls.is_known(call_id):
                    await self.calls.ivr_time_cap(call_id, seconds, at)
            case ev.QueueCallerAbandon(call_id=call_id, hold_time=hold, at=at):
                if await self.calls.is_known(call_id):
                    await self.calls.queue_abandoned(call_id, hold, at)
            case ev.QueueResult(call_id=call_id, queue=queue, status=status, at=at):
                if await self.calls.is_known(call_id):
                    await self.calls.queue_result(call_id, queue, status, at)
            case ev.HangupSource(call_id=call_id, source=source, at=at):
                if await self.calls.is_known(call_id):
                    await self.calls.hangup_source(call_id, event.side, source, at)
            case ev.Hangup(unique_id=unique_id, linked_id=linked_id, cause=cause,
                           cause_text=text, at=at):
                # Only the customer's own channel ends the call (it is the root of its linked
                # id); operator legs come and go.
                if unique_id == linked_id and self.live is not None:
                    await self.live.disconnected(unique_id)
                if unique_id == linked_id and await self.calls.is_known(unique_id):
                    await self.calls.hung_up(unique_id, cause, text, at)
