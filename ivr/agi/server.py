"""The FastAGI listener: one task per session, routed by script name to a handler."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ivr.agi import inbound, outbound, queue_result
from ivr.agi import variables as var
from ivr.agi.context import HandlerContext
from ivr.agi.protocol import (
    MAX_HEADER_BYTES,
    AgiChannel,
    AgiError,
    AgiHangup,
    AgiProtocolError,
    read_headers,
)

log = logging.getLogger("ivr.agi")

Handler = Callable[[AgiChannel, HandlerContext], Awaitable[None]]

# Every AGI(agi://.../NAME) in the dialplan must have an entry here (a test checks it).
HANDLERS: dict[str, Handler] = {
    "inbound": inbound.handle,
    "queue_result": queue_result.handle,
    "outbound": outbound.handle,
    "outbound_answered": outbound.handle_answered,
    "outbound_result": outbound.handle_result,
}


class AgiServer:
    def __init__(
        self,
        ctx: HandlerContext,
        *,
        host: str,
        port: int,
        header_timeout: float = 5.0,
        command_timeout: float = 120.0,
        handlers: dict[str, Handler] | None = None,
    ):
        self.ctx = ctx
        self.host = host
        self.port = port
        self.header_timeout = header_timeout
        self.command_timeout = command_timeout
        self.handlers = HANDLERS if handlers is None else handlers
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task] = set()
        self.sessions_total = 0
        self.failures_total = 0

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def active_sessions(self) -> int:
        return len(self._sessions)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, limit=MAX_HEADER_BYTES, reuse_address=True
        )
        sockets = self._server.sockets or []
        if sockets and self.port == 0:
            self.port = sockets[0].getsockname()[1]
        log.info("event=agi_listening host=%s port=%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await self._session(reader, writer)
        finally:
            self._sessions.discard(task)
            writer.close()
            try:
                async with asyncio.timeout(2):
                    await writer.wait_closed()
            except (TimeoutError, ConnectionError):
                pass

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            headers = await read_headers(reader, self.header_timeout)
        except AgiProtocolError as exc:
            log.warning("event=agi_rejected peer=%s reason=%s", peer, exc)
            return
        agi = AgiChannel(reader, writer, headers, self.command_timeout)
        self.sessions_total += 1
        handler = self.handlers.get(agi.script)
        call_id = agi.unique_id
        if handler is None:
            log.error("event=agi_unknown_script call_id=%s script=%s", call_id, agi.script)
            await self._fail_safe(agi)
            return
        try:
            await handler(agi, self.ctx)
        except AgiHangup as exc:
            log.info("event=agi_caller_gone call_id=%s script=%s detail=%s",
                     call_id, agi.script, exc)
        except Exception as exc:
            # The exception hook: log it with the call, send the call down the fail-safe
            # path, and keep serving every other call.
            self.failures_total += 1
            log.exception("event=agi_handler_failed call_id=%s script=%s error=%s",
                          call_id, agi.script, exc)
            await self._fail_safe(agi)

    async def _fail_safe(self, agi: AgiChannel) -> None:
        try:
            await agi.set_variable(var.ACTION, var.ACTION_FAILSAFE)
        except (AgiError, OSError, TimeoutError):
            pass
