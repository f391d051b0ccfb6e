"""The supervisor PIN (salted scrypt hash in secrets.toml) and how an outbound call ended."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from ivr import credentials
from ivr.model import Outcome
from ivr.protection.rules_outbound import decide_outbound_ending
from ivr.protection.service_outbound import (
    PinError,
    hash_pin,
    set_pin,
    stored_pin_hash,
    verify_pin,
)

PROJECT = Path(__file__).resolve().parents[2]


def test_pin_hash_is_salted_and_verifies():
    one, two = hash_pin("739146"), hash_pin("739146")
    assert one != two and "739146" not in one
    assert verify_pin("739146", one) and verify_pin("739146", two)
    assert not verify_pin("739147", one)


@pytest.mark.parametrize("pin", ["", "123", "12a4", "1234567890123", "１２３４", "1234\n"])
def test_bad_pins_are_refused(pin):
    with pytest.raises(PinError, match="pin: 4-12 digits"):
        hash_pin(pin)


@pytest.mark.parametrize("stored", [None, "", "plain", "scrypt$x$y$z$a$b", "md5$1$2$3$4$5"])
def test_a_missing_or_malformed_hash_never_matches(stored):
    assert not verify_pin("1234", stored)


def test_secrets_keep_the_pin_hash_and_the_pin_hash_survives_new_operators(tmp_path):
    path = tmp_path / "secrets.toml"
    first = credentials.load_or_create(path, ["op1001"])
    set_pin(path, "4321")
    assert os.stat(path).st_mode & 0o777 == 0o600
    stored = stored_pin_hash(path)
    assert stored and verify_pin("4321", stored) and "4321" not in path.read_text()
    again = credentials.load_or_create(path, ["op1001", "op1002"])  # rewrites the file
    assert again.ami_secret == first.ami_secret
    assert again.operator_passwords["op1001"] == first.operator_passwords["op1001"]
    assert stored_pin_hash(path) == stored


def test_cli_sets_the_pin_without_printing_it(tmp_path):
    config = tmp_path / "ivr.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "var"}"\n'
                      f'[prompts]\ntexts = "{PROJECT / "prompts" / "prompts.yaml"}"\n'
                      f'[journey]\ndir = "{PROJECT / "dialplan"}"\n')
    run = subprocess.run([str(PROJECT / ".venv" / "bin" / "ivr"), "outbound", "pin", "--stdin",
                          "-c", str(config)], input="86420\n", capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "86420" not in run.stdout + run.stderr
    assert verify_pin("86420", stored_pin_hash(tmp_path / "var" / "secrets.toml"))
    bad = subprocess.run([str(PROJECT / ".venv" / "bin" / "ivr"), "outbound", "pin", "--stdin",
                          "-c", str(config)], input="12\n", capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert bad.returncode == 2 and "pin: 4-12 digits" in bad.stderr
    assert verify_pin("86420", stored_pin_hash(tmp_path / "var" / "secrets.toml"))


def ev(at: float, kind: str, **data) -> dict:
    return {"at": at, "kind": kind, "data": data}


@pytest.mark.parametrize("connected, disposition, events, outcome, by", [
    (False, "refused", [ev(1, "hangup_source", side="system")], Outcome.REFUSED, "system"),
    (True, "dialled", [ev(9, "hangup_source", side="caller")], Outcome.ANSWERED, "operator"),
    (True, "dialled", [ev(8, "dial_result", status="ANSWER"),
                       ev(9, "hangup_source", side="system")], Outcome.ANSWERED, "called"),
    (True, "dialled", [ev(9, "hangup_source", side="operator")], Outcome.ANSWERED, "called"),
    (False, "dialled", [ev(8, "dial_result", status="NOANSWER"),
                        ev(9, "hangup_source", side="system")], Outcome.UNANSWERED, "system"),
    (False, None, [ev(3, "hangup_source", side="caller")], Outcome.ABANDONED_IN_MENU,
     "operator"),
    (False, "dialled", [ev(5, "called_answered"), ev(7, "hangup_source", side="caller")],
     Outcome.ANSWERED, "operator"),
])
def test_outbound_endings(connected, disposition, events, outcome, by):
    ending = decide_outbound_ending(connected=connected, disposition=disposition, events=events)
    assert (ending.outcome, ending.hangup_by) == (outcome, by)


@pytest.mark.parametrize("uri, ok", [
    ("sip:127.0.0.1:5090", True), ("sip:carrier.example.jp", True), ("", True),
    ("sip:user@host", False), ("sip:host;transport=tcp", False), ("sip:a\nb", False),
    ("http://host", False),
])
def test_trunk_outbound_uri_is_validated(tmp_path, uri, ok):
    from ivr.config import ConfigError, load_config

    config = tmp_path / "ivr.toml"
    config.write_text(f'[prompts]\ntexts = "{PROJECT / "prompts" / "prompts.yaml"}"\n'
                      f'[journey]\ndir = "{PROJECT / "dialplan"}"\n'
                      f'[trunk]\noutbound_uri = {uri!r}\n'.replace("'", '"'))
    if ok:
        assert load_config(config).trunk.outbound_uri == uri
    else:
        with pytest.raises(ConfigError, match=r"trunk\.outbound_uri"):
            load_config(config)


OUTBOUND_CDR = (
    '"ivr1-5.0","ivr1-5.0","anonymous","s","ivr-outbound-action","PJSIP/op1001-00000005",'
    '"PJSIP/trunk-00000006","Dial","1700000200.0","1700000200.1","1700000230.0","ANSWERED",'
    '"119","/r/ivr1-5.0.wav","","outbound-failsafe",""\n'
    '"ivr1-7.0","ivr1-7.0","op1002","s","ivr-outbound-failsafe","PJSIP/op1002-00000007","",'
    '"Hangup","1700000300.0","1700000300.1","1700000303.0","ANSWERED","0312345678",'
    '"/r/ivr1-7.0.wav","","outbound-failsafe",""\n'
)


async def test_cdr_import_keeps_outbound_calls_outbound(tmp_path):
    from ivr.cdr_import import import_missed_calls
    from ivr.service import CallService
    from ivr.store import CallStore, Database

    path = tmp_path / "ivr-cdr.csv"
    path.write_text(OUTBOUND_CDR)
    async with Database(f"sqlite+aiosqlite:///{tmp_path / 'c.sqlite3'}") as db:
        service = CallService(CallStore(db), node="ivr1")
        assert await import_missed_calls(path, service, node="ivr1") == ["ivr1-5.0", "ivr1-7.0"]
        out = await service.get("ivr1-5.0")
        assert (out.direction, out.outcome, out.operator, out.did, out.caller, out.failsafe) == (
            "outbound", "answered", "op1001", "119", None, True)
        refused = await service.get("ivr1-7.0")
        assert (refused.direction, refused.outcome, refused.operator) == (
            "outbound", "refused", "op1002")


async def test_pin_locks_after_repeated_wrong_calls_and_opens_after_the_window(tmp_path):
    """Guessing by redialling: three calls refused for a wrong PIN within the hour lock the
    operator's PIN prompt; another operator, and the same one an hour later, are not locked."""
    from ivr.protection.service_outbound import PIN_LOCK_CALLS, PIN_LOCK_WINDOW, OutboundService
    from ivr.protection.store_audit import AuditStore
    from ivr.store import Database

    async with Database(f"sqlite+aiosqlite:///{tmp_path / 'a.sqlite3'}") as db:
        service = OutboundService(tmp_path / "secrets.toml", AuditStore(db))
        for i in range(PIN_LOCK_CALLS - 1):
            await service.pin_refused(operator="op1001", call_id=f"c{i}", rule="outbound:intl",
                                      attempts=3)
        now = time.time()
        assert not await service.pin_locked("op1001", now)
        await service.pin_refused(operator="op1001", call_id="c9", rule="outbound:intl",
                                  attempts=3)
        assert await service.pin_locked("op1001", now + 1)
        assert not await service.pin_locked("op1002", now + 1)
        assert not await service.pin_locked("op1001", now + PIN_LOCK_WINDOW + 60)
