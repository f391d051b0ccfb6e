"""Administration end to end: the REST API on the running controller, a token made with the
CLI, a block added over HTTP refusing the very next call from that number (no restart), and
the audit log showing who did it from where."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.api_http import http
from tests.e2e.conftest import support_desk_stack
from tests.e2e.stack import Stack, wait_until

DID = "0399000000"  # the journey's 'other' entry: notice, then the support desk


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    stack = support_desk_stack(tmp_path_factory, prompt_cache)
    yield stack
    stack.close()


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


def test_block_and_setting_changed_over_http_apply_to_the_next_calls(stack):
    """While the controller runs: a supervisor blocks a number (in +81 form) and an admin
    refuses anonymous callers, both over HTTP. The next call from that number (national form)
    and the next anonymous call are refused without ringing an operator; a call from another
    number still reaches the operator (so the refusals are not the stack failing). The audit
    log shows both changes, by whom, from where, with before and after."""
    supervisor = make_token(stack, "e2e-supervisor", "supervisor")
    admin = make_token(stack, "e2e-admin2", "admin")
    status, block = http(stack, "POST", "/api/v1/blocks", supervisor,
                         {"number": "+81 3-5550-0001", "reason": "abusive (e2e)",
                          "expires": "1d"})
    assert status == 201 and block["value"] == "0355500001", block
    status, changed = http(stack, "PATCH", "/api/v1/settings/inbound", admin, {
        "prompts": {"withheld": "refused"},
        "entries": {"default": {"withheld": {"anonymous": "refuse"}}}})
    assert status == 200 and changed["changed"], changed

    operator = stack.operator("op1001")
    started = time.time()
    blocked = stack.caller("0355500001", DID, hangup_after=40, accept_bye=True)
    anonymous = stack.caller("anonymous", DID, hangup_after=40, accept_bye=True)
    control = stack.caller("0355500002", DID, hangup_after=40, accept_bye=True)
    for peer in (blocked, anonymous, control):
        assert peer.wait(120).returncode == 0

    refused = stack.call_record(lambda c: c["caller"] == "0355500001" and c["outcome"],
                                what="blocked call's record")
    assert refused["outcome"] == "refused" and refused["rule"] == block["rule"], refused
    withheld = stack.call_record(lambda c: c["caller"] is None and c["outcome"]
                                 and c["started_at"] and c["rule"], what="anonymous record")
    assert withheld["outcome"] == "refused" and withheld["rule"] == "withheld:anonymous"
    reached = stack.call_record(lambda c: c["caller"] == "0355500002" and c["outcome"],
                                what="control call's record")
    assert reached["outcome"] != "refused" and reached["operator"] == "op1001", reached
    # SIPp's own trace: the operator's phone rang for the control call only.
    assert operator.invites_received(since=started, caller="0355500002")
    assert not operator.invites_received(since=started, caller="0355500001")
    assert not operator.invites_received(since=started, caller="anonymous")
    # Asterisk hung up on the refused callers well before they would have (40 s).
    for peer in (blocked, anonymous):
        byes = [t for t, what, _ in peer.messages() if "received" in what and "| BYE " in what]
        assert byes and byes[0] - started < 30, peer.messages()[-3:]

    status, audit = http(stack, "GET", "/api/v1/audit?limit=20", supervisor)
    assert status == 200
    by_action = {e["action"]: e for e in audit["audit"]}
    added = by_action["block.add"]
    assert added["actor"] == "e2e-supervisor" and added["role"] == "supervisor"
    assert added["origin"] == "api 127.0.0.1" and added["before"] is None
    assert added["after"]["value"] == "0355500001" and added["target"] == block["rule"]
    patched = by_action["settings.patch"]
    assert patched["actor"] == "e2e-admin2" and patched["origin"] == "api 127.0.0.1"
    assert patched["after"]["entries"]["default"]["withheld"]["anonymous"]["action"] == "refuse"
    assert "default" not in (patched["before"] or {}).get("entries", {})
    # The CLI reads the same log.
    assert wait_until(lambda: "block.add" in stack.ivr("audit").stdout, 5, what="CLI audit")


def test_feature_code_changed_over_http_reaches_asterisk_without_reload(stack):
    """What Asterisk holds of the settings (features.conf's [applicationmap]) follows a change
    made through the API: Asterisk's own `features show` is the witness."""
    def flag_line() -> str:
        return next((line for line in stack.cli("features show").splitlines()
                     if "ivr_flag" in line), "")

    admin = make_token(stack, "e2e-admin3", "admin")
    assert "*1" in flag_line(), stack.cli("features show")
    status, _ = http(stack, "PATCH", "/api/v1/settings/features", admin,
                     {"codes": {"flag": "#7"}})
    assert status == 200
    wait_until(lambda: "#7" in flag_line(), 10, what="#7 in features show")
    status, error = http(stack, "PATCH", "/api/v1/settings/features", admin,
                         {"codes": {"flag": "*2"}})  # the notice's code: refused
    assert status == 422 and error["error"]["field"].startswith("features.codes"), error
    time.sleep(1.5)
    assert "#7" in flag_line(), flag_line()
    status, _ = http(stack, "PATCH", "/api/v1/settings/features", admin,
                     {"codes": {"flag": "*1"}})
    assert status == 200
    wait_until(lambda: "*1" in flag_line(), 10, what="*1 back in features show")
