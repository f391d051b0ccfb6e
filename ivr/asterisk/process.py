"""Running Asterisk as a child process (ivr run --with-asterisk, and the end-to-end tests)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
from pathlib import Path

from ivr.asterisk.render import AsteriskPaths

log = logging.getLogger("ivr.asterisk")

PROJECT_DIR = Path(__file__).resolve().parents[2]
SCRIPT = PROJECT_DIR / "deploy" / "asterisk.sh"


class AsteriskProcess:
    def __init__(self, paths: AsteriskPaths, data_dir: Path):
        self.paths = paths
        self.data_dir = data_dir
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 60.0) -> None:
        if self.paths.control_socket.exists():
            self.paths.control_socket.unlink()
        out = (self.paths.log / "asterisk.out").open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            str(SCRIPT), "run", str(self.paths.main_conf), str(self.data_dir),
            stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            # Its own session: Ctrl-C reaches us, and we stop Asterisk in order.
            start_new_session=True,
        )
        out.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.paths.control_socket.exists():
            if self.proc.returncode is not None:
                raise RuntimeError(
                    f"Asterisk exited with status {self.proc.returncode}; "
                    f"see {self.paths.log / 'asterisk.out'} and {self.paths.log / 'messages.log'}"
                )
            if loop.time() > deadline:
                raise RuntimeError(f"Asterisk did not start within {timeout:g} s")
            await asyncio.sleep(0.1)
        log.info("event=asterisk_started pid=%d", self.proc.pid)

    async def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        log.info("event=asterisk_stopped status=%s", self.proc.returncode)


def asterisk_cli(paths: AsteriskPaths, data_dir: Path, command: str, timeout: float = 20) -> str:
    """One Asterisk CLI command against this instance (blocking)."""
    result = subprocess.run(
        [str(SCRIPT), "rx", str(paths.main_conf), str(data_dir), command],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    return result.stdout + result.stderr
