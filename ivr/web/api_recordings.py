"""/api/v1/recordings: search, details, playback and download (HTTP ranges), the analysis
picture and the evidence export, with every access logged.

The access log is a middleware outside the API's own (errors, auth), so it sees every request
under /api/v1/recordings whatever happens to it: no token (401), a role without the right
(403), a bad parameter (400/422), no such call (404), a range past the end (416), or the file
sent. Each leaves an audit_log row (actor = token name or "anonymous", action, target
"recording <call id>", origin "api <peer>", the Range asked) and a log line. A granted access
is recorded before the file is sent: no audio leaves without its row.

A call id in the URL is only ever looked up in the index (ivr/recordings/service_search.py);
what a client sends never becomes a path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import web

from ivr.recordings.search import build_query, check_call_id, valid_call_id
from ivr.recordings.service_search import (
    RecordingAccess,
    RecordingSearch,
    detail,
    printable,
)
from ivr.web.api import SERVICES, TOKEN, ApiError, error_response, reply, requires

log = logging.getLogger("ivr.web.recordings")

PREFIX = "/api/v1/recordings"
CHUNK = 256 * 1024
PATH_LIKE = ("/", "\\", "..", "\x00")
WANTED = {"": "recording.search", "audio": "recording.play", "analysis.svg":
          "recording.analysis", "export": "recording.export"}  # by the route's last part


@dataclass
class AccessNote:
    """What a request asked for, filled in by its handler; the middleware logs it."""

    action: str
    call_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    recorded: bool = False  # the handler wrote the audit row itself (before sending a file)


ACCESS = web.RequestKey("recording_access", AccessNote)


def _is_recordings(request: web.Request) -> bool:
    return any(p == PREFIX or p.startswith(PREFIX + "/") or p.startswith(PREFIX + "?")
               for p in (request.path, request.raw_path))


def _asked(request: web.Request) -> tuple[str, str | None, str | None]:
    """(the action wanted, the call id if the URL names a valid one, what the URL gave in its
    place when it does not: the call id segment, or the whole path when no route matched)."""
    info = request.match_info
    if info.http_exception is not None:
        return "recording.read", None, request.path
    route = info.route.resource.canonical if info.route.resource is not None else ""
    if "{call_id}" not in route:
        return WANTED[""], None, None
    tail = route.rpartition("}")[2].lstrip("/")
    action = WANTED.get(tail, "recording.read") if tail else "recording.read"
    if action == "recording.play" and request.query.get("download") in ("1", "true"):
        action = "recording.download"
    call_id = info["call_id"]
    return action, (call_id if valid_call_id(call_id) else None), call_id


def _error_of(response: web.StreamResponse | None) -> dict[str, Any]:
    if isinstance(response, web.Response) and response.content_type == "application/json":
        try:
            error = json.loads(response.body or b"{}").get("error") or {}  # type: ignore[arg-type]
        except (ValueError, AttributeError):
            return {}
        return {"error": error.get("message"), "error_id": error.get("id"),
                "field": error.get("field")}
    return {}


@web.middleware
async def access_log(request: web.Request, handler: Any) -> web.StreamResponse:
    if not _is_recordings(request):
        return await handler(request)
    wanted, call_id, raw = _asked(request)
    note = request[ACCESS] = AccessNote(action=wanted, call_id=call_id)
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # errors() answers the API's own; this is the rest
        if not note.recorded:
            await _log_refusal(request, note, exc.status, None, raw)
        raise
    if note.recorded:  # a file: its row was written before the first byte went
        return response
    if response.status >= 400:
        await _log_refusal(request, note, response.status, response, raw)
        return response
    try:
        await record(request, note, response.status, _asked_details(request, note.details))
    except Exception as exc:  # no row, no answer: the client gets nothing it could not be
        return error_response(500, "the access log could not be written; nothing was sent",
                              None, request, exc)
    return response


def _asked_details(request: web.Request, details: dict[str, Any]) -> dict[str, Any]:
    out = dict(details)
    if request.headers.get("Range"):
        out["range"] = printable(request.headers["Range"])
    if request.query_string:
        out.setdefault("query", printable(request.query_string))
    return out


async def _log_refusal(request: web.Request, note: AccessNote, status: int,
                       response: web.StreamResponse | None, raw: str | None) -> None:
    details = _asked_details(request, note.details)
    details.update(wanted=note.action, **_error_of(response))
    if raw is not None and note.call_id is None:
        details["asked"] = printable(raw)
    note.action = "recording.refused"
    try:
        await record(request, note, status, details)
    except Exception:  # the refusal's log line is written; the row is not
        log.exception("event=recording_access_unrecorded call_id=%s status=%d",
                      note.call_id or "-", status)


async def record(request: web.Request, note: AccessNote, status: int,
                 details: dict[str, Any]) -> None:
    token = request.get(TOKEN)
    await RecordingAccess(request.app[SERVICES].audit).record(
        actor=token.name if token else "anonymous", role=token.role if token else "",
        action=note.action, call_id=note.call_id, origin=f"api {request.remote or '-'}",
        status=status, details=details)
    note.recorded = True


def _service(request: web.Request) -> RecordingSearch:
    service = request.app[SERVICES].recordings
    if service is None:
        raise ApiError(501, "recordings are not available on this server")
    return service


def _params(request: web.Request, allowed: set[str]) -> dict[str, str]:
    """The query as a plain dict. An unknown or repeated parameter is a 400, and so is a value
    that looks like a path: none of these parameters takes one."""
    out: dict[str, str] = {}
    for name in request.query:
        if name not in allowed:
            raise ApiError(400, f"unknown parameter {printable(name, 40)!r}"
                           f"{'; known: ' + ', '.join(sorted(allowed)) if allowed else ''}",
                           printable(name, 40))
        values = request.query.getall(name)
        if len(values) > 1:
            raise ApiError(400, f"{name} is given more than once", name)
        if any(bad in values[0] for bad in PATH_LIKE):
            raise ApiError(400, f"{name}: no parameter here takes a path ('/', '\\', '..' "
                           "or NUL)", name)
        out[name] = values[0]
    return out


def _call_id(request: web.Request) -> str:
    return check_call_id(request.match_info["call_id"])


@requires("recordings.search")
async def search(request: web.Request) -> web.Response:
    """?number= &desk= &operator= &from= &to= &outcome= &flag= &min_duration=
    &max_duration= &shouting= &state= &kind= &page= &per_page= (newest first)."""
    from ivr.recordings.search import PARAMETERS

    query = build_query(_params(request, set(PARAMETERS)))
    page = await _service(request).search(query)
    request[ACCESS].details.update(filters=query.filters(), page=query.page, found=page.total)
    return reply(page.as_dict(query))


@requires("recordings.search")
async def show(request: web.Request) -> web.Response:
    _params(request, set())
    call_id = _call_id(request)
    rows = await _service(request).for_call(call_id)
    return reply({"call_id": call_id, "recordings": [detail(r) for r in rows]})


_RANGE = re.compile(r"^bytes=(\d{0,18})-(\d{0,18})$", re.ASCII | re.IGNORECASE)


def _byte_range(request: web.Request, size: int) -> tuple[int, int] | None:
    """(start, count) of the Range asked (RFC 9110 14.1.2), None without one; ApiError(416)
    when it cannot be served: malformed, several ranges (not offered), or past the end."""
    asked = request.headers.get("Range")
    if asked is None:
        return None
    match = _RANGE.match(asked.strip())
    if match is None or match.group(1) == match.group(2) == "":
        raise ApiError(416, "Range must be one range of bytes: bytes=START-[END] or "
                       "bytes=-SUFFIX", "Range")
    first, last = match.groups()
    if first == "":  # a suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise ApiError(416, "an empty suffix range", "Range")
        return max(size - suffix, 0), min(suffix, size)
    start = int(first)
    stop = size if last == "" else min(int(last) + 1, size)
    if last != "" and int(last) < start:
        raise ApiError(416, "the range ends before it starts", "Range")
    if start >= size:
        raise ApiError(416, f"the range starts past the end ({size} bytes)", "Range")
    return start, stop - start


async def _send(request: web.Request, file: BinaryIO, start: int, count: int,
                response: web.StreamResponse, call_id: str) -> int:
    """Stream `count` bytes from `start`; reads off the loop. The bytes sent."""
    await response.prepare(request)
    sent = 0
    if request.method == "HEAD":
        return sent
    await asyncio.to_thread(file.seek, start)
    try:
        while sent < count:
            chunk = await asyncio.to_thread(file.read, min(CHUNK, count - sent))
            if not chunk:  # shorter than when opened: nothing more to send
                break
            await response.write(chunk)
            sent += len(chunk)
        await response.write_eof()
    except ConnectionError:  # the player went away (a browser seeking does this)
        log.info("event=recording_send_stopped call_id=%s sent=%d of=%d", call_id, sent,
                 count)
    return sent


@requires("recordings.read")
async def audio(request: web.Request) -> web.StreamResponse:
    """The archive file (WAV or FLAC): ?kind=call (default) | called (an outbound call's far
    end), ?download=true for an attachment. One byte range per request (206)."""
    params = _params(request, {"kind", "download"})
    call_id = _call_id(request)
    download = params.get("download", "false")
    if download not in ("true", "false", "1", "0"):
        raise ApiError(400, "download must be true or false", "download")
    kind = params.get("kind", "call")
    opened = await _service(request).open_file(call_id, kind)
    try:
        try:
            wanted = _byte_range(request, opened.size)
        except ApiError as exc:
            refused = error_response(exc.status, exc.message, exc.field, request)
            refused.headers["Content-Range"] = f"bytes */{opened.size}"
            return refused
        start, count = wanted or (0, opened.size)
        headers = {"Content-Type": opened.media_type, "Accept-Ranges": "bytes",
                   "Content-Length": str(count), "Cache-Control": "no-store",
                   "Content-Disposition": f'{"attachment" if download in ("1", "true") else "inline"}; filename="{opened.filename}"'}  # noqa: E501
        if opened.row.sha256:
            headers["ETag"] = f'"{opened.row.sha256}"'
        status = 200
        if wanted is not None:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{start + count - 1}/{opened.size}"
        note = request[ACCESS]
        note.details.update(kind=kind, sha256=opened.row.sha256, size=opened.size,
                            range=printable(request.headers.get("Range"))
                            if wanted is not None else None,
                            sent=headers.get("Content-Range", f"bytes 0-{count - 1}"))
        await record(request, note, status, note.details)
        response = web.StreamResponse(status=status, headers=headers)
        await _send(request, opened.file, start, count, response, call_id)
        return response
    finally:
        await asyncio.to_thread(opened.file.close)


@requires("recordings.read")
async def analysis_svg(request: web.Request) -> web.Response:
    """The analysis drawn per side over time, episodes marked; 404 until analysed."""
    params = _params(request, {"kind"})
    call_id = _call_id(request)
    svg = await _service(request).analysis_svg(call_id, params.get("kind", "call"))
    request[ACCESS].details.update(kind=params.get("kind", "call"))
    return web.Response(text=svg, content_type="image/svg+xml",
                        headers={"Cache-Control": "no-store"})


@requires("recordings.export")
async def export(request: web.Request) -> web.StreamResponse:
    """The call's evidence bundle (ivr/recordings/service_evidence.py) as one .tar: the
    recordings, call record and timeline, analysis, chain entries, SHA256SUMS."""
    from ivr.protection.service_settings import Actor
    from ivr.recordings.service_evidence import ExportError

    _params(request, set())
    call_id = _call_id(request)
    evidence = request.app[SERVICES].evidence
    if evidence is None:
        raise ApiError(501, "evidence export is not available on this server")
    await _service(request).for_call(call_id)  # 404 for a call without recordings
    token = request[TOKEN]
    folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="ivr-export-"))
    try:
        try:
            result = await evidence.export_tar(call_id, out_dir=folder, actor=Actor(
                name=token.name, role=token.role, origin=f"api {request.remote or '-'}"))
        except ExportError as exc:
            raise ApiError(404, str(exc), "call_id") from None
        assert result.tar is not None
        file = await asyncio.to_thread(result.tar.open, "rb")
        try:
            size = (await asyncio.to_thread(os.fstat, file.fileno())).st_size
            note = request[ACCESS]
            note.details.update(bundle=result.tar.name, size=size, head=result.head_hash,
                                problems=result.problems or None)
            await record(request, note, 200, note.details)
            response = web.StreamResponse(status=200, headers={
                "Content-Type": "application/x-tar", "Content-Length": str(size),
                "Cache-Control": "no-store",
                "Content-Disposition": f'attachment; filename="{result.tar.name}"'})
            await _send(request, file, 0, size, response, call_id)
            return response
        finally:
            await asyncio.to_thread(file.close)
    finally:  # the bundle was for this reply only
        await asyncio.to_thread(shutil.rmtree, folder, True)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/recordings", search)
    router.add_get("/recordings/{call_id}", show)
    router.add_get("/recordings/{call_id}/audio", audio)
    router.add_get("/recordings/{call_id}/analysis.svg", analysis_svg)
    router.add_get("/recordings/{call_id}/export", export)
