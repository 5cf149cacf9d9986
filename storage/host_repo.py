"""The `hosts` table's queries: each daemon's row, written on start, on every heartbeat
and on a clean shutdown (`bridge/hosts.py`).

Times are passed in by the caller (its clock, UTC) and come back in UTC: PostgreSQL
keeps them with a zone, SQLite without one, so naive values read back are UTC.  A
start also claims the sessions that belong to no host yet (rows from before hosts
existed, or made by a tool that does not know the host) for the starting host, in
the same transaction.

When a host goes offline, one live host tells its sessions' threads: `note_offline`
is a compare-and-set on the row (only while it is still offline and not noted yet),
recording which sessions were told; `take_back`, on the host's next start, clears it
and returns those sessions (they are told it is back).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from storage.base import Repo
from storage.models import HostRow, SessionRow


def as_utc(when: datetime) -> datetime:
    """`when` in UTC; a naive value (SQLite) is taken as UTC already."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def host_roots(row: HostRow) -> list[str]:
    """The row's allowed roots (empty if the column holds anything but a list of strings)."""
    try:
        roots = json.loads(row.roots)
    except ValueError:
        return []
    return [r for r in roots if isinstance(r, str)] if isinstance(roots, list) else []


def _out(row: HostRow) -> HostRow:
    out = HostRow.model_validate(row.model_dump())
    out.started_at = as_utc(out.started_at)
    out.last_heartbeat = as_utc(out.last_heartbeat)
    out.stopped_at = as_utc(out.stopped_at) if out.stopped_at is not None else None
    if out.offline_noted_at is not None:
        out.offline_noted_at = as_utc(out.offline_noted_at)
    return out


class HostRepo(Repo):
    def start(
        self, *, name: str, roots: Sequence[str], pid: int, version: str, at: datetime
    ) -> HostRow:
        """Insert or refresh `name`'s row as started at `at` (heartbeat too; not
        stopped), and claim the sessions with no host for it; the row as stored."""
        at = as_utc(at)
        for attempt in (1, 2):  # a concurrent first insert of the same name: update it
            try:
                with self._session() as s:
                    row = s.get(HostRow, name) or HostRow(name=name)
                    row.roots = json.dumps(list(roots))
                    row.pid, row.version = pid, version
                    row.started_at = row.last_heartbeat = at
                    row.stopped_at = None
                    s.add(row)
                    s.exec(
                        update(SessionRow).where(col(SessionRow.host).is_(None)).values(host=name)
                    )
                    s.commit()
                    s.refresh(row)
                    return _out(row)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def heartbeat(self, *, name: str, at: datetime) -> bool:
        """Stamp `name`'s heartbeat; False if it has no row (then `start` it again)."""
        with self._session() as s:
            result = s.exec(
                update(HostRow).where(col(HostRow.name) == name).values(last_heartbeat=as_utc(at))
            )
            s.commit()
            return bool(result.rowcount)

    def stopped(self, *, name: str, at: datetime) -> None:
        """Record a clean shutdown of `name` (it is offline from now, not overdue)."""
        with self._session() as s:
            s.exec(update(HostRow).where(col(HostRow.name) == name).values(stopped_at=as_utc(at)))
            s.commit()

    def note_offline(
        self, *, name: str, at: datetime, stale_before: datetime, told: Sequence[str]
    ) -> bool:
        """Record that `name` was noticed offline at `at` and `told` (session ids) are
        being told; True for the one caller that did (the row was not noted yet and is
        still offline: stopped, or its heartbeat older than `stale_before`)."""
        with self._session() as s:
            result = s.exec(
                update(HostRow)
                .where(col(HostRow.name) == name)
                .where(col(HostRow.offline_noted_at).is_(None))
                .where(
                    or_(
                        col(HostRow.stopped_at).is_not(None),
                        col(HostRow.last_heartbeat) < as_utc(stale_before),
                    )
                )
                .values(offline_noted_at=as_utc(at), offline_told=json.dumps(list(told)))
            )
            s.commit()
            return bool(result.rowcount)

    def take_back(self, name: str) -> list[str] | None:
        """`name` is back: clear its offline note; the sessions that were told it was
        offline, or None if it was not noted (or another call took it)."""
        with self._session() as s:
            row = s.get(HostRow, name)
            if row is None or row.offline_noted_at is None:
                return None
            told = row.offline_told
            result = s.exec(
                update(HostRow)
                .where(col(HostRow.name) == name)
                .where(col(HostRow.offline_noted_at).is_not(None))
                .values(offline_noted_at=None, offline_told="[]")
            )
            s.commit()
            if not result.rowcount:
                return None
        try:
            ids = json.loads(told)
        except ValueError:
            return []
        return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []

    def get(self, name: str) -> HostRow | None:
        with self._session() as s:
            row = s.get(HostRow, name)
            return _out(row) if row is not None else None

    def list(self) -> list[HostRow]:
        """Every host, by name."""
        with self._session() as s:
            return [_out(r) for r in s.exec(select(HostRow).order_by(col(HostRow.name)))]
