"""The outbox's queries: the durable queue of outgoing platform operations.

`bridge/outbox/outbox.py` decides *when* to deliver; this repository decides *what* is
deliverable and records every state change, each in one short transaction.  A row
is written before it is attempted, stamped `attempted_at` before its first platform
call (so a restart knows which sends may have arrived), then moves once from
``pending`` to ``sent``, ``failed`` or ``superseded``.  Which row goes next
(`claim_next`) is the pick statement of `storage/outbox_pick.py`, claimed in the same
transaction; the producers' coalesce, supersede and withdraw leave a claimed row alone
(a DB condition, so it holds across hosts), and a new row or coalesced content wakes
the gateway of every host sharing the database (`storage/notify.py`, at commit).
Payloads are sealed with the database cipher (encryption at rest) and opened only
when a row is picked for sending.  `prune` is the housekeeping: settled rows past a retention are deleted
where nothing reads them any more, and emptied where something still does.

SQLAlchemy Core rather than ORM objects, and the per-delivery statements built
once with bound parameters (`storage/outbox_pick.py`): they run a few times per
message, and building an aliased ORM query cost more than executing it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, case, exists, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlmodel import Session

from storage import notify
from storage.base import Repo, open_session
from storage.models import OutboxRow, ThreadBinding
from storage.outbox_pick import (
    ALL_OPS,
    CLAIM,
    NEXT_DUE,
    OUTBOX,
    PICKS,
    PICKS_LOCKED,
    SET_STATE,
    STREAM_OPS,
    DeliveryClass,
    PendingItem,
    T,
)
from storage.types import OutboxId, OutboxOp, OutboxState

B = ThreadBinding.__table__.c  # type: ignore[attr-defined]
# Settled rows of these ops are read by nothing: no row targets them (edits and deletes
# target sends), and the pick query only looks at pending rows.
PRUNABLE_OPS: tuple[OutboxOp, ...] = ("edit", "draft", "delete")


@dataclass(frozen=True, slots=True)
class MessageOrigin:
    """Where a message we sent lives: for routing replies to the right session."""

    thread_key: str
    thread_id: str | None
    session_id: str | None
    host: str | None = None  # the host that posted it (NULL: written before migration 13)


def chat_key_of(platform: str, chat_id: str) -> str:
    return f"{platform}:{chat_id}"


def _aware(at: datetime) -> datetime:
    """SQLite hands timestamps back naive; they were stored in UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class OutboxRepo(Repo):
    # --- writing ------------------------------------------------------------------

    def add(
        self,
        *,
        platform: str,
        chat_id: str,
        thread_id: str | None,
        thread_key: str,
        op: OutboxOp,
        payloads: Sequence[dict[str, Any]],
        priority: int,
        not_before: datetime,
        session_id: str | None = None,
        target_id: int | None = None,
        stream_key: str | None = None,
        host: str | None = None,
    ) -> list[OutboxId]:
        """Insert one row per payload in one transaction; returns their ids in order.
        `host`: the host writing it.  Wakes the chat's gateway (`notify`, at commit)."""
        common = {
            "chat_key": chat_key_of(platform, chat_id),
            "thread_key": thread_key,
            "platform": platform,
            "chat_id": chat_id,
            "thread_id": thread_id,
            "session_id": session_id,
            "op": op,
            "priority": priority,
            "target_id": target_id,
            "stream_key": stream_key,
            "state": "pending",
            "attempts": 0,
            "last_error": "",
            "not_before": not_before,
            "created_at": not_before,
            "host": host,
        }
        with self._notifying_tx() as (s, c):
            ids = []
            for p in payloads:  # one by one: each insert reports its id, in order
                result = c.execute(insert(OUTBOX), {**common, "payload": self._seal(p)})
                ids.append(result.inserted_primary_key[0])  # type: ignore[index]
            notify.notify(s, notify.OUTBOX, str(common["chat_key"]))
            return [OutboxId(int(i)) for i in ids]

    def coalesce(
        self,
        *,
        stream_key: str,
        op: OutboxOp,
        target_id: int | None,
        payload: dict[str, Any],
        priority: int,
    ) -> OutboxId | None:
        """Replace the content of the newest unsent row of this stream (same op and
        target) if no delivery has claimed it; returns its id, or None (then the
        caller adds a new row).  The row is locked first (PostgreSQL), so a claim
        in progress is waited for and then seen; the UPDATE repeats the condition
        (SQLite, whose read takes no lock)."""
        q = select(T.id, T.priority, T.claim, T.chat_key).where(
            T.stream_key == stream_key, T.state == "pending", T.op == op
        )
        q = q.where(T.target_id.is_(None) if target_id is None else T.target_id == target_id)
        with self._notifying_tx() as (s, c):
            found = c.execute(q.order_by(T.id.desc()).limit(1).with_for_update()).first()
            if found is None or found.claim is not None:
                return None
            values = {"payload": self._seal(payload), "priority": min(found.priority, priority)}
            stmt = update(OUTBOX).where(T.id == found.id, T.state == "pending", T.claim.is_(None))
            if not c.execute(stmt.values(**values)).rowcount:
                return None
            notify.notify(s, notify.OUTBOX, found.chat_key)
            return OutboxId(int(found.id))

    def lift_before(self, thread_key: str, before_id: int, klass: int) -> int:
        """Raise the pending rows of a thread queued before row `before_id` that it must
        wait for (all but stream-class edits, drafts and deletes, which it may pass) to
        class `klass` if they are less urgent: what a prompt waits for goes with it.
        Returns how many were raised."""
        stmt = (
            update(OUTBOX)
            .where(T.thread_key == thread_key, T.state == "pending", T.id < before_id)
            .where(T.priority > klass)
            .where(~and_(T.priority == int(DeliveryClass.STREAM), T.op.in_(STREAM_OPS)))
            .values(priority=klass)
        )
        with self._tx() as c:
            return int(c.execute(stmt).rowcount or 0)

    def mark_sent(self, row_id: int, platform_message_id: str | None, at: datetime) -> None:
        with self._tx() as c:
            values = {"state": "sent", "platform_message_id": platform_message_id, "sent_at": at}
            c.execute(SET_STATE, {"row_id": row_id, **values})

    def mark_attempted(self, row_id: int, at: datetime | None) -> None:
        """Record, before the platform call, that the row's delivery began (`at`; the
        first attempt's time is kept); None: the call surely did not take effect."""
        stmt = update(OUTBOX).where(T.id == row_id)
        if at is not None:
            stmt = stmt.where(T.attempted_at.is_(None))
        with self._tx() as c:
            c.execute(stmt.values(attempted_at=at))

    def mark_failed(self, row_id: int, error: str) -> None:
        with self._tx() as c:
            c.execute(SET_STATE, {"row_id": row_id, "state": "failed", "last_error": error[:500]})

    def mark_superseded(self, row_id: int, *, claimed: str | None = None) -> bool:
        """Cancel a row if it is still pending and unclaimed (or claimed by `claimed`:
        the worker holding it); False if it settled or a delivery has it."""
        mine = T.claim.is_(None) if claimed is None else or_(T.claim.is_(None), T.claim == claimed)
        stmt = update(OUTBOX).where(T.id == row_id, T.state == "pending", mine)
        with self._tx() as c:
            return bool(c.execute(stmt.values(state="superseded")).rowcount)

    def reschedule(
        self,
        row_id: int,
        not_before: datetime,
        error: str,
        *,
        count_attempt: bool,
        claim: str | None = None,
    ) -> None:
        """Keep the row pending until `not_before`, and give up `claim` on it (its
        content may be coalesced into again until the next attempt)."""
        values: dict[str, Any] = {"not_before": not_before, "last_error": error[:500]}
        if count_attempt:
            values["attempts"] = T.attempts + 1
        if claim is not None:
            values["claim"] = case((T.claim == claim, None), else_=T.claim)
        with self._tx() as c:
            c.execute(update(OUTBOX).where(T.id == row_id).values(**values))

    def release(self, row_id: int, claim: str, *, attempted: bool = False) -> None:
        """Give up `claim` on a row whose platform call was not made (or surely took
        no effect); `attempted`: its `attempted_at` stamp goes too.  A row claimed
        since by another worker (a new gateway) is left to it."""
        values: dict[str, Any] = {"claim": None}
        if attempted:
            values["attempted_at"] = None
        with self._tx() as c:
            c.execute(update(OUTBOX).where(T.id == row_id, T.claim == claim).values(**values))

    def supersede(self, stream_key: str) -> list[OutboxId]:
        """Drop the unsent rows of a stream that no delivery has claimed; returns
        their ids."""
        return self._bulk_state(and_(T.stream_key == stream_key, T.claim.is_(None)), "superseded")

    def supersede_if_newer(self, row_id: int) -> bool:
        """Drop this stream row if a newer pending row of the same stream, op and
        target exists (its content replaces ours, so retrying ours is wasted)."""
        me = OUTBOX.alias("me")
        newer = exists().where(
            T.stream_key == me.c.stream_key,
            T.op == me.c.op,
            T.state == "pending",
            T.id > me.c.id,
            or_(
                and_(T.target_id.is_(None), me.c.target_id.is_(None)), T.target_id == me.c.target_id
            ),
        )
        found = select(me.c.id).where(
            me.c.id == row_id, me.c.state == "pending", me.c.stream_key.is_not(None), newer
        )
        stmt = update(OUTBOX).where(T.id.in_(found.scalar_subquery())).values(state="superseded")
        with self._tx() as c:
            return bool(c.execute(stmt).rowcount)

    def fail_thread(self, thread_key: str, error: str) -> list[OutboxId]:
        return self._bulk_state(T.thread_key == thread_key, "failed", last_error=error[:500])

    def move_thread(
        self,
        old_thread_key: str,
        *,
        platform: str,
        chat_id: str,
        thread_id: str | None,
        thread_key: str,
    ) -> list[OutboxId]:
        """Re-home a thread's pending rows (ThreadGone fallback); returns their ids.
        Its close rows are superseded, not moved: the fallback thread stays open."""
        self._bulk_state(and_(T.thread_key == old_thread_key, T.op == "close"), "superseded")
        with self._tx() as c:
            ids = [
                OutboxId(int(i))
                for i in c.execute(
                    select(T.id).where(T.thread_key == old_thread_key, T.state == "pending")
                ).scalars()
            ]
            if ids:
                where = {
                    "platform": platform,
                    "chat_id": chat_id,
                    "thread_id": thread_id,
                    "thread_key": thread_key,
                }
                c.execute(
                    update(OUTBOX)
                    .where(T.id.in_(ids))
                    .values(chat_key=chat_key_of(platform, chat_id), claim=None, **where)
                )
            return ids

    def prune(self, before: datetime, *, batch: int = 500) -> int:
        """Housekeeping for settled rows created before `before`, at most `batch` of
        them per call (one short transaction: deliveries are not held up); returns how
        many it changed, so a caller repeats while it gets `batch`.

        Edits, drafts and deletes are deleted.  Sends are kept, their payload emptied:
        the row still maps a platform message id to its thread and session (replies and
        presses on old messages, `origin_of_message`), answers `our_messages` for
        `find_sent`, and is the target an edit or a prompt's decision refers to."""
        old = and_(T.state != "pending", T.created_at < before)
        doomed = select(T.id).where(old, T.op.in_(PRUNABLE_OPS)).limit(batch)
        emptied = select(T.id).where(old, T.op == "send", T.payload != "").limit(batch)
        with self._tx() as c:
            deleted = c.execute(OUTBOX.delete().where(T.id.in_(doomed.scalar_subquery())))
            kept = c.execute(
                update(OUTBOX).where(T.id.in_(emptied.scalar_subquery())).values(payload="")
            )
            return int(deleted.rowcount or 0) + int(kept.rowcount or 0)

    # --- picking --------------------------------------------------------------------

    def next_for_chat(
        self, chat_key: str, now: datetime, ops: Collection[OutboxOp] = ALL_OPS
    ) -> PendingItem | None:
        """The row to deliver next in this chat, or None if nothing is deliverable now.
        `ops` narrows the choice (e.g. to drafts while the message budget is spent);
        rows of other ops still hold back later rows of their thread.  A look only:
        delivery takes rows with `claim_next`."""
        params = {"chat_key": chat_key, "now": now, "ops": list(ops)}
        with self._engine.connect() as c:
            row = self._first(c, PICKS, params)
        return None if row is None else self._item(row, row)

    def claim_next(
        self, chat_key: str, now: datetime, claim: str, ops: Collection[OutboxOp] = ALL_OPS
    ) -> PendingItem | None:
        """As `next_for_chat`, and claim the row for delivery in the same transaction
        (`storage/outbox_pick.py`): its content is read under the claim, and no
        producer changes it after.  A send's first claim stamps `attempted_at` (the
        item keeps the previous value: whether an earlier attempt may have arrived)."""
        params = {"chat_key": chat_key, "now": now, "ops": list(ops)}
        with self._tx() as c:
            row = self._first(c, PICKS_LOCKED, params)
            if row is None:
                return None
            fresh = c.execute(CLAIM, {"row_id": row["id"], "claim": claim, "now": now}).first()
        if fresh is None:  # settled between the look and the claim (SQLite reads unlocked)
            return None
        return self._item(row, fresh._mapping, claim=claim)

    @staticmethod
    def _first(c: Connection, picks: Sequence[Any], params: dict[str, Any]) -> Any:
        for pick in picks:
            row = c.execute(pick, params).mappings().first()
            if row is not None:
                return row
        return None

    def _item(self, row: Any, content: Any, *, claim: str | None = None) -> PendingItem:
        return PendingItem(
            id=row["id"],
            platform=row["platform"],
            chat_id=row["chat_id"],
            thread_id=row["thread_id"],
            thread_key=row["thread_key"],
            session_id=row["session_id"],
            op=row["op"],
            priority=content["priority"],
            stream_key=row["stream_key"],
            attempts=content["attempts"],
            payload=json.loads(self._cipher.open(content["payload"])),
            target_id=row["target_id"],
            target_state=row["target_state"],
            target_message_id=row["target_mid"],
            attempted_at=row["attempted_at"],
            claim=claim,
        )

    def next_due(self, chat_key: str, now: datetime) -> datetime | None:
        """When the earliest row of this chat that is waiting for its time comes due."""
        with self._engine.connect() as c:
            due: datetime | None = c.execute(NEXT_DUE, {"chat_key": chat_key, "now": now}).scalar()
            return due

    # --- reading --------------------------------------------------------------------

    def get(self, row_id: int) -> OutboxRow | None:
        with self._session() as s:
            return s.get(OutboxRow, row_id)

    def state_of(self, row_id: int) -> tuple[OutboxState, str | None] | None:
        with self._engine.connect() as c:
            found = c.execute(select(T.state, T.platform_message_id).where(T.id == row_id)).first()
        return None if found is None else (found[0], found[1])

    def pending_chats(self, platforms: Iterable[str] | None = None) -> list[tuple[str, str]]:
        """(platform, chat_id) of every chat with undelivered rows."""
        q = select(T.platform, T.chat_id).where(T.state == "pending").distinct()
        if platforms is not None:
            q = q.where(T.platform.in_(list(platforms)))
        with self._engine.connect() as c:
            return [(p, cid) for p, cid in c.execute(q)]

    def count(
        self,
        *,
        state: OutboxState | None = None,
        chat_key: str | None = None,
        platforms: Iterable[str] | None = None,
    ) -> int:
        q = select(func.count()).select_from(OUTBOX)
        if state is not None:
            q = q.where(T.state == state)
        if chat_key is not None:
            q = q.where(T.chat_key == chat_key)
        if platforms is not None:
            q = q.where(T.platform.in_(list(platforms)))
        with self._engine.connect() as c:
            return int(c.execute(q).scalar() or 0)

    def counts(self) -> dict[str, int]:
        """Rows per state, e.g. ``{"sent": 12, "pending": 1}`` (tests, benchmarks)."""
        with self._engine.connect() as c:
            return {
                st: int(n) for st, n in c.execute(select(T.state, func.count()).group_by(T.state))
            }

    def origin_of_message(
        self, platform: str, chat_id: str, message_id: str
    ) -> MessageOrigin | None:
        """The thread, session and writing host of a platform message we sent in this
        chat (a press on it is that host's to handle)."""
        q = (
            select(T.thread_key, T.thread_id, T.session_id, T.host)
            .where(
                T.chat_key == chat_key_of(platform, chat_id), T.platform_message_id == message_id
            )
            .where(T.op == "send", T.state == "sent")
            .order_by(T.id.desc())
            .limit(1)
        )
        with self._engine.connect() as c:
            found = c.execute(q).first()
        return None if found is None else MessageOrigin(found[0], found[1], found[2], found[3])

    def our_messages(self, chat_key: str, before: datetime) -> tuple[str | None, set[str]]:
        """For checking whether a send attempted at `before` was delivered: the
        platform id of our newest message in the chat sent before then, and the ids
        of every message of ours in the chat (sent rows and thread headers)."""
        sent = (
            select(T.platform_message_id, T.sent_at)
            .where(T.chat_key == chat_key, T.op == "send", T.state == "sent")
            .where(T.platform_message_id.is_not(None))
        )
        platform, _, chat_id = chat_key.partition(":")
        headers = select(B.header_message_id).where(
            B.platform == platform, B.chat_id == chat_id, B.header_message_id.is_not(None)
        )
        with self._engine.connect() as c:
            rows = c.execute(sent.order_by(T.id)).all()
            ours = {str(h) for h in c.execute(headers).scalars()}
        ours.update(str(mid) for mid, _ in rows)
        earlier = [(_aware(at), str(mid)) for mid, at in rows if at and _aware(at) < _aware(before)]
        return (max(earlier)[1] if earlier else None), ours

    def row_of_message(self, platform: str, chat_id: str, message_id: str) -> OutboxId | None:
        """The outbox row that sent platform message `message_id` in this chat (for a
        text answer that replies to a permission prompt)."""
        q = (
            select(T.id)
            .where(
                T.chat_key == chat_key_of(platform, chat_id), T.platform_message_id == message_id
            )
            .where(T.op == "send", T.state == "sent")
            .order_by(T.id.desc())
            .limit(1)
        )
        with self._engine.connect() as c:
            found = c.execute(q).scalar()
        return None if found is None else OutboxId(int(found))

    # --- helpers --------------------------------------------------------------------

    def _tx(self) -> AbstractContextManager[Connection]:
        """One short transaction, committed on exit."""
        return self._engine.begin()

    @contextmanager
    def _notifying_tx(self) -> Iterator[tuple[Session, Connection]]:
        """`_tx` through a session, for `notify` (which takes one) in the same
        transaction; the statements still run on its connection (Core)."""
        with open_session(self._engine) as s, s.begin():
            yield s, s.connection()

    def _seal(self, payload: dict[str, Any]) -> str:
        return self._cipher.seal(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))

    def _bulk_state(
        self, cond: Any, state: OutboxState, *, last_error: str | None = None
    ) -> list[OutboxId]:
        """Move the pending rows matching `cond` to `state`; returns their ids.  One
        statement: the condition is tested row by row as each is written (a row
        claimed meanwhile on another host no longer matches)."""
        values = {} if last_error is None else {"last_error": last_error}
        stmt = update(OUTBOX).where(cond, T.state == "pending").values(state=state, **values)
        with self._tx() as c:
            return sorted(OutboxId(int(i)) for i in c.execute(stmt.returning(T.id)).scalars())
