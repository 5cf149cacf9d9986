"""The `Database` object: engine, schema migrations, and the queries the bridge needs.

SQLite (WAL, `synchronous=NORMAL`) by default, any SQLAlchemy URL (PostgreSQL via
`postgresql+psycopg://…`) by config.  Migrations are numbered functions applied in
order on start and recorded in `schema_version`.  Queries are grouped by table in
small repository classes (`db.sessions`, `db.outbox`, …) so nothing outside
`storage/` needs sqlmodel; `Database` builds them from its engine and cipher, and
they import nothing back from here.  All calls are synchronous and short; SQLite in WAL mode
answers them in well under a millisecond, so the event loop is not held up.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event, inspect, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlmodel import Session, SQLModel, create_engine, select

from storage import models
from storage.base import open_session
from storage.crypto import BodyCipher
from storage.gateway_repo import GatewayRepo
from storage.host_repo import HostRepo
from storage.inbox_repo import InboxRepo
from storage.models import SchemaVersion
from storage.outbox_repo import OutboxRepo
from storage.pairing_repo import PairingRepo
from storage.project_rule_repo import ProjectRuleRepo
from storage.repos import AuditRepo, BindingRepo, PermissionRepo, SessionRepo, TurnRepo
from storage.sas_repo import SasRepo
from storage.schedule_repo import ScheduleRepo
from storage.trust_repo import TrustRepo

log = logging.getLogger(__name__)


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    raw = url[len("sqlite:///") :]
    return None if raw in ("", ":memory:") else Path(os.path.expanduser(raw))


def normalise_url(url: str) -> str:
    """Expand `~` in SQLite paths; make the database file private (`private_sqlite`)."""
    path = _sqlite_path(url)
    if path is None:
        return url
    private_sqlite(path)
    return f"sqlite:///{path}"


def private_sqlite(path: Path) -> None:
    """The database holds prompts, answers and paths: its directory is created 0700
    and the file itself 0600 before SQLite opens it.  SQLite gives the `-wal` and
    `-shm` files it creates the database file's mode, so they are 0600 too; files an
    older version left readable to others are tightened (a directory that already
    existed is left as it is: it may be the owner's own, holding other things)."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    for name in (path.name, path.name + "-wal", path.name + "-shm", path.name + "-journal"):
        file = path.with_name(name)
        try:
            info = file.stat()
            if info.st_uid == os.getuid() and info.st_mode & 0o077:
                file.chmod(0o600)
        except FileNotFoundError:
            pass


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


def _column_type(engine: Engine, table: str, column: str) -> str:
    """The DDL type of a model column in `engine`'s dialect (`DATETIME` on SQLite,
    `TIMESTAMP WITHOUT TIME ZONE` on PostgreSQL, …), for a raw `ALTER TABLE`."""
    col_type = SQLModel.metadata.tables[table].c[column].type
    return str(col_type.compile(dialect=engine.dialect))


def _migration_4(engine: Engine) -> None:
    """`outbox.attempted_at`: set before a row's platform call, so a restart knows
    which sends may already have reached the platform (see `bridge/outbox/outbox.py`).
    The type is the model's, compiled for the database (it said `DATETIME`, which
    PostgreSQL does not know; on SQLite it compiles to the same `DATETIME`)."""
    columns = {c["name"] for c in inspect(engine).get_columns("outbox")}
    if "attempted_at" not in columns:
        kind = _column_type(engine, "outbox", "attempted_at")
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE outbox ADD COLUMN attempted_at {kind}"))


MIGRATIONS.append(_migration_4)


# --- migration 5 (schedules stored as data) -----------------------------------------

OLD_JOB_TABLE = "apscheduler_jobs"


def _migration_5(engine: Engine) -> None:
    """`schedules.next_run_at`, and apscheduler's job table dropped: its rows were
    pickles, and unpickling what is in the database would run code for anyone who
    can write it.  Each job's next run time (a plain number there) is carried over
    without unpickling anything, so runs missed across the upgrade are still seen."""
    columns = {c["name"] for c in inspect(engine).get_columns("schedules")}
    if "next_run_at" not in columns:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE schedules ADD COLUMN next_run_at TIMESTAMP"))
    if OLD_JOB_TABLE not in inspect(engine).get_table_names():
        return
    schedules = models.ScheduleRow.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        jobs = conn.execute(text(f"SELECT id, next_run_time FROM {OLD_JOB_TABLE}")).all()
        for job_id, next_run in jobs:
            if isinstance(next_run, int | float):
                when = datetime.fromtimestamp(next_run, UTC)
                conn.execute(
                    update(schedules).where(schedules.c.id == job_id).values(next_run_at=when)
                )
        conn.execute(text(f"DROP TABLE {OLD_JOB_TABLE}"))


MIGRATIONS.append(_migration_5)


# --- migration 6 (signed paired owners) -------------------------------------------------


def _migration_6(engine: Engine) -> None:
    """`paired_owners.signature`: rows from before it stay unsigned and make no owner
    (see `bridge/access/owners.py`)."""
    columns = {c["name"] for c in inspect(engine).get_columns("paired_owners")}
    if "signature" not in columns:
        with engine.begin() as conn:
            conn.execute(
                text("ALTER TABLE paired_owners ADD COLUMN signature VARCHAR NOT NULL DEFAULT ''")
            )


MIGRATIONS.append(_migration_6)


# --- migration 7 (folder trust) -----------------------------------------------------------


def _migration_7(engine: Engine) -> None:
    """Trusted folders and the trust prompts shown (`bridge/approvals/trust.py`)."""
    tables = [models.TrustedFolder.__table__, models.TrustRequestRow.__table__]  # type: ignore[attr-defined]
    SQLModel.metadata.create_all(engine, tables=tables)


MIGRATIONS.append(_migration_7)


# --- migration 8 (strict session rules) ----------------------------------------------


def _migration_8(engine: Engine) -> None:
    """Session rules are Claude Code rules now (`bridge/approvals/rules.py`); an empty pattern
    used to mean "any input" — such rules are dropped rather than kept meaning nothing."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM session_rules WHERE pattern = ''"))


MIGRATIONS.append(_migration_8)


# --- migration 9 (project rules Threadline wrote) -------------------------------------


def _migration_9(engine: Engine) -> None:
    """Rules "Allow always (project)" wrote into a folder's `.claude/settings.local.json`
    (`bridge/approvals/project_rules.py`)."""
    SQLModel.metadata.create_all(engine, tables=[models.ProjectRule.__table__])  # type: ignore[attr-defined]


MIGRATIONS.append(_migration_9)


# --- migration 10 (hosts and their heartbeats) -----------------------------------------


def _migration_10(engine: Engine) -> None:
    """The `hosts` table and `sessions.host` (`storage/host_repo.py`).  Existing sessions
    keep a NULL host ("this host"): the daemon that starts next claims them, since
    before this a database had exactly one daemon."""
    SQLModel.metadata.create_all(engine, tables=[models.HostRow.__table__])  # type: ignore[attr-defined]
    columns = {c["name"] for c in inspect(engine).get_columns("sessions")}
    if "host" not in columns:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE sessions ADD COLUMN host VARCHAR(32)"))


MIGRATIONS.append(_migration_10)


# --- migration 11 (outbox delivery classes) -------------------------------------------


def _migration_11(engine: Engine) -> None:
    """`outbox.priority` holds a delivery class now (`storage/outbox_pick.py`:
    0 prompt, 1 final, 2 notice, 3 stream update) instead of 0 "deliver" / 1 "stream
    update".  Undelivered rows keep their old order: 0 becomes a notice, 1 a stream
    update (settled rows are never ordered again)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE outbox SET priority = CASE WHEN priority >= 1 THEN 3 ELSE 2 END "
                "WHERE state = 'pending'"
            )
        )


MIGRATIONS.append(_migration_11)


# --- migration 12 (gateway leases) ----------------------------------------------------


def _migration_12(engine: Engine) -> None:
    """The `gateway_leases` table: one row per chat account, the host holding it,
    its fencing epoch and expiry (`storage/gateway_repo.py`)."""
    SQLModel.metadata.create_all(engine, tables=[models.GatewayLeaseRow.__table__])  # type: ignore[attr-defined]


MIGRATIONS.append(_migration_12)


# --- migration 13 (the outbox across hosts) ---------------------------------------------


def _migration_13(engine: Engine) -> None:
    """`outbox.host` (the host that wrote the row) and `outbox.claim` (the delivery
    under way; `storage/outbox_claim.py`).  Column types come from the model, so the
    DDL is right on SQLite and PostgreSQL alike."""
    columns = {c["name"] for c in inspect(engine).get_columns("outbox")}
    table = models.OutboxRow.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        for name in ("host", "claim"):
            if name not in columns:
                kind = table.c[name].type.compile(dialect=engine.dialect)
                conn.execute(text(f"ALTER TABLE outbox ADD COLUMN {name} {kind}"))


MIGRATIONS.append(_migration_13)


# --- migration 14 (hosts lifecycle: schedule claims, offline notices) ------------------


def _migration_14(engine: Engine) -> None:
    """`schedules.claimed_run_at` (the occurrence a host claimed before running it:
    `storage/schedule_repo.py`), `hosts.offline_noted_at` and `hosts.offline_told`
    (the one offline notice per outage: `bridge/host_notices.py`).  Types are the
    models', compiled for the database."""
    wanted = {
        "schedules": [("claimed_run_at", "")],
        "hosts": [("offline_noted_at", ""), ("offline_told", " NOT NULL DEFAULT '[]'")],
    }
    for table, added in wanted.items():
        columns = {c["name"] for c in inspect(engine).get_columns(table)}
        for name, extra in added:
            if name not in columns:
                kind = _column_type(engine, table, name)
                with engine.begin() as conn:
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}{extra}"))


MIGRATIONS.append(_migration_14)


# --- migration 15 (the inbox between hosts) --------------------------------------------


def _migration_15(engine: Engine) -> None:
    """The `inbox` table: work one host hands another (`storage/inbox_repo.py`)."""
    SQLModel.metadata.create_all(engine, tables=[models.InboxRow.__table__])  # type: ignore[attr-defined]


MIGRATIONS.append(_migration_15)


# --- migration 16 (emoji verifications waiting for their person) -----------------------


def _migration_16(engine: Engine) -> None:
    """The `sas_verifications` table (`storage/sas_repo.py`, `threadline verify`)."""
    SQLModel.metadata.create_all(engine, tables=[models.SasVerificationRow.__table__])  # type: ignore[attr-defined]


MIGRATIONS.append(_migration_16)


MIGRATION_LOCK = 0x7468_7265_6164  # "thread": the advisory lock key migrations hold


class StorageError(Exception):
    """The database cannot be used; `str()` is one line saying why and what to do."""


def _engine(url: str, **kwargs: object) -> Engine:
    """`create_engine`, with a missing driver or an unknown database said in one line."""
    try:
        return create_engine(url, **kwargs)
    except ModuleNotFoundError as e:
        if url.startswith("postgresql"):
            raise StorageError(
                f"storage.url: the PostgreSQL driver ({e.name}) is not installed: "
                "pip install 'threadline[postgres]'"
            ) from None
        raise StorageError(f"storage.url: the database driver {e.name} is not installed") from None
    except ArgumentError as e:
        raise StorageError(
            f"storage.url: not a database URL this can open ({e}); "
            "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
        ) from None


class Database:
    """One per daemon; passed to everything that needs state."""

    def __init__(self, url: str, *, cipher: BodyCipher | None = None) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, object] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = _engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.cipher = cipher or BodyCipher(None)
        engine, sealed = self.engine, self.cipher
        self.sessions = SessionRepo(engine, sealed)
        self.bindings = BindingRepo(engine, sealed)
        self.outbox = OutboxRepo(engine, sealed)
        self.permissions = PermissionRepo(engine, sealed)
        self.turns = TurnRepo(engine, sealed)
        self.audit = AuditRepo(engine, sealed)
        self.schedules = ScheduleRepo(engine, sealed)
        self.pairing = PairingRepo(engine, sealed)
        self.trust = TrustRepo(engine, sealed)
        self.project_rules = ProjectRuleRepo(engine, sealed)
        self.hosts = HostRepo(engine, sealed)
        self.gateways = GatewayRepo(engine, sealed)
        self.inbox = InboxRepo(engine, sealed)
        self.sas = SasRepo(engine, sealed)

    def session(self) -> AbstractContextManager[Session]:
        """A sqlmodel session for tests and tools that read rows raw."""
        return open_session(self.engine)

    def migrate(self) -> int:
        """Create or upgrade the schema; returns the version now in force.  A database
        that cannot be reached or opened is a `StorageError`."""
        try:
            if self.is_sqlite:  # one daemon per SQLite file (`bridge/cli/single.py`)
                return self._migrate()
            # Hosts sharing PostgreSQL may start together: one migrates, the others
            # wait on this session-level lock and then find the schema current.
            with self.engine.connect() as lock:
                lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
                try:
                    return self._migrate()
                finally:
                    lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
        except OperationalError as e:
            reason = str(e.orig or e).strip().splitlines()[0] if str(e.orig or e).strip() else e
            raise StorageError(f"storage: cannot open the database: {reason}") from None

    def _migrate(self) -> int:
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
