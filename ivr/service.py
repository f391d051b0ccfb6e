"""The call service: the one place that turns what happened into the call record.

The FastAGI handlers, the AMI tracker, the CDR import, the CLI and the web API all go through
it, so a fact is recorded the same way whoever reports it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from ivr.model import CallRecord, Disposition, Source
from ivr.policy.callerid import normalise_number
from ivr.policy.outcome import decide_ending
from ivr.protection.rules_outbound import decide_outbound_ending
from ivr.store.calls import CallStore

log = logging.getLogger("ivr.calls")

# Call ids whose existence in the store is remembered (CallService.is_known): well over the
# ids of a few minutes' AMI events at hundreds of concurrent calls.
KNOWN_IDS_KEPT = 20_000
UNKNOWN_KEPT_S = 30.0  # how long "the store has no such call" is believed


class CallService:
    def __init__(
        self,
        store: CallStore,
        *,
        node: str,
        on_ended: Callable[[CallRecord, list[dict[str, Any]]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.node = node
        self.clock = clock
        self._on_ended = on_ended
        # Calls this process has seen start and not end (for /metrics, and so AMI events of
        # live calls need no database look-up); outcomes so far. Every fact about a call
        # itself is in the store.
        self.active: set[str] = set()
        self.outcomes: Counter[str] = Counter()
        # Whether the store has a call, for ids seen lately (the AMI events of calls that
        # are not customer calls, e.g. another dialplan's, and the late events of ended
        # ones): the answer of one look-up, not one per event. "Yes" is kept (a record is
        # created here, in call_started, and never taken back); "no" only for a while (the
        # value: until when), since another node may be about to commit the call.
        self._known: OrderedDict[str, float | bool] = OrderedDict()
        # Told of every fact recorded (call id, kind, data), e.g. the cool-down's triggers;
        # a listener must not block or raise.
        self.listeners: list[Callable[[str, str, dict[str, Any]], None]] = []

    async def _event(self, call_id: str, kind: str, at: float | None = None, **data: Any) -> float:
        """One fact in the call's timeline; `at` is Asterisk's time when Asterisk reported it."""
        return await self._fact(call_id, kind, at, data)

    async def _fact(self, call_id: str, kind: str, at: float | None, data: dict[str, Any], *,
                    once: bool = False) -> float:
        """once: not stored if the call has this kind of event already (the store decides)."""
        at = self.clock() if at is None else at
        await self.store.add_event(call_id, kind, at, data, once=once)
        log.info("event=%s call_id=%s %s", kind, call_id,
                 " ".join(f"{k}={v}" for k, v in data.items()))
        for listener in self.listeners:
            try:
                listener(call_id, kind, data)
            except Exception:
                log.exception("event=listener_failed kind=%s call_id=%s", kind, call_id)
        return at

    async def call_started(
        self,
        call_id: str,
        *,
        caller: str | None,
        did: str | None,
        recording_path: str | None,
        source: Source,
        caller_name: str | None = None,
        started_at: float | None = None,
        direction: str = "inbound",
    ) -> bool:
        """Record a new call; reporting it twice (AGI and AMI) is harmless. The caller number
        is normalised here, whoever reports it (null when withheld or unusable). True when
        this was the first report this process had of the call.

        Nothing here waits for the database: the record's insert is queued ahead of every
        later write of the call, and the store keeps the first `call_started` event only.
        Measured at 100 concurrent, waiting for that commit was most of the time from
        FastAGI's start to the greeting (p99 0.42 of 0.49 s), and AMI's report held up every
        other AMI event behind it."""
        at = self.clock() if started_at is None else started_at
        caller = normalise_number(caller)
        first = call_id not in self.active
        self._remember(call_id, True)
        if source is not Source.CDR:  # CDR calls arrive already ended
            self.active.add(call_id)
        if first:
            self.store.start_call(call_id, node=self.node, started_at=at, source=source.value,
                                  direction=direction)
        if caller is not None:
            await self.store.update(call_id, caller=caller)
        await self.store.update(
            call_id,
            only_if_null=True,
            caller_name=caller_name or None,
            did=did or None,
            answered_at=at,
            recording_path=recording_path or None,
        )
        if first:
            await self._fact(call_id, "call_started", at,
                             {"caller": caller, "did": did, "source": source.value}, once=True)
        if source is Source.CONTROLLER:
            # AMI's report of the call start usually arrives first; the call is still the
            # controller's when its FastAGI handler took it.
            await self.store.update(call_id, source=source.value)
        return first

    async def notice_started(self, call_id: str, prompt: str) -> None:
        at = await self._event(call_id, "notice_started", prompt=prompt)
        await self.store.update(call_id, notice_started_at=at)

    async def notice_finished(self, call_id: str) -> None:
        at = await self._event(call_id, "notice_finished")
        await self.store.update(call_id, notice_ended_at=at)

    async def notice_failed(self, call_id: str, prompt: str, path: str, problem: str,
                            at: float | None = None) -> None:
        """A notice (or the fallback notice) could not be played; `problem` says why."""
        await self._event(call_id, "notice_failed", at, prompt=prompt, path=path,
                          problem=problem)

    async def notice_fallback(self, call_id: str, instead_of: str, path: str,
                              at: float | None = None) -> None:
        await self._event(call_id, "notice_fallback", at, instead_of=instead_of, path=path)

    async def routed(self, call_id: str, desk: str, reason: str) -> None:
        await self._event(call_id, "routed", desk=desk, reason=reason)
        await self.store.update(call_id, desk=desk)

    async def failsafe(self, call_id: str, reason: str) -> None:
        await self._event(call_id, "failsafe", reason=reason)
        await self.store.update(call_id, failsafe=1)

    # ---- outbound calls (ivr/agi/outbound.py) ----
    async def outbound_started(self, call_id: str, *, operator: str | None, did: str | None,
                               desk: str | None, recording_path: str | None) -> None:
        """An operator dialled out: the record is the operator's channel's; `did` is the
        dialled number (normalised), there is no caller number."""
        await self.call_started(call_id, caller=None, did=did, recording_path=recording_path,
                                source=Source.CONTROLLER, direction="outbound")
        await self.store.update(call_id, operator=operator, desk=desk)

    async def outbound_decided(self, call_id: str, decision: dict[str, Any]) -> None:
        """The outbound rule engine's answer (allowed, rule, reason, pin_may_unlock...)."""
        await self._event(call_id, "outbound_decision", **decision)
        await self.store.update(call_id, rule=decision.get("rule"))

    async def pin_locked(self, call_id: str, operator: str) -> None:
        """The PIN was not offered: too many calls ended on a wrong PIN lately."""
        await self._event(call_id, "pin_locked", operator=operator)

    async def pin_result(self, call_id: str, *, ok: bool, attempt: int, rule: str,
                         entered: bool = True) -> None:
        """The supervisor PIN was right or wrong (never the digits)."""
        await self._event(call_id, "pin_unlocked" if ok else "pin_wrong", attempt=attempt,
                          rule=rule, entered=entered)

    async def called_answered(self, call_id: str, recording: str | None) -> None:
        await self._event(call_id, "called_answered", recording=recording)

    async def called_recording_finalised(self, call_id: str, path: str, duration: float,
                                         sha256: str) -> None:
        await self._event(call_id, "called_recording_finalised", path=path,
                          duration=round(duration, 3), sha256=sha256)

    async def dial_result(self, call_id: str, status: str, answered_time: str) -> None:
        await self._event(call_id, "dial_result", status=status, answered_time=answered_time)

    # ---- the caller journey ----
    async def entry_chosen(self, call_id: str, entry: str, language: str) -> None:
        await self._event(call_id, "entry", entry=entry, language=language)
        await self.store.update(call_id, entry=entry, language=language)

    async def language_set(self, call_id: str, language: str) -> None:
        await self._event(call_id, "language", language=language)
        await self.store.update(call_id, language=language)

    async def prompt_played(self, call_id: str, prompt: str, purpose: str) -> None:
        await self._event(call_id, "prompt", prompt=prompt, purpose=purpose)

    async def prompt_failed(self, call_id: str, prompt: str, problem: str) -> None:
        await self._event(call_id, "prompt_failed", prompt=prompt, problem=problem)

    async def schedule_closed(self, call_id: str, schedule: str) -> None:
        await self._event(call_id, "closed_hours", schedule=schedule)

    async def menu_step_limit(self, call_id: str, menu: str, route: str) -> None:
        await self._event(call_id, "menu_step_limit", menu=menu, route=route)

    async def menu_entered(self, call_id: str, menu: str) -> None:
        await self._event(call_id, "menu", menu=menu)

    async def menu_input(
        self, call_id: str, menu: str, key: str | None, result: str, route: str | None = None,
        path: list[str] | None = None,
    ) -> None:
        """One answer to a menu: result is 'chosen', 'invalid' or 'no_input'. `path` is every
        answer of this call so far (the FastAGI session that runs the menus holds it)."""
        await self._event(call_id, f"menu_{result}", menu=menu, key=key, route=route)
        if path is not None:
            await self.store.update(call_id, menu_path=" ".join(path))

    async def protection_decided(self, call_id: str, *, action: str, rule: str | None,
                                 flags: frozenset[str], repeat_count: int | None,
                                 talk_limit: float | None, **detail: object) -> None:
        """The inbound restriction's decision (ivr/protection/rules_inbound.py)."""
        await self._event(call_id, "protection", action=action, rule=rule,
                          flags=sorted(flags), repeat_count=repeat_count, **detail)
        await self.store.update(call_id, rule=rule, flags=" ".join(sorted(flags)) or None,
                                repeat_count=repeat_count)
        if talk_limit is not None:
            await self.store.update(call_id, talk_limit=talk_limit)

    async def disposed(self, call_id: str, disposition: Disposition, detail: str = "") -> None:
        await self._event(call_id, "disposition", disposition=disposition.value, detail=detail)
        await self.store.update(call_id, disposition=disposition.value)

    async def overflowed(self, call_id: str, desk: str, status: str, route: str) -> None:
        await self._event(call_id, "overflow", desk=desk, status=status, route=route)
        await self.store.update(call_id, only_if_null=True, overflow_from=desk)

    async def operator_action(
        self, operator: str, desk: str | None, action: str, detail: str = "", by_whom: str = ""
    ) -> None:
        at = self.clock()
        await self.store.add_operator_event(at, operator, desk, action, detail, by_whom)
        log.info("event=operator_%s operator=%s desk=%s detail=%s by=%s",
                 action, operator, desk or "-", detail or "-", by_whom or "-")

    async def queue_joined(self, call_id: str, desk: str, position: int,
                           at: float | None = None) -> None:
        at = await self._event(call_id, "queue_joined", at, desk=desk, position=position)
        await self.store.update(call_id, desk=desk)
        await self.store.update(call_id, only_if_null=True, queue_joined_at=at)

    async def operator_ringing(self, call_id: str, operator: str,
                               at: float | None = None) -> None:
        await self._event(call_id, "operator_ringing", at, operator=operator)

    async def connected(self, call_id: str, operator: str, hold_time: int,
                        at: float | None = None) -> None:
        at = await self._event(call_id, "connected", at, operator=operator, hold_time=hold_time)
        await self.store.update(call_id, operator=operator, connected_at=at)

    async def conversation_ended(self, call_id: str, operator: str, reason: str,
                                 at: float | None = None) -> None:
        await self._event(call_id, "conversation_ended", at, operator=operator, reason=reason)

    async def queue_abandoned(self, call_id: str, hold_time: int,
                              at: float | None = None) -> None:
        await self._event(call_id, "queue_abandoned", at, hold_time=hold_time)

    async def queue_result(self, call_id: str, desk: str, status: str,
                           at: float | None = None) -> None:
        await self._event(call_id, "queue_result", at, desk=desk, status=status)

    async def hangup_source(self, call_id: str, side: str, source: str,
                            at: float | None = None) -> None:
        """Asterisk's hangup handler said which channel ended the call."""
        await self._event(call_id, "hangup_source", at, side=side, channel=source or None)

    async def hung_up(
        self, call_id: str, cause: int, cause_text: str, at: float | None = None
    ) -> CallRecord | None:
        """The caller's channel is gone: close the record once, deciding outcome and who hung
        up from the whole timeline in one transaction (see policy.outcome)."""
        at = self.clock() if at is None else at
        timeline: list[dict[str, Any]] = []  # as the ending read it: handed to on_ended

        def decide(record: CallRecord, events: list[dict[str, Any]]) -> dict[str, Any]:
            timeline[:] = events
            ending = (decide_outbound_ending if record.direction == "outbound"
                      else decide_ending)(connected=record.connected_at is not None,
                                          disposition=record.disposition, events=events)
            return {"ended_at": at, "hangup_cause": cause, "hangup_by": ending.hangup_by,
                    "outcome": ending.outcome.value}

        ended = await self.store.finish_call(call_id, decide)
        self.active.discard(call_id)
        if ended is None:  # unknown, or closed already (AMI and reconciliation both saw it)
            return await self.store.get(call_id)
        await self._event(call_id, "hung_up", at, cause=cause, cause_text=cause_text,
                          outcome=ended.outcome, hangup_by=ended.hangup_by)
        self.outcomes[ended.outcome or "unknown"] += 1
        if self._on_ended is not None:
            self._on_ended(ended, timeline)
        return ended

    # ---- call-time limits (ivr/protection/rules_limits.py, [ivr-member] in the dialplan) ----
    async def talk_limit_set(self, call_id: str, desk: str, limit: float | None,
                             warning: float, rule: str, warning_prompt: str = "",
                             closing_prompt: str = "") -> None:
        await self._event(call_id, "talk_limit_set", desk=desk, limit=limit, warning=warning,
                          rule=rule, warning_prompt=warning_prompt,
                          closing_prompt=closing_prompt)
        await self.store.update(call_id, talk_limit=limit)

    async def talk_limit_reached(self, call_id: str, operator: str, closing_prompt: str,
                                 at: float | None = None,
                                 applied: tuple[float | None, float, str] | None = None) -> None:
        """Dial's limit ended the talk; the caller hears the closing on their own channel
        (recorded by MixMonitor itself). The warning Dial played is heard but not recorded:
        its announcement event asks the finaliser to mix the prompt in at its time.
        applied: (limit, warning, warning prompt) as the dialplan reported them, for a call
        the controller set no limit on (the fail-safe path: the default desk's)."""
        events = await self.store.events(call_id)
        if applied is not None and applied[0] and not any(
                e["kind"] == "talk_limit_set" for e in events):
            limit, warning, warning_prompt = applied
            await self.talk_limit_set(call_id, "", limit, warning, "dialplan",
                                      warning_prompt=warning_prompt)
        at = await self._event(call_id, "talk_limit_reached", at, operator=operator)
        await self.limit_warning_heard(call_id, until=at)
        await self._event(call_id, "announcement", at, prompt=closing_prompt,
                          purpose="talk_limit_closing", mix=False)

    async def limit_warning_heard(self, call_id: str, until: float) -> None:
        """If the talk lasted past the warning time, the warning was played at
        connect (app_queue's AgentConnect, Asterisk's time) + limit - warning."""
        record, events = await self.store.get_with_events(call_id)
        if record is None or record.connected_at is None:
            return
        if any(e["kind"] == "announcement"
               and (e.get("data") or {}).get("purpose") == "talk_limit_warning" for e in events):
            return
        limits = [e["data"] for e in events if e["kind"] == "talk_limit_set" and e.get("data")]
        if not limits or not limits[-1].get("limit") or not limits[-1].get("warning"):
            return
        chosen = limits[-1]
        warned_at = record.connected_at + chosen["limit"] - chosen["warning"]
        if warned_at < until:
            await self._event(call_id, "announcement", warned_at,
                              prompt=chosen.get("warning_prompt") or "",
                              purpose="talk_limit_warning", mix=True)

    async def announcement_mixed(self, call_id: str, prompt: str, prompt_at: float,
                                 offset: float) -> None:
        """An announcement Asterisk did not record was mixed into the recording file."""
        await self._event(call_id, "announcement_mixed", prompt=prompt, prompt_at=prompt_at,
                          offset=round(offset, 3))

    async def ivr_time_cap(self, call_id: str, seconds: float,
                           at: float | None = None) -> None:
        await self._event(call_id, "ivr_time_cap", at, seconds=seconds)

    async def adopt(self, call_id: str, *, caller: str | None, did: str | None,
                    recording_path: str | None, started_at: float | None = None,
                    failsafe: bool = False) -> bool:
        """A live call this controller did not see start (it was down, or FastAGI failed):
        follow it from now on. True when it was new to the store."""
        created = not await self.is_known(call_id)
        await self.call_started(call_id, caller=caller, did=did, recording_path=recording_path,
                                source=Source.AMI, started_at=started_at)
        if created:
            await self._event(call_id, "adopted", failsafe=failsafe)
            if failsafe:
                await self.store.update(call_id, failsafe=1)
        return created

    async def recording_finalised(self, call_id: str, duration: float, sha256: str,
                                  path: str | None = None) -> None:
        """The recording is final; `path`: the archive that replaced the legs (stereo)."""
        await self._event(call_id, "recording_finalised", duration=round(duration, 3),
                          sha256=sha256, **({"path": path} if path else {}))
        values: dict[str, Any] = {"recording_duration": duration, "recording_sha256": sha256}
        if path:
            values["recording_path"] = path
        await self.store.update(call_id, **values)

    async def recording_missing(self, call_id: str, path: str, problem: str) -> None:
        await self._event(call_id, "recording_missing", path=path, problem=problem)

    async def feature_event(self, call_id: str, kind: str, at: float | None = None,
                            **data: Any) -> float:
        """A fact a protection service reports (operator feature codes)."""
        return await self._event(call_id, kind, at, **data)

    # ---- reading ----
    async def recent(self, limit: int = 20) -> list[CallRecord]:
        return await self.store.recent(limit)

    async def get(self, call_id: str) -> CallRecord | None:
        return await self.store.get(call_id)

    async def events(self, call_id: str) -> list[dict[str, Any]]:
        return await self.store.events(call_id)

    async def get_with_events(self, call_id: str,
                              ) -> tuple[CallRecord | None, list[dict[str, Any]]]:
        return await self.store.get_with_events(call_id)

    async def is_known(self, call_id: str) -> bool:
        if call_id in self.active:
            return True
        known = self._known.get(call_id)
        if known is True:
            return True
        if known is not None and time.monotonic() < known:
            return False
        exists = await self.store.exists(call_id)
        self._remember(call_id, True if exists else time.monotonic() + UNKNOWN_KEPT_S)
        return exists

    def _remember(self, call_id: str, known: float | bool) -> None:
        self._known[call_id] = known
        self._known.move_to_end(call_id)
        if len(self._known) > KNOWN_IDS_KEPT:
            self._known.popitem(last=False)
