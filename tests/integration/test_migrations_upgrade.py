"""Upgrading a database made at schema version 3 through every migration, on SQLite and
on a real PostgreSQL: every `ALTER TABLE` runs (none uses a type only SQLite knows, such
as `DATETIME`), the data the old migrations carry over is carried over, and the result
has exactly the columns a fresh database has.

Migration 1 creates the tables the models define *today*, so the version-3 shape is made
from it by taking away what later migrations add: their tables dropped, their columns
dropped (so each later `ALTER TABLE … ADD COLUMN` really runs)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import DateTime, inspect, text

from storage import db as storage_db
from storage.db import Database, SQLModel

# What migrations 4… add to a version-3 database.
LATER_TABLES = ("trusted_folders", "trust_requests", "project_rules", "hosts", "gateway_leases")
LATER_COLUMNS = (
    ("outbox", "attempted_at"),  # 4
    ("schedules", "next_run_at"),  # 5
    ("paired_owners", "signature"),  # 6
    ("sessions", "host"),  # 10
    ("outbox", "host"),  # 13
    ("outbox", "claim"),  # 13
    ("schedules", "claimed_run_at"),  # 15
)
NEXT_RUN = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path}/v3.db"


def make_version_3(db: Database) -> None:
    """The schema (and a little data) of a database last migrated at version 3."""
    all_steps = storage_db.MIGRATIONS[:]
    try:
        storage_db.MIGRATIONS[:] = all_steps[:3]
        assert db.migrate() == 3
    finally:
        storage_db.MIGRATIONS[:] = all_steps
    tables = set(inspect(db.engine).get_table_names())
    with db.engine.begin() as conn:
        for table in LATER_TABLES:
            if table in tables:
                conn.execute(text(f"DROP TABLE {table}"))
        for table, column in LATER_COLUMNS:
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        # apscheduler's job table (migration 5 carries the next run over, then drops it).
        conn.execute(
            text(
                "CREATE TABLE apscheduler_jobs"
                " (id VARCHAR(191) PRIMARY KEY, next_run_time DOUBLE PRECISION)"
            )
        )
        conn.execute(
            text("INSERT INTO apscheduler_jobs VALUES ('abc123', :t)"),
            {"t": NEXT_RUN.timestamp()},
        )
        conn.execute(
            text(
                "INSERT INTO schedules (id, session_id, cron, prompt, timezone, created_by,"
                " created_at, runs) VALUES ('abc123', 's1', '0 9 * * *', 'p', 'UTC', '',"
                " :at, 0)"
            ),
            {"at": datetime(2026, 1, 1)},
        )
        # An empty-pattern session rule (migration 8 drops it) and a pending stream
        # update (migration 11 makes it class 3).
        conn.execute(
            text(
                "INSERT INTO session_rules (session_id, tool_name, pattern, created_by,"
                " created_at) VALUES ('s1', 'Bash', '', '', :at)"
            ),
            {"at": datetime(2026, 1, 1)},
        )
        conn.execute(
            text(
                "INSERT INTO outbox (chat_key, thread_key, platform, chat_id, op, priority,"
                " payload, state, attempts, not_before, last_error, created_at)"
                " VALUES ('telegram:1', 'telegram:1:', 'telegram', '1', 'send', 1, '',"
                " 'pending', 0, :at, '', :at)"
            ),
            {"at": datetime(2026, 1, 1)},
        )


def columns(db: Database) -> dict[str, set[str]]:
    found = inspect(db.engine)
    return {t: {c["name"] for c in found.get_columns(t)} for t in found.get_table_names()}


def test_a_version_3_database_upgrades_through_every_migration(db_url: str) -> None:
    old = Database(db_url)
    make_version_3(old)
    assert "attempted_at" not in columns(old)["outbox"]

    assert old.migrate() == len(storage_db.MIGRATIONS)

    upgraded = columns(old)
    for table in SQLModel.metadata.tables.values():  # the same columns as a fresh database
        assert upgraded[table.name] == {c.name for c in table.columns}, table.name
    assert "apscheduler_jobs" not in upgraded
    attempted = next(
        c for c in inspect(old.engine).get_columns("outbox") if c["name"] == "attempted_at"
    )
    assert isinstance(attempted["type"], DateTime)  # a timestamp on both databases
    schedule = old.schedules.get("abc123")
    assert schedule is not None and schedule.next_run_at == NEXT_RUN
    assert schedule.claimed_run_at is None
    with old.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM session_rules")).scalar() == 0
        assert conn.execute(text("SELECT priority FROM outbox")).scalar() == 3
    # The upgraded tables take today's rows, and a second start migrates nothing.
    old.hosts.start(name="laptop", roots=[], pid=1, version="", at=NEXT_RUN)
    host = old.hosts.get("laptop")
    assert host is not None and host.offline_noted_at is None and host.offline_told == "[]"
    assert old.migrate() == len(storage_db.MIGRATIONS)
    old.close()
