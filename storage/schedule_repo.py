"""The `schedules` table's queries: scheduled prompts per session.

The rows say all there is to a schedule (session, cron, prompt, who made it, when it
runs next); the scheduler keeps its jobs in memory and rebuilds them from the rows.
Prompts are sealed with the database cipher like every other stored message body.  Times
come back in UTC (SQLite keeps them without a zone).

Several hosts share the table: each loads only the schedules of its own sessions
(`list(host=…)`), and a run is *claimed* before it runs (`claim`): one UPDATE moves
`claimed_run_at` forward to the occurrence, so whichever scheduler gets there first
runs it and every other (a second host, a duplicate job, a restart that fires the same
occurrence again) finds it claimed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import or_, update
from sqlmodel import col, select

from storage.base import Repo
from storage.models import ScheduleRow, SessionRow, utcnow


def _utc(when: datetime) -> datetime:
    """`when` in UTC (a naive value is UTC already)."""
    return when.astimezone(UTC) if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _aware(when: datetime | None) -> datetime | None:
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


class ScheduleRepo(Repo):
    def add(self, row: ScheduleRow) -> ScheduleRow:
        stored = ScheduleRow.model_validate(row.model_dump())
        stored.prompt = self._cipher.seal(row.prompt)
        with self._session() as s:
            s.add(stored)
            s.commit()
        return row

    def get(self, schedule_id: str) -> ScheduleRow | None:
        with self._session() as s:
            row = s.get(ScheduleRow, schedule_id)
        return self._open(row) if row is not None else None

    def list(self, session_id: str | None = None, *, host: str | None = None) -> list[ScheduleRow]:
        """Every schedule, or `session_id`'s; with `host`, only those of sessions that
        host runs (or that no host has claimed yet: the starting host claims them)."""
        with self._session() as s:
            q = select(ScheduleRow).order_by(col(ScheduleRow.created_at))
            if session_id is not None:
                q = q.where(ScheduleRow.session_id == session_id)
            if host is not None:
                q = q.join(SessionRow, col(SessionRow.id) == col(ScheduleRow.session_id)).where(
                    or_(col(SessionRow.host) == host, col(SessionRow.host).is_(None))
                )
            rows = list(s.exec(q))
        return [self._open(r) for r in rows]

    def claim(self, schedule_id: str, occurrence: datetime) -> ScheduleRow | None:
        """Claim the run due at `occurrence` (counted as run now); the row if this
        caller got it, None if the schedule is gone or that occurrence (or a later one)
        was claimed already."""
        at = _utc(occurrence)
        claimed = col(ScheduleRow.claimed_run_at)
        with self._session() as s:
            result = s.exec(
                update(ScheduleRow)
                .where(col(ScheduleRow.id) == schedule_id)
                .where(or_(claimed.is_(None), claimed < at))
                .values(
                    claimed_run_at=at,
                    runs=col(ScheduleRow.runs) + 1,
                    last_run_at=_utc(utcnow()),
                )
            )
            s.commit()
            if not result.rowcount:
                return None
            row = s.get(ScheduleRow, schedule_id)
        return self._open(row) if row is not None else None

    def delete(self, schedule_id: str) -> bool:
        with self._session() as s:
            row = s.get(ScheduleRow, schedule_id)
            if row is None:
                return False
            s.delete(row)
            s.commit()
            return True

    def set_next_run(self, schedule_id: str, when: datetime | None) -> None:
        """Remember the next run not yet made (None: the schedule has no more)."""
        with self._session() as s:
            row = s.get(ScheduleRow, schedule_id)
            if row is not None:
                row.next_run_at = _utc(when) if when is not None else None
                s.add(row)
                s.commit()

    def _open(self, row: ScheduleRow) -> ScheduleRow:
        out = ScheduleRow.model_validate(row.model_dump())
        out.prompt = self._cipher.open(row.prompt)
        out.next_run_at = _aware(out.next_run_at)
        out.claimed_run_at = _aware(out.claimed_run_at)
        out.last_run_at = _aware(out.last_run_at)
        return out
