"""/api/v1/blocks: the block list (ivr/protection/service_blocks.py), and /rules/test."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from ivr.protection.service_blocks import parse_expiry
from ivr.web.api import (
    SERVICES,
    ApiError,
    actor,
    json_body,
    json_object,
    reply,
    requires,
)

BLOCK_FIELDS = {"number", "prefix", "pattern", "kind", "value", "reason", "expires", "entry"}


def text_field(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    """A string member of the body; 422 naming it when it is another type or missing."""
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(422, f"{name} is required", name)
        return None
    if not isinstance(value, str):
        raise ApiError(422, f"{name} must be a string", name)
    return value


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise ApiError(422, f"{name} must be true or false", name)
    return raw in ("true", "1")


def _block_id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise ApiError(404, "a block id is a number", "id") from None


@requires("blocks.read")
async def list_blocks(request: web.Request) -> web.Response:
    blocks = await request.app[SERVICES].blocks.list(
        include_removed=_flag(request, "removed"), include_expired=_flag(request, "expired"))
    return reply({"blocks": [b.as_dict() for b in blocks]})


@requires("blocks.write")
async def add_block(request: web.Request) -> web.Response:
    """{"number": "03-1234-5678"} or {"prefix": "0120"} or {"pattern": "_0990X."} (or
    {"kind": ..., "value": ...}), with "reason", optional "expires" (30d, 12h, a date) and
    "entry" (one entry point only)."""
    body = json_object(await json_body(request))
    unknown = sorted(set(body) - BLOCK_FIELDS)
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0]!r}", unknown[0])
    given = [k for k in ("number", "prefix", "pattern") if k in body]
    if len(given) > 1:
        raise ApiError(422, "give one of number, prefix or pattern", given[1])
    if given:
        kind, value = ("exact" if given[0] == "number" else given[0]), text_field(body, given[0])
    else:
        kind = text_field(body, "kind") or "exact"
        value = text_field(body, "value", required=True)
    reason = text_field(body, "reason", required=True)
    expires = parse_expiry(text_field(body, "expires"), time.time())
    block = await request.app[SERVICES].blocks.block(
        value or "", kind=kind, reason=reason or "", actor=actor(request), expires_at=expires,
        entry=text_field(body, "entry"))
    return reply(block.as_dict(), status=201)


@requires("blocks.write")
async def remove_block(request: web.Request) -> web.Response:
    """The reason comes as ?reason= or as {"reason": "..."}."""
    reason = request.query.get("reason")
    if reason is None and request.can_read_body:
        reason = text_field(json_object(await json_body(request)), "reason")
    if not reason:
        raise ApiError(422, "say why the block is lifted", "reason")
    block = await request.app[SERVICES].blocks.unblock(_block_id(request), reason=reason,
                                                       actor=actor(request))
    return reply(block.as_dict())


@requires("blocks.write")
async def review_block(request: web.Request) -> web.Response:
    """{"decision": "confirm"} keeps a pending block (end-and-refuse, repeat step) for good;
    {"decision": "lift", "reason": "..."} removes it."""
    body = json_object(await json_body(request))
    decision = text_field(body, "decision", required=True)
    services = request.app[SERVICES]
    if decision == "lift":
        reason = text_field(body, "reason") or "lifted on review"
        block = await services.blocks.unblock(_block_id(request), reason=reason,
                                              actor=actor(request))
        return reply(block.as_dict())
    if decision != "confirm":
        raise ApiError(422, "decision must be confirm or lift", "decision")
    block = await services.blocks.review(_block_id(request), actor=actor(request))
    return reply(block.as_dict())


RULE_FIELDS = {"number": str, "entry": str, "desk": str, "operator": str, "outbound": bool,
               "caller_name": str, "withheld": str}


@requires("rules.test")
async def rules_test(request: web.Request) -> web.Response:
    """Which rule applies to a number and why: {"number", "entry"?, "desk"?, "operator"?,
    "outbound"?: bool}."""
    body = json_object(await json_body(request))
    for name, value in body.items():
        kind = RULE_FIELDS.get(name)
        if kind is None:
            raise ApiError(422, f"unknown field {name!r}", name)
        if value is not None and not isinstance(value, kind):
            raise ApiError(422, f"{name} must be a {'boolean' if kind is bool else 'string'}",
                           name)
    if "number" not in body and body.get("withheld") is None:
        raise ApiError(422, "number is required", "number")
    test = request.app[SERVICES].rules_test
    if test is None:
        raise ApiError(501, "the rule engine is not available in this version", None)
    args = {k: v for k, v in body.items() if v is not None}
    args.setdefault("number", "")
    return reply(await test(**args))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/blocks", list_blocks)
    router.add_post("/blocks", add_block)
    router.add_delete("/blocks/{id}", remove_block)
    router.add_post("/blocks/{id}/review", review_block)
    router.add_post("/rules/test", rules_test)
