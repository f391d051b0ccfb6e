"""What the controller does when an operator presses a feature code.

Asterisk has already done everything it can alone (asterisk/extensions.conf.j2,
[ivr-feature-*]): the beep, the notice, the move to the supervisor desk, the closing
announcement and the hang-up. The dialplan reports each with a UserEvent (IvrFeature); this
service puts it in the call record, alerts supervisors (log line, /metrics, the AMI event
itself) and, for end-and-refuse, puts the caller's number on the block list.

If the controller was down when the code was pressed, the call still ended in Asterisk; the
block is then missing until someone adds it (the CDR row carries ivr_feature=end_and_refuse
for that: see the README, "Operator feature codes").
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from ivr.protection.errors import ProtectionError
from ivr.protection.service_blocks import Actor
from ivr.protection.settings_features import FeatureSettings
from ivr.service import CallService

log = logging.getLogger("ivr.features")

HARASSMENT = "harassment"
DAY = 86400.0


class Blocker(Protocol):
    async def block(self, value: str, *, kind: str = ..., reason: str, actor: Actor,
                    expires_at: float | None = ..., entry: str | None = ...,
                    source: str = ..., call_id: str | None = ...,
                    review: str | None = ...) -> object: ...


class FeatureService:
    def __init__(self, calls: CallService, blocks: Blocker,
                 settings: Callable[[], FeatureSettings]):
        self.calls = calls
        self.blocks = blocks
        self.settings = settings
        # Feature codes used since start, by feature (/metrics: ivr_operator_features_total).
        self.used: Counter[str] = Counter()

    async def used_feature(self, call_id: str, feature: str, *, at: float | None = None,
                           channel: str = "", prompt: str = "", desk: str = "",
                           status: str = "") -> None:
        """One IvrFeature event from the dialplan; never raises for a bad fact (the call
        goes on in Asterisk whatever happens here)."""
        record = await self.calls.get(call_id)
        if record is None:
            log.warning("event=feature_unknown_call call_id=%s feature=%s", call_id, feature)
            return
        operator = record.operator or ""
        if feature != "notice_end":
            self.used[feature] += 1
        if feature == "flag":
            await self._flag(call_id, operator, record.flags, at)
        elif feature == "notice":
            await self.calls.feature_event(call_id, "feature_notice", at, operator=operator,
                                           prompt=prompt)
        elif feature == "notice_end":
            await self.calls.feature_event(call_id, "feature_notice_end", at, prompt=prompt,
                                           status=status)
        elif feature == "escalate":
            await self.calls.feature_event(call_id, "escalated", at, operator=operator,
                                           from_desk=record.desk, desk=desk,
                                           mode=self.settings().escalate_mode)
            await self.calls.store.update(call_id, desk=desk or record.desk)
        elif feature == "end_and_refuse":
            await self._end_and_refuse(call_id, operator, record.caller, prompt, at)
        elif feature == "end_and_refuse_withheld":
            await self.calls.feature_event(call_id, "block_impossible", at, operator=operator,
                                           reason="withheld number")

    async def _flag(self, call_id: str, operator: str, flags: str | None,
                    at: float | None) -> None:
        current = (flags or "").split()
        if HARASSMENT not in current:
            await self.calls.store.update(call_id, flags=" ".join([*current, HARASSMENT]))
        await self.calls.feature_event(call_id, "flagged", at, flag=HARASSMENT,
                                       operator=operator)
        # The supervisors' alert: a line any log shipper can match on, besides the AMI event.
        log.warning("event=supervisor_alert kind=harassment_flag call_id=%s operator=%s",
                    call_id, operator or "-")

    async def _end_and_refuse(self, call_id: str, operator: str, caller: str | None,
                              prompt: str, at: float | None) -> None:
        settings = self.settings()
        await self.calls.feature_event(call_id, "end_and_refuse", at, operator=operator,
                                       prompt=prompt)
        if caller is None:
            # The dialplan thought the number blockable; the one national form says not.
            await self.calls.feature_event(call_id, "block_impossible", at,
                                           operator=operator, reason="no usable number")
            return
        when = at if at is not None else self.calls.clock()
        try:
            block = await self.blocks.block(
                caller, kind="exact", reason=settings.block_reason,
                actor=Actor(operator or "operator", role="operator", origin="feature_code"),
                expires_at=when + settings.block_days * DAY, source="operator",
                call_id=call_id, review="pending")
        except ProtectionError as exc:
            await self.calls.feature_event(call_id, "block_impossible", at,
                                           operator=operator, reason=str(exc))
            return
        rule = getattr(block, "rule_id", "")
        await self.calls.feature_event(call_id, "blocked", at, rule=rule, number=caller,
                                       operator=operator, days=settings.block_days,
                                       review="pending")
        log.warning("event=supervisor_alert kind=end_and_refuse call_id=%s operator=%s "
                    "rule=%s", call_id, operator or "-", rule)
