"""The durable outbox: every outgoing chat operation is stored, then delivered.

`enqueue*` / `update_stream` render through the adapter and write rows before
anything is sent; one `ChatWorker` per chat (`bridge/outbox/delivery.py`) then delivers
them, woken by an `asyncio.Event` when rows arrive and by a timer when a retried row
comes due.  Several hosts may share one database (PostgreSQL); only a platform's
gateway delivers it (`may_send`), so rows written on another host wake it through the
database (`bridge/outbox/wakeups.py`: a NOTIFY at commit, and a poll every
`POLL_S` seconds in case one is lost).  What goes next is decided by `OutboxRepo.next_for_chat`:
in order per thread, and across the threads of the chat by delivery class
(`bridge/outbox/classes.py`: prompts, then finals, then notices, then stream
updates — a person waiting on Claude never waits behind decoration), an edit only
after its target was sent.  How fast is decided by the platform's `RateBudget`, one budget per chat
shared by every session in it.  Stream updates are coalesced in the row store
(`stream_key`), so a fast producer costs at most as many calls as the budget
allows and the last content always goes out.

This class is the producers' face and the owner of state that spans chats: the
workers, thread fallbacks (`ThreadGone` → `thread_fallback` → the thread's pending
rows move, and later rows for the gone thread follow), `wait_sent` (which also
watches the database: another host may deliver the row) / `wait_idle`, and the
housekeeping (`bridge/outbox/housekeeping.py`: settled rows older than 30
days are pruned every hour).

Delivery survives kill -9 without duplicates where the platform lets us check: a
send row is stamped `attempted_at` before its platform call and marked sent in the
event-loop step in which the call returns.  Met again after a restart (or after a
timeout), a stamped send is first looked for (`ChatAdapter.find_sent`) and sent
only if it did not arrive.  Telegram has no idempotent send and no history for
bots, so its adapter probes the few message ids after our newest one with an edit
to the identical content ("message is not modified" = it is there); if it is not
among them (a busy chat), the message is sent again — at least once, never lost.
Edits are re-applied (identical = "not modified" = done).  A row marked sent is
never sent again, and every pending row is delivered after `start()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from adapters.base import ChatAdapter
from adapters.messages import Outbound, ThreadRef
from bridge.outbox.classes import class_of
from bridge.outbox.delivery import (
    RETRY_MAX_S,
    ChatWorker,
    RetryPolicy,
    describe,
    to_datetime,
)
from bridge.outbox.housekeeping import PRUNE_EVERY, RETENTION, Pruner
from bridge.outbox.ratelimit import Kind, RateBudget
from bridge.outbox.reserve import reserve_slots
from bridge.outbox.waiters import DeliveryFailed, Waiters
from bridge.outbox.wakeups import POLL_S, Wakeups
from storage.db import Database
from storage.notify import Listener
from storage.outbox_pick import DeliveryClass, PendingItem
from storage.outbox_repo import chat_key_of
from storage.types import OutboxId, OutboxOp, OutboxState

log = logging.getLogger(__name__)

__all__ = ["DeliveryFailed", "Outbox", "ThreadFallback"]

ThreadFallback = Callable[[ThreadRef], Awaitable[ThreadRef | None]]


class Outbox:
    def __init__(
        self,
        db: Database,
        adapters: Mapping[str, ChatAdapter],
        *,
        thread_fallback: ThreadFallback | None = None,
        clock: Callable[[], float] = time.time,
        retry_initial: float = 1.0,
        retry_max: float = RETRY_MAX_S,  # an API back from an outage is used again soon
        ephemeral_attempts: int = 5,
        rate_margin: float = 0.2,
        retention: float = RETENTION,
        prune_every: float = PRUNE_EVERY,
        may_send: Callable[[str], bool] | None = None,
        host: str | None = None,
        listener: Listener | None = None,
        poll_every: float | None = POLL_S,
        offload: bool | None = None,
    ) -> None:
        """`host`: this host's name, stored with every row it writes; `listener`:
        the daemon's database listener (wake-ups from other hosts); `poll_every`:
        the fallback look for other hosts' rows (None: never; SQLite: never);
        `offload`: the workers' database calls run in threads (default: on
        PostgreSQL, `bridge/outbox/delivery.py`)."""
        self.db = db
        self.host = host
        self._offload = not db.is_sqlite if offload is None else offload
        self._repo = db.outbox
        self._adapters = dict(adapters)
        self._thread_fallback = thread_fallback
        self._clock = clock
        self._policy = RetryPolicy(retry_initial, retry_max, ephemeral_attempts)
        self._budgets = {
            name: RateBudget(a.capabilities, is_group=a.is_group, clock=clock, margin=rate_margin)
            for name, a in self._adapters.items()
        }
        self._workers: dict[str, ChatWorker] = {}
        self._redirects: dict[str, ThreadRef] = {}  # gone thread key → its fallback
        self._waiting = Waiters(self._repo, list(self._adapters))
        self._started = False
        # platform → may this host call it now (the gateway lease, `bridge/gateway.py`)
        self._may_send = may_send
        self.pruner = Pruner(self._repo, clock=clock, retention=retention, every=prune_every)
        self.wakeups = Wakeups(
            self._repo,
            list(self._adapters),
            may_send=self._may_send_on,
            wake=self._wake,
            poll_every=None if db.is_sqlite else poll_every,
        )
        if listener is not None:
            self.wakeups.listen(listener)

    # --- producing ----------------------------------------------------------------

    def enqueue(
        self,
        thread: ThreadRef,
        msg: Outbound,
        *,
        session_id: str | None = None,
        priority: int = 0,
        klass: DeliveryClass | None = None,
    ) -> list[OutboxId]:
        """Store `msg` as one row per platform message; the first id is "the message".
        Its delivery class follows `msg.role` (`class_of`; `priority=1`: a stream
        update; `klass`: said outright)."""
        thread = self._resolve(thread)
        payloads = [r.payload for r in self._adapter(thread).render(msg)]
        rank = class_of(msg, priority=priority, klass=klass)
        ids = self._add(thread, "send", payloads, rank, session_id=session_id)
        if rank < DeliveryClass.STREAM:
            self._repo.lift_before(thread.key, ids[0], rank)
        self._wake(thread.platform, thread.chat_id, "message")
        return ids

    def enqueue_edit(
        self,
        thread: ThreadRef,
        target_id: int,
        msg: Outbound,
        *,
        priority: int = 0,
        stream_key: str | None = None,
        klass: DeliveryClass | None = None,
    ) -> OutboxId:
        """Edit the message of row `target_id` once it is sent.  With `stream_key`, an
        unsent earlier edit of the same target and key is replaced instead.  The
        class as for `enqueue`."""
        thread = self._resolve(thread)
        target = self._repo.get(target_id)
        if target is None or target.op != "send":
            raise ValueError(f"outbox row {target_id} is not a sent-message row")
        if (target.platform, target.chat_id) != (thread.platform, thread.chat_id):
            raise ValueError("an edit must go to the chat of the message it edits")
        payload = self._adapter(thread).render_edit(msg).payload
        rank = class_of(msg, priority=priority, klass=klass)
        row_id = None
        if stream_key is not None:
            row_id = self._repo.coalesce(
                stream_key=stream_key,
                op="edit",
                target_id=target_id,
                payload=payload,
                priority=rank,
            )
        if row_id is None:
            [row_id] = self._add(
                thread,
                "edit",
                [payload],
                rank,
                session_id=target.session_id,
                target_id=target_id,
                stream_key=stream_key,
            )
        self._wake(thread.platform, thread.chat_id, "message")
        return row_id

    def update_stream(
        self, thread: ThreadRef, stream_key: str, msg: Outbound, *, session_id: str | None = None
    ) -> None:
        """A native stream draft (class STREAM); only the latest unsent content is kept.
        Dropped where the adapter cannot draft in this thread: a draft is a preview,
        the final message carries the text."""
        thread = self._resolve(thread)
        adapter = self._adapter(thread)
        if not (adapter.capabilities.native_stream and adapter.supports_draft(thread)):
            log.debug("outbox: no native stream in %s; draft dropped", thread.key)
            return
        payload = adapter.render_edit(msg).payload
        if (
            self._repo.coalesce(
                stream_key=stream_key,
                op="draft",
                target_id=None,
                payload=payload,
                priority=DeliveryClass.STREAM,
            )
            is None
        ):
            self._add(
                thread,
                "draft",
                [payload],
                DeliveryClass.STREAM,
                session_id=session_id,
                stream_key=stream_key,
            )
        self._wake(thread.platform, thread.chat_id, "draft")

    def supersede(self, stream_key: str) -> None:
        """Drop the unsent updates of a stream (its final message replaces them); one
        on its way (claimed by a delivery, on any host) still goes."""
        self._settle(self._repo.supersede(stream_key), "superseded", None)

    def withdraw(self, row_id: int) -> bool:
        """Cancel a row that has not gone out (pending, not claimed by a delivery on
        any host); True if it was cancelled, False if it is on its way or settled."""
        if not self._repo.mark_superseded(row_id):
            return False
        self._settle([row_id], "superseded", None)
        return True

    def enqueue_delete(
        self, thread: ThreadRef, target_id: int, *, klass: DeliveryClass | None = None
    ) -> OutboxId | None:
        """Delete the message of row `target_id`.  If it was never sent it is simply
        cancelled and None is returned.  The delete goes with the target's class (at
        least NOTICE) unless `klass` says otherwise."""
        thread = self._resolve(thread)
        target = self._repo.get(target_id)
        if target is None or target.op != "send":
            raise ValueError(f"outbox row {target_id} is not a sent-message row")
        if target.state in ("failed", "superseded"):
            return None
        if target.state == "pending" and self.withdraw(target_id):
            return None
        rank = klass if klass is not None else max(DeliveryClass.NOTICE, target.priority)
        [row_id] = self._add(
            thread,
            "delete",
            [{}],
            rank,
            session_id=target.session_id,
            target_id=target_id,
        )
        self._wake(thread.platform, thread.chat_id, "message")
        return row_id

    def enqueue_close(self, thread: ThreadRef, *, session_id: str | None = None) -> OutboxId | None:
        """Close the thread (`ChatAdapter.close_thread`) after every row queued before
        it in the thread, paced and retried like a message; on any host (the gateway
        makes the call).  None if the thread was replaced by a fallback (gone)."""
        if self._resolve(thread).key != thread.key:
            return None
        self._adapter(thread)
        [row_id] = self._add(thread, "close", [{}], DeliveryClass.NOTICE, session_id=session_id)
        self._wake(thread.platform, thread.chat_id, "message")
        return row_id

    # --- observing ----------------------------------------------------------------

    def platform_message_id(self, row_id: int) -> str | None:
        found = self._repo.state_of(row_id)
        return found[1] if found and found[0] == "sent" else None

    async def wait_sent(self, row_id: int, timeout: float | None = None) -> str:  # noqa: ASYNC109 - the contract
        """The platform message id once row `row_id` is sent ("" for drafts), by this
        host's worker or another host's (`bridge/outbox/waiters.py`).  Raises
        `DeliveryFailed`, `TimeoutError`, or `LookupError` for an unknown id."""
        return await self._waiting.wait_sent(row_id, timeout)

    async def wait_idle(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - the contract
        """Wait until no row is pending (all delivered or failed); False on timeout."""
        return await self._waiting.wait_idle(timeout)

    def budget(self, platform: str) -> RateBudget:
        """The platform's rate budget (shared with every chat's worker)."""
        return self._budgets[platform]

    async def reserve(self, platform: str, chat_id: str, calls: int = 1) -> list[float]:
        """Book `calls` slots of the chat's budget for calls made outside the outbox
        (opening a thread) and wait for the last, after any prompt or final answer
        ready in the chat (`bridge/outbox/reserve.py`); returns the booked times."""
        key = chat_key_of(platform, chat_id)

        def worker_free() -> bool:
            worker = self._workers.get(key)
            return self._started and worker is not None and not worker.delivering

        return await reserve_slots(
            self._budgets[platform],
            self._repo,
            chat_key=key,
            chat_id=chat_id,
            calls=calls,
            worker_free=worker_free,
            wake=lambda: self._wake(platform, chat_id, "message"),
            now=lambda: to_datetime(self._clock()),
        )

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Start a worker for every chat with undelivered rows (after a crash too)."""
        if self._started:
            return
        self._started = True
        for platform, chat_id in self._repo.pending_chats(self._adapters):
            self._wake(platform, chat_id)
        for worker in self._workers.values():
            worker.start()
        self.pruner.start()
        self.wakeups.start()
        orphans = self._repo.count(state="pending") - self._repo.count(
            state="pending", platforms=self._adapters
        )
        if orphans:
            log.warning("outbox: %d pending rows for platforms without an adapter kept", orphans)

    def resume(self, platform: str) -> None:
        """This host became `platform`'s gateway: deliver every pending row of its
        chats (other hosts may have written them)."""
        if not self._started:
            return
        for plat, chat_id in self._repo.pending_chats([platform]):
            self._wake(plat, chat_id)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop every worker: idle ones at once; a platform call under way gets
        `grace` seconds to return and be recorded.  Rows stay for the next start."""
        self._started = False
        await self.wakeups.stop()
        await self.pruner.stop()
        await asyncio.gather(*(w.stop(grace) for w in self._workers.values()))

    # --- thread fallback ------------------------------------------------------------

    async def _on_thread_gone(self, thread: ThreadRef, item: PendingItem) -> None:
        """The thread cannot take messages: move its pending rows to the fallback
        thread (once per thread: later rows for it are redirected at enqueue)."""
        new = self._redirects.get(thread.key)
        if new is None and self._thread_fallback is not None:
            try:
                new = await self._thread_fallback(thread)
            except Exception as exc:
                log.error("outbox: thread fallback for %s failed: %s", thread.key, describe(exc))
        if new is None or new.key == thread.key:
            ids = self._repo.fail_thread(thread.key, "ThreadGone: no fallback thread")
            log.warning(
                "outbox row %d (%s): thread %s gone, no fallback; %d rows failed",
                *(item.id, item.op, thread.key, len(ids)),
            )
            self._settle(ids, "failed", None)
            return
        self._redirects[thread.key] = new
        ids = self._repo.move_thread(
            thread.key,
            platform=new.platform,
            chat_id=new.chat_id,
            thread_id=new.thread_id,
            thread_key=new.key,
        )
        log.warning(
            "outbox row %d (%s): thread %s gone; %d rows moved to %s",
            *(item.id, item.op, thread.key, len(ids), new.key),
        )
        self._wake(new.platform, new.chat_id)

    # --- helpers ------------------------------------------------------------------

    def _settle(self, ids: Sequence[int], state: OutboxState, message_id: str | None) -> None:
        """Rows reached a final state: answer `wait_sent`, nudge `wait_idle`."""
        self._waiting.settle(ids, state, message_id)

    def _wake(self, platform: str, chat_id: str, *kinds: Kind) -> None:
        adapter = self._adapters.get(platform)
        if adapter is None:
            return
        key = chat_key_of(platform, chat_id)
        worker = self._workers.get(key)
        if worker is None:
            worker = self._workers[key] = ChatWorker(
                platform,
                chat_id,
                repo=self._repo,
                adapter=adapter,
                budget=self._budgets[platform],
                clock=self._clock,
                policy=self._policy,
                settle=self._settle,
                thread_gone=self._on_thread_gone,
                host=self.host or "",
                offload=self._offload,
                **self._fence(platform),
            )
        if self._started:
            worker.start()
        worker.wake(*kinds)

    def _may_send_on(self, platform: str) -> bool:
        return self._may_send is None or self._may_send(platform)

    def _fence(self, platform: str) -> dict[str, Callable[[], bool]]:
        may_send = self._may_send
        return {} if may_send is None else {"may_send": lambda: may_send(platform)}

    def _resolve(self, thread: ThreadRef) -> ThreadRef:
        for _ in range(8):  # follow fallbacks of fallbacks, never loop forever
            nxt = self._redirects.get(thread.key)
            if nxt is None:
                break
            thread = nxt
        return thread

    def _adapter(self, thread: ThreadRef) -> ChatAdapter:
        try:
            return self._adapters[thread.platform]
        except KeyError:
            raise ValueError(f"no adapter for platform {thread.platform!r}") from None

    def _add(
        self,
        thread: ThreadRef,
        op: OutboxOp,
        payloads: list[dict[str, Any]],
        priority: int,
        *,
        session_id: str | None,
        target_id: int | None = None,
        stream_key: str | None = None,
    ) -> list[OutboxId]:
        return self._repo.add(
            platform=thread.platform,
            chat_id=thread.chat_id,
            thread_id=thread.thread_id,
            thread_key=thread.key,
            op=op,
            payloads=payloads,
            priority=priority,
            not_before=to_datetime(self._clock()),
            session_id=session_id,
            target_id=target_id,
            stream_key=stream_key,
            host=self.host,
        )
