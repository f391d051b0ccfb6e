"""The inbound decision (着信規制), pure: the caller and the call's context in, a decision with
the rule that made it out. No I/O: the service reads the blocks and the counts.

Order, and which rule wins when several apply:
1. The block list (a number is known): an active block of this entry point (or of all)
   that covers the number refuses the call. Of several, the most specific names the
   decision: an exact number, then the longest prefix, then the pattern with the most fixed
   digits; equal ones, the oldest (lowest id).
2. Withheld numbers (no usable number, or the caller asked for privacy): the entry point's
   setting for the reason, else the default entry's, else allow.
3. Repeat callers (a number is known): every step whose threshold is reached applies, so
   they add up (flag + supervisor + limit); a refuse step refuses and adds an expiring block.
   The rule named is the strongest step's (refuse > supervisor > limit > flag; equal ones,
   the highest threshold).
A refusal by an earlier rule ends the decision. A desk from the repeat supervisor step beats a
desk from the withheld setting (the supervisor desk is where the harder cases go).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ivr.policy.callerid import normalise_number
from ivr.protection.call import NONE, CallProtection
from ivr.protection.patterns import matches, specificity
from ivr.protection.settings_inbound import WINDOWS, InboundSettings, RepeatStep
from ivr.protection.store_blocks import Block

_STRENGTH = {"flag": 1, "limit": 2, "supervisor": 3, "refuse": 4}
_PRIVACY_ID = frozenset({"id", "user", "header"})  # RFC 3323/3325 values that hide the caller
_NAMES = {
    "anonymous": "anonymous",
    "coin line/payphone": "payphone",
    "payphone": "payphone",
    "interaction with other service": "unavailable",
    "unavailable": "unavailable",
}


@dataclass(frozen=True)
class AutoBlock:
    """A block the decision asks to add (a repeat step's refuse), with its provenance."""

    number: str
    reason: str
    expires_in: float  # seconds from now
    entry: str | None  # None: every entry point (the step came from the default)
    rule: str
    count: int


@dataclass(frozen=True)
class InboundDecision:
    action: Literal["allow", "refuse", "desk"]
    rule: str | None = None  # block:12 | withheld:anonymous | repeat:hour>=3
    prompt: str | None = None  # refuse: the refusal announcement
    desk: str | None = None  # desk: where the caller goes instead of the journey's desk
    protection: CallProtection = NONE
    auto_block: AutoBlock | None = None
    withheld: str | None = None  # the withheld reason, when the number was withheld
    why: list[str] = field(default_factory=list)  # for `ivr rules test` and the log


def withheld_reason(number: str | None, name: str | None, privacy: str | None) -> str | None:
    """Why there is no number to go by: None when there is one (and no privacy asked)."""
    tokens = {t.strip().lower() for t in (privacy or "").replace(",", ";").split(";")}
    asked = bool(tokens & _PRIVACY_ID)
    if number is not None and not asked:
        return None
    label = " ".join((name or "").strip().strip('"').lower().split())
    if label in _NAMES:
        return _NAMES[label]
    return "anonymous" if asked else "unknown"


def window_starts(now: float) -> dict[str, float]:
    """Where each repeat window begins (rolling, see settings_inbound)."""
    return {name: now - length for name, length in WINDOWS.items()}


def matching_block(number: str, entry: str | None, blocks: Sequence[Block],
                   now: float) -> Block | None:
    found = [b for b in blocks if b.is_active(now) and (b.entry is None or b.entry == entry)
             and matches(b.kind, b.value, number)]
    if not found:
        return None
    return max(found, key=lambda b: (specificity(b.kind, b.value), -b.id))


def decide_inbound(*, number: str | None, entry: str | None, now: float,
                   blocks: Sequence[Block], counts: Mapping[str, int],
                   settings: InboundSettings, name: str | None = None,
                   privacy: str | None = None, withheld: str | None = None,
                   country: str = "81") -> InboundDecision:
    """number: the caller's number as received (normalised here, in `country`'s national
    form; normalising twice changes nothing). counts: calls from this number per window,
    this call included. name, privacy: the From display name and the Privacy header.
    withheld: the reason when the caller already knows it (`ivr rules test --withheld`)."""
    number = normalise_number(number, country) if number is not None else None
    why: list[str] = []
    flags: set[str] = set()
    if number is not None:
        block = matching_block(number, entry, blocks, now)
        if block is not None:
            why.append(f"{block.rule_id}: {block.kind} {block.value} ({block.reason}, "
                       f"by {block.added_by})")
            return InboundDecision("refuse", block.rule_id, settings.prompts.blocked,
                                   why=why, protection=CallProtection(frozenset({"blocked"})))
        why.append(f"no active block covers {number}")
    reason = withheld or withheld_reason(number, name, privacy)
    action, rule, desk = "allow", None, None
    if reason is not None:
        setting, source = settings.withheld_action(entry, reason)
        rule = f"withheld:{reason}"
        why.append(f"{rule}: {setting.describe()} (from {source})")
        flags.add("withheld")
        if setting.action == "refuse":
            return InboundDecision("refuse", rule, setting.prompt or settings.prompts.withheld,
                                   withheld=reason, why=why,
                                   protection=CallProtection(frozenset(flags)))
        if setting.action == "desk":
            action, desk = "desk", setting.desk
    steps, step_entry = settings.repeat_steps(entry)
    count_window = settings.ring.count_window
    repeat_count = counts.get(count_window) if number is not None else None
    applied = [s for s in steps if number is not None and counts.get(s.window, 0) >= s.calls]
    for step in steps:
        if number is not None and step not in applied:
            why.append(f"{step.rule_id}: not reached ({counts.get(step.window, 0)} "
                       f"in the {step.window})")
    talk_limit: float | None = None
    auto_block: AutoBlock | None = None
    prompt: str | None = None
    if applied:
        strongest = max(applied, key=lambda s: (_STRENGTH[s.action], s.calls))
        rule = strongest.rule_id
        repeat_count = counts.get(strongest.window, 0)
        flags.add("repeat")
        for step in applied:
            why.append(f"{step.rule_id}: {step.action} ({counts[step.window]} calls in the "
                       f"{step.window})")
            if step.action == "supervisor":
                action, desk = "desk", settings.supervisor_desk
                flags.add("supervisor")
            elif step.action == "limit":
                assert step.talk_limit is not None
                talk_limit = min(talk_limit or step.talk_limit, step.talk_limit)
                flags.add("limited")
        if strongest.action == "refuse":
            assert number is not None
            action, desk = "refuse", None
            prompt = strongest.prompt or settings.prompts.repeat
            auto_block = _auto_block(number, strongest, step_entry, repeat_count, settings)
    protection = CallProtection(
        flags=frozenset(flags), repeat_count=repeat_count,
        ring_prefix=ring_prefix(settings, flags, repeat_count),
        alert_info=alert_info(settings, flags), talk_limit=talk_limit)
    if action == "allow" and not why:
        why.append("no rule applies")
    return InboundDecision(action, rule, prompt, desk, protection, auto_block, reason, why)


def _auto_block(number: str, step: RepeatStep, entry: str | None, count: int,
                settings: InboundSettings) -> AutoBlock:
    return AutoBlock(number=number, entry=entry, rule=step.rule_id, count=count,
                     expires_in=float(step.block_for or settings.block_for),
                     reason=f"repeat caller: {count} calls in the {step.window} "
                            f"({step.rule_id})")


def ring_prefix(settings: InboundSettings, flags: set[str], count: int | None) -> str:
    ring = settings.ring
    if not ring.prefix:
        return ""
    # Flagged: a repeat step or an operator's harassment flag; withheld alone is not (an
    # Alert-Info can tell it apart).
    text = ring.flagged if flags & {"repeat", "harassment"} else ""
    if count is not None and count >= ring.repeat_from:
        text += ring.repeat.replace("{count}", str(count))
    return text


def alert_info(settings: InboundSettings, flags: set[str]) -> str:
    for flag, value in settings.ring.alert_info.items():
        if flag in flags:
            return value
    return ""
