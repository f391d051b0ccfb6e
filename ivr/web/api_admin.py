"""GET /api/v1/audit, GET /api/v1/calls, GET /api/v1/calls/{id}."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from ivr.web.api import SERVICES, ApiError, int_query, reply, requires


def since_query(request: web.Request) -> float | None:
    """?since= as epoch seconds or an ISO 8601 time (UTC when it has no zone)."""
    raw = request.query.get("since")
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ApiError(422, "since must be epoch seconds or an ISO 8601 time",
                       "since") from None


@requires("audit.read")
async def audit(request: web.Request) -> web.Response:
    limit = int_query(request, "limit", 100, 1, 1000)
    rows = await request.app[SERVICES].audit.list(since=since_query(request), limit=limit,
                                                  actor=request.query.get("actor") or None,
                                                  action=request.query.get("action") or None)
    return reply({"audit": [r.as_dict() for r in rows]})


@requires("calls.read")
async def calls(request: web.Request) -> web.Response:
    limit = int_query(request, "limit", 20, 1, 1000)
    records = await request.app[SERVICES].calls.recent(limit)
    return reply({"calls": [r.to_json() for r in records]})


@requires("calls.read")
async def call(request: web.Request) -> web.Response:
    service = request.app[SERVICES].calls
    call_id = request.match_info["id"]
    record = await service.get(call_id)
    if record is None:
        raise ApiError(404, f"no call {call_id!r}", "id")
    return reply({**record.to_json(), "events": await service.events(call_id)})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/audit", audit)
    router.add_get("/calls", calls)
    router.add_get("/calls/{id}", call)
