"""The `inbound` section of the protection settings (protection.yaml): 着信規制.

    inbound:
      supervisor_desk: supervisor
      prompts: {blocked: refused, withheld: withheld_refused, repeat: repeat_refused}
      entries:
        default:                       # every entry point, unless the entry says otherwise
          withheld: {anonymous: refuse, payphone: allow, unavailable: {desk: support}}
          repeat:
            - {window: day, calls: 3, action: flag}
            - {window: hour, calls: 5, action: refuse, block_for: 1d}
        main: {...}                    # an entry point's own: replaces default's per reason,
                                       # and its repeat steps replace default's
      ring: {prefix: true, repeat: "[R{count}]", flagged: "[!]", alert_info: {...}}

Withheld reasons: `anonymous` (非通知: `Privacy: id`, or From `Anonymous`), `payphone`
(公衆電話: `Coin line/payphone`), `unavailable` (表示圏外: `Interaction with other service`,
`Unavailable`), `unknown` (no number, no reason given).
Repeat windows are rolling: hour = the last 3,600 s, day = the last 24 h (not since
midnight: a caller at 23:50 and 00:10 is the same pressure on the operators), week = 7 days.
A call counts itself: `calls: 3` applies to the third call in the window.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

REASONS = ("anonymous", "payphone", "unavailable", "unknown")
Reason = Literal["anonymous", "payphone", "unavailable", "unknown"]
DEFAULT = "default"  # the entries key that applies to every entry point
NAME = r"^[a-z][a-z0-9_-]{0,31}$"  # desk and entry names, as in the journey
Prompt = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
WINDOWS = {"hour": 3600, "day": 86400, "week": 7 * 86400}
_DURATION = re.compile(r"^(\d{1,5})([mhdw])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# What the member dialplan keeps of a ring prefix / an Alert-Info (FILTER in
# asterisk/extensions.conf.j2, [ivr-member]): a value outside these is refused here rather
# than silently changed there. Alert-Info ends up in a SIP header: no CR/LF, comma, quote,
# space, nor `$`/`{`/`}` that the dialplan would expand.
_RING_TEXT = re.compile(r"^[0-9A-Za-z\[\]!#*+ _.]{0,16}$")
_ALERT_INFO = re.compile(r"^[0-9A-Za-z<>:/.;=_@+\-]{1,200}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def seconds(text: str | int) -> int:
    """`30m`, `12h`, `1d`, `2w` or a number of seconds."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        found = _DURATION.match(str(text).strip())
        if not found:
            raise ValueError(f"a duration like 30m, 12h, 1d, 2w: {str(text)[:20]!r}")
        value = int(found.group(1)) * _UNITS[found.group(2)]
    if value <= 0:
        raise ValueError("must be positive")
    return value


class WithheldAction(_Model):
    """allow | refuse (the refusal prompt: this one or prompts.withheld) | desk NAME."""

    action: Literal["allow", "refuse", "desk"]
    prompt: Prompt | None = None
    desk: Annotated[str, Field(pattern=NAME)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, value: Any) -> Any:
        # allow | refuse | "desk: support" | {desk: support} | {refuse: prompt_name}
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("desk:"):
                return {"action": "desk", "desk": text[5:].strip()}
            return {"action": text}
        if isinstance(value, dict) and "action" not in value and len(value) == 1:
            (key, arg), = value.items()
            if key == "desk":
                return {"action": "desk", "desk": arg}
            if key == "refuse":
                return {"action": "refuse", "prompt": arg}
        return value

    @model_validator(mode="after")
    def _complete(self) -> WithheldAction:
        if self.action == "desk" and not self.desk:
            raise ValueError("desk: name the desk (desk: support)")
        if self.action != "desk" and self.desk:
            raise ValueError("desk: only with action desk")
        if self.action != "refuse" and self.prompt:
            raise ValueError("prompt: only with action refuse")
        return self

    def describe(self) -> str:
        if self.action == "desk":
            return f"desk {self.desk}"
        return self.action


ALLOW = WithheldAction(action="allow")


class RepeatStep(_Model):
    """From the `calls`-th call in `window` on, this action applies (steps add up)."""

    window: Literal["hour", "day", "week"]
    calls: int = Field(ge=2, le=100_000)
    action: Literal["flag", "supervisor", "limit", "refuse"]
    talk_limit: Annotated[int, BeforeValidator(seconds)] | None = None  # limit: seconds
    block_for: Annotated[int, BeforeValidator(seconds)] | None = None  # refuse: the block's life
    prompt: Prompt | None = None  # refuse: instead of prompts.repeat

    @model_validator(mode="after")
    def _arguments(self) -> RepeatStep:
        if self.action == "limit" and self.talk_limit is None:
            raise ValueError("talk_limit: a limit step needs the talk time (e.g. 300 or 5m)")
        if self.action != "limit" and self.talk_limit is not None:
            raise ValueError("talk_limit: only for action limit")
        if self.action != "refuse" and (self.block_for is not None or self.prompt):
            raise ValueError("block_for/prompt: only for action refuse")
        return self

    @property
    def rule_id(self) -> str:
        return f"repeat:{self.window}>={self.calls}"


class EntryRules(_Model):
    withheld: dict[Reason, WithheldAction] = Field(default_factory=dict)
    repeat: list[RepeatStep] | None = None  # None: the default entry's steps


class RingSettings(_Model):
    """What the operator's ringing phone shows: a prefix before the caller name, a ring."""

    prefix: bool = True
    repeat: str = "[R{count}]"  # {count}: calls in the count window
    repeat_from: int = Field(default=2, ge=1)  # show the count from this many calls on
    count_window: Literal["hour", "day", "week"] = "day"
    flagged: str = "[!]"  # any flag (repeat step, withheld, supervisor...)
    # Alert-Info by flag, the first listed flag the call has wins: e.g.
    # {repeat: "<urn:alert:service:normal>", withheld: "<http://127.0.0.1/ring2>"}.
    alert_info: dict[Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")], str] = Field(
        default_factory=dict)

    @field_validator("repeat", "flagged")
    @classmethod
    def _ring_text(cls, value: str) -> str:
        if not _RING_TEXT.match(value.replace("{count}", "1")):
            raise ValueError("at most 16 of: letters, digits, [ ] ! # * + _ . and space "
                             "(it is shown on the phone through the dialplan)")
        return value

    @field_validator("alert_info")
    @classmethod
    def _alert_info(cls, value: dict[str, str]) -> dict[str, str]:
        for flag, text in value.items():
            if not _ALERT_INFO.match(text):
                raise ValueError(f"{flag}: an Alert-Info value of printable ASCII without "
                                 "spaces, commas, quotes or line breaks, e.g. "
                                 "<urn:alert:service:normal>")
        return value


class InboundPrompts(_Model):
    blocked: Prompt = "refused"
    withheld: Prompt = "withheld_refused"
    repeat: Prompt = "repeat_refused"


class InboundSettings(_Model):
    supervisor_desk: Annotated[str, Field(pattern=NAME)] = "supervisor"
    prompts: InboundPrompts = InboundPrompts()
    entries: dict[Annotated[str, Field(pattern=NAME)], EntryRules] = Field(default_factory=dict)
    ring: RingSettings = RingSettings()
    block_for: Annotated[int, BeforeValidator(seconds)] = 86400  # a refuse step's default

    def withheld_action(self, entry: str | None, reason: str) -> tuple[WithheldAction, str]:
        """The setting for a reason at an entry point, and where it came from."""
        for name in (entry, DEFAULT):
            rules = self.entries.get(name) if name else None
            if rules is not None and reason in rules.withheld:
                return rules.withheld[reason], name or DEFAULT  # type: ignore[index]
        return ALLOW, "built-in"

    def repeat_steps(self, entry: str | None) -> tuple[list[RepeatStep], str | None]:
        """The repeat steps for an entry point and the entry whose steps they are (None:
        the default's, which apply everywhere)."""
        own = self.entries.get(entry) if entry else None
        if own is not None and own.repeat is not None:
            return own.repeat, entry
        default = self.entries.get(DEFAULT)
        return (list(default.repeat or []) if default else []), None

    def unknown_names(self, *, desks: set[str] | None, entries: set[str] | None,
                      operators: set[str] | None) -> list[str]:
        """Desks, entries and operators this section names that do not exist."""
        problems: list[str] = []
        if entries is not None:
            problems += [f"inbound.entries.{name}: no such entry point in the journey"
                         for name in self.entries if name != DEFAULT and name not in entries]
        if desks is not None:
            uses_supervisor = any(step.action == "supervisor" for rules in self.entries.values()
                                  for step in rules.repeat or [])
            if uses_supervisor and self.supervisor_desk not in desks:
                problems.append(f"inbound.supervisor_desk: no such desk: {self.supervisor_desk}")
            for name, rules in self.entries.items():
                for reason, action in rules.withheld.items():
                    if action.desk and action.desk not in desks:
                        problems.append(f"inbound.entries.{name}.withheld.{reason}: "
                                        f"no such desk: {action.desk}")
        return problems
