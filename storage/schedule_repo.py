"""The `schedules` table's queries: scheduled prompts per session.

The rows say all there is to a schedule (session, cron, prompt, who made it, when it
runs next); the scheduler keeps its jobs in memory and rebuilds them from the rows.
Prompts are sealed with the database cipher like every other stored message body.  Times
come back in UTC (SQLite keeps them without a zone).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import col, select

from storage.base import Repo
from storage.models import ScheduleRow, utcnow


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

    def list(self, session_id: str | None = None) -> list[ScheduleRow]:
        with self._session() as s:
            q = select(ScheduleRow).order_by(col(ScheduleRow.created_at))
            if session_id is not None:
                q = q.where(ScheduleRow.session_id == session_id)
            rows = list(s.exec(q))
        return [self._open(r) for r in rows]

    def delete(self, schedule_id: str) -> bool:
        with self._session() as s:
            row = s.get(ScheduleRow, schedule_id)
            if row is None:
                return False
            s.delete(row)
            s.commit()
            return True

    def ran(self, schedule_id: str) -> None:
        with self._session() as s:
            row = s.get(ScheduleRow, schedule_id)
            if row is not None:
                row.runs += 1
                row.last_run_at = utcnow()
                s.add(row)
                s.commit()

    def set_next_run(self, schedule_id: str, when: datetime | None) -> None:
        """Remember the next run not yet made (None: the schedule has no more)."""
        with self._session() as s:
            row = s.get(ScheduleRow, schedule_id)
            if row is not None:
                row.next_run_at = when.astimezone(UTC) if when is not None else None
                s.add(row)
                s.commit()

    def _open(self, row: ScheduleRow) -> ScheduleRow:
        out = ScheduleRow.model_validate(row.model_dump())
        out.prompt = self._cipher.open(row.prompt)
        if out.next_run_at is not None and out.next_run_at.tzinfo is None:
            out.next_run_at = out.next_run_at.replace(tzinfo=UTC)
        return out
