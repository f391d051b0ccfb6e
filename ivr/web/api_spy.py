"""POST /api/v1/calls/{id}/spy {"phone": "sv2001", "mode": "listen|whisper|barge"}: ring a
supervisor's phone into a live call (ivr/spy/service.py). Roles admin and supervisor
(right `calls.spy`).

Every request is audited, refusals included: the service records what it decides (bad
phone or mode, no such call, Asterisk refused); the middleware here, outside the API's own
(errors, auth), records what never reaches it: no token (401), a role without the right
(403), a body that is not JSON (400/415).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from ivr.protection.service_settings import Actor
from ivr.spy.checks import SpyError
from ivr.spy.service import SpyService, refused
from ivr.web.api import (
    SERVICES,
    TOKEN,
    ApiError,
    actor,
    json_body,
    json_object,
    reply,
    requires,
)

log = logging.getLogger("ivr.web.spy")

AUDITED = web.RequestKey("spy_audited", bool)  # the service wrote the request's row


def _is_spy(request: web.Request) -> bool:
    parts = request.path.rstrip("/").split("/")
    return len(parts) == 6 and parts[1:4] == ["api", "v1", "calls"] and parts[5] == "spy"


def _service(request: web.Request) -> SpyService:
    service = request.app[SERVICES].spy
    if service is None:
        raise ApiError(501, "listen, whisper and barge are not available on this server")
    return service


@web.middleware
async def refusals(request: web.Request, handler: Any) -> web.StreamResponse:
    if not _is_spy(request):
        return await handler(request)
    response = await handler(request)
    if response.status >= 400 and not request.get(AUDITED):
        token = request.get(TOKEN)
        who = Actor(name=token.name if token else "anonymous",
                    role=token.role if token else "", origin=f"api {request.remote or '-'}")
        call_id = request.path.rstrip("/").split("/")[4]
        await refused(request.app[SERVICES].audit, who, call_id=call_id, phone=None,
                      mode=None, status=response.status, reason=_reason(response))
    return response


def _reason(response: web.StreamResponse) -> str:
    import json

    if isinstance(response, web.Response) and response.body:
        try:
            return str(json.loads(response.body)["error"]["message"])  # type: ignore[arg-type]
        except (ValueError, KeyError, TypeError):
            pass
    return response.reason or ""


@requires("calls.spy")
async def spy(request: web.Request) -> web.Response:
    body = json_object(await json_body(request))
    unknown = sorted(set(body) - {"phone", "mode"})
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r}; known: mode, phone", "body")
    try:
        result = await _service(request).spy(request.match_info["id"], body.get("phone"),
                                             body.get("mode"), actor(request))
    except SpyError as exc:
        request[AUDITED] = True
        raise ApiError(exc.status, exc.message, exc.field) from None
    request[AUDITED] = True
    return reply(result.as_dict(), status=202)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/calls/{id}/spy", spy)
