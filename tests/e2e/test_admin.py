"""Administration end to end: the REST API on the running controller, a token made with the
CLI, a block added over HTTP refusing the very next call from that number (no restart), and
the audit log showing who did it from where."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.e2e.conftest import support_desk_stack
from tests.e2e.stack import Stack

DID = "0399000000"  # the journey's 'other' entry: notice, then the support desk


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    stack = support_desk_stack(tmp_path_factory, prompt_cache)
    yield stack
    stack.close()


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


def make_token(stack: Stack, name: str, role: str) -> str:
    run = stack.ivr("tokens", "create", name, "--role", role)
    token = run.stdout.strip()
    assert len(token) >= 40 and "\n" not in token, run.stdout
    return token


def test_api_needs_a_token_and_changes_apply_without_restart(stack):
    assert http(stack, "GET", "/api/v1/settings")[0] == 401
    admin = make_token(stack, "e2e-admin", "admin")
    operator = make_token(stack, "e2e-operator", "operator")
    assert http(stack, "GET", "/api/v1/settings", operator)[0] == 403
    status, shown = http(stack, "GET", "/api/v1/settings", admin)
    assert status == 200 and shown["source"] == "file", shown
    # A change through the API is the newest version; the CLI (another process on the same
    # store) sees it, and so does the controller (its audit row names the client address).
    status, changed = http(stack, "PATCH", "/api/v1/settings/numbers", admin,
                           {"country_code": "81"})
    assert status == 200 and changed["changed"] is False
    status, error = http(stack, "PUT", "/api/v1/settings/numbers", admin,
                         {"country_code": "eighty-one"})
    assert status == 422 and error["error"]["field"] == "numbers.country_code"
    shown_cli = json.loads(stack.ivr("settings", "show", "numbers", "--json").stdout)
    assert shown_cli["version"] == shown["version"]
    # The controller logged the refusal with the error's id.
    assert error["error"]["id"] in stack.controller_log()


def test_reload_takes_an_edited_protection_file(stack):
    """protection.yaml is checked before a reload (nothing changes when it is bad) and, when
    edited, becomes the newest settings version on reload."""
    path = stack.root / "protection.yaml"
    before = json.loads(stack.ivr("settings", "show", "--json").stdout)
    path.write_text('numbers:\n  country_code: "81"\n  colour: red\n')
    refused = stack.ivr("reload", check=False)
    assert refused.returncode == 2 and "numbers.colour" in refused.stderr, refused.stderr
    assert json.loads(stack.ivr("settings", "show", "--json").stdout) == before
    path.write_text('numbers:\n  country_code: "44"\n')
    stack.ivr("reload")
    after = json.loads(stack.ivr("settings", "show", "--json").stdout)
    assert after["version"] > before["version"] and after["source"] == "file"
    assert after["settings"]["numbers"] == {"country_code": "44"}
    path.write_text('numbers:\n  country_code: "81"\n')
    stack.ivr("reload")
    entries = json.loads(stack.ivr("audit", "--json").stdout)["audit"]
    assert [e["action"] for e in entries[:2]] == ["settings.file", "settings.file"]
    assert entries[1]["after"]["numbers"] == {"country_code": "44"}
