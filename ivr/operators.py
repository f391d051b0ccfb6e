"""Operators at desks: log in, log out, pause, through AMI (app_queue does the rest: ringing,
device state, wrap-up). Shared by the CLI now and the web console later."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ivr.ami.client import response_message as _message
from ivr.ami.client import succeeded as _ok
from ivr.journey import Journey
from ivr.service import CallService

AmiAction = Callable[..., Awaitable[Any]]

# app_queue's member status numbers (QueueMember event, Status header), as device states.
MEMBER_STATUS = {
    "0": "unknown", "1": "not_in_use", "2": "in_use", "3": "busy", "4": "invalid",
    "5": "unavailable", "6": "ringing", "7": "ring_in_use", "8": "on_hold",
}


class OperatorError(ValueError):
    """A request that cannot be done; the message says why (for the CLI, API and web)."""


@dataclass(frozen=True)
class MemberState:
    desk: str
    operator: str
    status: str
    paused: bool
    pause_reason: str
    calls_taken: int
    in_call: bool


# Operators are queue members as Local channels into [ivr-member] (asterisk/extensions.conf.j2),
# which rings the phone with Dial() and its talk-time limit L(): Asterisk itself ends the call
# at the limit, with the warning and closing sounds, whatever happens to the controller.
# `/n`: without it the Local channel is optimised away and no limit sound plays (measured).
# Device state (ringinuse, "In use") comes from the real phone through the state interface.
MEMBER_CONTEXT = "ivr-member"


def interface(operator: str) -> str:
    return f"Local/{operator}@{MEMBER_CONTEXT}/n"


def state_interface(operator: str) -> str:
    return f"PJSIP/{operator}"


def legacy_interface(operator: str) -> str:
    """How operators were members before the limits: the phone itself. Asterisk's astdb
    (persistentmembers) may still hold such members; logout, pause and login handle them."""
    return f"PJSIP/{operator}"


def member_operator(name: str) -> str:
    """The operator of a member interface or name: 'Local/op1001@ivr-member/n',
    'PJSIP/op1001' or the MemberName 'op1001' -> 'op1001'."""
    name = name.split("/", 1)[-1] if "/" in name else name
    return name.split("@", 1)[0]


class OperatorService:
    def __init__(self, action: AmiAction, calls: CallService, journey: Journey,
                 operators: Iterable[str]):
        self.action = action
        self.calls = calls
        self.journey = journey
        self.operators = set(operators)

    def _desks_for(self, operator: str, desks: Iterable[str] | None) -> list[str]:
        if operator not in self.operators:
            raise OperatorError(f"{operator!r} is not an operator in ivr.toml")
        allowed = [name for name, d in self.journey.desks.items() if operator in d.members]
        if desks is None:
            if not allowed:
                raise OperatorError(f"{operator} is not a member of any desk (dialplan: members)")
            return allowed
        chosen = list(desks)
        for desk in chosen:
            if desk not in self.journey.desks:
                raise OperatorError(f"no desk named {desk!r}")
            if desk not in allowed:
                raise OperatorError(f"{operator} is not a member of desk {desk!r}")
        return chosen

    async def login(self, operator: str, desks: Iterable[str] | None = None,
                    by_whom: str = "cli") -> list[str]:
        return await self._membership(operator, desks, "login", by_whom)

    async def logout(self, operator: str, desks: Iterable[str] | None = None,
                     by_whom: str = "cli") -> list[str]:
        return await self._membership(operator, desks, "logout", by_whom)

    async def _membership(self, operator: str, desks: Iterable[str] | None, action: str,
                          by_whom: str) -> list[str]:
        # Logging in twice, or out twice, is not an error: the operator is where they asked.
        harmless = "Already there" if action == "login" else "Not there"
        done = []
        for desk in self._desks_for(operator, desks):
            request = {"Queue": desk, "Interface": interface(operator)}
            if action == "login":
                request |= {"Action": "QueueAdd", "MemberName": operator,
                            "StateInterface": state_interface(operator), "Paused": "false"}
            else:
                request |= {"Action": "QueueRemove"}
            response = await self.action(request, as_list=False)
            if not _ok(response) and harmless not in _message(response):
                raise OperatorError(f"{action} at {desk} failed: {_message(response)}")
            # A member left from before the Local members (astdb) would ring the phone
            # without the limit, and twice: both login and logout remove it.
            await self.action({"Action": "QueueRemove", "Queue": desk,
                               "Interface": legacy_interface(operator)}, as_list=False)
            await self.calls.operator_action(operator, desk, action, by_whom=by_whom)
            done.append(desk)
        return done

    async def pause(self, operator: str, paused: bool, reason: str = "",
                    by_whom: str = "cli") -> None:
        if operator not in self.operators:
            raise OperatorError(f"{operator!r} is not an operator in ivr.toml")
        response = None
        for member in (interface(operator), legacy_interface(operator)):
            response = await self.action({
                "Action": "QueuePause", "Interface": member,
                "Paused": "true" if paused else "false", "Reason": reason,
            }, as_list=False)
            if _ok(response):
                break
        if not _ok(response):
            raise OperatorError(f"{'pause' if paused else 'unpause'} failed: "
                                f"{_message(response) or 'not logged in to any desk'}")
        await self.calls.operator_action(operator, None, "pause" if paused else "unpause",
                                         detail=reason, by_whom=by_whom)

    async def migrate_legacy_members(self) -> list[tuple[str, str]]:
        """Members Asterisk's astdb kept from before the Local members (`PJSIP/<op>`) become
        `Local/<op>@ivr-member/n`, paused as they were: only the Local member has the
        talk-time limit and the ring display. Returns the (desk, operator) pairs moved."""
        response = await self.action({"Action": "QueueStatus"}, as_list=True)
        moved = []
        for item in response if isinstance(response, list) else [response]:
            location = item.get("Location") or ""
            operator = member_operator(location)
            if item.get("Event") != "QueueMember" or location != legacy_interface(operator) \
                    or operator not in self.operators:
                continue
            desk = item.get("Queue", "")
            added = await self.action({
                "Action": "QueueAdd", "Queue": desk, "Interface": interface(operator),
                "MemberName": operator, "StateInterface": state_interface(operator),
                "Paused": "true" if item.get("Paused") == "1" else "false",
                "Reason": item.get("PausedReason", ""),
            }, as_list=False)
            if not _ok(added) and "Already there" not in _message(added):
                continue  # keep the old member rather than leave the operator out
            await self.action({"Action": "QueueRemove", "Queue": desk,
                               "Interface": location}, as_list=False)
            moved.append((desk, operator))
        return moved

    async def members(self) -> list[MemberState]:
        response = await self.action({"Action": "QueueStatus"}, as_list=True)
        items = response if isinstance(response, list) else [response]
        out = []
        for item in items:
            if item.get("Event") != "QueueMember":
                continue
            name = item.get("Name") or item.get("MemberName") or item.get("Location") or ""
            out.append(MemberState(
                desk=item.get("Queue", ""),
                operator=member_operator(name),
                status=MEMBER_STATUS.get(item.get("Status", "0"), "unknown"),
                paused=item.get("Paused") == "1",
                pause_reason=item.get("PausedReason", ""),
                calls_taken=int(item.get("CallsTaken") or 0),
                in_call=item.get("InCall") == "1",
            ))
        return sorted(out, key=lambda m: (m.desk, m.operator))
