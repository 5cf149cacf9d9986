"""Scheduled prompts: `schedule CRON PROMPT`, `schedules`, `unschedule ID`.

apscheduler's `AsyncIOScheduler` runs the jobs on the daemon's event loop, from an
in-memory job store.  The `schedules` table is the only thing stored: what each
schedule is (session, cron, prompt, who made it) and when it runs next, as plain
data.  (apscheduler's own database job store pickles jobs, and unpickling what is in
the database would let anyone who can write it run code in the daemon; migration 5
dropped that table.)  On start every row becomes a job again: the trigger from its
cron, read in the owner's time zone (`[agent] timezone`), the first run time from
`next_run_at`.  Each time a job is submitted its new next run time is written back,
so the row always says which run is still to come.

Runs missed while the daemon was down are found on start, before the scheduler runs
anything: with `schedule_missed = "run_once"` the thread is told and the prompt runs
once (apscheduler coalesces the missed runs); with `"report"` the thread is told and
the job skips ahead to its next future time.  A run that is late while the daemon is
up (a blocked loop, a suspended laptop) follows the same policy through
apscheduler's misfire handling.  A run is handed to the bridge as a registered task,
so nothing outlives shutdown.

Several hosts on one database: each host's scheduler loads only the schedules of the
sessions it runs (`host`; sessions with no host yet count as this host's, as its start
claims them), and a schedule made with `schedule` is made on the session's host.  Each
run is claimed in the database before it runs (`ScheduleRepo.claim`, a compare-and-set
on `claimed_run_at` with the occurrence apscheduler submitted), so a restart, a
duplicate job or a second host can never run one occurrence twice.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, tzinfo
from typing import Any, Final, Literal

from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from storage.db import Database
from storage.models import ScheduleRow

log = logging.getLogger(__name__)

REPORT_GRACE_S: Final = 60  # "report": a run later than this is reported, not run
MAX_COUNTED: Final = 10_000
Missed = Literal["run_once", "report"]
TriggerFactory = Callable[[str, tzinfo], Any]  # apscheduler triggers are untyped
RunFn = Callable[[ScheduleRow], Coroutine[Any, Any, None]]
ReportFn = Callable[[ScheduleRow, str], None]

_DAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron numbering: 0 = Sunday


def _day(token: str) -> int:
    token = token.lower()
    if token[:3] in _DAYS and not token.isdigit():
        return _DAYS.index(token[:3])
    value = int(token)  # ValueError for junk
    if not 0 <= value <= 7:
        raise ValueError(f"day of week {value} is not 0-7")
    return value


def cron_days(field: str) -> str:
    """A crontab day-of-week field as apscheduler day names.  apscheduler numbers days
    from Monday = 0, crontab from Sunday = 0 (7 too), so "1-5" must become
    "mon,tue,wed,thu,fri" — passed through, it would mean Tuesday to Saturday."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"bad step in {part!r}")
        if span in ("*", "?"):
            lo, hi = 0, 6
        elif "-" in span:
            a, _, b = span.partition("-")
            lo, hi = _day(a), _day(b)
        else:
            lo = _day(span)
            hi = 6 if step_text else lo
        if hi < lo:
            raise ValueError(f"day range {span!r} runs backwards")
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(_DAYS[d] for d in sorted(days))


def cron_trigger(cron: str, tz: tzinfo) -> Any:
    """Five-field crontab in time zone `tz`; ValueError if it is not valid.  As in
    apscheduler, a restricted day of month and day of week must both match."""
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has 5 fields, not {len(fields)}")
    minute, hour, day, month, dow = fields
    return CronTrigger(
        minute=minute, hour=hour, day=day, month=month, day_of_week=cron_days(dow), timezone=tz
    )


class Scheduler:
    def __init__(
        self,
        db: Database,
        *,
        tz: tzinfo,
        missed: Missed,
        run: RunFn,
        report: ReportFn,
        spawn: Callable[[Coroutine[Any, Any, None], str], object],
        trigger_for: TriggerFactory = cron_trigger,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        host: str | None = None,
    ) -> None:
        self.db = db
        self.host = host  # None: every schedule in the database (one host)
        self.tz = tz
        self.missed = missed
        self._run, self._report, self._spawn = run, report, spawn
        self.trigger_for = trigger_for
        self.now = now
        self._sched: Any = None
        self._due: dict[str, datetime] = {}  # schedule → the occurrence just submitted

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        sched = AsyncIOScheduler(
            timezone=self.tz,
            jobstores={"default": MemoryJobStore()},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": None if self.missed == "run_once" else REPORT_GRACE_S,
            },
        )
        sched.add_listener(self._on_missed, EVENT_JOB_MISSED)
        # apscheduler has moved a due job on (run, or skipped as still running)
        sched.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES)
        sched.start(paused=True)
        self._sched = sched
        self._load()
        self._catch_up()
        sched.resume()

    async def stop(self) -> None:
        sched, self._sched = self._sched, None
        if sched is not None and sched.running:
            sched.shutdown(wait=False)  # applied on the loop's next step

    # --- schedules --------------------------------------------------------------

    def add(self, session_id: str, cron: str, prompt: str, *, by: str) -> ScheduleRow:
        """A new schedule; ValueError (with a readable message) for a bad cron."""
        trigger = self.trigger_for(cron, self.tz)
        row = ScheduleRow(
            id=secrets.token_hex(3),
            session_id=session_id,
            cron=cron,
            prompt=prompt,
            timezone=str(self.tz),
            created_by=by,
        )
        self.db.schedules.add(row)
        self._add_job(row, trigger)
        self._save_next_run(row.id)
        return row

    def remove(self, schedule_id: str) -> bool:
        found = self.db.schedules.delete(schedule_id)
        if self._sched is not None:
            try:
                self._sched.remove_job(schedule_id)
            except JobLookupError:
                pass
        return found

    def next_run(self, schedule_id: str) -> datetime | None:
        """When it runs next: its job's time here, or — a schedule of a session on
        another host — the time its host stored."""
        job = self._sched.get_job(schedule_id) if self._sched is not None else None
        if job is not None:
            return job.next_run_time  # type: ignore[no-any-return]
        row = self.db.schedules.get(schedule_id)
        return row.next_run_at if row is not None else None

    # --- internals --------------------------------------------------------------

    async def _fire(self, schedule_id: str) -> None:
        """The job function apscheduler calls for every schedule: claim the occurrence
        it was submitted for, then run it — unless someone else claimed it first."""
        occurrence = self._due.pop(schedule_id, None) or self.now()
        row = await asyncio.to_thread(self.db.schedules.claim, schedule_id, occurrence)
        if row is None:
            if await asyncio.to_thread(self.db.schedules.get, schedule_id) is None:
                log.warning("schedule %s has no row; removing its job", schedule_id)
                self.remove(schedule_id)
            else:
                log.info(
                    "schedule %s: the run due %s was claimed already; not run here",
                    schedule_id,
                    occurrence.isoformat(),
                )
            return
        self._spawn(self._run(row), f"schedule-{schedule_id}")

    def _add_job(self, row: ScheduleRow, trigger: Any, first: datetime | None = None) -> None:
        when: dict[str, Any] = {} if first is None else {"next_run_time": first}
        self._sched.add_job(
            self._fire,
            trigger,
            args=[row.id],
            id=row.id,
            name=f"session {row.session_id}: {row.cron}",
            replace_existing=True,
            **when,
        )

    def _load(self) -> None:
        """A job for every row: its trigger from the cron, its first run the one the
        row says is still to come (a row without one starts from now)."""
        now = self.now()
        for row in self.db.schedules.list(host=self.host):
            try:
                trigger = self.trigger_for(row.cron, self.tz)
            except ValueError as e:
                log.error("schedule %s: bad cron %r: %s", row.id, row.cron, e)
                continue
            first = row.next_run_at or trigger.get_next_fire_time(None, now)
            if first is None:
                continue  # a trigger with no runs left
            self._add_job(row, trigger, first)

    def _save_next_run(self, schedule_id: str) -> None:
        job = self._sched.get_job(schedule_id) if self._sched is not None else None
        self.db.schedules.set_next_run(schedule_id, job.next_run_time if job else None)

    def _on_submitted(self, event: JobEvent) -> None:
        """apscheduler has submitted a run (remember its occurrence for `_fire`, which
        runs after this) and moved the job on to its next run (or removed it): store it."""
        if event.code == EVENT_JOB_SUBMITTED and isinstance(event, JobSubmissionEvent):
            self._due[event.job_id] = max(event.scheduled_run_times)
        self._save_next_run(event.job_id)

    def _catch_up(self) -> None:
        """Runs missed while the daemon was down: tell the thread, then run once or skip."""
        now = self.now()
        for job in self._sched.get_jobs():
            first = job.next_run_time
            if first is None or first > now:
                continue
            count, last, t = 0, first, first
            while t is not None and t <= now and count < MAX_COUNTED:
                count, last = count + 1, t
                t = job.trigger.get_next_fire_time(t, now)
            row = self.db.schedules.get(job.id)
            if row is None:
                continue
            runs = "1 scheduled run was" if count == 1 else f"{count} scheduled runs were"
            when = last.astimezone(self.tz).strftime("%a %d %b %H:%M")
            if self.missed == "run_once":
                self._report(
                    row,
                    f"⏰ {runs} missed while the daemon was down (last: {when}); running it once now.",
                )
            else:
                self._report(
                    row, f"⏰ {runs} missed while the daemon was down (last: {when}); not run."
                )
                nxt = job.trigger.get_next_fire_time(None, now)
                if nxt is None:
                    self._sched.remove_job(job.id)
                else:
                    self._sched.modify_job(job.id, next_run_time=nxt)
                self._save_next_run(job.id)

    def _on_missed(self, event: JobExecutionEvent) -> None:
        row = self.db.schedules.get(event.job_id)
        if row is not None:
            when = event.scheduled_run_time.astimezone(self.tz).strftime("%H:%M")
            self._report(
                row,
                f"⏰ The run due at {when} was missed (the daemon was busy or asleep); not run.",
            )


__all__ = ["Scheduler", "cron_trigger"]
