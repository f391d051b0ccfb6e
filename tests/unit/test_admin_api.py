"""The /api/v1 admin API with aiohttp's test client on a real SQLite store: tokens and roles,
errors that name their field and change nothing, audit rows with before and after."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ivr.model import Source
from ivr.protection.service_blocks import BlockService
from ivr.protection.service_rules import RulesService
from ivr.protection.service_settings import Actor, KnownNames, SettingsService
from ivr.protection.service_tokens import RIGHTS, TokenService
from ivr.protection.settings import ProtectionSettings
from ivr.protection.store_audit import AuditStore
from ivr.protection.store_blocks import BlockStore
from ivr.protection.store_settings import SettingsStore
from ivr.protection.store_tokens import TokenStore
from ivr.service import CallService
from ivr.store import CallStore, Database
from ivr.store.tables import api_tokens, audit_log, blocks, settings_versions
from ivr.web.api import MAX_BODY, AdminServices, create_api

CLI = Actor(name="root", role="admin", origin="cli")


@pytest.fixture
async def api(tmp_path):
    async with Database(tmp_path / "ivr.sqlite3") as db:
        audit = AuditStore(db)
        known = lambda: KnownNames({"support"}, {"main"}, {"op1001"})  # noqa: E731
        settings = SettingsService(SettingsStore(db), audit, known)
        await settings.sync_file(ProtectionSettings(), Actor("file", "admin", "file"))
        tokens = TokenService(TokenStore(db), audit)
        services = AdminServices(
            settings=settings, tokens=tokens, audit=audit,
            calls=CallService(CallStore(db), node="n1"),
            blocks=BlockService(BlockStore(db), audit, entries={"main"}),
            rules_test=RulesService(db, settings.current, known).test)
        app = web.Application()
        app.add_subapp("/api/v1", create_api(services))
        client = TestClient(TestServer(app))
        await client.start_server()
        client.tokens = {role: await tokens.create(f"t-{role}", role, CLI)  # type: ignore
                         for role in RIGHTS}
        client.db = db  # type: ignore[attr-defined]
        client.services = services  # type: ignore[attr-defined]
        try:
            yield client
        finally:
            await client.close()


def auth(client, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.tokens[role]}"}


async def rows(db: Database, table: sa.Table) -> list[dict]:
    async with db.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(sa.select(table))]


async def error_of(response, status: int) -> dict:
    assert response.status == status, await response.text()
    body = await response.json()
    error = body["error"]
    assert error["status"] == status and len(error["id"]) == 36 and error["message"]
    return error


async def test_every_route_needs_a_valid_token(api):
    routes = [("GET", "/api/v1/settings"), ("PUT", "/api/v1/settings/numbers"),
              ("PATCH", "/api/v1/settings"), ("GET", "/api/v1/blocks"),
              ("POST", "/api/v1/blocks"), ("DELETE", "/api/v1/blocks/1"),
              ("POST", "/api/v1/blocks/1/review"), ("POST", "/api/v1/rules/test"),
              ("GET", "/api/v1/audit"), ("GET", "/api/v1/calls"), ("GET", "/api/v1/calls/x")]
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer nope"},
                        {"Authorization": f"Basic {api.tokens['admin']}"}):
            error = await error_of(await api.request(method, path, headers=headers), 401)
            assert error["field"] == "Authorization"


async def test_roles(api):
    expected = {  # route: roles allowed
        ("GET", "/api/v1/settings"): {"admin", "supervisor"},
        ("PATCH", "/api/v1/settings/numbers"): {"admin"},
        ("GET", "/api/v1/blocks"): {"admin", "supervisor"},
        ("GET", "/api/v1/audit"): {"admin", "supervisor"},
        ("GET", "/api/v1/calls"): {"admin", "supervisor"},
    }
    for (method, path), roles in expected.items():
        for role in RIGHTS:
            response = await api.request(method, path, headers=auth(api, role),
                                         json={} if method == "PATCH" else None)
            if role in roles:
                assert response.status == 200, (role, path, await response.text())
            else:
                await error_of(response, 403)
    # An operator may test rules but not block.
    response = await api.post("/api/v1/rules/test", headers=auth(api, "operator"),
                              json={"number": "0312345678"})
    assert response.status == 200, await response.text()
    assert (await response.json())["action"] == "allow"
    await error_of(await api.post("/api/v1/blocks", headers=auth(api, "operator"),
                                  json={"number": "0312345678", "reason": "x"}), 403)


async def test_revoked_token_is_refused_at_once(api):
    assert (await api.get("/api/v1/audit", headers=auth(api, "supervisor"))).status == 200
    await api.services.tokens.revoke("t-supervisor", CLI)
    await error_of(await api.get("/api/v1/audit", headers=auth(api, "supervisor")), 401)
    tokens = {t.name: t for t in await api.services.tokens.list()}
    assert tokens["t-supervisor"].revoked_at is not None
    assert tokens["t-admin"].revoked_at is None
    stored = await rows(api.db, api_tokens)
    # Only hashes are kept: no stored column holds a token.
    for row in stored:
        assert all(api.tokens[r] not in json.dumps(row, default=str) for r in RIGHTS)


async def test_settings_change_applies_and_is_audited(api):
    settings = api.services.settings
    before_version = settings.version
    response = await api.put("/api/v1/settings/numbers", headers=auth(api, "admin"),
                             json={"country_code": "1"})
    assert response.status == 200, await response.text()
    result = await response.json()
    assert result["changed"] and result["version"] > before_version
    # In force for the next call, with no I/O on the call's path.
    assert settings.current().numbers.country_code == "1"
    shown = await (await api.get("/api/v1/settings/numbers",
                                 headers=auth(api, "supervisor"))).json()
    assert shown["settings"] == {"country_code": "1"} and shown["source"] == "api"
    assert shown["actor"] == "t-admin"
    entry = (await (await api.get("/api/v1/audit?action=settings.",
                                  headers=auth(api, "admin"))).json())["audit"][0]
    assert entry["action"] == "settings.replace" and entry["target"] == "settings.numbers"
    assert entry["before"] == {"country_code": "81"} and entry["after"] == {"country_code": "1"}
    assert entry["actor"] == "t-admin" and entry["role"] == "admin"
    assert entry["origin"] == "api 127.0.0.1"
    # The same document again is no new version and no audit row.
    again = await (await api.patch("/api/v1/settings/numbers", headers=auth(api, "admin"),
                                   json={"country_code": "1"})).json()
    assert again == {"version": result["version"], "changed": False}


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), [
    ("PUT", "/api/v1/settings/numbers", {"country_code": "0x"}, 422, "numbers.country_code"),
    ("PUT", "/api/v1/settings/numbers", {"country": "81"}, 422, "numbers.country"),
    ("PUT", "/api/v1/settings/numbers", ["81"], 422, "numbers"),
    ("PUT", "/api/v1/settings/numbers", {"country_code": 81}, 422, "numbers.country_code"),
    ("PATCH", "/api/v1/settings/numbers", "81", 422, "numbers"),
    ("PUT", "/api/v1/settings", {"numbers": {}, "nonsense": 1}, 422, "nonsense"),
    ("PUT", "/api/v1/settings/nonsense", {}, 404, "section"),
    ("PATCH", "/api/v1/settings/inbound", {"entries": {"nowhere": {}}}, 422,
     "inbound.entries.nowhere"),
    ("PATCH", "/api/v1/settings/inbound",
     {"entries": {"default": {"withheld": {"anonymous": {"desk": "nowhere"}}}}}, 422,
     "inbound.entries.default.withheld.anonymous"),
    ("PATCH", "/api/v1/settings/inbound",
     {"entries": {"default": {"withheld": {"anonymous": "shout"}}}}, 422,
     "inbound.entries.default.withheld.anonymous.action"),
    ("PATCH", "/api/v1/settings/inbound",
     {"entries": {"default": {"repeat": [{"window": "hour", "calls": 3,
                                          "action": "limit"}]}}}, 422,
     "inbound.entries.default.repeat.0"),
    ("POST", "/api/v1/blocks", {"number": "not a number", "reason": "r"}, 422, "number"),
    ("POST", "/api/v1/blocks", {"pattern": "_0[9", "reason": "r"}, 422, "pattern"),
    ("POST", "/api/v1/blocks", {"number": "0312345678"}, 422, "reason"),
    ("POST", "/api/v1/blocks", {"number": "0312345678", "reason": 5}, 422, "reason"),
    ("POST", "/api/v1/blocks", {"number": 312345678, "reason": "r"}, 422, "number"),
    ("POST", "/api/v1/blocks", {"number": "0312345678", "reason": "r",
                                "expires": "2020-01-01"}, 422, "expires"),
    ("POST", "/api/v1/blocks", {"number": "0312345678", "reason": "r",
                                "entry": "nowhere"}, 422, "entry"),
    ("POST", "/api/v1/blocks", {"number": "0312345678", "reason": "r",
                                "colour": "red"}, 422, "colour"),
    ("POST", "/api/v1/blocks", [], 422, "body"),
    ("DELETE", "/api/v1/blocks/999?reason=x", None, 422, "id"),
    ("POST", "/api/v1/rules/test", {"number": 3}, 422, "number"),
    ("POST", "/api/v1/rules/test", {"number": "03", "entry": "nowhere"}, 422, "entry"),
    ("POST", "/api/v1/rules/test", {"number": "03", "desk": "nowhere"}, 422, "desk"),
    ("POST", "/api/v1/rules/test", {"number": "03", "outbound": True, "operator": "op9"}, 422,
     "operator"),
    ("POST", "/api/v1/rules/test", {"number": "0" * 1000}, 422, "number"),
    ("POST", "/api/v1/rules/test", {"entry": "main"}, 422, "number"),
    ("POST", "/api/v1/rules/test", {"number": "03", "outbound": "yes"}, 422, "outbound"),
    ("GET", "/api/v1/audit?limit=abc", None, 422, "limit"),
    ("GET", "/api/v1/audit?since=yesterday", None, 422, "since"),
    ("GET", "/api/v1/calls?limit=0", None, 422, "limit"),
])
async def test_bad_input_names_its_field_and_changes_nothing(api, method, path, body, status,
                                                             field):
    tables = (settings_versions, audit_log, blocks)
    before = [await rows(api.db, t) for t in tables]
    in_force = api.services.settings.current()
    headers = auth(api, "admin")
    if body is not None:
        headers["Content-Type"] = "application/json"
    response = await api.request(method, path, headers=headers,
                                 data=None if body is None else json.dumps(body))
    error = await error_of(response, status)
    assert error["field"] == field, error
    assert [await rows(api.db, t) for t in tables] == before
    assert api.services.settings.current() is in_force


async def test_bodies_wrong_type_too_large_or_not_json(api):
    headers = auth(api, "admin")
    error = await error_of(await api.put("/api/v1/settings/numbers", headers=headers,
                                         data="country_code: '1'"), 415)
    assert error["field"] == "Content-Type"
    big = json.dumps({"country_code": "1", "pad": "x" * MAX_BODY})
    error = await error_of(await api.put("/api/v1/settings/numbers", data=big, headers={
        **headers, "Content-Type": "application/json"}), 413)
    assert error["field"] == "body"
    error = await error_of(await api.put("/api/v1/settings/numbers", data="{nope", headers={
        **headers, "Content-Type": "application/json"}), 400)
    assert error["field"] == "body"
    await error_of(await api.get("/api/v1/nothing-here", headers=headers), 404)
    assert api.services.settings.current().numbers.country_code == "81"


async def test_blocks_add_list_remove_audited(api):
    headers = auth(api, "supervisor")
    response = await api.post("/api/v1/blocks", headers=headers,
                              json={"number": "+81 3-1234-5678", "reason": "abusive",
                                    "expires": "30d"})
    assert response.status == 201, await response.text()
    block = await response.json()
    assert block["value"] == "0312345678" and block["added_by"] == "t-supervisor"
    assert block["expires_at"] == pytest.approx(time.time() + 30 * 86400, abs=60)
    listed = (await (await api.get("/api/v1/blocks", headers=headers)).json())["blocks"]
    assert [b["id"] for b in listed] == [block["id"]]
    await error_of(await api.delete(f"/api/v1/blocks/{block['id']}", headers=headers), 422)
    response = await api.delete(f"/api/v1/blocks/{block['id']}", headers=headers,
                                json={"reason": "apologised"})
    assert response.status == 200, await response.text()
    assert (await (await api.get("/api/v1/blocks", headers=headers)).json())["blocks"] == []
    removed = await (await api.get("/api/v1/blocks?removed=true", headers=headers)).json()
    assert removed["blocks"][0]["removed_reason"] == "apologised"
    audit = (await (await api.get("/api/v1/audit?action=block.",
                                  headers=headers)).json())["audit"]
    assert [a["action"] for a in audit] == ["block.remove", "block.add"]
    assert audit[1]["before"] is None and audit[1]["after"]["value"] == "0312345678"
    assert audit[0]["before"]["removed_at"] is None
    assert audit[0]["after"]["removed_by"] == "t-supervisor"
    assert all(a["origin"] == "api 127.0.0.1" for a in audit)


async def test_calls_read(api):
    calls = api.services.calls
    await calls.call_started("c.1", caller="0312345678", did="0501234567",
                             recording_path=None, source=Source.CONTROLLER)
    listed = await (await api.get("/api/v1/calls?limit=5", headers=auth(api, "admin"))).json()
    assert [c["id"] for c in listed["calls"]] == ["c.1"]
    one = await (await api.get("/api/v1/calls/c.1", headers=auth(api, "supervisor"))).json()
    assert one["caller"] == "0312345678" and isinstance(one["events"], list)
    error = await error_of(await api.get("/api/v1/calls/nope", headers=auth(api, "admin")),
                           404)
    assert error["field"] == "id"


async def test_rules_test_names_the_block(api):
    headers = auth(api, "admin")
    block = await (await api.post("/api/v1/blocks", headers=headers, json={
        "prefix": "0120", "reason": "sales calls", "entry": "main"})).json()
    for number, entry, action in (("0120-123-456", "main", "refuse"),
                                  ("+81 120 123 456", "main", "refuse"),
                                  ("0120123456", None, "allow"),
                                  ("0312345678", "main", "allow")):
        body = {"number": number} | ({"entry": entry} if entry else {})
        result = await (await api.post("/api/v1/rules/test", headers=auth(api, "operator"),
                                       json=body)).json()
        assert result["action"] == action, (number, entry, result)
        if action == "refuse":
            assert result["rule"] == block["rule"] and result["why"]
    result = await (await api.post("/api/v1/rules/test", headers=headers,
                                   json={"withheld": "payphone"})).json()
    assert result["action"] == "allow" and result["withheld"] == "payphone"
    error = await error_of(await api.post("/api/v1/rules/test", headers=headers,
                                          json={"withheld": "shy"}), 422)
    assert error["field"] == "withheld"
    # Testing adds nothing: no block, no audit row beyond the one block.add.
    assert len((await (await api.get("/api/v1/blocks", headers=headers)).json())["blocks"]) == 1


async def test_rules_test_outbound(api):
    """The outbound answer comes from the same rules an operator's call goes through: the
    defaults deny nothing, emergency numbers are always allowed."""
    for number, allowed, rule in (("110", True, "emergency:110"),
                                  ("0312345678", True, "default:allow"),
                                  ("op1002", False, "invalid:number")):
        result = await (await api.post("/api/v1/rules/test", headers=auth(api, "operator"),
                                       json={"number": number, "outbound": True})).json()
        assert (result["direction"], result["allowed"], result["rule"]) == \
            ("outbound", allowed, rule), result


async def test_review_of_a_pending_block(api):
    services = api.services
    pending = await services.blocks.block("0312340000", reason="ended by operator",
                                          actor=Actor("op1001", "operator", "feature-code"),
                                          source="operator", call_id="c.9", review="pending")
    plain = await services.blocks.block("0312340001", reason="r", actor=CLI)
    headers = auth(api, "supervisor")
    url = f"/api/v1/blocks/{pending.id}/review"
    error = await error_of(await api.post(url, headers=headers, json={"decision": "keep"}), 422)
    assert error["field"] == "decision"
    error = await error_of(await api.post(f"/api/v1/blocks/{plain.id}/review", headers=headers,
                                          json={"decision": "confirm"}), 422)
    assert error["field"] == "id"
    response = await api.post(url, headers=headers, json={"decision": "confirm"})
    assert response.status == 200, await response.text()
    assert (await response.json())["review"] == "confirmed"
    error = await error_of(await api.post(url, headers=headers, json={"decision": "confirm"}),
                           422)
    assert error["field"] == "id"
    entry = (await services.audit.list(action="block.review"))[0]
    assert entry.before["review"] == "pending" and entry.after["review"] == "confirmed"
    assert entry.actor == "t-supervisor"
    # Lifting on review removes it, with the reason.
    other = await services.blocks.block("0312340002", reason="ended by operator",
                                        actor=CLI, source="operator", review="pending")
    response = await api.post(f"/api/v1/blocks/{other.id}/review", headers=headers,
                              json={"decision": "lift", "reason": "misdialled customer"})
    assert (await response.json())["removed_reason"] == "misdialled customer"
