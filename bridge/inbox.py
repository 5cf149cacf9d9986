"""This host's inbox worker: the work other hosts handed it through the `inbox` table.

The gateway stores every chat event for a session on another host as an item for
that host (`bridge/forward.py`); a host that is not the gateway asks the gateway to
open a session's thread the same way.  Each host runs one `Inbox`, which claims its
items in id order (`InboxRepo.claim`: `FOR UPDATE SKIP LOCKED`), woken by the INBOX
notification (`storage/notify.py`, payload: the host) and, since a notification is
only a hint, by a poll every `POLL_S` seconds.

Each kind has a handler (`on`) that checks and decodes the payload and returns the
*handover*: a synchronous call that gives the item to its consumer (a chat event to
the sessions router's per-thread queue, exactly as if this host's adapter had
received it).  The item is marked done and handed over in the very step the marking
returns — so an item is handed over at most once: a prompt never runs twice.  An
item whose host died before marking it (claimed, not done) is claimed again when the
worker starts (at least once up to the handover); a crash in the instant between
the marking and the handover loses that one event, like a crash loses an event an
adapter had just received.  A payload that does not decode (a bug, another version,
a hostile row) is logged and marked failed, never retried, never a crash.

Button presses are the exception (`at_least_once`): handed over first and marked done
after, so a crash in between hands one over twice — harmless, since every press is
decided atomically where it lands (the permission broker takes the first answer) —
and the press reaches its handler without waiting for a database round trip.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from adapters.tasks import TaskGroup
from storage.db import Database
from storage.inbox_repo import RETENTION, InboxItem
from storage.models import utcnow

log = logging.getLogger(__name__)

POLL_S: Final = 2.0  # the fallback when a notification is lost
BATCH: Final = 20
PRUNE_EVERY_S: Final = 3600.0
MAX_ATTEMPTS: Final = 5  # claims of one item (crashes while handling it) before it fails

Handover = Callable[[], object]
# (payload JSON, the host that wrote it) → the handover; raises (CodecError) if bad.
Handler = Callable[[str, str], Handover]


class Inbox:
    def __init__(
        self,
        db: Database,
        tasks: TaskGroup,
        *,
        host: str,
        poll_s: float = POLL_S,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db, self._tasks, self.host = db, tasks, host
        self.poll_s, self.now = poll_s, now
        self._handlers: dict[str, Handler] = {}
        self._first: set[str] = set()  # kinds handed over before they are marked done
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.handled = 0  # items handed over since start (tests, benchmarks)

    def on(self, kind: str, handler: Handler, *, at_least_once: bool = False) -> None:
        """Handle `kind` items with `handler`.  `at_least_once`: hand over first, mark
        done after (for what is harmless twice, such as a button press — the broker
        takes the first answer — and wants no database round trip before it acts)."""
        self._handlers[kind] = handler
        if at_least_once:
            self._first.add(kind)

    def wake(self, payload: str = "") -> None:
        """The INBOX listener's callback: "" (anything may have changed) or a host."""
        if payload in ("", self.host):
            self._wake.set()

    def send(self, host: str, kind: str, payload: dict[str, Any]) -> int:
        """Store an item for `host` (this host's own worker is woken in-process; others
        by the notification at commit)."""
        item_id = self.db.inbox.add(host=host, kind=kind, payload=payload, sender=self.host)
        if host == self.host:
            self._wake.set()
        return item_id

    def start(self) -> None:
        if self._task is None:
            self._task = self._tasks.spawn(self._run(), name=f"inbox-{self.host}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        released = await asyncio.to_thread(self.db.inbox.release_claimed, self.host)
        if released:
            log.warning("inbox: %d items a previous run had claimed are handled again", released)
        pruned_at = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                if loop.time() - pruned_at > PRUNE_EVERY_S:
                    pruned_at = loop.time()
                    await asyncio.to_thread(self.db.inbox.prune, self.now() - RETENTION)
                self._wake.clear()
                items = await asyncio.to_thread(self.db.inbox.claim, self.host, BATCH)
                for item in items:
                    await self._handle(item)
                if len(items) < BATCH:
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.poll_s)
                    except TimeoutError:
                        pass
            except asyncio.CancelledError:
                raise
            except Exception:  # the database went away: what was claimed is claimed again
                log.exception("inbox: handling items failed; trying again in 1 s")
                await asyncio.sleep(1.0)
                try:
                    await asyncio.to_thread(self.db.inbox.release_claimed, self.host)
                except Exception:
                    log.exception("inbox: releasing claimed items failed")

    async def _handle(self, item: InboxItem) -> None:
        handler = self._handlers.get(item.kind)
        if item.payload is None or handler is None or item.attempts > MAX_ATTEMPTS:
            why = item.error or (
                f"claimed {item.attempts} times" if handler else f"unknown kind {item.kind[:32]!r}"
            )
            await self._fail(item, why)
            return
        try:
            handover = handler(item.payload, item.sender)
        except Exception as e:  # CodecError, or anything a hostile payload provokes
            await self._fail(item, f"{type(e).__name__}: {str(e)[:200]}")
            return
        first = item.kind in self._first
        if not first:
            await asyncio.to_thread(self.db.inbox.finish, item.id, "done")
        self.handled += 1
        try:
            handover()  # in the step the marking returned: at most once
        except Exception:
            log.exception("inbox: handing over item %d (%s) failed", item.id, item.kind)
        if first:  # a crash before this: handed over again after the restart
            await asyncio.to_thread(self.db.inbox.finish, item.id, "done")

    async def _fail(self, item: InboxItem, why: str) -> None:
        log.error("inbox: item %d (%s) from %s failed: %s", item.id, item.kind, item.sender, why)
        await asyncio.to_thread(self.db.inbox.finish, item.id, "failed", why)


__all__ = ["POLL_S", "Handler", "Handover", "Inbox"]
