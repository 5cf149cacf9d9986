"""The `Database` object: engine, schema migrations, and the queries the bridge needs.

SQLite (WAL, `synchronous=NORMAL`) by default, any SQLAlchemy URL (PostgreSQL via
`postgresql+psycopg://…`) by config.  Migrations are numbered functions applied in
order on start and recorded in `schema_version`.  Queries are grouped by table in
small repository classes (`db.sessions`, `db.outbox`, …) so nothing outside
`storage/` needs sqlmodel.  All calls are synchronous and short; SQLite in WAL mode
answers them in well under a millisecond, so the event loop is not held up.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine, select

from storage import models
from storage.crypto import BodyCipher
from storage.models import SchemaVersion

log = logging.getLogger(__name__)


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    raw = url[len("sqlite:///") :]
    return None if raw in ("", ":memory:") else Path(os.path.expanduser(raw))


def normalise_url(url: str) -> str:
    """Expand `~` in SQLite paths and create the parent directory."""
    path = _sqlite_path(url)
    if path is None:
        return url
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _migration_1(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine)


def _migration_2(engine: Engine) -> None:
    """Schedules, and the turn's status message.  Migration 1 creates every table the
    models define *today*, so on a fresh database both already exist: check first."""
    models.ScheduleRow.metadata.create_all(engine, tables=[models.ScheduleRow.__table__])  # type: ignore[attr-defined]
    columns = {c["name"] for c in inspect(engine).get_columns("turns")}
    if "status_outbox_id" not in columns:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE turns ADD COLUMN status_outbox_id INTEGER"))


def _migration_3(engine: Engine) -> None:
    """Pairing codes and paired owners (`threadline pair`)."""
    tables = [models.PairingCodeRow.__table__, models.PairedOwner.__table__]  # type: ignore[attr-defined]
    SQLModel.metadata.create_all(engine, tables=tables)


# Append new migrations; never edit an old one.
MIGRATIONS: list[Callable[[Engine], None]] = [_migration_1, _migration_2, _migration_3]


# --- migration 4 (outbox delivery attempts) ---------------------------------------------


def _migration_4(engine: Engine) -> None:
    """`outbox.attempted_at`: set before a row's platform call, so a restart knows
    which sends may already have reached the platform (see `bridge/outbox.py`)."""
    columns = {c["name"] for c in inspect(engine).get_columns("outbox")}
    if "attempted_at" not in columns:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE outbox ADD COLUMN attempted_at DATETIME"))


MIGRATIONS.append(_migration_4)


# --- migration 5 (strict session rules) ----------------------------------------------


def _migration_5(engine: Engine) -> None:
    """Session rules are Claude Code rules now (`bridge/rules.py`); an empty pattern
    used to mean "any input" — such rules are dropped rather than kept meaning nothing."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM session_rules WHERE pattern = ''"))


MIGRATIONS.append(_migration_5)


class Database:
    """One per daemon; passed to everything that needs state."""

    def __init__(self, url: str, *, cipher: BodyCipher | None = None) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, object] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.cipher = cipher or BodyCipher(None)
        from storage.outbox_repo import OutboxRepo
        from storage.pairing_repo import PairingRepo
        from storage.repos import AuditRepo, BindingRepo, PermissionRepo, SessionRepo, TurnRepo
        from storage.schedule_repo import ScheduleRepo

        self.sessions = SessionRepo(self)
        self.bindings = BindingRepo(self)
        self.outbox = OutboxRepo(self)
        self.permissions = PermissionRepo(self)
        self.turns = TurnRepo(self)
        self.audit = AuditRepo(self)
        self.schedules = ScheduleRepo(self)
        self.pairing = PairingRepo(self)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    def migrate(self) -> int:
        """Create or upgrade the schema; returns the version now in force."""
        SchemaVersion.metadata.create_all(self.engine, tables=[SchemaVersion.__table__])  # type: ignore[attr-defined]
        with self.session() as s:
            row = s.get(SchemaVersion, 1)
            current = row.version if row else 0
        for number, step in enumerate(MIGRATIONS, start=1):
            if number <= current:
                continue
            log.info("applying schema migration %d", number)
            step(self.engine)
            with self.session() as s:
                row = s.get(SchemaVersion, 1) or SchemaVersion(id=1, version=0)
                row.version = number
                s.add(row)
                s.commit()
            current = number
        return current

    def check(self) -> None:
        """Raise if the database cannot be reached (used by `threadline doctor`)."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


__all__ = ["Database", "models", "select"]
