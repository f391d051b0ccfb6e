"""The schema: Alembic builds it on both engines, adopts a pre-Alembic SQLite file in place,
and agrees with ivr/store/tables.py. Also the [database] configuration."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ivr.config import ConfigError, load_config
from ivr.store import CallStore, Database
from ivr.store.engine import ADOPTED_VERSION
from ivr.store.migrate import SchemaError, head
from ivr.store.tables import metadata
from tests.store.legacy_v2 import MIGRATIONS

PROJECT = Path(__file__).resolve().parents[2]
# A store test that hangs is a bug in the writer: fail fast.
pytestmark = pytest.mark.timeout(60)
T0 = 1_700_000_000.25
TIME_COLUMNS = {
    "calls": ["started_at", "answered_at", "notice_started_at", "notice_ended_at",
              "queue_joined_at", "connected_at", "ended_at", "updated_at"],
    "call_events": ["at"], "operator_events": ["at"], "node_state": ["updated_at"],
}


async def test_fresh_schema_has_timestamp_columns_and_matches_tables(db_url):
    async with Database(db_url) as db, db.engine.connect() as conn:
        def inspect(sync_conn):
            insp = sa.inspect(sync_conn)
            types = {t: {c["name"]: c["type"] for c in insp.get_columns(t)}
                     for t in TIME_COLUMNS}
            diff = compare_metadata(MigrationContext.configure(sync_conn), metadata)
            return types, diff, MigrationContext.configure(sync_conn).get_current_revision()

        types, diff, revision = await conn.run_sync(inspect)
    assert revision == head()
    for table, names in TIME_COLUMNS.items():
        for name in names:
            kind = types[table][name]
            assert isinstance(kind, sa.DateTime), (table, name, kind)
            if db_url.startswith("postgresql"):
                assert kind.timezone, (table, name)  # timestamptz
    assert diff == [], diff


def _make_v2(path: Path) -> None:
    """A SQLite file exactly as the pre-Alembic store left it, with a few records."""
    conn = sqlite3.connect(path)
    for number, script in enumerate(MIGRATIONS, start=1):
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    conn.execute(
        "INSERT INTO calls (id, node, caller, did, started_at, answered_at, queue_joined_at,"
        " connected_at, ended_at, desk, operator, outcome, hangup_cause, recording_path,"
        " recording_duration, recording_sha256, failsafe, source, updated_at, entry, menu_path)"
        " VALUES ('ivr1-1.0', 'ivr1', '0312345678', '0501234567', ?, ?, ?, ?, ?, 'sales',"
        " 'op1001', 'answered', 16, '/r/ivr1-1.0.wav', 20.5, 'ab', 1, 'controller', ?,"
        " 'main', 'main:1')",
        (T0, T0 + 0.1, T0 + 5, T0 + 10, T0 + 30.5, T0 + 31),
    )
    conn.execute("INSERT INTO calls (id, node, started_at, source, updated_at)"
                 " VALUES ('ivr1-2.0', 'ivr1', ?, 'ami', ?)", (T0 + 60, T0 + 60))
    for i, kind in enumerate(["call_started", "routed", "connected", "hung_up"]):
        conn.execute("INSERT INTO call_events (call_id, at, kind, data) VALUES (?, ?, ?, ?)",
                     ("ivr1-1.0", T0 + i, kind, json.dumps({"i": i, "名": "佐藤"})))
    conn.execute("INSERT INTO operator_events (at, operator, desk, action, detail, by_whom)"
                 " VALUES (?, 'op1001', 'sales', 'login', '', 'cli')", (T0 - 100,))
    conn.commit()
    conn.close()


async def test_v2_sqlite_file_is_adopted_in_place(tmp_path):
    path = tmp_path / "ivr.sqlite3"
    _make_v2(path)
    async with Database(path) as db:
        store = CallStore(db)
        first = await store.get("ivr1-1.0")
        assert first.started_at == pytest.approx(T0, abs=1e-3)
        assert first.ended_at == pytest.approx(T0 + 30.5, abs=1e-3)
        assert first.connected_at == pytest.approx(T0 + 10, abs=1e-3)
        assert first.updated_at == pytest.approx(T0 + 31, abs=1e-3)
        assert (first.failsafe, first.desk, first.operator, first.outcome) == \
            (True, "sales", "op1001", "answered")
        assert (first.hangup_cause, first.recording_duration, first.menu_path) == \
            (16, 20.5, "main:1")
        assert [r.id for r in await store.open_calls("ivr1")] == ["ivr1-2.0"]
        events = await store.events("ivr1-1.0")
        assert [e["kind"] for e in events] == ["call_started", "routed", "connected", "hung_up"]
        assert events[0] == {"at": pytest.approx(T0, abs=1e-3), "kind": "call_started",
                             "data": {"i": 0, "名": "佐藤"}}
        ops = await store.operator_events()
        assert [(o["operator"], o["action"]) for o in ops] == [("op1001", "login")]
        # New rows continue after the adopted ones.
        await store.add_event("ivr1-1.0", "later", T0 + 100)
        assert (await store.events("ivr1-1.0"))[-1]["kind"] == "later"
        await store.set_state("ivr1", "cdr_offset", "42")
        assert await store.get_state("ivr1", "cdr_offset") == "42"
    conn = sqlite3.connect(path)
    try:
        # An older ivr now refuses the file instead of writing epochs into it.
        assert conn.execute("PRAGMA user_version").fetchone()[0] == ADOPTED_VERSION
        assert conn.execute("SELECT typeof(started_at) FROM calls LIMIT 1").fetchone()[0] == \
            "text"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert not any(t.startswith("v2_") for t in tables)
    finally:
        conn.close()
    async with Database(path) as db:  # opening again changes nothing
        assert len(await CallStore(db).recent()) == 2


async def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "ivr.sqlite3"
    async with Database(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match="newer than this program"):
        await Database(path).open()


def _config(tmp_path: Path, database: str):
    text = (PROJECT / "ivr.example.toml").read_text()
    text = text.replace('data_dir = "var"', f'data_dir = "{tmp_path}"')
    text = text.replace('texts = "prompts/prompts.yaml"',
                        f'texts = "{PROJECT / "prompts" / "prompts.yaml"}"')
    text = text.replace('dir = "dialplan"', f'dir = "{PROJECT / "dialplan"}"')
    text = text.replace('url = ""', database)
    path = tmp_path / "ivr.toml"
    path.write_text(text)
    return load_config(path)


def test_database_url_configuration(tmp_path):
    default = _config(tmp_path, 'url = ""')
    assert default.database_url == f"sqlite+aiosqlite:///{tmp_path / 'ivr.sqlite3'}"
    assert default.database_file == tmp_path / "ivr.sqlite3"
    relative = _config(tmp_path, 'url = "sqlite+aiosqlite:///db/x.sqlite3"')
    assert relative.database_file == tmp_path / "db" / "x.sqlite3"
    pg = _config(tmp_path, 'url = "postgresql+asyncpg://ivr:pw@db.example/ivr"')
    assert pg.database_url.startswith("postgresql+asyncpg://") and pg.database_file is None
    for bad in ("mysql://u@h/db", "postgresql://u@h/db", "sqlite:///x.db", "nonsense"):
        with pytest.raises(ConfigError) as info:
            _config(tmp_path, f'url = "{bad}"')
        assert "database.url" in str(info.value), str(info.value)


def test_cli_calls_reads_the_configured_database(db_url, tmp_path):
    import asyncio

    from click.testing import CliRunner

    from ivr.cli import main

    if db_url.startswith("sqlite"):  # a folder that does not exist yet is made
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'new' / 'dir' / 'ivr.sqlite3'}"
    _config(tmp_path, f'url = "{db_url}"')

    async def fill() -> None:
        async with Database(db_url) as db:
            store = CallStore(db)
            await store.ensure_call("ivr1-9.1", node="ivr1", started_at=T0, source="cdr")
            await store.add_event("ivr1-9.1", "call_started", T0, {"source": "cdr"})

    asyncio.run(fill())
    result = CliRunner().invoke(main, ["calls", "-c", str(tmp_path / "ivr.toml"), "--json",
                                       "--events"])
    assert result.exit_code == 0, result.output
    (call,) = json.loads(result.output)["calls"]
    assert call["id"] == "ivr1-9.1" and call["started_at"] == "2023-11-14T22:13:20.250Z"
    assert [e["kind"] for e in call["events"]] == ["call_started"]
