"""Schedules: `/schedule CRON PROMPT` runs the prompt in its session (apscheduler, jobs
rebuilt from the `schedules` table), survives a restart — runs missed while the daemon was
down are run once or reported, per `[agent] schedule_missed` — and `/schedules`,
`/unschedule` list and remove them.

The end-to-end test swaps the cron trigger for a 3-second interval (the trigger
factory is injectable) so a run fires within seconds; the cron reading itself, in
the owner's time zone, is checked on its own."""

from __future__ import annotations

import asyncio
import os
import pickle
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import inspect, text

from bridge.config import ConfigError, parse_config
from bridge.sources.scheduler import Scheduler, cron_trigger
from storage.db import Database
from storage.models import ScheduleRow
from tests.support.fakes.anthropic import Text
from tests.support.harness import Harness, start_harness, stop_harness

INTERVAL = 3


def every_few_seconds(cron: str, tz: tzinfo) -> Any:
    cron_trigger(cron, tz)  # still validated as the real thing would be
    return IntervalTrigger(seconds=INTERVAL, timezone=tz)


def test_cron_is_read_in_the_owners_time_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    trigger = cron_trigger("0 9 * * 1-5", berlin)
    # Friday 28 March 2025, 10:00 UTC → next Monday 09:00 Berlin, after the DST switch
    nxt = trigger.get_next_fire_time(None, datetime(2025, 3, 28, 10, 0, tzinfo=UTC))
    assert nxt.astimezone(UTC) == datetime(2025, 3, 31, 7, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        cron_trigger("61 * * * *", berlin)


def test_timezone_and_missed_policy_are_validated() -> None:
    base = (
        '[access]\nowners = ["telegram:1"]\n[telegram]\nenabled = true\ntoken = "1:'
        + "a" * 30
        + '"\n'
    )
    cfg = parse_config(base + '[agent]\ntimezone = "Europe/Berlin"\nschedule_missed = "report"\n')
    assert str(cfg.agent.tz()) == "Europe/Berlin" and cfg.agent.schedule_missed == "report"
    with pytest.raises(ConfigError, match="agent.timezone"):
        parse_config(base + '[agent]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError, match="agent.schedule_missed"):
        parse_config(base + '[agent]\nschedule_missed = "sometimes"\n')


async def test_missed_runs_are_reported_not_run_with_the_report_policy(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/s.db")
    db.migrate()
    runs: list[str] = []
    run_at: list[datetime] = []
    reports: list[str] = []
    tasks: set[asyncio.Task[None]] = set()

    async def run(row: ScheduleRow) -> None:
        runs.append(row.id)
        run_at.append(datetime.now(UTC))

    def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
        tasks.add(asyncio.get_running_loop().create_task(coro, name=name))

    def make(missed: Any) -> Scheduler:
        return Scheduler(
            db,
            tz=UTC,
            missed=missed,
            run=run,
            report=lambda row, text: reports.append(text),
            spawn=spawn,
            trigger_for=lambda cron, tz: IntervalTrigger(seconds=1, timezone=tz),
        )

    first = make("report")
    await first.start()
    row = first.add("s1", "* * * * *", "check", by="test")
    assert "apscheduler_jobs" not in inspect(db.engine).get_table_names(), "no pickled jobs"
    stored = db.schedules.get(row.id)
    assert stored is not None and stored.next_run_at == first.next_run(row.id), "as data"
    for _ in range(40):
        if runs:
            break
        await asyncio.sleep(0.1)
    assert runs == [row.id]
    await first.stop()
    await asyncio.sleep(2.5)  # the daemon is down; runs come due
    second = make("report")
    restarted = datetime.now(UTC)
    await second.start()
    assert len(reports) == 1 and "missed" in reports[0] and "not run" in reports[0]
    await asyncio.sleep(0.3)
    assert runs == [row.id], "a missed run is reported, not run"
    nxt = second.next_run(row.id)
    assert nxt is not None and nxt > datetime.now(UTC)
    for _ in range(30):
        if len(runs) > 1:
            break
        await asyncio.sleep(0.1)
    assert len(runs) == 2, "the schedule carries on afterwards"
    # The pause above proves nothing alone (a late catch-up run would land after it): the
    # first run after the restart is the schedule's next one, a whole interval (1 s) after
    # the restart, not the missed one run at once.
    assert (run_at[1] - restarted).total_seconds() >= 0.8, "a missed run was run"
    assert run_at[1] >= nxt - timedelta(milliseconds=50), "the first run is the next one"
    assert second.remove(row.id) and second.next_run(row.id) is None
    await second.stop()
    await asyncio.sleep(0)
    db.close()


@pytest.mark.e2e
async def test_a_schedule_fires_survives_a_restart_and_is_removed(tmp_path: Path) -> None:
    kwargs = {"bridge_kwargs": {"schedule_trigger": every_few_seconds}}
    h: Harness = await start_harness(tmp_path, **kwargs)  # type: ignore[arg-type]
    model, tg = h.model, h.tg
    try:
        model.on("run the nightly check", Text("Nightly check passed."))
        topic, sid = await h.new_session(str(h.root / "app"))
        await h.wait_text("Ready", thread_id=topic)
        h.say('/schedule "0 9 * * 1-5" run the nightly check', thread_id=topic)
        added = await h.wait_text("Scheduled:", thread_id=topic)
        [row] = h.db.schedules.list(sid)
        assert row.id in added.visible_text and "0 9 * * 1-5" in added.visible_text
        assert row.prompt == "run the nightly check"
        marked = await h.wait_text("Scheduled (schedule", thread_id=topic, timeout=20)
        assert "run the nightly check" in marked.visible_text
        await h.wait_text("Nightly check passed.", thread_id=topic)
        h.say("/schedules", thread_id=topic)
        listing = await h.wait_text("Scheduled prompts", thread_id=topic)
        assert row.id in listing.visible_text and "next" in listing.visible_text
    finally:
        await stop_harness(h, keep_fakes=True)

    def answers() -> int:
        return len(
            [
                m
                for m in h.tg.messages(h.chat_id, topic)
                if "Nightly check passed." in (m.visible_text or "")
            ]
        )

    before = answers()
    await asyncio.sleep(INTERVAL + 1)  # down through at least one run
    h = await start_harness(tmp_path, tg=tg, model=model, **kwargs)  # type: ignore[arg-type]
    try:
        notice = await h.wait_text("missed while the daemon was down", thread_id=topic)
        assert "running it once now" in notice.visible_text and row.id in notice.visible_text
        await h.tg.wait_until(lambda: answers() > before or None, timeout=30)
        h.say(f"/unschedule {row.id}", thread_id=topic)
        await h.wait_text(f"Removed schedule {row.id}", thread_id=topic)
        await h.bridge.outbox.wait_idle(timeout=20)  # runs fired before it, shown
        settled = len(
            [m for m in h.bot_messages(topic) if "Scheduled (schedule" in (m.visible_text or "")]
        )
        await asyncio.sleep(INTERVAL + 1)
        await h.bridge.outbox.wait_idle(timeout=20)
        after = len(
            [m for m in h.bot_messages(topic) if "Scheduled (schedule" in (m.visible_text or "")]
        )
        assert after == settled, "no runs after unschedule"
        assert not h.db.schedules.list() and h.bridge.scheduler.next_run(row.id) is None
    finally:
        await stop_harness(h)


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("1-5", "mon,tue,wed,thu,fri"),
        ("0", "sun"),
        ("7", "sun"),
        ("5-7", "sun,fri,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("1/3", "mon,thu"),
        ("sat,sun", "sun,sat"),
        ("mon-wed", "mon,tue,wed"),
        ("*", "*"),
    ],
)
def test_crontab_day_numbers_start_on_sunday(field: str, names: str) -> None:
    from bridge.sources.scheduler import cron_days

    assert cron_days(field) == names


class _Planted:
    """What an attacker with write access to the database pickles into apscheduler's
    job table: unpickling it creates the marker directory (any code could run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def _plant_pickled_job(db: Database, job_id: str, marker: Path, next_run: float) -> None:
    """apscheduler 3's SQLAlchemyJobStore table, holding a malicious job_state."""
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS apscheduler_jobs (id VARCHAR(191) PRIMARY KEY,"
                " next_run_time FLOAT, job_state BLOB NOT NULL)"
            )
        )
        conn.execute(
            text("INSERT INTO apscheduler_jobs VALUES (:id, :t, :state)"),
            {"id": job_id, "t": next_run, "state": pickle.dumps(_Planted(marker))},
        )


async def test_jobs_in_the_database_are_never_unpickled(tmp_path: Path) -> None:
    """A database written by an older version (schema 4, apscheduler's pickled job
    table) with a pickle planted in it: upgrading and starting the scheduler runs no
    pickle, keeps the schedule's due time (its missed run is caught up) and the
    schedule goes on running.  A pickle planted after the upgrade is ignored too."""
    url = f"sqlite:///{tmp_path}/s.db"
    marker = tmp_path / "pwned"
    db = Database(url)
    db.migrate()
    db.schedules.add(ScheduleRow(id="abc123", session_id="s1", cron="* * * * *", prompt="go"))
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE schema_version SET version = 4"))
    due = datetime.now(UTC) - timedelta(minutes=5)
    _plant_pickled_job(db, "abc123", marker, due.timestamp())
    db.close()

    runs: list[str] = []
    reports: list[str] = []
    tasks: set[asyncio.Task[None]] = set()
    ran = asyncio.Event()

    async def run(row: ScheduleRow) -> None:
        runs.append(row.id)
        ran.set()

    def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
        tasks.add(asyncio.get_running_loop().create_task(coro, name=name))

    async def start(db: Database) -> Scheduler:
        s = Scheduler(
            db,
            tz=UTC,
            missed="run_once",
            run=run,
            report=lambda row, text: reports.append(text),
            spawn=spawn,
            trigger_for=lambda cron, tz: IntervalTrigger(seconds=1, timezone=tz),
        )
        await s.start()
        return s

    async def runs_reach(n: int) -> None:
        async with asyncio.timeout(15):
            while len(runs) < n:
                ran.clear()
                await ran.wait()

    db = Database(url)
    db.migrate()
    assert "apscheduler_jobs" not in inspect(db.engine).get_table_names()
    row = db.schedules.get("abc123")
    assert row is not None and row.next_run_at is not None
    assert abs((row.next_run_at - due).total_seconds()) < 1, "the due time carried over"
    sched = await start(db)
    assert reports and "missed while the daemon was down" in reports[0]
    await runs_reach(2)  # the caught-up run, then the schedule carries on
    await sched.stop()

    _plant_pickled_job(db, "abc123", marker, due.timestamp())  # after the upgrade
    sched = await start(db)
    await runs_reach(len(runs) + 1)
    await sched.stop()
    await asyncio.sleep(0)
    db.close()
    assert not marker.exists(), "a pickle from the database was run"
    assert set(runs) == {"abc123"}
