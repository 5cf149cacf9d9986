"""The outbox's delivery order and its prepared statements, and the row it picks.

Every row has a delivery class (`DeliveryClass`, stored in the ``priority`` column,
lower goes first): a person waiting on Claude (a permission prompt, a question) before
a turn's answer, the answer before notices, notices before stream updates.

Per thread first-in first-out, except that a row may overtake earlier stream updates
(STREAM-class edits, drafts, deletes) when its own class is lower and it touches
neither their target nor their stream; and a draft (an ephemeral preview) waits for
nothing but its own stream.  The earlier rows of its thread that a row must wait for
are lifted to its class when it is queued (`OutboxRepo.lift_before`), so a prompt
behind its own thread's status message does not wait behind the whole chat.  An edit or delete waits
until its target is no longer pending.  Across the threads of a chat, a row
attempted before goes first (its `find_sent` check must run before anything else is
sent), then the lowest class, then age.  Built once with bound parameters: it runs a
few times per message, and building the aliased query cost more than executing it.

Claims (several hosts on one database): the gateway's worker picks with `PICKS_LOCKED`
(PostgreSQL: `FOR UPDATE OF r SKIP LOCKED` — a row a producer is coalescing into right
now is passed over, not waited for; its thread's later rows stay blocked by it, since
the `blocked` test reads without locking) and stamps the row with `CLAIM` in the same
transaction, which hands back the row's content as of the claim (`RETURNING`).  The
producers' coalesce, supersede and withdraw only touch rows whose `claim` is NULL, so
content written after a claim becomes a new row rather than being lost.  A claim does
not keep the row from being picked again: only the gateway picks, one worker per chat,
so a claimed row met by a pick is one whose delivery was cut short (kill -9, a
deposed gateway) and must be finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    not_,
    or_,
    select,
    true,
    update,
)

from storage.models import OutboxRow
from storage.types import OutboxId, OutboxOp, OutboxState

OUTBOX: Table = OutboxRow.__table__  # type: ignore[attr-defined]
T = OUTBOX.c
ALL_OPS: tuple[OutboxOp, ...] = ("send", "edit", "draft", "delete", "close")
# Stream-class rows of these ops may be overtaken by any more urgent row of their thread.
STREAM_OPS: tuple[OutboxOp, ...] = ("edit", "draft", "delete")


class DeliveryClass(IntEnum):
    """How urgent a row is; stored in ``outbox.priority`` (migration 9), lower first."""

    PROMPT = 0  # Claude is blocked and a person waits: permission prompts, questions
    FINAL = 1  # a turn's answer (and its status message's last edit)
    NOTICE = 2  # everything else Threadline says
    STREAM = 3  # stream updates: status edits, the status message itself, drafts


def _pick_statement(*, lock: bool, attempted: bool) -> Any:
    r, e, t = OUTBOX.alias("r"), OUTBOX.alias("e"), OUTBOX.alias("t")
    # e (earlier, same thread, pending) blocks r unless e is a stream update (STREAM
    # class: an edit, a draft, a delete), r is more urgent, and r touches neither e's
    # target nor e's stream; or r is a draft (an ephemeral preview, not a message in the
    # history: only an earlier draft of its own stream holds it back).  An edit of e
    # itself waits anyway: its target is e.  (The rows that do block a more urgent row
    # were lifted to its class when it was queued: `OutboxRepo.lift_before`.)
    overtakable = or_(
        and_(
            e.c.priority == int(DeliveryClass.STREAM),
            r.c.priority < e.c.priority,
            e.c.op.in_(STREAM_OPS),
            or_(e.c.target_id.is_(None), r.c.target_id.is_(None), e.c.target_id != r.c.target_id),
            or_(
                e.c.stream_key.is_(None), r.c.stream_key.is_(None), e.c.stream_key != r.c.stream_key
            ),
        ),
        and_(r.c.op == "draft", or_(e.c.stream_key.is_(None), e.c.stream_key != r.c.stream_key)),
    )
    blocked = exists().where(
        e.c.thread_key == r.c.thread_key, e.c.state == "pending", e.c.id < r.c.id, not_(overtakable)
    )
    pick = (
        select(r, t.c.state.label("target_state"), t.c.platform_message_id.label("target_mid"))
        .select_from(r.outerjoin(t, t.c.id == r.c.target_id))
        .where(r.c.chat_key == bindparam("chat_key"), r.c.state == "pending")
        .where(r.c.op.in_(bindparam("ops", expanding=True)))
        .where(r.c.not_before <= bindparam("now", type_=T.not_before.type))
        .where(or_(r.c.target_id.is_(None), t.c.state.is_(None), t.c.state != "pending"))
        .where(not_(blocked))
        # A row attempted before goes first (`attempted`: the first of the two
        # statements, `PICKS`): after a restart the check whether it was
        # delivered (`ChatAdapter.find_sent`) must run before anything else is sent.
        .where(r.c.attempted_at.is_not(None) if attempted else true())
        # In index order (`ix_outbox_pick`): the scan stops at the first row not
        # blocked, instead of testing every pending row of the chat before sorting.
        .order_by(r.c.priority, r.c.id)
        .limit(1)
    )
    # Only `r` is locked: FOR UPDATE cannot apply to the nullable side of the outer
    # join, and the target row is only read.  (SQLite has no FOR UPDATE: the claim's
    # UPDATE … RETURNING takes the write lock and reads the content under it.)
    return pick.with_for_update(of=r, skip_locked=True) if lock else pick


# Tried in order, the first row found is the pick: rows attempted before, then all.
# (One statement ordered by `attempted_at IS NULL` first could not use the index order.)
PICKS = tuple(_pick_statement(lock=False, attempted=a) for a in (True, False))  # a look
PICKS_LOCKED = tuple(_pick_statement(lock=True, attempted=a) for a in (True, False))
NEXT_DUE = select(func.min(T.not_before)).where(
    T.chat_key == bindparam("chat_key"),
    T.state == "pending",
    T.not_before > bindparam("now", type_=T.not_before.type),
)
SET_STATE = update(OUTBOX).where(T.id == bindparam("row_id"))
# Stamp a picked row claimed; a send's first claim also stamps `attempted_at` (its
# platform call follows with no other database write in between).  Hands back the
# content as of the claim.
CLAIM = (
    update(OUTBOX)
    .where(T.id == bindparam("row_id"), T.state == "pending")
    .values(
        claim=bindparam("claim"),
        attempted_at=case(
            (
                and_(T.op == "send", T.attempted_at.is_(None)),
                bindparam("now", type_=T.attempted_at.type),
            ),
            else_=T.attempted_at,
        ),
    )
    .returning(T.payload, T.priority, T.attempts)
)


@dataclass(frozen=True, slots=True)
class PendingItem:
    """A row picked for delivery, payload opened, with what its target resolved to."""

    id: OutboxId
    platform: str
    chat_id: str
    thread_id: str | None
    thread_key: str
    session_id: str | None
    op: OutboxOp
    priority: int  # a DeliveryClass
    stream_key: str | None
    attempts: int
    payload: dict[str, Any]
    target_id: int | None
    target_state: OutboxState | None  # None: no target, or the target row does not exist
    target_message_id: str | None
    attempted_at: datetime | None = None  # the first platform call for it began then
    claim: str | None = None  # this pick's claim on the row (`release` names it)
