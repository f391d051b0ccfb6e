"""POST /api/v1/calls/{id}/spy with aiohttp's test client, a real SQLite store and a fake AMI:
roles (admin and supervisor only), errors with status, id and field, and an audit row for
every request, refusals by the API's own checks (401, 403, bad body) included."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ivr.model import Source
from ivr.protection.service_blocks import BlockService
from ivr.protection.service_settings import Actor, KnownNames, SettingsService
from ivr.protection.service_tokens import RIGHTS, TokenService
from ivr.protection.store_audit import AuditStore
from ivr.protection.store_blocks import BlockStore
from ivr.protection.store_settings import SettingsStore
from ivr.protection.store_tokens import TokenStore
from ivr.service import CallService
from ivr.spy.service import SpyService
from ivr.store import CallStore, Database
from ivr.store.tables import audit_log
from ivr.web.api import AdminServices, create_api
from tests.unit.test_spy import CALL, OPERATORS, TALKING, WAITING, FakeAmi

CLI = Actor(name="root", role="admin", origin="cli")


@pytest.fixture
async def api(tmp_path):
    async with Database(tmp_path / "ivr.sqlite3") as db:
        audit = AuditStore(db)
        known = lambda: KnownNames({"support"}, {"main"}, set(OPERATORS))  # noqa: E731
        tokens = TokenService(TokenStore(db), audit)
        calls = CallService(CallStore(db), node="n1")
        await calls.call_started(CALL, caller="0312345678", did=None, recording_path=None,
                                 source=Source.CONTROLLER)
        ami = FakeAmi(TALKING)
        services = AdminServices(
            settings=SettingsService(SettingsStore(db), audit, known), tokens=tokens,
            audit=audit, calls=calls, blocks=BlockService(BlockStore(db), audit),
            spy=SpyService(ami, calls, audit, lambda: OPERATORS))
        app = web.Application()
        app.add_subapp("/api/v1", create_api(services))
        client = TestClient(TestServer(app))
        await client.start_server()
        client.tokens = {role: await tokens.create(f"t-{role}", role, CLI)  # type: ignore
                         for role in RIGHTS}
        client.db, client.ami = db, ami  # type: ignore[attr-defined]
        try:
            yield client
        finally:
            await client.close()


async def post(client, body: object, role: str | None = "supervisor", call_id: str = CALL,
               raw: str | None = None):
    headers = {"Content-Type": "application/json"}
    if role is not None:
        headers["Authorization"] = f"Bearer {client.tokens[role]}"
    return await client.post(f"/api/v1/calls/{call_id}/spy", headers=headers,
                             data=raw if raw is not None else json.dumps(body))


async def spy_rows(client) -> list[dict]:
    async with client.db.engine.connect() as conn:
        rows = await conn.execute(sa.select(audit_log).where(
            audit_log.c.action.startswith("spy.")).order_by(audit_log.c.id))
        return [{**r._mapping, "after": json.loads(r.after)} for r in rows]


async def error_of(response, status: int) -> dict:
    assert response.status == status, await response.text()
    error = (await response.json())["error"]
    assert error["status"] == status and len(error["id"]) == 36 and error["message"]
    return error


@pytest.mark.parametrize("role", ["admin", "supervisor"])
async def test_admin_and_supervisor_may_listen(api, role):
    response = await post(api, {"phone": "sv2001", "mode": "listen"}, role)
    assert response.status == 202, await response.text()
    assert await response.json() == {"call_id": CALL, "phone": "sv2001", "mode": "listen",
                                     "channel": "PJSIP/trunk-00000003", "state": "ringing"}
    assert api.ami.sent[-1]["Channel"] == "PJSIP/sv2001"
    [row] = await spy_rows(api)
    assert (row["action"], row["actor"], row["role"]) == ("spy.listen", f"t-{role}", role)
    assert row["origin"].startswith("api ")


async def test_an_operator_is_refused_and_audited(api):
    error = await error_of(await post(api, {"phone": "sv2001", "mode": "listen"}, "operator"),
                           403)
    assert "calls.spy" in error["message"]
    assert not [a for a in api.ami.sent if a["Action"] == "Originate"]
    [row] = await spy_rows(api)
    assert (row["action"], row["actor"], row["role"]) == ("spy.refused", "t-operator",
                                                          "operator")
    assert row["after"]["status"] == 403 and row["target"] == f"call {CALL}"


async def test_no_token_is_refused_and_audited(api):
    await error_of(await post(api, {"phone": "sv2001", "mode": "listen"}, None), 401)
    [row] = await spy_rows(api)
    assert (row["action"], row["actor"], row["after"]["status"]) == ("spy.refused",
                                                                      "anonymous", 401)


@pytest.mark.parametrize("body, raw, status, field", [
    ({"phone": "sv2001", "mode": "shout"}, None, 400, "mode"),
    ({"phone": "op9999", "mode": "listen"}, None, 400, "phone"),
    ({"phone": ["sv2001"], "mode": "listen"}, None, 400, "phone"),
    ({"phone": "sv2001", "mode": "listen", "target": "x"}, None, 400, "body"),
    (None, "{not json", 400, "body"),
    ([1], None, 422, "body"),
])
async def test_bad_bodies_name_their_field(api, body, raw, status, field):
    error = await error_of(await post(api, body, raw=raw), status)
    assert error["field"] == field, error
    [row] = await spy_rows(api)
    assert row["action"] == "spy.refused" and row["after"]["status"] == status


async def test_no_such_call_is_a_404_and_a_waiting_caller_cannot_be_whispered_to(api):
    error = await error_of(await post(api, {"phone": "sv2001", "mode": "listen"},
                                      call_id="n1-1.1"), 404)
    assert error["field"] == "call_id"
    bad = await error_of(await post(api, {"phone": "sv2001", "mode": "listen"},
                                    call_id="a%2Cb"), 400)
    assert bad["field"] == "call_id"
    api.ami.channels = WAITING
    await error_of(await post(api, {"phone": "sv2001", "mode": "whisper"}), 409)
    assert [(r["action"], r["after"]["status"]) for r in await spy_rows(api)] == [
        ("spy.refused", 404), ("spy.refused", 400), ("spy.refused", 409)]
    assert not [a for a in api.ami.sent if a["Action"] == "Originate"]


async def test_only_admin_and_supervisor_have_the_right():
    assert {role for role, rights in RIGHTS.items() if "calls.spy" in rights} == \
        {"admin", "supervisor"}
