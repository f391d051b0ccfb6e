"""The `cooldown` settings section through the settings service (CLI and API path), on SQLite
and PostgreSQL: changed as a section, validated with the journey's desks, served back, and in
force on another node sharing the store."""

from __future__ import annotations

import asyncio
import time

import pytest

from ivr.protection.admin_errors import AdminError
from ivr.protection.service_settings import Actor, KnownNames, SettingsService
from ivr.protection.settings import ProtectionSettings
from ivr.protection.store_audit import AuditStore
from ivr.protection.store_settings import SettingsStore
from ivr.store import Database

pytestmark = pytest.mark.timeout(60)
FILE = Actor("file", "admin", "file")
ALICE = Actor("alice", "admin", "api 10.0.0.5")
KNOWN = KnownNames(desks={"support", "sales"}, entries={"main"}, operators={"op1001"})


async def test_cooldown_section_changed_validated_and_served(db_url):
    async with Database(db_url) as a_db, Database(db_url) as b_db:
        node_a = SettingsService(SettingsStore(a_db), AuditStore(a_db), lambda: KNOWN)
        node_b = SettingsService(SettingsStore(b_db), AuditStore(b_db))
        await node_a.sync_file(ProtectionSettings(), FILE)
        assert node_a.current().cooldown.seconds == 0  # off unless set
        await node_b.start_polling(every=0.25)
        try:
            changed = await node_a.replace(
                "cooldown", {"seconds": 60, "after": ["limited", "refused"],
                             "desks": {"support": {"seconds": 120}}}, ALICE)
            assert changed["changed"]
            shown = await node_a.show("cooldown")
            assert shown["settings"] == {"seconds": 60.0, "after": ["limited", "refused"],
                                         "desks": {"support": {"seconds": 120.0,
                                                               "after": None}}}
            await node_a.patch("cooldown", {"desks": {"sales": {"seconds": 0}}}, ALICE)
            assert node_a.current().cooldown.for_desk("sales") == (0.0, ("limited", "refused"))
            assert node_a.current().cooldown.for_desk("support")[0] == 120.0
            for bad, field in (({"seconds": -5}, "cooldown.seconds"),
                               ({"after": ["shouted"]}, "cooldown.after.0"),
                               ({"desks": {"nowhere": {"seconds": 5}}}, "cooldown.desks.nowhere")):
                with pytest.raises(AdminError) as caught:
                    await node_a.patch("cooldown", bad, ALICE)
                assert caught.value.field == field, (bad, caught.value)
            entries = await node_a.audit.list(action="settings.")
            assert entries[0].action == "settings.patch" and entries[0].target == \
                "settings.cooldown"
            since = time.monotonic()
            while node_b.current().cooldown.for_desk("support")[0] != 120.0:
                assert time.monotonic() - since < 2.0, "node B did not take the change"
                await asyncio.sleep(0.02)
        finally:
            await node_b.stop_polling()
