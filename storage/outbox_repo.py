"""The outbox's queries: the durable queue of outgoing platform operations.

`bridge/outbox.py` decides *when* to deliver; this repository decides *what* is
deliverable and records every state change, each in one short transaction.  A row
is written before it is attempted, then moves once from ``pending`` to ``sent``,
``failed`` or ``superseded``.  The pick query (`next_for_chat`) encodes the
delivery order: per thread first-in first-out, except that a priority-0 row may
overtake earlier priority-1 stream updates (edits/drafts) it does not conflict
with; an edit or delete waits until its target is no longer pending; across the
threads of a chat, priority 0 goes first, then age.  Payloads are sealed with
`db.cipher` (encryption at rest) and opened only when a row is picked for sending.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, exists, func, not_, or_, select, update
from sqlalchemy.orm import aliased

from storage.models import OutboxRow

if TYPE_CHECKING:
    from storage.db import Database

T = OutboxRow.__table__.c  # type: ignore[attr-defined]
STREAM_OPS = ("edit", "draft")  # priority-1 rows of these ops may be overtaken


@dataclass(frozen=True, slots=True)
class PendingItem:
    """A row picked for delivery, payload opened, with what its target resolved to."""

    id: int
    platform: str
    chat_id: str
    thread_id: str | None
    thread_key: str
    session_id: str | None
    op: str
    priority: int
    stream_key: str | None
    attempts: int
    payload: dict[str, Any]
    target_id: int | None
    target_state: str | None  # None: no target, or the target row does not exist
    target_message_id: str | None


@dataclass(frozen=True, slots=True)
class MessageOrigin:
    """Where a message we sent lives: for routing replies to the right session."""

    thread_key: str
    thread_id: str | None
    session_id: str | None


def chat_key_of(platform: str, chat_id: str) -> str:
    return f"{platform}:{chat_id}"


class OutboxRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- writing ------------------------------------------------------------------

    def add(
        self,
        *,
        platform: str,
        chat_id: str,
        thread_id: str | None,
        thread_key: str,
        op: str,
        payloads: Sequence[dict[str, Any]],
        priority: int,
        not_before: datetime,
        session_id: str | None = None,
        target_id: int | None = None,
        stream_key: str | None = None,
    ) -> list[int]:
        """Insert one row per payload in one transaction; returns their ids in order."""
        rows = [
            OutboxRow(
                chat_key=chat_key_of(platform, chat_id),
                thread_key=thread_key,
                platform=platform,
                chat_id=chat_id,
                thread_id=thread_id,
                session_id=session_id,
                op=op,
                priority=priority,
                target_id=target_id,
                stream_key=stream_key,
                payload=self._seal(p),
                not_before=not_before,
                created_at=not_before,
            )
            for p in payloads
        ]
        with self.db.session() as s:
            s.add_all(rows)
            s.commit()
            return [r.id for r in rows if r.id is not None]

    def coalesce(
        self,
        *,
        stream_key: str,
        op: str,
        target_id: int | None,
        payload: dict[str, Any],
        priority: int,
        exclude: Collection[int] = (),
    ) -> int | None:
        """Replace the content of the newest unsent row of this stream (same op and
        target) that is not in flight; returns its id, or None if there is none."""
        q = select(T.id, T.priority).where(T.stream_key == stream_key, T.state == "pending", T.op == op)
        q = q.where(T.target_id.is_(None) if target_id is None else T.target_id == target_id)
        if exclude:
            q = q.where(T.id.not_in(list(exclude)))
        with self.db.session() as s:
            found = s.execute(q.order_by(T.id.desc()).limit(1)).first()
            if found is None:
                return None
            row_id, old_priority = found
            s.execute(
                update(OutboxRow.__table__)  # type: ignore[arg-type]
                .where(T.id == row_id)
                .values(payload=self._seal(payload), priority=min(old_priority, priority))
            )
            s.commit()
            return int(row_id)

    def mark_sent(self, row_id: int, platform_message_id: str | None, at: datetime) -> None:
        self._set(row_id, state="sent", platform_message_id=platform_message_id, sent_at=at)

    def mark_failed(self, row_id: int, error: str) -> None:
        self._set(row_id, state="failed", last_error=error[:500])

    def mark_superseded(self, row_id: int) -> None:
        self._set(row_id, state="superseded")

    def reschedule(self, row_id: int, not_before: datetime, error: str, *, count_attempt: bool) -> int:
        """Keep the row pending until `not_before`; returns its attempt count."""
        with self.db.session() as s:
            values: dict[str, Any] = {"not_before": not_before, "last_error": error[:500]}
            if count_attempt:
                values["attempts"] = T.attempts + 1
            s.execute(update(OutboxRow.__table__).where(T.id == row_id).values(**values))  # type: ignore[arg-type]
            attempts = s.execute(select(T.attempts).where(T.id == row_id)).scalar()
            s.commit()
            return int(attempts or 0)

    def supersede(self, stream_key: str, *, exclude: Collection[int] = ()) -> list[int]:
        """Drop the unsent rows of a stream (not those in flight); returns their ids."""
        return self._bulk_state(and_(T.stream_key == stream_key, T.id.not_in(list(exclude))), "superseded")

    def supersede_if_newer(self, row_id: int) -> bool:
        """Drop this stream row if a newer pending row of the same stream, op and
        target exists (its content replaces ours, so retrying ours is wasted)."""
        newer = aliased(OutboxRow)
        with self.db.session() as s:
            me = s.get(OutboxRow, row_id)
            if me is None or me.stream_key is None or me.state != "pending":
                return False
            cond = and_(
                newer.stream_key == me.stream_key,
                newer.op == me.op,
                newer.state == "pending",
                newer.id > row_id,
                newer.target_id.is_(None) if me.target_id is None else newer.target_id == me.target_id,  # type: ignore[union-attr]
            )
            if s.execute(select(exists().where(cond))).scalar():
                me.state = "superseded"
                s.add(me)
                s.commit()
                return True
            return False

    def fail_thread(self, thread_key: str, error: str) -> list[int]:
        return self._bulk_state(T.thread_key == thread_key, "failed", last_error=error[:500])

    def move_thread(self, old_thread_key: str, *, platform: str, chat_id: str, thread_id: str | None, thread_key: str) -> list[int]:
        """Re-home a thread's pending rows (ThreadGone fallback); returns their ids."""
        with self.db.session() as s:
            ids = list(s.execute(select(T.id).where(T.thread_key == old_thread_key, T.state == "pending")).scalars())
            if ids:
                s.execute(
                    update(OutboxRow.__table__)  # type: ignore[arg-type]
                    .where(T.id.in_(ids))
                    .values(
                        platform=platform,
                        chat_id=chat_id,
                        chat_key=chat_key_of(platform, chat_id),
                        thread_id=thread_id,
                        thread_key=thread_key,
                    )
                )
                s.commit()
            return [int(i) for i in ids]

    def prune(self, before: datetime, *, keep_sent_messages: bool = True) -> int:
        """Delete finished rows created before `before`.  Sent `send` rows are kept by
        default: they map platform message ids to threads for reply routing."""
        cond = and_(T.state != "pending", T.created_at < before)
        if keep_sent_messages:
            cond = and_(cond, not_(and_(T.state == "sent", T.op == "send")))
        with self.db.session() as s:
            n = s.execute(OutboxRow.__table__.delete().where(cond)).rowcount  # type: ignore[attr-defined]
            s.commit()
            return int(n or 0)

    # --- picking --------------------------------------------------------------------

    def next_for_chat(self, chat_key: str, now: datetime) -> PendingItem | None:
        """The row to deliver next in this chat, or None if nothing is deliverable now."""
        r, e, t = aliased(OutboxRow, name="r"), aliased(OutboxRow, name="e"), aliased(OutboxRow, name="t")
        # e (earlier, same thread, pending) blocks r unless r is priority 0 and e is a
        # priority-1 stream update touching neither r's target nor r's stream.
        overtakable = and_(
            r.priority == 0,
            e.priority > 0,
            e.op.in_(STREAM_OPS),  # type: ignore[attr-defined]
            or_(e.target_id.is_(None), r.target_id.is_(None), e.target_id != r.target_id),  # type: ignore[union-attr]
            or_(e.stream_key.is_(None), r.stream_key.is_(None), e.stream_key != r.stream_key),  # type: ignore[union-attr]
        )
        blocked = exists().where(
            e.thread_key == r.thread_key, e.state == "pending", e.id < r.id, not_(overtakable)  # type: ignore[operator]
        )
        q = (
            select(r, t.state, t.platform_message_id)
            .outerjoin(t, t.id == r.target_id)
            .where(r.chat_key == chat_key, r.state == "pending", r.not_before <= now)
            .where(or_(r.target_id.is_(None), t.state.is_(None), t.state != "pending"))  # type: ignore[union-attr]
            .where(not_(blocked))
            .order_by(r.priority, r.id)
            .limit(1)
        )
        with self.db.session() as s:
            found = s.execute(q).first()
            if found is None:
                return None
            row, target_state, target_mid = found
            return PendingItem(
                id=row.id,
                platform=row.platform,
                chat_id=row.chat_id,
                thread_id=row.thread_id,
                thread_key=row.thread_key,
                session_id=row.session_id,
                op=row.op,
                priority=row.priority,
                stream_key=row.stream_key,
                attempts=row.attempts,
                payload=json.loads(self.db.cipher.open(row.payload)),
                target_id=row.target_id,
                target_state=target_state,
                target_message_id=target_mid,
            )

    def next_due(self, chat_key: str, now: datetime) -> datetime | None:
        """When the earliest row of this chat that is waiting for its time comes due."""
        q = select(func.min(T.not_before)).where(T.chat_key == chat_key, T.state == "pending", T.not_before > now)
        with self.db.session() as s:
            return s.execute(q).scalar()

    # --- reading --------------------------------------------------------------------

    def get(self, row_id: int) -> OutboxRow | None:
        with self.db.session() as s:
            return s.get(OutboxRow, row_id)

    def state_of(self, row_id: int) -> tuple[str, str | None] | None:
        with self.db.session() as s:
            found = s.execute(select(T.state, T.platform_message_id).where(T.id == row_id)).first()
            return None if found is None else (found[0], found[1])

    def pending_chats(self, platforms: Iterable[str] | None = None) -> list[tuple[str, str]]:
        """(platform, chat_id) of every chat with undelivered rows."""
        q = select(T.platform, T.chat_id).where(T.state == "pending").distinct()
        if platforms is not None:
            q = q.where(T.platform.in_(list(platforms)))
        with self.db.session() as s:
            return [(p, c) for p, c in s.execute(q)]

    def count(self, *, state: str | None = None, chat_key: str | None = None, platforms: Iterable[str] | None = None) -> int:
        q = select(func.count()).select_from(OutboxRow.__table__)
        if state is not None:
            q = q.where(T.state == state)
        if chat_key is not None:
            q = q.where(T.chat_key == chat_key)
        if platforms is not None:
            q = q.where(T.platform.in_(list(platforms)))
        with self.db.session() as s:
            return int(s.execute(q).scalar() or 0)

    def counts(self) -> dict[str, int]:
        """Rows per state, e.g. ``{"sent": 12, "pending": 1}`` (tests, benchmarks)."""
        with self.db.session() as s:
            return {st: int(n) for st, n in s.execute(select(T.state, func.count()).group_by(T.state))}

    def origin_of_message(self, platform: str, chat_id: str, message_id: str) -> MessageOrigin | None:
        """The thread and session of a platform message we sent in this chat."""
        q = (
            select(T.thread_key, T.thread_id, T.session_id)
            .where(T.chat_key == chat_key_of(platform, chat_id), T.platform_message_id == message_id)
            .where(T.op == "send", T.state == "sent")
            .order_by(T.id.desc())
            .limit(1)
        )
        with self.db.session() as s:
            found = s.execute(q).first()
            return None if found is None else MessageOrigin(found[0], found[1], found[2])

    def thread_key_of_message(self, platform: str, chat_id: str, message_id: str) -> str | None:
        origin = self.origin_of_message(platform, chat_id, message_id)
        return origin.thread_key if origin else None

    # --- helpers --------------------------------------------------------------------

    def _seal(self, payload: dict[str, Any]) -> str:
        return self.db.cipher.seal(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))

    def _set(self, row_id: int, **values: Any) -> None:
        with self.db.session() as s:
            s.execute(update(OutboxRow.__table__).where(T.id == row_id).values(**values))  # type: ignore[arg-type]
            s.commit()

    def _bulk_state(self, cond: Any, state: str, **values: Any) -> list[int]:
        with self.db.session() as s:
            ids = list(s.execute(select(T.id).where(cond, T.state == "pending")).scalars())
            if ids:
                s.execute(update(OutboxRow.__table__).where(T.id.in_(ids)).values(state=state, **values))  # type: ignore[arg-type]
                s.commit()
            return [int(i) for i in ids]
