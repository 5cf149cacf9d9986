"""Wake-ups for rows another host wrote: how the gateway hears of them.

Several daemons may share one PostgreSQL; any of them writes outbox rows (its own
sessions' messages), only a platform's gateway delivers them.  The writer's own
workers are woken in-process (`Outbox._wake`); every other host learns of the rows
here, in two ways:

- a notification: `OutboxRepo.add` and `coalesce` call `notify(OUTBOX, chat_key)` in
  the writing transaction, and the daemon's one `Listener` (`storage/notify.py`)
  calls `on_notified` at commit — the chat's worker is woken if this host may send on
  its platform ("": the listener (re)connected, so every pending chat is looked at);
- a poll every `POLL_S` seconds of the chats with pending rows on the platforms this
  host may send, because a notification is a hint and may be lost (the listening
  connection dropped): a lost one delays delivery by at most `POLL_S`, never loses it.

On SQLite there is one daemon per database: no listener, no poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Final

from storage.notify import OUTBOX, Listener
from storage.outbox_repo import OutboxRepo

log = logging.getLogger(__name__)

POLL_S: Final = 2.0  # the fallback look for other hosts' rows (a lost notification)


class Wakeups:
    """Turns notifications and the fallback poll into `wake(platform, chat_id)`."""

    def __init__(
        self,
        repo: OutboxRepo,
        platforms: Sequence[str],
        *,
        may_send: Callable[[str], bool],
        wake: Callable[[str, str], None],
        poll_every: float | None = POLL_S,
    ) -> None:
        self._repo, self._platforms = repo, list(platforms)
        self._may_send, self._wake = may_send, wake
        self.poll_every = poll_every
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self.notified = 0  # notifications that woke a worker (tests, benchmarks)

    def listen(self, listener: Listener) -> None:
        listener.on(OUTBOX, self.on_notified)

    def start(self) -> None:
        self._running = True
        if self.poll_every is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._poll(self.poll_every), name="outbox-poll"
            )

    async def stop(self) -> None:
        self._running = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def on_notified(self, chat_key: str) -> None:
        """A host wrote rows for `chat_key` ("platform:chat_id"; "" = any chat)."""
        if not self._running:
            return  # `Outbox.start` looks at every pending chat itself
        if not chat_key:
            self.wake_pending(self._sendable())
            return
        platform, _, chat_id = chat_key.partition(":")
        if platform in self._platforms and chat_id and self._may_send(platform):
            self.notified += 1
            self._wake(platform, chat_id)

    def wake_pending(self, platforms: Sequence[str]) -> None:
        """Wake the worker of every chat with pending rows on `platforms`."""
        if not platforms:
            return
        for platform, chat_id in self._repo.pending_chats(platforms):
            self._wake(platform, chat_id)

    def _sendable(self) -> list[str]:
        return [p for p in self._platforms if self._may_send(p)]

    async def _poll(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            platforms = self._sendable()
            if not platforms:
                continue
            try:  # off the loop: a PostgreSQL round trip
                chats = await asyncio.to_thread(self._repo.pending_chats, platforms)
            except Exception as exc:  # the database is away: the next poll tries again
                log.warning("outbox poll: %s", type(exc).__name__)
                continue
            for platform, chat_id in chats:
                self._wake(platform, chat_id)
