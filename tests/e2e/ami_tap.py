"""A login of our own on Asterisk's AMI that keeps chosen UserEvents with Asterisk's own
timestamps: what the server announced, timed by Asterisk rather than by the controller."""

from __future__ import annotations

import socket
import threading
import tomllib

from tests.e2e.stack import Stack


class AmiTap:
    """The UserEvents named `kinds` (default IvrShout), each as its header fields."""

    def __init__(self, stack: Stack, kinds: frozenset[str] = frozenset({"IvrShout"})):
        self.kinds = kinds
        secret = tomllib.loads((stack.data / "secrets.toml").read_text())["ami_secret"]
        self.sock = socket.create_connection(("127.0.0.1", stack.ports["ami"]), timeout=5)
        self.sock.recv(100)
        self.sock.sendall(f"Action: Login\r\nUsername: ivr\r\nSecret: {secret}\r\n\r\n".encode())
        self.sock.settimeout(0.5)
        self.events: list[dict[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return
            buffer += chunk
            *blocks, buffer = buffer.split(b"\r\n\r\n")
            for block in blocks:
                fields = dict(line.split(": ", 1) for line in block.decode().split("\r\n")
                              if ": " in line)
                if fields.get("UserEvent") in self.kinds:
                    self.events.append(fields)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
