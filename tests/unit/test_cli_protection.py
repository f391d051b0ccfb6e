"""`ivr block`, `ivr unblock`, `ivr blocks list`, `ivr rules test` against a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ivr.cli import main

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path) -> str:
    path = tmp_path / "ivr.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "var"}"\n'
                    f'[prompts]\ntexts = "{PROJECT / "prompts" / "prompts.yaml"}"\n'
                    f'[journey]\ndir = "{PROJECT / "dialplan"}"\n'
                    f'[protection]\nfile = "{PROJECT / "protection.yaml"}"\n'
                    '[desk]\ndefault = "support"\n')
    return str(path)


def ivr(config: str, *args: str, code: int = 0):
    result = CliRunner().invoke(main, [*args, "-c", config])
    assert result.exit_code == code, (args, result.output, result.exception)
    return result


def test_block_list_unblock_and_rules(config):
    assert ivr(config, "block", "+81 3-1234-5678", "--reason", "暴言",
               "--expires", "30d").output.startswith("block:1: exact 0312345678 blocked")
    ivr(config, "block", "0120", "--prefix", "--reason", "spam", "--entry", "main")
    ivr(config, "block", "_0990XXXXXX", "--pattern", "--reason", "premium")
    for args, field in ((("block", "_09[9", "--pattern", "--reason", "x"), "pattern"),
                        (("block", "abc", "--reason", "x"), "number"),
                        (("block", "0312", "--reason", " "), "reason"),
                        (("block", "0312", "--reason", "x", "--expires", "2001-01-01"),
                         "expires"),
                        (("block", "0312", "--reason", "x", "--entry", "nowhere"), "entry"),
                        (("unblock", "99", "--reason", "x"), "id")):
        result = ivr(config, *args, code=2)
        assert f"refused: {field}: " in result.output, result.output
    listed = json.loads(ivr(config, "blocks", "list", "--json").output)["blocks"]
    assert [(b["rule"], b["value"], b["entry"]) for b in listed] == [
        ("block:1", "0312345678", None), ("block:2", "0120", "main"),
        ("block:3", "_0990XXXXXX", None)]
    shown = json.loads(ivr(config, "rules", "test", "03-1234-5678", "--json").output)
    assert (shown["action"], shown["rule"]) == ("refuse", "block:1")
    assert "route to desk supervisor" in ivr(config, "rules", "test", "x", "--withheld",
                                             "anonymous", "--entry", "main").output
    assert json.loads(ivr(config, "rules", "test", "0120111222", "--json").output)["rule"] \
        is None  # the prefix block is main's only
    assert ivr(config, "unblock", "1", "--reason", "謝罪").output.startswith("block:1")
    assert "block:1" not in ivr(config, "blocks", "list").output
    assert "removed" in ivr(config, "blocks", "list", "--all").output
    shown = json.loads(ivr(config, "rules", "test", "0990123456", "--outbound", "--json").output)
    assert (shown["allowed"], shown["rule"]) == (False, "outbound:dial-q2")
    assert "allow  rule=emergency:110" in ivr(config, "rules", "test", "110", "--operator",
                                              "op1001").output
