"""The `outbound` section of the protection settings (protection.yaml): 発信規制.

Emergency numbers first (always allowed, no PIN, no rule can deny them), then the rules in
order (the first that matches and applies to the calling operator decides), then the
default: the operator's own, else the strictest of their desks', else `default`.

A rule's `match` is `exact`, `prefix` or `pattern` in Asterisk's notation (`_0990XXXXXX`,
`_0[1-9]X.`): it is compiled here into a regex built from escaped pieces, so the admin's text
itself is never a regex (no catastrophic backtracking, nothing but digits, `+*#` and the
Asterisk classes). Numbers are compared in the form `comparable_number` gives
(ivr/protection/rules_outbound.py).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ivr.protection import patterns

Action = Literal["allow", "deny"]

RULE_ID = r"^[a-z][a-z0-9_-]{0,39}$"
MAX_PATTERN = 40
_DIALABLE = re.compile(r"^[0-9+*#]{1,32}$")


def compile_pattern(text: str) -> re.Pattern[str]:
    """An Asterisk extension pattern (`_0990XXXXXX`) as a regex we build ourselves: the same
    notation and translation as block-list patterns (ivr/protection/patterns.py); use it with
    fullmatch. ValueError names what is wrong."""
    if not text.startswith("_"):
        raise ValueError("a pattern starts with '_' (Asterisk's notation, e.g. _0990XXXXXX)")
    if len(text) > MAX_PATTERN:
        raise ValueError(f"a pattern has at most {MAX_PATTERN} characters")
    return patterns.compile_pattern(patterns.canonical_pattern(text))


class Scope(BaseModel):
    """Whom a rule applies to; a rule without a scope applies to everyone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    desks: list[str] = Field(default_factory=list)
    operators: list[str] = Field(default_factory=list)


class OutboundRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=RULE_ID)
    # Exactly one of these three.
    exact: str | None = None
    prefix: str | None = None
    pattern: str | None = None
    action: Action
    scope: Scope | None = None
    reason: str = Field(default="", max_length=200)
    # A supervisor's PIN may unlock one call this rule denies.
    pin_unlocks: bool = False

    @field_validator("exact", "prefix")
    @classmethod
    def _dialable(cls, value: str | None) -> str | None:
        if value is not None and not _DIALABLE.fullmatch(value):
            raise ValueError("1-32 characters of 0-9 + * #")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            compile_pattern(value)
        return value

    @field_validator("reason")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(ord(c) < 32 or c == "\x7f" for c in value):
            raise ValueError("no line breaks or control characters")
        return value

    @model_validator(mode="after")
    def _one_match(self) -> OutboundRule:
        given = [k for k in ("exact", "prefix", "pattern") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of exact, prefix, pattern")
        if self.pin_unlocks and self.action == "allow":
            raise ValueError("pin_unlocks only makes sense on a deny rule")
        return self

    def compiled(self) -> re.Pattern[str]:
        if self.exact is not None:
            return re.compile(re.escape(self.exact))
        if self.prefix is not None:
            return re.compile(re.escape(self.prefix) + "[0-9+*#]*")
        assert self.pattern is not None
        return compile_pattern(self.pattern)


class DefaultAction(BaseModel):
    """What happens to a number no rule matched."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    reason: str = Field(default="", max_length=200)
    pin_unlocks: bool = False


class OutboundSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Japan: 110 police, 118 coast guard, 119 fire and ambulance.
    emergency: list[str] = Field(default_factory=lambda: ["110", "118", "119"])
    rules: list[OutboundRule] = Field(default_factory=list)
    default: Action = "allow"
    # What the called party hears when they answer, before the operator is connected.
    notice: str = Field(default="notice", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    notice_languages: list[Literal["ja", "en"]] = Field(default_factory=lambda: ["ja"],
                                                        min_length=1, max_length=2)
    # Wrong PINs before the call ends.
    pin_attempts: int = Field(default=3, ge=1, le=5)
    desk_defaults: dict[str, DefaultAction] = Field(default_factory=dict)
    operator_defaults: dict[str, DefaultAction] = Field(default_factory=dict)

    @field_validator("emergency")
    @classmethod
    def _emergency(cls, value: list[str]) -> list[str]:
        for number in value:
            if not re.fullmatch(r"[0-9]{2,6}", number):
                raise ValueError(f"{number!r}: an emergency number is 2-6 digits")
        return value

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, value: list[OutboundRule]) -> list[OutboundRule]:
        seen: set[str] = set()
        for rule in value:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return value

    def unknown_names(self, *, desks: set[str] | None, entries: set[str] | None,
                      operators: set[str] | None) -> list[str]:
        """Desks, entries and operators this section names that do not exist."""
        problems: list[str] = []
        for n, rule in enumerate(self.rules):
            scope = rule.scope or Scope()
            if desks is not None:
                problems += [f"outbound.rules.{n}.scope.desks: no desk named {d!r}"
                             for d in scope.desks if d not in desks]
            if operators is not None:
                problems += [f"outbound.rules.{n}.scope.operators: no operator named {o!r}"
                             for o in scope.operators if o not in operators]
        if desks is not None:
            problems += [f"outbound.desk_defaults.{d}: no desk named {d!r}"
                         for d in self.desk_defaults if d not in desks]
        if operators is not None:
            problems += [f"outbound.operator_defaults.{o}: no operator named {o!r}"
                         for o in self.operator_defaults if o not in operators]
        return problems
