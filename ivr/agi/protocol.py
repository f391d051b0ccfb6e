"""One FastAGI session: headers in, commands out, every read under a timeout and a size limit.

panoramisk's own FastAGI handler freezes the event loop on a client that closes before the
headers end, so the socket is handled here and only panoramisk's result parser is used.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

from panoramisk.utils import parse_agi_result

from ivr.agi import timing

MAX_HEADER_BYTES = 16 * 1024
MAX_LINE_BYTES = 8 * 1024


class AgiError(Exception):
    """A command failed or the session broke; carries the command for the log."""


class AgiHangup(AgiError):
    """The caller hung up: stop deciding, nothing is wrong."""


class AgiPlaybackError(AgiError):
    """Asterisk answered STREAM FILE with a failure (result=-1 on a live channel)."""

    def __init__(self, path: str, line: str):
        self.path = path
        self.line = line
        super().__init__(f"Asterisk could not play {path}: {line}")


class AgiProtocolError(AgiError):
    """The peer sent something that is not AGI (a port scan, a health check, garbage)."""


@dataclass(frozen=True)
class AgiResult:
    code: int
    result: str
    data: str
    line: str = ""

    @property
    def endpos(self) -> int | None:
        """STREAM FILE's `endpos=`: the sample the playback stopped at (0: nothing played)."""
        match = _ENDPOS.search(self.line)
        return int(match.group(1)) if match else None

    @property
    def value(self) -> int:
        try:
            return int(self.result)
        except ValueError:
            return -1


def parse_headers(raw: bytes) -> dict[str, str]:
    """Asterisk ends each header with LF; some carry caller text (agi_callerid, agi_dnid,
    agi_calleridname). Only LF splits (str.splitlines would also split on NEL, VT, FS...
    inside a caller's name), and a header given twice means someone smuggled a line in:
    the session is refused (the dialplan's fail-safe path takes the call)."""
    headers: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").split("\n"):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.startswith("agi_"):
            raise AgiProtocolError(f"not an AGI header line: {line[:80]!r}")
        if key.strip() in headers:
            raise AgiProtocolError(f"AGI header {key.strip()} given twice")
        headers[key.strip()] = value.strip()
    if "agi_uniqueid" not in headers:
        raise AgiProtocolError("AGI headers lack agi_uniqueid")
    return headers


async def read_headers(reader: asyncio.StreamReader, timeout: float) -> dict[str, str]:
    try:
        async with asyncio.timeout(timeout):
            raw = await reader.readuntil(b"\n\n")
    except TimeoutError as exc:
        raise AgiProtocolError(f"no complete AGI headers within {timeout:g} s") from exc
    except asyncio.IncompleteReadError as exc:
        raise AgiProtocolError("connection closed before the AGI headers ended") from exc
    except asyncio.LimitOverrunError as exc:
        raise AgiProtocolError(f"AGI headers longer than {MAX_HEADER_BYTES} bytes") from exc
    return parse_headers(raw)


def quote(arg: str) -> str:
    """Quote one AGI argument; newlines would end the command early, so they are refused."""
    if "\n" in arg or "\r" in arg:
        raise ValueError("AGI arguments cannot contain line breaks")
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


_RESULT = re.compile(r"^(\d{3})[ -]")
_ENDPOS = re.compile(r"\bendpos=(\d+)")


class AgiChannel:
    """Commands to one channel. Methods are thin; decisions live in the handlers and policy."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        headers: dict[str, str],
        command_timeout: float,
    ):
        self._reader = reader
        self._writer = writer
        self.headers = headers
        self._timeout = command_timeout
        self.hung_up = False

    @property
    def unique_id(self) -> str:
        return self.headers["agi_uniqueid"]

    @property
    def script(self) -> str:
        return self.headers.get("agi_network_script", "").strip("/").split("?")[0]

    async def _readline(self) -> str:
        """One response line (the caller holds the command's deadline)."""
        line = await self._reader.readline()
        if not line:
            raise AgiHangup("connection closed by Asterisk")
        if len(line) > MAX_LINE_BYTES:
            raise AgiProtocolError("AGI response line too long")
        return line.decode("utf-8", "replace").rstrip("\r\n")

    async def command(self, text: str) -> AgiResult:
        if self.hung_up:
            raise AgiHangup(f"channel gone before {text.split(' ', 1)[0]}")
        self._writer.write(text.encode() + b"\n")
        started = time.perf_counter()
        try:
            # One deadline for the whole exchange; asyncio.timeout, not wait_for, which
            # wraps every await in a task of its own (two per command, measured in profiles).
            async with asyncio.timeout(self._timeout):
                await self._writer.drain()
                line = await self._readline()
                # Asterisk announces a hang-up on its own line before answering the command.
                while line == "HANGUP":
                    self.hung_up = True
                    line = await self._readline()
                if line.startswith("520-"):
                    while not line.startswith("520 "):
                        line = await self._readline()
        except TimeoutError as exc:
            raise AgiError(f"no answer to {text!r} within {self._timeout:g} s") from exc
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            raise AgiHangup(f"connection lost during {text!r}") from exc
        timing.observe(text, time.perf_counter() - started)
        parsed = parse_agi_result(line)
        if parsed.get("error") == "AGIResultHangup" or line.startswith("511"):
            self.hung_up = True
            raise AgiHangup(f"channel hung up during {text!r}")
        match = _RESULT.match(line)
        code = int(match.group(1)) if match else 0
        if code != 200:
            raise AgiError(f"{text!r} failed: {line}")
        result, data = parsed.get("result", ("", ""))
        return AgiResult(code=code, result=result, data=data, line=line)

    async def get_variable(self, name: str) -> str | None:
        res = await self.command(f"GET VARIABLE {name}")
        return res.data if res.result == "1" else None

    async def set_variable(self, name: str, value: str) -> None:
        await self.command(f"SET VARIABLE {name} {quote(value)}")

    async def stream_file(self, path: str, escape_digits: str = "") -> str | None:
        """Play a prompt; with no escape digits it cannot be skipped. Returns the key pressed."""
        res = await self.stream(path, escape_digits)
        return chr(res.value) if res.value > 0 else None

    async def stream(self, path: str, escape_digits: str = "") -> AgiResult:
        """STREAM FILE; raises AgiHangup if the caller left, AgiPlaybackError if Asterisk
        could not play the file (it answers `result=-1 endpos=0` for a missing file)."""
        res = await self.command(f"STREAM FILE {quote(path)} {quote(escape_digits)}")
        if res.value < 0:
            # -1 is either a hang-up during playback or a file Asterisk could not open.
            await self.command("CHANNEL STATUS")
            raise AgiPlaybackError(path, res.line)
        return res

    async def verbose(self, message: str, level: int = 3) -> None:
        await self.command(f"VERBOSE {quote(message)} {level}")
