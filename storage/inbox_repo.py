"""The `inbox` table's queries: work one host hands another through the database.

The gateway stores a chat event for a session on another host here; a host that is
not the gateway stores its "open this session's thread" request for the gateway here
(`bridge/inbox.py` decides what an item means).  Each host's worker claims its own
items in id order: the pending rows are locked with `FOR UPDATE SKIP LOCKED`
(PostgreSQL; SQLite has one writer and ignores the clause) and moved to ``claimed``
in the same transaction, so no two claims ever return the same item.  An item is
then marked ``done`` (its payload emptied: attachments can be large) or ``failed``.
Items a dead run had claimed but not finished go back to ``pending`` when the host's
worker starts again (`release_claimed`): nothing is lost to a crash.

The writer wakes the target host's worker with `storage.notify` on the INBOX channel
inside the inserting transaction (a hint; the worker also polls).  Payloads are
JSON sealed with the database cipher, opened only when claimed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, update
from sqlmodel import col, select

from storage.base import Repo
from storage.host_repo import as_utc
from storage.models import InboxRow, utcnow
from storage.notify import INBOX, notify
from storage.types import InboxState


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One claimed item: its payload as stored JSON text, or None (with `error`) when
    it could not be opened."""

    id: int
    kind: str
    sender: str
    payload: str | None
    attempts: int
    error: str = ""


class InboxRepo(Repo):
    def add(self, *, host: str, kind: str, payload: dict[str, Any], sender: str = "") -> int:
        """Store an item for `host` and wake its worker (at commit); returns its id."""
        body = self._cipher.seal(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
        with self._session() as s:
            row = InboxRow(host=host, kind=kind, sender=sender, payload=body, created_at=utcnow())
            s.add(row)
            s.flush()
            notify(s, INBOX, host)
            s.commit()
            assert row.id is not None
            return row.id

    def claim(self, host: str, limit: int = 20) -> list[InboxItem]:
        """Up to `limit` of `host`'s pending items, oldest first, now ``claimed`` — one
        statement (`UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`),
        so a claim costs one round trip to the database."""
        table = InboxRow.__table__  # type: ignore[attr-defined]
        T = table.c
        pick = (
            select(T.id)
            .where(T.host == host, T.state == "pending")
            .order_by(T.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(table)
            .where(T.id.in_(pick.scalar_subquery()))
            .values(state="claimed", attempts=T.attempts + 1, claimed_at=utcnow())
            .returning(T.id, T.kind, T.sender, T.payload, T.attempts)
        )
        with self._engine.begin() as c:
            rows = c.execute(claim).all()
        return [self._item(*r) for r in sorted(rows, key=lambda r: int(r[0]))]

    def _item(self, item_id: int, kind: str, sender: str, stored: str, attempts: int) -> InboxItem:
        try:
            payload: str | None = self._cipher.open(stored)
            error = ""
        except Exception as e:  # a wrong key, a damaged row: failed, never a crash
            payload, error = None, f"cannot open the payload: {type(e).__name__}"
        return InboxItem(int(item_id), kind, sender, payload, int(attempts), error)

    def finish(self, item_id: int, state: InboxState = "done", error: str = "") -> None:
        """Settle a claimed item (its payload is no longer needed)."""
        with self._session() as s:
            s.exec(
                update(InboxRow)
                .where(col(InboxRow.id) == item_id)
                .values(state=state, error=error[:500], payload="", done_at=utcnow())
            )
            s.commit()

    def release_claimed(self, host: str) -> int:
        """`host`'s items claimed by a run that did not finish them: pending again."""
        with self._session() as s:
            result = s.exec(
                update(InboxRow)
                .where(col(InboxRow.host) == host, col(InboxRow.state) == "claimed")
                .values(state="pending")
            )
            s.commit()
            return int(result.rowcount)

    def prune(self, before: datetime) -> int:
        """Delete settled items created before `before`."""
        with self._session() as s:
            result = s.exec(
                delete(InboxRow).where(
                    col(InboxRow.state).in_(("done", "failed")),
                    col(InboxRow.created_at) < as_utc(before),
                )
            )
            s.commit()
            return int(result.rowcount)

    def count(self, *, host: str | None = None, state: InboxState | None = None) -> int:
        q = select(func.count()).select_from(InboxRow)
        if host is not None:
            q = q.where(col(InboxRow.host) == host)
        if state is not None:
            q = q.where(col(InboxRow.state) == state)
        with self._session() as s:
            return int(s.exec(q).one())

    def list(self, host: str | None = None) -> list[InboxRow]:
        """Every item (for tests and tools), oldest first, payloads as stored."""
        q = select(InboxRow).order_by(col(InboxRow.id))
        if host is not None:
            q = q.where(col(InboxRow.host) == host)
        with self._session() as s:
            return list(s.exec(q))


RETENTION = timedelta(days=7)

__all__ = ["RETENTION", "InboxItem", "InboxRepo"]
