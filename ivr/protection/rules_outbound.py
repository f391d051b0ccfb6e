"""Outbound restrictions (発信規制): may this operator dial this number? Pure: no I/O.

The order of the decision, first answer wins:

1. not a dialable number (empty, letters, unicode, over 32 digits) -> refused, `invalid:number`;
2. an emergency number (110, 118, 119 by default) -> allowed, `emergency:<number>`, never a
   PIN, whatever the rules and defaults say;
3. the rules in their order, each only if it applies to the operator (no scope: everyone;
   else the operator is named or is a member of a named desk) -> `outbound:<rule id>`;
4. the operator's own default (`default:operator:<name>`), else the strictest of the defaults
   of the operator's desks (`default:desk:<desk>`; one desk saying deny is enough), else the
   section's `default` (`default:allow` / `default:deny`).

Dialled numbers are not caller ids. They are compared in one form (`comparable_number`):
`normalise_number` first (separators and full-width digits gone; `+81 3-1234-5678`,
`81312345678` and `0312345678` are one number), then an international number typed with `+`
becomes the Japanese international access form `010<cc>...`, so the `010` rule also catches
`+1 555...`, and the number-display prefixes 186/184 (show / withhold my number) are taken
off, so `186 0990...` is judged as `0990...`. What goes to the trunk is not this form: it is
the operator's own digits after the dialplan's FILTER (see ivr/agi/outbound.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ivr.model import Disposition, Outcome
from ivr.policy.callerid import normalise_number
from ivr.policy.outcome import Ending
from ivr.protection.settings import ProtectionSettings
from ivr.protection.settings_outbound import OutboundRule, OutboundSettings

INTERNATIONAL_ACCESS = "010"
# 186: show my number on this call, 184: withhold it (Japanese carriers), dialled before it.
DISPLAY_PREFIXES = ("186", "184")


@dataclass(frozen=True)
class OutboundDecision:
    allowed: bool
    rule: str  # "emergency:110", "outbound:intl", "default:allow", "invalid:number"...
    reason: str
    pin_may_unlock: bool = False
    number: str | None = None  # the number as compared (None when not dialable)

    def event(self) -> dict[str, Any]:
        """The decision as the call record's `outbound_decision` event data."""
        return {"allowed": self.allowed, "rule": self.rule, "reason": self.reason,
                "pin_may_unlock": self.pin_may_unlock, "number": self.number}


def comparable_number(raw: str | None, country: str = "81") -> str | None:
    """The one form rules compare; None when the text is no dialable number."""
    number = normalise_number(raw, country)
    if number is None:
        return None
    stripped = number
    while stripped.startswith(DISPLAY_PREFIXES) and len(stripped) > 3:
        stripped = stripped[3:]
    if stripped != number:
        # The prefix came off: what follows is a number of its own, in any of its forms.
        number = normalise_number(stripped, country) or stripped
    if number.startswith("+"):
        return INTERNATIONAL_ACCESS + number[1:]
    return number


def _applies(rule: OutboundRule, desks: frozenset[str], operator: str | None) -> bool:
    scope = rule.scope
    if scope is None or (not scope.desks and not scope.operators):
        return True
    return (operator is not None and operator in scope.operators) or bool(
        desks.intersection(scope.desks))


def _default(section: OutboundSettings, desks: frozenset[str],
             operator: str | None) -> OutboundDecision:
    own = section.operator_defaults.get(operator or "")
    if own is not None:
        return OutboundDecision(own.action == "allow", f"default:operator:{operator}",
                                own.reason or f"default for operator {operator}",
                                own.action == "deny" and own.pin_unlocks)
    # Of several desks the strictest decides: a desk that must not dial a number is not
    # opened up because its operator also sits at another desk.
    ranked = sorted((d for d in desks if d in section.desk_defaults),
                    key=lambda d: (section.desk_defaults[d].action == "allow", d))
    if ranked:
        desk = ranked[0]
        setting = section.desk_defaults[desk]
        return OutboundDecision(setting.action == "allow", f"default:desk:{desk}",
                                setting.reason or f"default for desk {desk}",
                                setting.action == "deny" and setting.pin_unlocks)
    return OutboundDecision(section.default == "allow", f"default:{section.default}",
                            "no rule matched")


def explain_outbound(settings: ProtectionSettings, number: str | None, *,
                     desk_names: Iterable[str] = (), operator: str | None = None
                     ) -> OutboundDecision:
    """Which rule decides a call from `operator` (sitting at `desk_names`) to `number`."""
    section = settings.outbound
    compared = comparable_number(number, settings.numbers.country_code)
    if compared is None:
        return OutboundDecision(False, "invalid:number", "not a dialable number")
    decision = _decide(section, compared, frozenset(desk_names), operator)
    return OutboundDecision(decision.allowed, decision.rule, decision.reason,
                            decision.pin_may_unlock, compared)


def _decide(section: OutboundSettings, number: str, desks: frozenset[str],
            operator: str | None) -> OutboundDecision:
    if number in section.emergency:
        return OutboundDecision(True, f"emergency:{number}", "emergency number: always allowed")
    for rule in section.rules:
        if not _applies(rule, desks, operator) or not rule.compiled().fullmatch(number):
            continue
        allowed = rule.action == "allow"
        return OutboundDecision(allowed, f"outbound:{rule.id}",
                                rule.reason or f"rule {rule.id}",
                                not allowed and rule.pin_unlocks)
    return _default(section, desks, operator)


def operator_desks(members: Mapping[str, Iterable[str]], operator: str | None) -> list[str]:
    """The desks whose members include the operator (journey desks: name -> members)."""
    if operator is None:
        return []
    return sorted(name for name, people in members.items() if operator in people)


def decide_outbound_ending(*, connected: bool, disposition: str | None,
                           events: Iterable[Mapping[str, Any]]) -> Ending:
    """How an outbound call ended. The record is the operator's channel, so Asterisk's
    hangup source names the operator's own channel (`caller` side) or the called party's
    (another SIP channel); after Dial returned (`dial_result`), the called party ended it."""
    timeline = sorted(events, key=lambda e: e["at"])
    # Answered: the called party picked up (the operator may have hung up during the notice,
    # before being connected: connected_at then stays empty).
    picked_up = any(e["kind"] == "called_answered" for e in timeline)
    if disposition == Disposition.REFUSED:
        outcome = Outcome.REFUSED
    elif connected or picked_up:
        outcome = Outcome.ANSWERED
    elif disposition == Disposition.DIALLED:
        outcome = Outcome.UNANSWERED
    else:
        outcome = Outcome.ABANDONED_IN_MENU  # the operator hung up during the PIN request
    side: str | None = None
    dial_returned = False
    for event in timeline:
        if event["kind"] == "hangup_source":
            side = (event.get("data") or {}).get("side")
        elif event["kind"] == "dial_result":
            dial_returned = True
    if side == "caller":
        by = "operator"
    elif side == "operator" or (connected and dial_returned):
        by = "called"
    elif side == "system" or outcome is Outcome.REFUSED:
        by = "system"
    else:
        by = "operator"
    return Ending(outcome, by)
