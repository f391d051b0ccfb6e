"""A socket-level fake of Asterisk's side of FastAGI, for handler tests without Asterisk."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class FakeAsterisk:
    """Connects like Asterisk's AGI(), sends headers, answers commands with `answer`."""

    def __init__(self, port: int, script: str, variables: dict[str, str] | None = None,
                 uniqueid: str = "test-1700000000.1", callerid: str = "0312345678",
                 answer: Callable[[str], list[str] | str] | None = None):
        self.port = port
        self.script = script
        self.variables = dict(variables or {})
        self.uniqueid = uniqueid
        self.callerid = callerid
        self.answer = answer or self.default_answer
        self.commands: list[str] = []

    def default_answer(self, command: str) -> list[str] | str:
        verb = command.split(" ", 2)
        if command.startswith("GET VARIABLE"):
            name = verb[2]
            if name in self.variables:
                return f"200 result=1 ({self.variables[name]})"
            return "200 result=0"
        if command.startswith("SET VARIABLE"):
            name, _, value = command[len("SET VARIABLE "):].partition(" ")
            self.variables[name] = value.strip('"')
            return "200 result=1"
        if command.startswith("STREAM FILE"):
            return "200 result=0 endpos=40000"
        return "200 result=0"

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        headers = {
            "agi_network": "yes",
            "agi_network_script": self.script,
            "agi_request": f"agi://127.0.0.1:{self.port}/{self.script}",
            "agi_channel": "PJSIP/trunk-00000001",
            "agi_uniqueid": self.uniqueid,
            "agi_callerid": self.callerid,
            "agi_calleridname": "Yamada",
            "agi_extension": "s",
            "agi_dnid": "0501234567",
        }
        writer.write("".join(f"{k}: {v}\n" for k, v in headers.items()).encode() + b"\n")
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                break
            command = line.decode().strip()
            self.commands.append(command)
            reply = self.answer(command)
            for out in [reply] if isinstance(reply, str) else reply:
                writer.write(out.encode() + b"\n")
            await writer.drain()
        writer.close()
