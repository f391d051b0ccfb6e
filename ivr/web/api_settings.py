"""GET/PUT/PATCH /api/v1/settings[/{section}]: the protection settings document."""

from __future__ import annotations

from aiohttp import web

from ivr.web.api import SERVICES, actor, json_body, reply, requires


@requires("settings.read")
async def show(request: web.Request) -> web.Response:
    section = request.match_info.get("section")
    return reply(await request.app[SERVICES].settings.show(section))


@requires("settings.write")
async def replace(request: web.Request) -> web.Response:
    data = await json_body(request)
    section = request.match_info.get("section")
    return reply(await request.app[SERVICES].settings.replace(section, data, actor(request)))


@requires("settings.write")
async def patch(request: web.Request) -> web.Response:
    data = await json_body(request)
    section = request.match_info.get("section")
    return reply(await request.app[SERVICES].settings.patch(section, data, actor(request)))


def add_routes(router: web.UrlDispatcher) -> None:
    for path in ("/settings", "/settings/{section}"):
        router.add_get(path, show)
        router.add_put(path, replace)
        router.add_patch(path, patch)
