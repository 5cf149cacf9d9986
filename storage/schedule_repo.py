"""The `schedules` table's queries: scheduled prompts per session.

The rows say what a schedule is (session, cron, prompt, who made it); apscheduler's
job store (`apscheduler_jobs`, same database) says when it runs next.  Prompts are
sealed with `db.cipher` like every other stored message body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import col, select

from storage.models import ScheduleRow, utcnow

if TYPE_CHECKING:
    from storage.db import Database


class ScheduleRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, row: ScheduleRow) -> ScheduleRow:
        stored = ScheduleRow.model_validate(row.model_dump())
        stored.prompt = self.db.cipher.seal(row.prompt)
        with self.db.session() as s:
            s.add(stored)
            s.commit()
        return row

    def get(self, schedule_id: str) -> ScheduleRow | None:
        with self.db.session() as s:
            row = s.get(ScheduleRow, schedule_id)
        return self._open(row) if row is not None else None

    def list(self, session_id: str | None = None) -> list[ScheduleRow]:
        with self.db.session() as s:
            q = select(ScheduleRow).order_by(col(ScheduleRow.created_at))
            if session_id is not None:
                q = q.where(ScheduleRow.session_id == session_id)
            rows = list(s.exec(q))
        return [self._open(r) for r in rows]

    def delete(self, schedule_id: str) -> bool:
        with self.db.session() as s:
            row = s.get(ScheduleRow, schedule_id)
            if row is None:
                return False
            s.delete(row)
            s.commit()
            return True

    def ran(self, schedule_id: str) -> None:
        with self.db.session() as s:
            row = s.get(ScheduleRow, schedule_id)
            if row is not None:
                row.runs += 1
                row.last_run_at = utcnow()
                s.add(row)
                s.commit()

    def _open(self, row: ScheduleRow) -> ScheduleRow:
        out = ScheduleRow.model_validate(row.model_dump())
        out.prompt = self.db.cipher.open(row.prompt)
        return out
