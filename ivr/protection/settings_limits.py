"""The `limits` section of the protection settings (protection.yaml): call-time limits (時間拘束).

    limits:
      warning: 30                 # default warning time, seconds before a limit
      desks:
        support: {talk_limit: 600, warning: 60, warn_operator: true}
      flags:                      # tighter limits for flagged calls (a flag name -> seconds)
        harassment: 180
        repeat: 300
      max_ivr_time: 900           # most seconds a caller spends in menus and queues

Asterisk enforces all of it (asterisk/extensions.conf.j2: [ivr-member]; the cap is the caller's
TIMEOUT(absolute), lifted in [ivr-member-connected]);
ivr/protection/rules_limits.py picks the limit for one call.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Prompt names are file names under the prompts folder and go into dialplan variables.
PROMPT_NAME = r"^[a-z0-9_]{1,64}$"
# Flag names as the inbound rules write them (space-separated in IVR_FLAGS).
FLAG_NAME = r"^[a-z0-9_-]{1,32}$"
# A day: nobody means a longer limit, and Asterisk's millisecond arithmetic stays small.
MAX_SECONDS = 86400.0


class DeskLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    talk_limit: float | None = Field(default=None, gt=0, le=MAX_SECONDS)  # None: no limit
    warning: float | None = Field(default=None, ge=0, le=MAX_SECONDS)  # None: the section's
    warn_operator: bool = False  # the operator hears the warning too
    warning_prompt: str = Field(default="talk_limit_warning", pattern=PROMPT_NAME)
    closing_prompt: str = Field(default="talk_limit_closing", pattern=PROMPT_NAME)

    @model_validator(mode="after")
    def _warning_below_limit(self) -> DeskLimit:
        if (self.talk_limit is not None and self.warning is not None
                and self.warning >= self.talk_limit):
            raise ValueError(f"warning ({self.warning:g} s) must be below talk_limit "
                             f"({self.talk_limit:g} s)")
        return self


class LimitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    warning: float = Field(default=30.0, ge=0, le=MAX_SECONDS)
    desks: dict[str, DeskLimit] = Field(default_factory=dict)
    flags: dict[str, float] = Field(default_factory=dict)
    max_ivr_time: float | None = Field(default=None, gt=0, le=MAX_SECONDS)

    @model_validator(mode="after")
    def _check(self) -> LimitSettings:
        problems = []
        for name, seconds in self.flags.items():
            if not _matches(FLAG_NAME, name):
                problems.append(f"flags.{name}: not a flag name (a-z, 0-9, _ and -)")
            elif not 0 < seconds <= MAX_SECONDS:
                problems.append(f"flags.{name}: a limit is more than 0 and at most "
                                f"{MAX_SECONDS:g} s")
        for name, desk in self.desks.items():
            if (desk.talk_limit is not None and desk.warning is None
                    and self.warning >= desk.talk_limit):
                problems.append(f"desks.{name}.talk_limit: {desk.talk_limit:g} s is not above "
                                f"the warning time ({self.warning:g} s)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def for_desk(self, desk: str) -> DeskLimit:
        return self.desks.get(desk) or DeskLimit()

    def warning_for(self, desk: str) -> float:
        own = self.for_desk(desk).warning
        return self.warning if own is None else own

    def unknown_names(self, *, desks: set[str] | None, entries: set[str] | None,
                      operators: set[str] | None) -> list[str]:
        """Desks, entries and operators this section names that do not exist."""
        if desks is None:
            return []
        return [f"limits.desks.{name}: no desk named {name!r} in the journey"
                for name in self.desks if name not in desks]


def _matches(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern.strip("^$"), text) is not None
