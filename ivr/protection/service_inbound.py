"""The inbound decision for one call: read what it needs from the store, decide (pure rules),
add a repeat step's automatic block. The FastAGI handler and `ivr rules test` call it.

Nothing is cached between calls: the blocks and the counts are read for every call, so a
block added on one node, or a settings change, applies to the next call on every node.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ivr.policy.callerid import normalise_number
from ivr.protection.rules_inbound import InboundDecision, decide_inbound, window_starts
from ivr.protection.service_blocks import Actor, BlockService
from ivr.protection.settings import ProtectionSettings
from ivr.protection.store_audit import AuditStore
from ivr.protection.store_blocks import Block, BlockStore
from ivr.store.db import Database

log = logging.getLogger("ivr.protection")

# Who adds a repeat step's block, for the block's added_by and the audit log.
REPEAT_ACTOR = Actor(name="ivr", role="system", origin="repeat")


class InboundService:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time):
        self.db = db
        self.clock = clock
        self.blocks = BlockStore(db, clock=clock)
        self.audit = AuditStore(db, clock=clock)

    async def counts(self, number: str, now: float,
                     exclude_call: str | None = None) -> dict[str, int]:
        """Calls from the number in each repeat window, this call included (one query)."""
        starts = window_starts(now)
        found = await self.blocks.calls_from(number, list(starts.values()),
                                             exclude_call=exclude_call)
        return {name: n + 1 for name, n in zip(starts, found, strict=True)}

    async def decide(self, settings: ProtectionSettings, *, caller: str | None,
                     entry: str | None, name: str | None = None, privacy: str | None = None,
                     call_id: str | None = None, withheld: str | None = None,
                     add_blocks: bool = True) -> tuple[InboundDecision, Block | None]:
        """The decision, and the block a repeat refuse step added (add_blocks=False: only
        say what would happen, for `ivr rules test`)."""
        now = self.clock()
        country = settings.numbers.country_code
        number = normalise_number(caller, country)
        blocks: list[Block] = []
        counts: dict[str, int] = {}
        if number is not None:
            blocks = await self.blocks.candidates(number, entry, now)
            counts = await self.counts(number, now, exclude_call=call_id)
        decision = decide_inbound(number=number, entry=entry, now=now, blocks=blocks,
                                  counts=counts, settings=settings.inbound, name=name,
                                  privacy=privacy, withheld=withheld, country=country)
        added = None
        if decision.auto_block is not None and add_blocks:
            auto = decision.auto_block
            service = BlockService(self.blocks, self.audit, country=country, clock=self.clock)
            added = await service.block(auto.number, kind="exact", reason=auto.reason,
                                        actor=REPEAT_ACTOR, expires_at=now + auto.expires_in,
                                        entry=auto.entry, source="repeat", call_id=call_id)
            log.info("event=repeat_block call_id=%s rule=%s block=%s count=%d expires_in=%d",
                     call_id, auto.rule, added.rule_id, auto.count, auto.expires_in)
        return decision, added
