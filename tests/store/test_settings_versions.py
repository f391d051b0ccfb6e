"""Settings versions, API tokens and the admin audit on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import time

import pytest

from ivr.protection.admin_errors import AdminError
from ivr.protection.service_settings import Actor, SettingsService
from ivr.protection.service_tokens import TokenService
from ivr.protection.settings import ProtectionSettings
from ivr.protection.store_audit import AuditStore
from ivr.protection.store_settings import SettingsStore
from ivr.protection.store_tokens import TokenStore
from ivr.store import Database

pytestmark = pytest.mark.timeout(60)
FILE = Actor("file", "admin", "file")
ALICE = Actor("alice", "admin", "api 10.0.0.5")
BOB = Actor("bob", "admin", "cli")


def file_settings(country: str) -> ProtectionSettings:
    return ProtectionSettings.model_validate({"numbers": {"country_code": country}})


async def test_file_versions_only_when_the_file_changes(db):
    audit = AuditStore(db)
    service = SettingsService(SettingsStore(db), audit)
    assert await service.sync_file(file_settings("81"), FILE) == 1
    assert await service.sync_file(file_settings("81"), FILE) is None
    assert service.version == 1
    # A change through the API stays in force while the file is unchanged (a restart).
    changed = await service.replace("numbers", {"country_code": "44"}, ALICE)
    assert changed == {"version": 2, "changed": True}
    assert await service.sync_file(file_settings("81"), FILE) is None
    assert service.current().numbers.country_code == "44"
    # An edited file is the newest version.
    assert await service.sync_file(file_settings("1"), FILE) == 3
    assert service.current().numbers.country_code == "1"
    history = await service.store.history()
    assert [(v.id, v.source, v.actor) for v in history] == [
        (3, "file", "file"), (2, "api", "alice"), (1, "file", "file")]
    assert history[1].document["numbers"] == {"country_code": "44"}
    entries = await audit.list(action="settings.")
    assert [e.action for e in entries] == ["settings.file", "settings.replace", "settings.file"]
    assert entries[1].before == {"country_code": "81"}
    assert entries[1].after == {"country_code": "44"} and entries[1].origin == "api 10.0.0.5"
    assert entries[0].after["numbers"] == {"country_code": "1"}


async def test_refused_change_leaves_everything(db):
    service = SettingsService(SettingsStore(db), AuditStore(db))
    await service.sync_file(file_settings("81"), FILE)
    with pytest.raises(AdminError) as caught:
        await service.patch("numbers", {"country_code": "+81"}, BOB)
    assert caught.value.field == "numbers.country_code"
    with pytest.raises(AdminError) as caught:
        await service.patch("limits", ["x"], BOB)
    assert caught.value.field == "limits"
    assert [v.id for v in await service.store.history()] == [1]
    assert len(await service.audit.list()) == 1  # the file's version only


async def test_another_node_applies_a_change_within_a_second(db_url):
    """Two controllers on one store: a change made on A is in force on B by its next poll."""
    async with Database(db_url) as a_db, Database(db_url) as b_db:
        node_a = SettingsService(SettingsStore(a_db), AuditStore(a_db))
        node_b = SettingsService(SettingsStore(b_db), AuditStore(b_db))
        await node_a.sync_file(file_settings("81"), FILE)
        await node_b.start_polling(every=0.25)
        try:
            assert node_b.current().numbers.country_code == "81"
            await node_a.replace("numbers", {"country_code": "33"}, ALICE)
            changed_at = time.monotonic()
            while node_b.current().numbers.country_code != "33":
                assert time.monotonic() - changed_at < 2.0, "node B did not take the change"
                await asyncio.sleep(0.02)
            assert node_b.version == node_a.version
        finally:
            await node_b.stop_polling()


async def test_concurrent_changes_are_both_kept(db_url):
    """Each change is made from the newest version: two at once from two nodes both land,
    one after the other, neither lost."""
    async with Database(db_url) as a_db, Database(db_url) as b_db:
        node_a = SettingsService(SettingsStore(a_db), AuditStore(a_db))
        node_b = SettingsService(SettingsStore(b_db), AuditStore(b_db))
        await node_a.sync_file(file_settings("81"), FILE)
        results = await asyncio.gather(
            node_a.replace("numbers", {"country_code": "33"}, ALICE),
            node_b.replace("numbers", {"country_code": "44"}, BOB))
        assert sorted(r["version"] for r in results) == [2, 3]
        history = await node_a.store.history()
        assert len(history) == 3
        audits = await node_a.audit.list(action="settings.replace")
        assert {a.actor for a in audits} == {"alice", "bob"}
        # The later change's "before" is the earlier change's "after": nothing was skipped.
        first, second = sorted(audits, key=lambda a: a.id)
        assert second.before == first.after


async def test_tokens(db):
    audit = AuditStore(db)
    tokens = TokenService(TokenStore(db), audit)
    token = await tokens.create("board", "supervisor", BOB)
    assert len(token) >= 40
    found = await tokens.authenticate(token)
    assert found is not None and found.role == "supervisor"
    assert await tokens.authenticate(token + "x") is None
    with pytest.raises(AdminError) as caught:
        await tokens.create("board", "admin", BOB)
    assert caught.value.field == "name"
    with pytest.raises(AdminError) as caught:
        await tokens.create("other", "root", BOB)
    assert caught.value.field == "role"
    await tokens.revoke("board", BOB)
    assert await tokens.authenticate(token) is None
    with pytest.raises(AdminError):
        await tokens.revoke("board", BOB)
    assert [e.action for e in await audit.list()] == ["token.revoke", "token.create"]


async def test_first_change_before_any_start_is_made_from_the_file(db):
    """The CLI before the controller ever ran: the change is made from protection.yaml (stored
    first as its own version), not from the built-in defaults."""
    service = SettingsService(SettingsStore(db), AuditStore(db),
                              file=lambda: file_settings("44"))
    assert (await service.show("numbers"))["settings"] == {"country_code": "44"}
    await service.patch(None, {"inbound": {"block_for": "2d"}}, BOB)
    history = await service.store.history()
    assert [(v.id, v.source) for v in history] == [(2, "cli"), (1, "file")]
    assert history[0].document["numbers"] == {"country_code": "44"}
    assert history[0].document["inbound"]["block_for"] == 2 * 86400
