"""The `features` section of the protection settings (protection.yaml): the keypad codes an
operator presses during a call, and what escalate and end-and-refuse do.

The codes become features.conf's [applicationmap] (asterisk/features.conf.j2): Asterisk's
dynamic features take the digits out of the bridge, so the caller never hears them. A change
applies without a restart: `ivr reload` re-renders the file and reloads Asterisk's features
module; calls already talking keep the codes they were connected with.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Digits, * and #: what a phone keypad sends and an [applicationmap] line takes literally.
CODE = r"^[0-9*#]{1,6}$"
NAME = r"^[a-z][a-z0-9_-]{0,31}$"  # a desk, as ivr/journey.py names them
PROMPT = r"^[A-Za-z0-9_-]{1,64}$"  # a prompt, as ivr/journey.py names them

DEFAULT_DESK = "supervisor"

# Feature name (applicationmap entry, UserEvent Feature field) -> settings field.
FEATURES = ("flag", "notice", "escalate", "end_and_refuse")


class FeatureCodes(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    flag: str = Field(default="*1", pattern=CODE)
    notice: str = Field(default="*2", pattern=CODE)
    escalate: str = Field(default="*3", pattern=CODE)
    end_and_refuse: str = Field(default="*9", pattern=CODE)

    @model_validator(mode="after")
    def _distinct(self) -> FeatureCodes:
        # Asterisk acts on the first code that matches: one that is another's prefix would
        # hide the longer one for ever.
        codes = {name: getattr(self, name) for name in FEATURES}
        for a, ca in codes.items():
            for b, cb in codes.items():
                if a < b and ca == cb:
                    raise ValueError(f"{a} and {b} have the same code {ca!r}")
                if a != b and cb.startswith(ca) and ca != cb:
                    raise ValueError(f"{a}'s code {ca!r} is the start of {b}'s {cb!r}")
        return self


class FeatureSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    codes: FeatureCodes = FeatureCodes()
    # blind: the caller goes to the desk at once, the operator's leg ends. Attended (the
    # operator stays until the supervisor answers) is not offered: AttendedTransfer() run
    # from the feature code returned without effect here (measured, Asterisk 22.10: the
    # queue bridge gives no transfer rights; Queue's t option would also hand the operator
    # the built-in transfer codes).
    escalate_mode: Literal["blind"] = "blind"
    supervisor_desk: str = Field(default=DEFAULT_DESK, pattern=NAME)
    # End and refuse: the block added for the caller's number.
    block_days: int = Field(default=30, ge=1, le=3650)
    block_reason: str = Field(default="ended by operator", min_length=1, max_length=200)
    # Prompts the caller hears (prompts/prompts.yaml names, in the call's language); the
    # mid-call notice is the journey's own notice unless one is named here.
    closing_prompt: str = Field(default="operator_closing", pattern=PROMPT)
    notice_prompt: str | None = Field(default=None, pattern=PROMPT)

    def unknown_names(self, *, desks: set[str] | None, entries: set[str] | None,
                      operators: set[str] | None) -> list[str]:
        """Desks, entries and operators this section names that do not exist."""
        # The default desk is not checked (a stored version names every field): a journey
        # without a `supervisor` desk may still use the other codes; escalate then finds no
        # desk and the caller hears goodbye. A desk named otherwise must exist.
        named = self.supervisor_desk != DEFAULT_DESK
        if named and desks is not None and self.supervisor_desk not in desks:
            return [f"features.supervisor_desk: no desk named {self.supervisor_desk!r}"]
        return []

    def applicationmap(self) -> list[dict[str, str]]:
        """The features.conf [applicationmap] entries (see asterisk/features.conf.j2)."""
        # The caller's own channel goes to the desk: one recording across the move.
        escalate = f"BlindTransfer({self.supervisor_desk},ivr-escalate)"
        return [
            # Runs on the operator's side: the beep is for the operator only.
            {"name": "ivr_flag", "code": self.codes.flag, "on": "self",
             "app": "Gosub(ivr-feature-flag,s,1)"},
            # Runs on the caller's channel: Playback there is in the caller's recording, and
            # while it plays the caller is out of the bridge's mix (the operator is held).
            {"name": "ivr_notice", "code": self.codes.notice, "on": "peer",
             "app": f"Gosub(ivr-feature-notice,s,1({self.notice_prompt or ''}))"},
            {"name": "ivr_escalate", "code": self.codes.escalate, "on": "self",
             "app": escalate},
            {"name": "ivr_end_refuse", "code": self.codes.end_and_refuse, "on": "peer",
             "app": f"Gosub(ivr-feature-end,s,1({self.closing_prompt}))"},
            # A withheld caller cannot be blocked: the same code only tells the operator so.
            {"name": "ivr_end_withheld", "code": self.codes.end_and_refuse, "on": "self",
             "app": "Gosub(ivr-feature-withheld,s,1)"},
        ]
