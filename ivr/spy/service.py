"""Listen, whisper, barge: a supervisor's phone joins a live call through Asterisk's ChanSpy.

One service for every edge (`ivr spy`, POST /api/v1/calls/{id}/spy, the web board later):
it checks the request (ivr/spy/checks.py), asks Asterisk which channels the call has (never
this process's memory: the CLI has none, and the controller may have restarted), rings the
supervisor's phone with AMI Originate into [ivr-spy], and leaves a trace of every use,
granted or refused: an audit_log row, a log line `event=spy ...`, and, when the call is
known, a `supervisor_spy` event in the call's timeline.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ivr.ami.client import response_items as _items
from ivr.protection.service_settings import Actor
from ivr.protection.store_audit import AuditStore
from ivr.service import CallService
from ivr.spy.checks import (
    SpyError,
    SpyRequest,
    Target,
    call_channels,
    check_request,
    choose_target,
    originate_action,
    printable,
)

log = logging.getLogger("ivr.spy")

AmiAction = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class SpyResult:
    call_id: str
    phone: str
    mode: str
    channel: str  # the channel spied on, as Asterisk named it

    def as_dict(self) -> dict[str, str]:
        return {"call_id": self.call_id, "phone": self.phone, "mode": self.mode,
                "channel": self.channel, "state": "ringing"}


class SpyService:
    def __init__(self, action: AmiAction, calls: CallService, audit: AuditStore,
                 operators: Callable[[], Iterable[str]]):
        self.action = action
        self.calls = calls
        self.audit = audit
        self.operators = operators  # the configured operator endpoints (ivr.toml), read now

    async def spy(self, call_id: object, phone: object, mode: object,
                  actor: Actor) -> SpyResult:
        """Ring `phone` into the call in `mode`; SpyError (audited) when refused."""
        try:
            request = check_request(call_id, phone, mode, self.operators())
            target = await self._target(request)
            caller = await self._caller(request.call_id)
        except SpyError as exc:
            await self._refused(call_id, phone, mode, actor, exc)
            raise
        # The row first: nobody listens in without it (an audit failure refuses the request).
        details = {"mode": request.mode.value, "phone": request.phone,
                   "channel": target.channel}
        await self.audit.record(actor=actor.name, role=actor.role,
                                action=f"spy.{request.mode.value}",
                                target=f"call {request.call_id}", after=details,
                                origin=actor.origin)
        try:
            await self._originate(request, target, caller)
        except SpyError as exc:
            await self._refused(call_id, phone, mode, actor, exc, action="spy.failed")
            raise
        await self.calls.feature_event(request.call_id, "supervisor_spy",
                                       mode=request.mode.value, phone=request.phone,
                                       actor=actor.name, channel=target.channel)
        log.info("event=spy call_id=%s phone=%s mode=%s actor=%s role=%s origin=%r "
                 "result=granted channel=%s", request.call_id, request.phone,
                 request.mode.value, actor.name, actor.role, actor.origin, target.channel)
        return SpyResult(request.call_id, request.phone, request.mode.value, target.channel)

    async def _target(self, request: SpyRequest) -> Target:
        # Only calls the call records know: a channel that roots its own linked id may be no
        # customer call (another supervisor's spy, a recorder).
        if not await self.calls.is_known(request.call_id):
            raise SpyError(404, f"no call {request.call_id!r} in the call records", "call_id")
        try:
            response = await self.action({"Action": "CoreShowChannels"}, timeout=10,
                                         as_list=True)
        except Exception as exc:  # AmiError, or the connection gone mid-answer
            raise SpyError(503, f"Asterisk could not be asked for the call's channels: {exc}",
                           None) from exc
        channels = call_channels(_items(response), request.call_id)
        return choose_target(request, channels, self.operators())

    async def _caller(self, call_id: str) -> str | None:
        record = await self.calls.get(call_id)
        return record.caller if record is not None else None

    async def _originate(self, request: SpyRequest, target: Target, caller: str | None) -> None:
        try:
            response = await self.action(originate_action(request, target, caller),
                                         as_list=False)
        except Exception as exc:
            raise SpyError(503, f"Asterisk could not be asked to ring {request.phone}: {exc}",
                           "phone") from exc
        first = _items(response)[0] if _items(response) else {}
        if first.get("Response") != "Success":
            message = printable(first.get("Message", "") or "no answer")
            raise SpyError(502, f"Asterisk refused to ring {request.phone}: {message}",
                           "phone")

    async def _refused(self, call_id: object, phone: object, mode: object, actor: Actor,
                       exc: SpyError, action: str = "spy.refused") -> None:
        await refused(self.audit, actor, call_id=call_id, phone=phone, mode=mode,
                      status=exc.status, reason=exc.message, action=action)


async def refused(audit: AuditStore, actor: Actor, *, call_id: object, phone: object,
                  mode: object, status: int, reason: str, action: str = "spy.refused") -> None:
    """A use that did not happen (bad input, no such call, a role without the right, Asterisk
    down): its audit row and log line. What the client sent is kept escaped and cut short."""
    asked = {"call_id": printable(call_id), "phone": printable(phone),
             "mode": printable(mode)}
    try:
        await audit.record(actor=actor.name, role=actor.role, action=action,
                           target=f"call {asked['call_id']}",
                           after={**asked, "status": status, "reason": reason},
                           origin=actor.origin)
    except Exception:  # the refusal stands; its log line below is written all the same
        log.exception("event=spy_unaudited call_id=%r", asked["call_id"])
    log.info("event=spy call_id=%r phone=%r mode=%r actor=%s role=%s origin=%r result=%s "
             "status=%d reason=%r", asked["call_id"], asked["phone"], asked["mode"],
             actor.name, actor.role, actor.origin, action.split(".")[1], status, reason)
