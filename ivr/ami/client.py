"""Our adapter around panoramisk's AMI Manager: login, reconnect, typed events, timeouts.

panoramisk re-sends actions that were in flight when the connection dropped (an Originate
could run twice) and never times them out; here nothing is re-sent and every action has a
deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from panoramisk import Manager

from ivr.ami.events import AmiEvent, parse_event

log = logging.getLogger("ivr.ami")

EventHandler = Callable[[AmiEvent], Awaitable[None]]
ConnectHandler = Callable[[], Awaitable[None]]


class _Everything:
    """panoramisk's 'forgettable actions': all of them, so none is re-sent on reconnect."""

    def __contains__(self, item: object) -> bool:
        return True


class AmiError(Exception):
    pass


class AmiClient:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        secret: str,
        on_event: EventHandler,
        on_login: ConnectHandler | None = None,
        action_timeout: float = 5.0,
    ):
        self._config = dict(host=host, port=port, username=username, secret=secret)
        self._on_event = on_event
        self._on_login = on_login
        self._timeout = action_timeout
        self._manager: Manager | None = None
        self._events: asyncio.Queue[AmiEvent] = asyncio.Queue(maxsize=100_000)
        self._consumer: asyncio.Task | None = None
        self._logged_in = False
        self.logins = 0

    @property
    def connected(self) -> bool:
        return self._logged_in and self._manager is not None and self._manager._connected

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._manager = Manager(
            loop=loop,
            **self._config,
            ping_delay=5,
            ping_interval=5,
            reconnect_timeout=1,
            forgetable_actions=_Everything(),
            on_login=self._logged_in_cb,
            on_disconnect=self._disconnected_cb,
            log=logging.getLogger("ivr.ami.panoramisk"),
        )
        self._manager.register_event("*", self._dispatch)
        self._consumer = asyncio.create_task(self._consume(), name="ami-events")
        self._manager.connect()

    async def wait_connected(self, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.connected:
            if asyncio.get_running_loop().time() > deadline:
                raise AmiError(f"could not log in to AMI on {self._config['host']}:"
                               f"{self._config['port']} within {timeout:g} s (is Asterisk up?)")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._manager is not None:
            self._manager.close()
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)

    def _logged_in_cb(self, manager: Manager) -> None:
        self._logged_in = True
        self.logins += 1
        log.info("event=ami_login host=%s port=%s logins=%d", self._config["host"],
                 self._config["port"], self.logins)
        if self._on_login is not None:
            asyncio.get_running_loop().create_task(self._run_login_hook())

    async def _run_login_hook(self) -> None:
        assert self._on_login is not None
        try:
            await self._on_login()
        except Exception:
            log.exception("event=ami_login_hook_failed")

    def _disconnected_cb(self, manager: Manager, exc: Exception | None) -> None:
        if self._logged_in:
            log.warning("event=ami_disconnected error=%s", exc)
        self._logged_in = False

    def _dispatch(self, manager: Manager, message: Any) -> None:
        event = parse_event(message)
        if event is not None:
            try:
                self._events.put_nowait(event)
            except asyncio.QueueFull:
                log.error("event=ami_queue_full dropped=%s", type(event).__name__)

    async def _consume(self) -> None:
        # One consumer keeps each call's events in the order Asterisk sent them.
        while True:
            event = await self._events.get()
            try:
                await self._on_event(event)
            except Exception:
                log.exception("event=ami_handler_failed ami_event=%r", event)

    async def action(
        self, action: dict[str, str], timeout: float | None = None, as_list: bool | None = None
    ) -> Any:
        """Send one action. as_list: True for actions answered by an event list, False for a
        single response (panoramisk otherwise guesses, and waits forever on QueueAdd)."""
        if not self.connected or self._manager is None:
            raise AmiError(f"AMI not connected; {action.get('Action')} not sent")
        future = self._manager.send_action(dict(action), as_list=as_list)
        try:
            return await asyncio.wait_for(future, timeout or self._timeout)
        except TimeoutError as exc:
            raise AmiError(f"no AMI answer to {action.get('Action')} in time") from exc

    async def ping(self) -> bool:
        try:
            response = await self.action({"Action": "Ping"}, timeout=2, as_list=False)
        except AmiError:
            return False
        return succeeded(response)


def response_items(response: Any) -> list[Any]:
    """An action's answer as a list (panoramisk gives one message, or a list for an event
    list)."""
    return response if isinstance(response, list) else [response]


def succeeded(response: Any) -> bool:
    """The action's own response said Success."""
    items = response_items(response)
    return bool(items) and hasattr(items[0], "get") and items[0].get("Response") == "Success"


def response_message(response: Any) -> str:
    items = response_items(response)
    return (items[0].get("Message", "") or "") if items and hasattr(items[0], "get") else ""


async def _ignore(_event: AmiEvent) -> None:
    return None


@asynccontextmanager
async def short_session(*, port: int, username: str, secret: str) -> AsyncIterator[AmiClient]:
    """One CLI command's AMI login on this machine (events ignored), logged out after."""
    ami = AmiClient(host="127.0.0.1", port=port, username=username, secret=secret,
                    on_event=_ignore)
    await ami.start()
    try:
        await ami.wait_connected()
        yield ami
    finally:
        await ami.stop()
