"""Pausing the operator after a hard call, and lifting the pause when the wrap-up is over.

The pause is app_queue's own (AMI QueuePause per desk, with a Reason), so the queue does not
ring the operator while it lasts, with or without the controller. The reason carries the end
(`ivr-cooldown until=<epoch> call=<id>`, ivr/cooldown/policy.py): the state is in Asterisk,
not in this process. A sweep of this node's Asterisk (at start and every few seconds, and at
each cool-down's end) lifts the cool-down pauses whose end has come, and only those: a pause
whose reason is anything else (a supervisor's, a break) is never touched. Each node sweeps its
own Asterisk; the calls of several nodes share only the store.

When: as soon as a trigger is recorded (the limit, end-and-refuse: the operator's phone is
already free while the caller still hears the closing), for `seconds` from then; again when
the call has ended, for `seconds` from the hang-up (event `cooldown_started`). A cool-down
pause whose call is still in progress on this node is not lifted before the call's end.
Nothing here raises into the call path: AMI trouble and operators not logged in are logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ivr.ami.client import response_items as _items
from ivr.ami.client import response_message
from ivr.ami.client import succeeded as _ok
from ivr.cooldown.policy import TRIGGER_EVENTS, Cooldown, decide, parse_reason, reason
from ivr.cooldown.settings import CooldownSettings
from ivr.model import CallRecord
from ivr.operators import interface, legacy_interface, member_operator
from ivr.service import CallService

log = logging.getLogger("ivr.cooldown")

AmiAction = Callable[..., Awaitable[Any]]
SWEEP_SECONDS = 5.0
BY_WHOM = "cooldown"


class CooldownService:
    def __init__(self, action: AmiAction, calls: CallService,
                 settings: Callable[[], CooldownSettings], operators: Iterable[str],
                 clock: Callable[[], float] = time.time, sweep_every: float = SWEEP_SECONDS):
        self.action = action
        self.calls = calls
        self.settings = settings
        self.operators = set(operators)
        self.clock = clock
        self.sweep_every = sweep_every
        # /metrics: cool-downs started (by the call's first trigger), pauses lifted.
        self.started: Counter[str] = Counter()
        self.lifted = 0
        self._lock = asyncio.Lock()  # one QueueStatus-then-QueuePause at a time
        self._tasks: set[asyncio.Task] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._sweeper: asyncio.Task | None = None

    # ---- hooks (never raise, never block the caller) ----
    def event_recorded(self, call_id: str, kind: str, data: dict[str, Any]) -> None:
        """CallService's listener: a trigger's event pauses the operator at once."""
        if kind in TRIGGER_EVENTS:
            self._spawn(self.apply(call_id, final=False))

    def call_ended(self, record: CallRecord,
                   events: list[dict[str, Any]] | None = None) -> None:
        """The call's end; events: its timeline as the ending read it (spares a read)."""
        known = (record, events) if events is not None else None
        self._spawn(self.apply(record.id, final=True, known=known))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- the cool-down of one call ----
    async def apply(self, call_id: str, *, final: bool,
                    known: tuple[CallRecord, list[dict[str, Any]]] | None = None,
                    ) -> Cooldown | None:
        try:
            return await self._apply(call_id, final=final, known=known)
        except Exception as exc:  # AMI down, the store restarting: the call is not affected
            log.warning("event=cooldown_failed call_id=%s error=%r", call_id, exc)
            return None

    async def _apply(self, call_id: str, *, final: bool,
                     known: tuple[CallRecord, list[dict[str, Any]]] | None = None,
                     ) -> Cooldown | None:
        record, events = known or await self.calls.get_with_events(call_id)
        if record is None:
            return None
        cooldown = decide(record, events, self.settings())
        if cooldown is None:
            return None
        now = self.clock()
        start = (record.ended_at or now) if final else now
        # Whole seconds, rounded up: the end as the pause reason carries it.
        until = float(math.ceil(start + cooldown.seconds))
        if until <= now:  # learnt of the call too late (the controller was down)
            log.info("event=cooldown_skipped call_id=%s reason=over_already until=%.0f",
                     call_id, until)
            return cooldown
        text = reason(until, call_id)
        for operator in cooldown.operators:
            desks = await self.pause(operator, until, text)
            if not final:
                continue
            if not desks:
                log.info("event=cooldown_skipped call_id=%s operator=%s reason=not_paused_anywhere",
                         call_id, operator)
                continue
            await self.calls.feature_event(
                call_id, "cooldown_started", operator=operator, seconds=cooldown.seconds,
                until=until, triggers=list(cooldown.triggers), desks=desks)
            self.started[cooldown.triggers[0]] += 1
        self._wake_at(until)
        return cooldown

    async def pause(self, operator: str, until: float, text: str) -> list[str]:
        """Pause the operator at each desk they are logged in to, unless someone else paused
        them there (that pause stays as it is) or a cool-down lasting longer holds already.
        The desks where the operator is in cool-down until `until` or later."""
        if operator not in self.operators:
            log.info("event=cooldown_skipped operator=%s reason=not_an_operator", operator)
            return []
        async with self._lock:
            members = [m for m in await self._members()
                       if member_operator(m.get("Location") or "") == operator
                       and m.get("Location") in (interface(operator), legacy_interface(operator))]
            if not members:
                log.info("event=cooldown_skipped operator=%s reason=not_logged_in", operator)
            paused = []
            for member in members:
                desk, location = member.get("Queue", ""), member.get("Location", "")
                held = parse_reason(member.get("PausedReason"))
                if member.get("Paused") == "1":
                    if held is None:
                        log.info("event=cooldown_skipped operator=%s desk=%s "
                                 "reason=paused_already paused_reason=%r", operator, desk,
                                 member.get("PausedReason", ""))
                        continue
                    if held[0] >= until:
                        paused.append(desk)
                        continue
                response = await self.action({
                    "Action": "QueuePause", "Queue": desk, "Interface": location,
                    "Paused": "true", "Reason": text}, as_list=False)
                if not _ok(response):
                    log.info("event=cooldown_skipped operator=%s desk=%s reason=%r", operator,
                             desk, response_message(response))
                    continue
                await self.calls.operator_action(operator, desk, "pause", detail=text,
                                                 by_whom=BY_WHOM)
                paused.append(desk)
            return paused

    # ---- lifting ----
    async def sweep(self) -> list[tuple[str, str]]:
        """Unpause every member of this Asterisk whose cool-down is over (and whose call has
        ended, as far as this node knows). The (desk, operator) pairs unpaused."""
        async with self._lock:
            now = self.clock()
            lifted = []
            for member in await self._members():
                held = parse_reason(member.get("PausedReason"))
                if member.get("Paused") != "1" or held is None or held[0] > now:
                    continue
                if held[1] and held[1] in self.calls.active:
                    continue  # still talking: the call's end sets the real end
                desk, location = member.get("Queue", ""), member.get("Location", "")
                operator = member_operator(location)
                response = await self.action({
                    "Action": "QueuePause", "Queue": desk, "Interface": location,
                    "Paused": "false", "Reason": member.get("PausedReason", "")},
                    as_list=False)
                if not _ok(response):
                    log.warning("event=cooldown_unpause_failed operator=%s desk=%s", operator,
                                desk)
                    continue
                await self.calls.operator_action(operator, desk, "unpause",
                                                 detail=member.get("PausedReason", ""),
                                                 by_whom=BY_WHOM)
                log.info("event=cooldown_over operator=%s desk=%s call_id=%s", operator, desk,
                         held[1])
                self.lifted += 1
                lifted.append((desk, operator))
            return lifted

    async def _members(self) -> list[Any]:
        response = await self.action({"Action": "QueueStatus"}, as_list=True)
        return [m for m in _items(response) if m.get("Event") == "QueueMember"]

    async def sweep_safely(self) -> None:
        try:
            await self.sweep()
        except Exception as exc:  # AMI not (yet) connected: the next sweep tries again
            log.debug("event=cooldown_sweep_failed error=%r", exc)

    def _wake_at(self, until: float) -> None:
        """A sweep right after this cool-down's end (the periodic sweep is the safety net)."""
        delay = max(0.0, until - self.clock()) + 0.05
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self._spawn(self.sweep_safely())

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    # ---- running ----
    async def start(self) -> None:
        async def run() -> None:
            while True:
                await self.sweep_safely()
                await asyncio.sleep(self.sweep_every)

        self._sweeper = asyncio.create_task(run(), name="cooldown-sweep")

    async def stop(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        tasks = [t for t in (self._sweeper, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._sweeper = None
