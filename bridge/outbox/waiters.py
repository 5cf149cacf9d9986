"""Waiting on the outbox: `wait_sent` for one row, `wait_idle` for all of them.

A row may be delivered by this host's worker — then `settle` answers its waiters at
once — or, with several hosts on one database, by another host's (the platform's
gateway), which this process hears nothing of.  So a waiter also looks at the row in
the database every `WAIT_POLL_S` seconds: a row written here and sent elsewhere is seen
within that, and a waiter never depends on a notification.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bridge.outbox.delivery import wait_event
from storage.outbox_repo import OutboxRepo
from storage.types import OutboxState

WAIT_POLL_S = 0.1  # a waiter looks at the database this often (another host may deliver)


class DeliveryFailed(Exception):
    """`wait_sent` on a row that ended failed or superseded."""

    def __init__(self, row_id: int, state: OutboxState) -> None:
        super().__init__(f"outbox row {row_id} was {state}")
        self.row_id = row_id
        self.state = state


class Waiters:
    def __init__(self, repo: OutboxRepo, platforms: Sequence[str]) -> None:
        self._repo, self._platforms = repo, list(platforms)
        self._waiters: dict[int, list[asyncio.Future[str]]] = {}
        self._progress: set[asyncio.Event] = set()

    async def wait_sent(self, row_id: int, timeout: float | None) -> str:  # noqa: ASYNC109 - the contract
        """See `Outbox.wait_sent`."""
        found = self._settled(row_id, must_exist=True)
        if found is not None:
            return found
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        fut: asyncio.Future[str] = loop.create_future()
        self._waiters.setdefault(row_id, []).append(fut)
        try:
            while True:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError
                step = WAIT_POLL_S if remaining is None else min(WAIT_POLL_S, remaining)
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), step)
                except TimeoutError:
                    found = self._settled(row_id)
                    if found is not None:
                        return found
        finally:
            waiting = self._waiters.get(row_id, [])
            if fut in waiting:
                waiting.remove(fut)
            if not waiting:
                self._waiters.pop(row_id, None)

    async def wait_idle(self, timeout: float | None) -> bool:  # noqa: ASYNC109 - the contract
        """See `Outbox.wait_idle` (rows another host delivers count too)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        progress = asyncio.Event()
        self._progress.add(progress)
        try:
            while True:
                progress.clear()
                if self._repo.count(state="pending", platforms=self._platforms) == 0:
                    return True
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return False
                step = WAIT_POLL_S if remaining is None else min(WAIT_POLL_S, remaining)
                await wait_event(progress, step)
        finally:
            self._progress.discard(progress)

    def settle(self, ids: Sequence[int], state: OutboxState, message_id: str | None) -> None:
        """Rows reached a final state here: answer their waiters, nudge `wait_idle`."""
        for row_id in ids:
            for fut in self._waiters.pop(row_id, []):
                if fut.done():
                    continue
                if state == "sent":
                    fut.set_result(message_id or "")
                else:
                    fut.set_exception(DeliveryFailed(row_id, state))
        for event in self._progress:
            event.set()

    def _settled(self, row_id: int, *, must_exist: bool = False) -> str | None:
        """The row's message id ("" for none) if it was sent; None while pending.
        Raises `DeliveryFailed` if it ended otherwise (`LookupError` if missing and
        `must_exist`)."""
        found = self._repo.state_of(row_id)
        if found is None:
            if must_exist:
                raise LookupError(f"no outbox row {row_id}")
            return None
        if found[0] == "sent":
            return found[1] or ""
        if found[0] != "pending":
            raise DeliveryFailed(row_id, found[0])
        return None
