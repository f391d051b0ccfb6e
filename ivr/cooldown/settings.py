"""The `cooldown` section of the protection settings (protection.yaml): after a hard call the
operator is paused at their desks for a wrap-up time.

    cooldown:
      seconds: 60                       # the wrap-up; 0 = off (the default)
      after: [flagged, warned, limited, refused]
      desks:
        support: {seconds: 120}         # this desk's own wrap-up (and `after`, if given)

The triggers: `flagged` (the operator's flag code; flags from the inbound rules do not
count: they describe the caller's history, not this call), `warned` (the caller heard the
shouting warning, event shout_warning), `limited` (the talk-time limit ended the call),
`refused` (the operator's end-and-refuse code). ivr/cooldown/policy.py applies them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Trigger = Literal["flagged", "warned", "limited", "refused"]
TRIGGERS: tuple[Trigger, ...] = ("flagged", "warned", "limited", "refused")
# An hour: a longer "cool-down" is a supervisor's decision (ivr operators pause).
MAX_SECONDS = 3600.0


class DeskCooldown(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seconds: float | None = Field(default=None, ge=0, le=MAX_SECONDS)  # None: the section's
    after: tuple[Trigger, ...] | None = None  # None: the section's


class CooldownSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seconds: float = Field(default=0.0, ge=0, le=MAX_SECONDS)  # 0: no cool-down
    after: tuple[Trigger, ...] = TRIGGERS
    desks: dict[str, DeskCooldown] = Field(default_factory=dict)

    def for_desk(self, desk: str | None) -> tuple[float, tuple[Trigger, ...]]:
        """(wrap-up seconds, triggers) for a call of this desk."""
        own = self.desks.get(desk or "") or DeskCooldown()
        seconds = self.seconds if own.seconds is None else own.seconds
        after = self.after if own.after is None else own.after
        return seconds, after

    def unknown_names(self, *, desks: set[str] | None, entries: set[str] | None,
                      operators: set[str] | None) -> list[str]:
        """Desks this section names that do not exist in the journey."""
        if desks is None:
            return []
        return [f"cooldown.desks.{name}: no desk named {name!r} in the journey"
                for name in self.desks if name not in desks]
