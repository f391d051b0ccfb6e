""""Which rule applies to this number, and why": the decision a call would get now, made by
the same services the FastAGI handlers use, without adding anything (no repeat block)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from ivr.protection.admin_errors import AdminError
from ivr.protection.rules_outbound import explain_outbound, operator_desks
from ivr.protection.service_inbound import InboundService
from ivr.protection.service_settings import KnownNames
from ivr.protection.settings import ProtectionSettings
from ivr.protection.settings_inbound import REASONS
from ivr.store.db import Database

MAX_NUMBER = 64


class RulesService:
    def __init__(self, db: Database, settings: Callable[[], ProtectionSettings],
                 known: Callable[[], KnownNames] = KnownNames):
        self.db = db
        self.settings = settings
        self.known = known

    async def test(self, *, number: str, entry: str | None = None, desk: str | None = None,
                   operator: str | None = None, outbound: bool = False,
                   caller_name: str | None = None,
                   withheld: str | None = None) -> dict[str, Any]:
        """The decision for a call now (a withheld reason tests a caller without a number:
        anonymous, payphone, unavailable, unknown)."""
        if withheld is not None and withheld not in REASONS:
            raise AdminError(f"one of {', '.join(REASONS)}", field="withheld")
        if len(number) > MAX_NUMBER:
            raise AdminError(f"at most {MAX_NUMBER} characters", field="number")
        known = self.known()
        for field, value, names in (("entry", entry, known.entries), ("desk", desk, known.desks),
                                    ("operator", operator, known.operators)):
            if value is not None and names is not None and value not in names:
                raise AdminError(f"no such {field}: {value[:40]!r}", field=field)
        if outbound:
            return self._outbound(number, desk, operator, known)
        decision, _ = await InboundService(self.db).decide(
            self.settings(), caller=None if withheld else number, entry=entry,
            name=caller_name, withheld=withheld, add_blocks=False)
        p = decision.protection
        return {"direction": "inbound", "number": number, "entry": entry,
                "action": decision.action, "rule": decision.rule, "desk": decision.desk,
                "prompt": decision.prompt, "withheld": decision.withheld,
                "flags": sorted(p.flags), "repeat_count": p.repeat_count,
                "talk_limit": p.talk_limit, "ring_prefix": p.ring_prefix,
                "alert_info": p.alert_info,
                "auto_block": asdict(decision.auto_block) if decision.auto_block else None,
                "why": list(decision.why)}

    def _outbound(self, number: str, desk: str | None, operator: str | None,
                  known: KnownNames) -> dict[str, Any]:
        """An operator's call to `number`: the operator's desks come from the journey unless
        one desk is given."""
        desks = [desk] if desk else operator_desks(known.members or {}, operator)
        decision = explain_outbound(self.settings(), number, desk_names=desks,
                                    operator=operator)
        return {"direction": "outbound", "number": number, "compared": decision.number,
                "operator": operator, "desks": desks, "allowed": decision.allowed,
                "action": "allow" if decision.allowed else "deny", "rule": decision.rule,
                "reason": decision.reason, "pin_may_unlock": decision.pin_may_unlock}
