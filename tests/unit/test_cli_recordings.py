"""`ivr recordings search` and `ivr recordings show` against a real SQLite store, and the
query parser they share with the API."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from ivr.cli import main
from ivr.config import load_config
from ivr.protection.admin_errors import AdminError
from ivr.recordings.search import build_query, parse_when, valid_call_id
from ivr.recordings.store_index import RecordingIndex, State
from ivr.store import Database
from tests.unit.test_cli_protection import config  # noqa: F401  (the fixture)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp()


def ivr(config_path: str, *args: str, code: int = 0):
    result = CliRunner().invoke(main, [*args, "-c", config_path])
    assert result.exit_code == code, (args, result.output, result.exception)
    return result


async def _fill(config_path: str) -> None:
    cfg = load_config(config_path)
    async with Database(cfg.database_url) as db:
        index = RecordingIndex(db)
        for n in range(1, 6):
            await index.add(call_id=f"1764000000.{n}", kind="call",
                            path=f"2026/11/2{n}/1764000000.{n}.flac", format="flac",
                            state=State.FINAL, started_at=NOW - (6 - n) * 86400,
                            caller="0312345678" if n % 2 else "0455556666", desk="support",
                            operator=f"op100{n % 2 + 1}", outcome="completed",
                            flags="flagged" if n == 4 else "", duration=10.0 * n,
                            shouting=n - 3 if n > 3 else 0, analysis_state="done",
                            analysis={"caller": {"episodes": []}}, sha256="ab" * 32)


def test_search_and_show(config):  # noqa: F811
    asyncio.run(_fill(config))
    listed = json.loads(ivr(config, "recordings", "search", "--number", "+81 3-1234-5678",
                            "--json").output)
    assert [r["call_id"] for r in listed["recordings"]] == [
        "1764000000.5", "1764000000.3", "1764000000.1"]
    assert listed["total"] == 3 and "analysis" not in listed["recordings"][0]
    shouting = json.loads(ivr(config, "recordings", "search", "--shouting", "--json").output)
    assert [r["call_id"] for r in shouting["recordings"]] == ["1764000000.5", "1764000000.4"]
    page = ivr(config, "recordings", "search", "--per-page", "2", "--page", "2").output
    assert "1764000000.3" in page and "1764000000.2" in page and "1764000000.5" not in page
    assert "3-4 of 5; next: --page 3" in page
    assert "1764000000.4" in ivr(config, "recordings", "search", "--flag", "flagged",
                                 "--min-duration", "30").output
    for args, field in ((("--per-page", "0"), "per_page"), (("--from", "soon"), "from"),
                        (("--number", "abc"), "number"), (("--state", "lost"), "state")):
        result = ivr(config, "recordings", "search", *args, code=2)
        assert f"refused: {field}: " in result.output, result.output
    shown = json.loads(ivr(config, "recordings", "show", "1764000000.4", "--json").output)
    [row] = shown["recordings"]
    assert row["flags"] == ["flagged"] and row["analysis"] == {"caller": {"episodes": []}}
    assert "sha256 " + "ab" * 32 in ivr(config, "recordings", "show", "1764000000.4").output
    assert "refused: call_id: no recording" in ivr(config, "recordings", "show", "17.9",
                                                   code=2).output
    assert "refused: call_id: not a call id" in ivr(config, "recordings", "show",
                                                    "../etc/passwd", code=2).output


def test_parse_when_and_query():
    assert parse_when("7d", end=False, now=NOW) == NOW - 7 * 86400
    assert parse_when("2026-11-25", end=False, now=NOW) == NOW - 12 * 3600
    assert parse_when("2026-11-25", end=True, now=NOW) == NOW + 12 * 3600
    assert parse_when("2026-11-25T21:00:00+09:00", end=True, now=NOW) == NOW
    query = build_query({"from": "2w", "to": "2026-11-25", "shouting": "yes",
                         "per-page": "10"}, now=NOW)
    assert (query.since, query.until, query.shouting, query.per_page) == (
        NOW - 14 * 86400, NOW + 12 * 3600, True, 10)
    with pytest.raises(AdminError) as err:
        build_query({"colour": "red"})
    assert err.value.field == "colour" and err.value.status == 400
    for good in ("1764000000.12", "node-a-1764000000.3", "abc_1"):
        assert valid_call_id(good)
    for bad in ("..", "a/../b", "/etc/passwd", ".hidden", "a\x00b", "a b", "", "1.." + "x",
                "x" * 129, "a\\b"):
        assert not valid_call_id(bad), bad

