"""The JSON REST API under /api/v1: authentication, roles, errors, request bodies.

Handlers only translate HTTP to service calls (ivr/protection/service_*.py) and back; every
decision is in the services, shared with the CLI. Every route needs `Authorization: Bearer
<token>` (401 without a valid one) and names the right it needs (403 for a role without it;
rights per role in ivr/protection/service_tokens.py). Errors are JSON
{"error": {"status", "id", "message", "field"}} and logged with the same id.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ivr.protection.admin_errors import AdminError
from ivr.protection.errors import ProtectionError
from ivr.protection.service_blocks import BlockService
from ivr.protection.service_settings import Actor, SettingsService
from ivr.protection.service_tokens import TokenService, allowed
from ivr.protection.store_audit import AuditStore
from ivr.protection.store_tokens import Token
from ivr.recordings.service_evidence import EvidenceService
from ivr.recordings.service_search import RecordingSearch
from ivr.service import CallService
from ivr.spy.service import SpyService

log = logging.getLogger("ivr.web.api")

MAX_BODY = 256 * 1024  # a settings document is a few KiB; nothing legitimate comes near
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class AdminServices:
    """What the API (and the CLI) call: one service layer for every edge."""

    settings: SettingsService
    tokens: TokenService
    audit: AuditStore
    calls: CallService
    blocks: BlockService
    # "Which rule applies and why" (the rule engines, rules_*.py): keyword arguments number,
    # entry, desk, operator, outbound; returns a JSON-able decision. None: not available.
    rules_test: Callable[..., Any] | None = None
    # Recordings search, playback and export (ivr/web/api_recordings.py). None: not available.
    recordings: RecordingSearch | None = None
    evidence: EvidenceService | None = None  # the export bundle (GET /recordings/{id}/export)
    spy: SpyService | None = None  # listen, whisper, barge (POST /calls/{id}/spy)


SERVICES = web.AppKey("admin_services", AdminServices)
TOKEN = web.RequestKey("token", Token)  # the request's authenticated token


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def requires(right: str) -> Callable[[Handler], Handler]:
    """The right a route needs; routes without one are refused (403) by the middleware."""
    def mark(handler: Handler) -> Handler:
        handler.right = right  # type: ignore[attr-defined]
        return handler
    return mark


def error_response(status: int, message: str, field: str | None = None,
                   request: web.Request | None = None, exc: BaseException | None = None
                   ) -> web.Response:
    error_id = str(uuid.uuid4())
    where = f"{request.method} {request.path}" if request is not None else ""
    if status >= 500:
        log.error("event=api_error id=%s status=%d request=%r message=%r", error_id, status,
                  where, message, exc_info=exc)
    else:
        log.info("event=api_refused id=%s status=%d request=%r field=%s message=%r",
                 error_id, status, where, field, message)
    body = {"error": {"status": status, "id": error_id, "message": message, "field": field}}
    return web.json_response(body, status=status, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def reply(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=_dumps)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.field, request)
    except AdminError as exc:  # the services' "bad input", each naming its field
        return error_response(exc.status, exc.message, exc.field, request)
    except ProtectionError as exc:
        return error_response(422, str(exc), exc.field, request)
    except web.HTTPException as exc:  # no such route, method not allowed
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason, None, request)
    except Exception as exc:
        return error_response(500, "internal error; the log has the details under this id",
                              None, request, exc)


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "an API token is needed: Authorization: Bearer <token>",
                       "Authorization")
    found = await request.app[SERVICES].tokens.authenticate(token.strip())
    if found is None:
        raise ApiError(401, "unknown or revoked API token", "Authorization")
    request[TOKEN] = found  # a refusal below is logged with who asked
    if request.match_info.http_exception is not None:  # no such route or method
        raise request.match_info.http_exception
    right = getattr(handler, "right", None)
    if right is None or not allowed(found.role, right):
        raise ApiError(403, f"role {found.role!r} may not do this ({right or 'no right'})")
    return await handler(request)


def actor(request: web.Request) -> Actor:
    token = request[TOKEN]
    return Actor(name=token.name, role=token.role, origin=f"api {request.remote or '-'}")


async def json_body(request: web.Request) -> Any:
    """The request's JSON; 415 for another content type, 413 past MAX_BODY, 400 if not JSON."""
    if request.content_type != "application/json":
        raise ApiError(415, "the body must be JSON (Content-Type: application/json)",
                       "Content-Type")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, f"the body is larger than {MAX_BODY} bytes", "body")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(413, f"the body is larger than {MAX_BODY} bytes", "body")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}", "body") from exc


def json_object(value: Any, field: str = "body") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiError(422, "expected a JSON object", field)
    return value


def int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, f"{name} must be a whole number", name) from None
    if not low <= value <= high:
        raise ApiError(422, f"{name} must be between {low} and {high}", name)
    return value


def create_api(services: AdminServices) -> web.Application:
    """The /api/v1 sub-application; `app.add_subapp("/api/v1", create_api(...))`."""
    from ivr.web import api_admin, api_blocks, api_recordings, api_settings, api_spy

    # The recordings access log and the spy audit are outermost: they see refusals by auth
    # and errors too.
    api = web.Application(middlewares=[api_recordings.access_log, api_spy.refusals, errors,
                                       auth])
    api[SERVICES] = services
    api_settings.add_routes(api.router)
    api_admin.add_routes(api.router)
    api_blocks.add_routes(api.router)
    api_recordings.add_routes(api.router)
    api_spy.add_routes(api.router)
    return api
