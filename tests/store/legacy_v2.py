"""The store's schema before Alembic (ivr/store/migrations.py as of e7d6dd1, verbatim SQL):
the tests build a schema-v2 SQLite file with it and check that it is adopted in place.
"""

MIGRATIONS: list[str] = [
    # 1: the call record and its timeline
    """
    CREATE TABLE calls (
        id                 TEXT PRIMARY KEY,
        node               TEXT NOT NULL,
        direction          TEXT NOT NULL DEFAULT 'inbound',
        caller             TEXT,
        caller_name        TEXT,
        did                TEXT,
        started_at         REAL NOT NULL,
        answered_at        REAL,
        notice_started_at  REAL,
        notice_ended_at    REAL,
        queue_joined_at    REAL,
        connected_at       REAL,
        ended_at           REAL,
        desk               TEXT,
        operator           TEXT,
        outcome            TEXT,
        hangup_cause       INTEGER,
        hangup_by          TEXT,
        recording_path     TEXT,
        recording_duration REAL,
        recording_sha256   TEXT,
        failsafe           INTEGER NOT NULL DEFAULT 0,
        source             TEXT NOT NULL,
        updated_at         REAL NOT NULL
    );
    CREATE INDEX calls_started ON calls (started_at);
    CREATE INDEX calls_caller ON calls (caller, started_at);
    CREATE INDEX calls_open ON calls (ended_at) WHERE ended_at IS NULL;
    CREATE TABLE call_events (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        call_id  TEXT NOT NULL REFERENCES calls (id),
        at       REAL NOT NULL,
        kind     TEXT NOT NULL,
        data     TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX call_events_call ON call_events (call_id, at);
    """,
    # 2: the caller journey (entry point, language, menu path, how the IVR part ended)
    """
    ALTER TABLE calls ADD COLUMN entry TEXT;
    ALTER TABLE calls ADD COLUMN language TEXT;
    ALTER TABLE calls ADD COLUMN menu_path TEXT;
    ALTER TABLE calls ADD COLUMN disposition TEXT;
    ALTER TABLE calls ADD COLUMN overflow_from TEXT;
    CREATE TABLE operator_events (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        at        REAL NOT NULL,
        operator  TEXT NOT NULL,
        desk      TEXT,
        action    TEXT NOT NULL,
        detail    TEXT NOT NULL DEFAULT '',
        by_whom   TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX operator_events_operator ON operator_events (operator, at);
    """,
]
