"""Plain HTTP requests to the server's API, as curl would make them (no client library:
what the server gets is what any client could send)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.e2e.stack import Stack


def http(stack: Stack, method: str, path: str, token: str | None = None,
         body: object = None) -> tuple[int, dict]:
    """A plain HTTP request, as curl would make it."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(f"http://127.0.0.1:{stack.ports['web']}{path}",
                                     data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")
