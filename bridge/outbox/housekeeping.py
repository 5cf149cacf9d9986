"""Outbox housekeeping: settled rows past a retention are pruned, so the table does
not grow forever.

Every `every` seconds (and once at start) rows that settled more than `retention`
ago are handled by `OutboxRepo.prune`: edits, drafts and deletes are deleted, sends
are emptied of their content but kept, because their rows still route replies and
presses on old messages, answer `find_sent` and take later edits.  In batches, each
its own short transaction, with the event loop free between them, so deliveries go
on while a large backlog is pruned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bridge.outbox.delivery import describe, to_datetime
from storage.outbox_repo import OutboxRepo

log = logging.getLogger("bridge.outbox")

RETENTION = 30 * 86400.0  # settled rows are kept a month, for looking into a problem
PRUNE_EVERY = 3600.0
PRUNE_BATCH = 500


class Pruner:
    def __init__(
        self,
        repo: OutboxRepo,
        *,
        clock: Callable[[], float],
        retention: float = RETENTION,
        every: float = PRUNE_EVERY,
    ) -> None:
        self._repo, self._clock = repo, clock
        self._retention, self._every = retention, every
        self._task: asyncio.Task[None] | None = None

    async def prune(self) -> int:
        """Prune what is past the retention now; returns how many rows changed."""
        before = to_datetime(self._clock() - self._retention)
        total = 0
        while (changed := self._repo.prune(before, batch=PRUNE_BATCH)) > 0:
            total += changed
            await asyncio.sleep(0)
        if total:
            log.info("outbox: pruned %d settled rows older than %s", total, before.date())
        return total

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-prune")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception as exc:  # housekeeping must not end; deliveries go on
                log.error("outbox: pruning failed: %s", describe(exc))
            await asyncio.sleep(self._every)
