"""Schedules on several hosts sharing one database, on SQLite and a real PostgreSQL: each
host's `Scheduler` runs only the schedules of its own sessions, and every occurrence
runs once — also when a second scheduler object on the same host (a duplicate job, a
restart overlapping the old run) fires the same occurrence.

The cron trigger is swapped for a one-second interval anchored at a fixed instant
(the trigger factory is injectable, as `Bridge(schedule_trigger=…)`), so the
schedulers of different hosts agree on the occurrences, as cron triggers do."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.interval import IntervalTrigger

from bridge.sources.scheduler import Scheduler, cron_trigger
from storage.db import Database
from storage.models import ScheduleRow, SessionRow
from storage.types import SessionId

ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


def every_second(cron: str, tz: tzinfo) -> Any:
    cron_trigger(cron, tz)
    return IntervalTrigger(seconds=1, start_date=ANCHOR, timezone=tz)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = (
        str(request.getfixturevalue("postgres_url"))
        if request.param == "postgresql"
        else f"sqlite:///{tmp_path}/s.db"
    )
    database = Database(url)
    database.migrate()
    yield database
    database.close()


async def until(pred: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := pred()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
    return value


Run = tuple[str, str, datetime]  # (scheduler, schedule id, occurrence)


class Hosts:
    """Scheduler objects on one database, each recording the runs it makes."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.runs: list[Run] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.schedulers: list[Scheduler] = []

    def make(self, label: str, host: str) -> Scheduler:
        async def run(row: ScheduleRow) -> None:
            assert row.claimed_run_at is not None
            self.runs.append((label, row.id, row.claimed_run_at))

        def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
            self.tasks.add(asyncio.get_running_loop().create_task(coro, name=name))

        sched = Scheduler(
            self.db,
            tz=UTC,
            missed="run_once",
            run=run,
            report=lambda row, text: None,
            spawn=spawn,
            trigger_for=every_second,
            host=host,
        )
        self.schedulers.append(sched)
        return sched

    async def stop(self) -> None:
        for sched in self.schedulers:
            await sched.stop()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def test_each_host_runs_its_own_schedules_once_per_occurrence(db: Database) -> None:
    db.sessions.add(SessionRow(id=SessionId("sa"), platform="telegram", cwd="/a", host="laptop"))
    db.sessions.add(SessionRow(id=SessionId("sb"), platform="telegram", cwd="/b", host="box"))
    hosts = Hosts(db)
    laptop, box = hosts.make("laptop", "laptop"), hosts.make("box", "box")
    await laptop.start()
    await box.start()
    on_laptop = laptop.add("sa", "* * * * *", "lint", by="test")
    on_box = box.add("sb", "* * * * *", "build", by="test")
    # Another scheduler object for the laptop (a duplicate, or a restart overlapping the
    # old run): it loads the laptop's schedule from the database, never the box's.
    twin = hosts.make("laptop-twin", "laptop")
    await twin.start()
    assert twin._sched.get_job(on_laptop.id) is not None
    assert twin._sched.get_job(on_box.id) is None
    # Asked about another host's schedule, it says what that host stored.
    # (Box's job runs every second and may move it on between the reads.)
    before, seen, after = (
        db.schedules.get(on_box.id),
        twin.next_run(on_box.id),
        db.schedules.get(on_box.id),
    )
    assert before is not None and after is not None and seen is not None
    assert seen in (before.next_run_at, after.next_run_at)

    def count(schedule_id: str) -> int:
        return sum(r[1] == schedule_id for r in hosts.runs)

    await until(lambda: count(on_laptop.id) >= 4 and count(on_box.id) >= 4)
    await hosts.stop()

    occurrences = [(sid, at) for _, sid, at in hosts.runs]
    assert len(occurrences) == len(set(occurrences)), "an occurrence ran twice"
    assert {label for label, sid, _ in hosts.runs if sid == on_box.id} == {"box"}
    assert {label for label, sid, _ in hosts.runs if sid == on_laptop.id} <= {
        "laptop",
        "laptop-twin",
    }
    for row in (on_laptop, on_box):
        stored = db.schedules.get(row.id)
        assert stored is not None and stored.runs == count(row.id)
        assert stored.claimed_run_at == max(at for _, sid, at in hosts.runs if sid == row.id)


def test_a_claim_moves_forward_only(db: Database) -> None:
    db.schedules.add(ScheduleRow(id="abc", session_id="s1", cron="* * * * *", prompt="p"))
    t = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
    first = db.schedules.claim("abc", t)
    assert first is not None and first.claimed_run_at == t and first.runs == 1
    assert db.schedules.claim("abc", t) is None, "the same occurrence again"
    assert db.schedules.claim("abc", t - timedelta(minutes=1)) is None, "an earlier one"
    later = db.schedules.claim("abc", t + timedelta(minutes=1))
    assert later is not None and later.runs == 2
    assert db.schedules.claim("gone", t) is None


async def test_a_restart_does_not_run_a_claimed_occurrence_again(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A host that claimed and ran an occurrence but died before storing the next run
    time starts again with the old `next_run_at`, due: it finds it claimed, does not
    run it, and moves on to the next occurrence."""
    caplog.set_level("INFO", logger="bridge.sources.scheduler")
    db.sessions.add(SessionRow(id=SessionId("sa"), platform="telegram", cwd="/a", host="laptop"))
    hourly = IntervalTrigger(hours=1, start_date=ANCHOR, timezone=UTC)
    due = hourly.get_next_fire_time(None, datetime.now(UTC)) - timedelta(hours=1)
    db.schedules.add(ScheduleRow(id="abc", session_id="sa", cron="0 * * * *", prompt="p"))
    db.schedules.set_next_run("abc", due)
    assert db.schedules.claim("abc", due) is not None  # ran before the crash
    hosts = Hosts(db)
    sched = hosts.make("laptop", "laptop")
    sched.trigger_for = lambda cron, tz: IntervalTrigger(hours=1, start_date=ANCHOR, timezone=tz)
    await sched.start()
    await until(lambda: "was claimed already" in caplog.text)
    await hosts.stop()
    assert hosts.runs == [], "the claimed occurrence ran again"
    stored = db.schedules.get("abc")
    assert stored is not None and stored.runs == 1
    assert stored.next_run_at == due + timedelta(hours=1)
