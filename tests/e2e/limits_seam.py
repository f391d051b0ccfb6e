"""`ivr` with a test seam: callers listed in IVR_TEST_PROTECTION (JSON: number -> flags,
ring_prefix, alert_info, talk_limit) are queued with that CallProtection, as the inbound
rules (repeat steps, flags) would hand it on. Everything else is the real controller."""

from __future__ import annotations

import json
import os
import sys

from ivr.agi import inbound
from ivr.protection.call import CallProtection

_PROTECTION = {
    number: CallProtection(flags=frozenset(p.get("flags", [])),
                           ring_prefix=p.get("ring_prefix", ""),
                           alert_info=p.get("alert_info", ""),
                           talk_limit=p.get("talk_limit"))
    for number, p in json.loads(os.environ.get("IVR_TEST_PROTECTION", "{}")).items()
}
_queue_to_desk = inbound.queue_to_desk


async def queue_to_desk(agi, calls, call_id, name, desk, reason, *args, **kwargs):
    # The inbound handler passes its own protection as the 7th positional argument.
    number = await agi.get_variable("CALLERID(num)") or ""
    if number in _PROTECTION:
        args, kwargs["protection"] = (), _PROTECTION[number]
    await _queue_to_desk(agi, calls, call_id, name, desk, reason, *args, **kwargs)


inbound.queue_to_desk = queue_to_desk

if __name__ == "__main__":
    from ivr.cli import main

    sys.exit(main(sys.argv[1:]))
