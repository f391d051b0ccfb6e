"""The `live` section of the protection settings (protection.yaml): shouting detected while a
call is connected, what the operator hears softened, the caller warned.

    live:
      enabled: true               # every desk, unless a desk says otherwise
      above_baseline_db: 10       # louder than the caller's own level in this call by ...
      floor_dbfs: -20             # ... and louder than this in any case
      sustain: 1.0                # for this many seconds: shouting starts
      release: 2.0                # this long below: it has ended
      soften_db: [6, 12]          # the operator hears the caller lowered by these, in steps
      soften_every: 2.0           # seconds of shouting between steps
      warning: true               # the caller's warning (false: none)
      warning_after: 6.0          # seconds of shouting in the call before it
      warning_prompt: shout_warning
      second_stage: offer_end     # none | offer_end (a beep to the operator) | escalate
      second_after: 10.0          # seconds of shouting after the warning
      desks:
        supervisor: {enabled: false}

ivr/live/detector.py applies it to one call; ivr/live/service.py acts on Asterisk.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ivr.protection.settings_limits import PROMPT_NAME

MAX_SECONDS = 3600.0


class LiveRule(BaseModel):
    """The settings for one call (a desk's, with the section's defaults filled in)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    above_baseline_db: float = Field(default=10.0, ge=3.0, le=40.0)
    floor_dbfs: float = Field(default=-20.0, ge=-60.0, le=0.0)
    sustain: float = Field(default=1.0, ge=0.3, le=10.0)
    release: float = Field(default=2.0, ge=0.3, le=30.0)
    soften_db: tuple[float, ...] = (6.0, 12.0)
    soften_every: float = Field(default=2.0, ge=0.5, le=60.0)
    warning: bool = True  # the caller's warning at all
    warning_after: float = Field(default=6.0, ge=0.0, le=MAX_SECONDS)
    warning_prompt: str = Field(default="shout_warning", pattern=PROMPT_NAME)
    second_stage: Literal["none", "offer_end", "escalate"] = "none"
    second_after: float = Field(default=10.0, ge=0.0, le=MAX_SECONDS)

    @field_validator("soften_db")
    @classmethod
    def _steps(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) > 8:
            raise ValueError("at most 8 softening steps")
        if any(not 0 < step <= 30 for step in value):
            raise ValueError("each step lowers by more than 0 and at most 30 dB")
        if list(value) != sorted(value):
            raise ValueError("steps go down further each time: list them in rising order")
        return value

    @model_validator(mode="after")
    def _second_needs_warning(self) -> LiveRule:
        if self.second_stage != "none" and not self.warning:
            raise ValueError("second_stage follows the warning: it needs warning: true")
        return self


class DeskLive(BaseModel):
    """A desk's own values; anything left out (or null) is the section's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | None = None
    above_baseline_db: float | None = None
    floor_dbfs: float | None = None
    sustain: float | None = None
    release: float | None = None
    soften_db: tuple[float, ...] | None = None
    soften_every: float | None = None
    warning: bool | None = None
    warning_after: float | None = None
    warning_prompt: str | None = None
    second_stage: Literal["none", "offer_end", "escalate"] | None = None
    second_after: float | None = None


class LiveSettings(LiveRule):
    desks: dict[str, DeskLive] = Field(default_factory=dict)
    # Where `escalate` sends the caller (the features section's supervisor desk by default).
    escalate_desk: str = Field(default="supervisor", pattern=r"^[a-z][a-z0-9_-]{0,31}$")

    @model_validator(mode="after")
    def _desks_valid(self) -> LiveSettings:
        problems = []
        for name in self.desks:
            try:
                self.for_desk(name)
            except ValidationError as exc:
                problems += [f"desks.{name}.{'.'.join(map(str, e['loc'])) or '(desk)'}: "
                             f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def for_desk(self, desk: str | None) -> LiveRule:
        base = self.model_dump(exclude={"desks", "escalate_desk"})
        own = self.desks.get(desk or "")
        if own is not None:
            base |= own.model_dump(exclude_none=True)
        return LiveRule.model_validate(base)

    def unknown_names(self, *, desks: set[str] | None, entries: set[str] | None,
                      operators: set[str] | None) -> list[str]:
        if desks is None:
            return []
        problems = [f"live.desks.{name}: no desk named {name!r} in the journey"
                    for name in self.desks if name not in desks]
        uses_escalate = self.second_stage == "escalate" or any(
            d.second_stage == "escalate" for d in self.desks.values())
        if uses_escalate and self.escalate_desk not in desks:
            problems.append(f"live.escalate_desk: no desk named {self.escalate_desk!r}")
        return problems
