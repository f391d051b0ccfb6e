"""Which talk-time limit applies to one call (pure: settings and the call's facts in).

Candidates: the desk's limit (limits.desks.<desk>), a limit per flag the call carries
(limits.flags.<flag>), and a tighter limit a repeat-caller step chose (CallProtection.
talk_limit, from the inbound rules). The tightest applies; its rule id says which.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.protection.call import CallProtection
from ivr.protection.settings_limits import LimitSettings


@dataclass(frozen=True)
class TalkLimit:
    limit: float | None  # seconds of talk; None: no limit
    warning: float  # the warning this many seconds before the limit (0: none)
    warn_operator: bool
    warning_prompt: str
    closing_prompt: str
    rule: str  # "limits.desks.support", "limits.flags.harassment", "inbound.repeat", "none"

    @property
    def limit_ms(self) -> int:
        """For Dial's L() (0: no limit)."""
        return round(self.limit * 1000) if self.limit else 0

    @property
    def warning_ms(self) -> int:
        return round(self.warning * 1000) if self.limit else 0


def talk_limit(settings: LimitSettings, desk: str,
               protection: CallProtection | None = None) -> TalkLimit:
    desk_limit = settings.for_desk(desk)
    candidates: list[tuple[float, str]] = []
    if desk_limit.talk_limit is not None:
        candidates.append((desk_limit.talk_limit, f"limits.desks.{desk}"))
    if protection is not None:
        for flag in sorted(protection.flags):
            if flag in settings.flags:
                candidates.append((settings.flags[flag], f"limits.flags.{flag}"))
        if protection.talk_limit is not None and protection.talk_limit > 0:
            candidates.append((protection.talk_limit, "inbound.repeat"))
    limit, rule = min(candidates, default=(None, "none"))
    warning = settings.warning_for(desk) if limit is not None else 0.0
    if limit is not None and warning >= limit:
        # A tighter limit than the desk's warning time: warn half-way rather than never
        # (settings validation keeps the desk's own limit above its warning).
        warning = limit / 2
    return TalkLimit(limit, warning, desk_limit.warn_operator, desk_limit.warning_prompt,
                     desk_limit.closing_prompt, rule)
