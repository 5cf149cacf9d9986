"""Hosts and their heartbeats on both databases: the `hosts` repository (start,
heartbeat, stop, list, claiming the sessions that have no host), migration 10 on a
database from before hosts, and the heartbeat task against a real database with a
short injected interval."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from adapters.tasks import TaskGroup
from bridge.hosts import Hosts, is_online
from storage import db as storage_db
from storage.db import Database
from storage.host_repo import HostRepo
from storage.models import SessionRow, utcnow
from storage.types import SessionId

T0 = datetime(2026, 12, 7, 22, 0, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every hosts test runs on both databases Threadline supports."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path}/t.db"


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.migrate()
    yield database
    database.close()


def session(sid: str, *, host: str | None = None) -> SessionRow:
    return SessionRow(id=SessionId(sid), platform="telegram", cwd="/srv/app", host=host)


async def until(pred: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll `pred` until it returns something truthy (every 10 ms)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := pred()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
    return value


# --- the repository ---------------------------------------------------------------


def test_start_heartbeat_stop_and_list(db: Database) -> None:
    repo = db.hosts
    row = repo.start(name="laptop", roots=["/home/ada/code", "/srv"], pid=42, version="1.2", at=T0)
    assert (row.name, row.pid, row.version) == ("laptop", 42, "1.2")
    assert row.started_at == row.last_heartbeat == T0 and row.stopped_at is None
    repo.start(name="box", roots=["/build"], pid=7, version="1.2", at=T0)

    assert repo.heartbeat(name="laptop", at=T0 + timedelta(seconds=5)) is True
    assert repo.heartbeat(name="nobody", at=T0) is False
    laptop = repo.get("laptop")
    assert laptop is not None
    assert laptop.last_heartbeat == T0 + timedelta(seconds=5)
    assert laptop.last_heartbeat.tzinfo is not None  # UTC on both backends
    assert laptop.started_at == T0

    repo.stopped(name="box", at=T0 + timedelta(seconds=9))
    rows = repo.list()
    assert [r.name for r in rows] == ["box", "laptop"]
    box = rows[0]
    assert box.stopped_at == T0 + timedelta(seconds=9)
    assert box.roots == '["/build"]'

    # A restart refreshes the row: roots, pid, times, and it is no longer stopped.
    again = repo.start(
        name="box", roots=["/build", "/cache"], pid=8, version="1.3", at=T0 + timedelta(minutes=1)
    )
    assert again.stopped_at is None and again.pid == 8 and again.version == "1.3"
    assert again.started_at == again.last_heartbeat == T0 + timedelta(minutes=1)
    assert len(repo.list()) == 2


def test_times_from_other_zones_are_stored_as_the_same_instant(db: Database) -> None:
    from zoneinfo import ZoneInfo

    berlin = T0.astimezone(ZoneInfo("Europe/Berlin"))
    db.hosts.start(name="laptop", roots=[], pid=1, version="", at=berlin)
    row = db.hosts.get("laptop")
    assert row is not None and row.started_at == T0 and row.started_at.utcoffset() == timedelta(0)


def test_start_claims_the_sessions_of_no_host(db: Database) -> None:
    db.sessions.add(session("aaa111"))  # from before hosts
    db.sessions.add(session("bbb222", host="box"))
    db.hosts.start(name="laptop", roots=[], pid=1, version="", at=T0)
    assert db.sessions.get("aaa111").host == "laptop"  # type: ignore[union-attr]
    assert db.sessions.get("bbb222").host == "box"  # type: ignore[union-attr]
    db.hosts.start(name="box", roots=[], pid=2, version="", at=T0)
    assert db.sessions.get("aaa111").host == "laptop"  # type: ignore[union-attr]  # claimed once


def test_online_means_a_recent_heartbeat_and_no_clean_stop(db: Database) -> None:
    row = db.hosts.start(name="laptop", roots=[], pid=1, version="", at=T0)
    assert is_online(row, T0 + timedelta(seconds=14), interval=5)
    assert not is_online(row, T0 + timedelta(seconds=15), interval=5)
    db.hosts.stopped(name="laptop", at=T0 + timedelta(seconds=1))
    stopped = db.hosts.get("laptop")
    assert stopped is not None and not is_online(stopped, T0 + timedelta(seconds=2), interval=5)


def test_migration_10_upgrades_a_database_from_before_hosts(db_url: str) -> None:
    """A database at migration 9 with a session: after the upgrade the hosts table
    exists, the session has no host, and the first start claims it."""
    old = Database(db_url)
    nine = storage_db.MIGRATIONS[:9]
    all_steps = storage_db.MIGRATIONS[:]
    try:
        storage_db.MIGRATIONS[:] = nine
        # Migration 1 makes today's tables: make them as they were before hosts.
        assert old.migrate() == 9
        with old.engine.begin() as conn:
            conn.execute(text("DROP TABLE hosts"))
            conn.execute(text("ALTER TABLE sessions DROP COLUMN host"))
            conn.execute(
                text(
                    "INSERT INTO sessions (id, platform, cwd, title, state, model, mode, owner,"
                    " created_at, last_activity, cost_usd, turns)"
                    " VALUES ('old001', 'telegram', '/srv/app', 't', 'active', '', 'default',"
                    " '', :at, :at, 0, 0)"
                ),
                {"at": utcnow().replace(tzinfo=None)},
            )
    finally:
        storage_db.MIGRATIONS[:] = all_steps
    assert old.migrate() == len(all_steps)
    assert old.sessions.get("old001").host is None  # type: ignore[union-attr]
    old.hosts.start(name="laptop", roots=["/srv"], pid=1, version="", at=T0)
    assert old.sessions.get("old001").host == "laptop"  # type: ignore[union-attr]
    old.close()


# --- the heartbeat task ---------------------------------------------------------------


async def test_the_heartbeat_task_keeps_the_row_fresh_and_stops_cleanly(db: Database) -> None:
    tasks = TaskGroup()
    hosts = Hosts(db.hosts, tasks, name="laptop", roots=["/srv"], now=utcnow, interval=0.05)
    hosts.start()
    first = db.hosts.get("laptop")
    assert first is not None and first.stopped_at is None
    seen = {first.last_heartbeat}
    # Several heartbeats, each later than the last.
    await until(lambda: seen.add(db.hosts.get("laptop").last_heartbeat) or len(seen) >= 4)  # type: ignore[union-attr, func-returns-value]
    [status] = hosts.statuses()
    assert status.online and status.this and status.roots == ("/srv",)

    await hosts.stop()
    stopped = db.hosts.get("laptop")
    assert stopped is not None and stopped.stopped_at is not None
    assert not hosts.statuses()[0].online
    await asyncio.sleep(0.2)  # four intervals: no heartbeat comes after the stop
    assert db.hosts.get("laptop").last_heartbeat == stopped.last_heartbeat  # type: ignore[union-attr]
    await tasks.close()


async def test_a_host_that_stops_beating_goes_offline_within_three_intervals(
    db: Database,
) -> None:
    """A daemon killed without a clean stop: its row stays as it was, and the other
    host sees it offline once three intervals have passed."""
    tasks = TaskGroup()
    dying = Hosts(db.hosts, tasks, name="box", roots=[], now=utcnow, interval=0.05)
    watcher = Hosts(db.hosts, TaskGroup(), name="laptop", roots=[], now=utcnow, interval=0.05)
    dying.start()
    assert {h.name: h.online for h in watcher.statuses()} == {"box": True}
    await tasks.close()  # the heartbeat task is cancelled, the row is not marked stopped
    gone = await until(lambda: [h for h in watcher.statuses() if not h.online])
    assert gone[0].name == "box" and gone[0].stopped_at is None


class FlakyHosts(HostRepo):
    """The real repository, whose heartbeat write fails twice (a database restart)."""

    failures = 2

    def heartbeat(self, *, name: str, at: datetime) -> bool:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("server closed the connection unexpectedly")
        return super().heartbeat(name=name, at=at)


async def test_a_failed_heartbeat_is_logged_and_the_next_one_is_written(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    repo = FlakyHosts(db.engine, db.cipher)
    tasks = TaskGroup()
    hosts = Hosts(repo, tasks, name="laptop", roots=[], now=utcnow, interval=0.05)
    with caplog.at_level(logging.ERROR, logger="bridge.hosts"):
        hosts.start()
        started = db.hosts.get("laptop").last_heartbeat  # type: ignore[union-attr]
        await until(lambda: db.hosts.get("laptop").last_heartbeat > started)  # type: ignore[union-attr]
    assert repo.failures == 0
    assert [r.message for r in caplog.records].count("host laptop: heartbeat failed") == 2
    await hosts.stop()
    await tasks.close()


async def test_a_deleted_row_is_written_again_by_the_next_heartbeat(db: Database) -> None:
    tasks = TaskGroup()
    hosts = Hosts(db.hosts, tasks, name="laptop", roots=["/srv"], now=utcnow, interval=0.05)
    hosts.start()
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM hosts"))
    row = await until(lambda: db.hosts.get("laptop"))
    assert row.roots == '["/srv"]'
    await hosts.stop()
    await tasks.close()
