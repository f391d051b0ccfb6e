"""What a key press (or its absence) in a menu leads to. Pure: the handler does the I/O."""

from __future__ import annotations

from dataclasses import dataclass

from ivr.journey import Menu, Route


@dataclass(frozen=True)
class MenuStep:
    """The answer to one input: a route to follow, or a retry with a feedback prompt."""

    route: Route | None
    feedback: str | None
    failures: int
    result: str  # "chosen", "invalid" or "no_input"


def answer(menu: Menu, key: str | None, failures: int) -> MenuStep:
    if key is not None and key in menu.choices:
        return MenuStep(menu.choices[key], None, failures, "chosen")
    result = "no_input" if key is None else "invalid"
    feedback = menu.no_input_prompt if key is None else menu.invalid_prompt
    failures += 1
    if failures > menu.retries:
        # Out of retries: the default route, never another loop.
        return MenuStep(menu.default, feedback, failures, result)
    return MenuStep(None, feedback, failures, result)


def step_limit_route(menu: Menu, default_desk: str) -> Route:
    """Where a caller goes who has used up the menu step limit (pressing 'repeat' or
    wandering between menus): the menu's default when it ends somewhere, else the default
    desk. Never another menu, so no caller holds an IVR channel for ever."""
    default = menu.default
    if default.desk is not None or default.message is not None or default.hangup:
        return default
    return Route(desk=default_desk, language=default.language)
