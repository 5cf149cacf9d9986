"""The database: migrations, SQLite WAL, first-answer-wins permission decisions,
encryption of stored bodies."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from storage.crypto import BodyCipher, load_or_create_key
from storage.db import MIGRATIONS, Database
from storage.models import PermissionRequestRow, SessionRow


def test_migrate_is_idempotent_and_uses_wal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sub/t.db"
    db = Database(url)
    assert db.migrate() == len(MIGRATIONS)
    assert db.migrate() == len(MIGRATIONS)
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        tables = {
            r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
        }
    assert {
        "sessions",
        "thread_bindings",
        "outbox",
        "permission_requests",
        "session_rules",
        "audit_log",
        "turns",
    } <= tables
    db.close()


def test_home_is_expanded_in_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    db = Database("sqlite:///~/.local/share/threadline/x.db")
    db.migrate()
    assert (tmp_path / ".local/share/threadline/x.db").exists()
    db.close()


def test_first_decision_wins(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/t.db")
    db.migrate()
    db.sessions.add(SessionRow(id="s1", platform="telegram", cwd="/x"))
    db.permissions.add(
        PermissionRequestRow(id="r1", session_id="s1", tool_use_id="t", tool_name="Write")
    )
    assert db.permissions.decide("r1", "allowed", by="Ada") is True
    assert db.permissions.decide("r1", "denied", by="Bob") is False
    row = db.permissions.get("r1")
    assert row is not None and row.state == "allowed" and row.decided_by == "Ada"
    assert db.permissions.pending() == []


def test_key_file_is_private_and_bodies_are_sealed(tmp_path: Path) -> None:
    key_path = tmp_path / "keys" / "secret.key"
    key = load_or_create_key(key_path)
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    assert load_or_create_key(key_path) == key, "the key is reused, not regenerated"
    cipher = BodyCipher(key)
    sealed = cipher.seal("the launch codes")
    assert "launch" not in sealed and cipher.open(sealed) == "the launch codes"
    with pytest.raises(ValueError):
        BodyCipher(None).open(sealed)
    db = Database(f"sqlite:///{tmp_path}/enc.db", cipher=cipher)
    db.migrate()
    db.sessions.add(SessionRow(id="s1", platform="telegram", cwd="/x"))
    db.turns.start("s1", "a prompt about the launch codes")
    db.close()
    raw = (
        (tmp_path / "enc.db").read_bytes() + (tmp_path / "enc.db-wal").read_bytes()
        if (tmp_path / "enc.db-wal").exists()
        else (tmp_path / "enc.db").read_bytes()
    )
    assert b"launch codes" not in raw


def test_migrations_run_on_postgresql_and_again_as_a_no_op(postgres_url: str) -> None:
    """Every numbered migration runs on a real PostgreSQL server (no SQLite-only DDL),
    and a second daemon start migrates nothing."""
    db = Database(postgres_url)
    assert db.migrate() == len(MIGRATIONS)
    assert db.migrate() == len(MIGRATIONS)
    with db.engine.connect() as conn:
        tables = {
            r[0]
            for r in conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
        }
    assert {"sessions", "thread_bindings", "outbox", "permission_requests", "audit_log"} <= tables
    db.close()


def test_an_unreachable_postgresql_is_one_line(postgres_server: str) -> None:
    from storage.db import StorageError

    closed = postgres_server.rsplit(":", 1)[0] + ":1/none"
    with pytest.raises(StorageError) as e:
        Database(closed).migrate()
    assert str(e.value).startswith("storage: cannot open the database: ")
    assert "\n" not in str(e.value)
