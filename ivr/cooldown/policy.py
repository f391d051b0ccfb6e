"""Does a call earn its operator a cool-down, and how long: a pure decision from the call
record, its events and the settings (no I/O). Also the pause reason that carries the
cool-down's end in Asterisk, so that any controller (a restarted one) knows when to lift it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ivr.cooldown.settings import TRIGGERS, CooldownSettings
from ivr.model import CallRecord

# Which event of the call record is which trigger (ivr/protection/service_features.py,
# CallService.talk_limit_reached, the live shouting warning).
TRIGGER_EVENTS: dict[str, str] = {
    "flagged": "flagged",            # the operator's flag code
    "shout_warning": "warned",       # the caller heard the shouting warning
    "talk_limit_reached": "limited",  # the talk-time limit ended the call
    "end_and_refuse": "refused",     # the operator ended the call and refused the number
}

# The pause reason in Asterisk (app_queue keeps 80 characters; `;` and `|` would break its
# persistent members in astdb, so neither may appear).
REASON_PREFIX = "ivr-cooldown"
_REASON = re.compile(r"^ivr-cooldown until=(\d{1,12}) call=(\S*)$")
REASON_MAX = 80


@dataclass(frozen=True)
class Cooldown:
    seconds: float
    triggers: tuple[str, ...]   # in TRIGGERS order
    operators: tuple[str, ...]  # who was on the call when it turned hard


def decide(record: CallRecord, events: Iterable[Mapping[str, Any]],
           settings: CooldownSettings) -> Cooldown | None:
    """The cool-down this call earns, or None (a calm call, the trigger not configured for
    the call's desk, the wrap-up 0, or nobody to pause)."""
    seconds, after = settings.for_desk(record.desk)
    if seconds <= 0:
        return None
    found: set[str] = set()
    operators: list[str] = []
    for event in events:
        trigger = TRIGGER_EVENTS.get(event.get("kind", ""))
        if trigger is None or trigger not in after:
            continue
        found.add(trigger)
        operator = (event.get("data") or {}).get("operator") or record.operator
        if operator and operator not in operators:
            operators.append(operator)
    if not found or not operators:
        return None
    return Cooldown(seconds=seconds, triggers=tuple(t for t in TRIGGERS if t in found),
                    operators=tuple(operators))


def reason(until: float, call_id: str) -> str:
    """`ivr-cooldown until=<epoch seconds, rounded up> call=<call id>`, at most 80 chars."""
    head = f"{REASON_PREFIX} until={int(-(-until // 1))} call="
    call = re.sub(r"[^0-9A-Za-z._@:-]", "", call_id)
    return head + call[:REASON_MAX - len(head)]


def parse_reason(text: str | None) -> tuple[float, str] | None:
    """(until, call id) of a cool-down pause reason; None for any other reason (a supervisor's
    pause, a break, no reason)."""
    match = _REASON.match((text or "").strip())
    if match is None:
        return None
    return float(match.group(1)), match.group(2)


def expired(text: str | None, now: float) -> bool:
    """A cool-down pause reason whose end has come."""
    parsed = parse_reason(text)
    return parsed is not None and parsed[0] <= now
