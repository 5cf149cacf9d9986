"""The bot's own view of the homeserver's per-user message budget.

Synapse counts every event a user sends — in any room, messages, edits, reactions,
redactions — in one leaky bucket (`rc_message`: `per_second`, `burst_count`).  The
outbox paces each chat (room), and takes one unit per outbox row, but a row can be
several events here (a prompt and its reaction "buttons") and several rooms share
the one budget.  So every event the adapter sends first passes this `Pacer`, a
token bucket (`adapters.ratelimit`) with the homeserver's numbers: an outbox row waits here briefly when the
budget is nearly there (`inline`), or is handed back as `RateLimited` so the outbox
re-picks later with the newest coalesced content; background sends (reactions)
simply wait their turn.  A 429 that happens anyway (another client of the same
account, a restart within the bucket's memory) drains the bucket until Synapse's
`retry_after_ms`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from adapters.base import RateLimited
from adapters.matrix.limits import RateLimit
from adapters.ratelimit import TokenBucket

MAX_INLINE_WAIT_S = 5.5  # longer than one slot at Synapse's default 0.2/s
LATENCY_MARGIN_S = 0.25  # request latency between our count and the server's


class Pacer:
    """`per_second` events per second with bursts of `burst`, on the clock given."""

    def __init__(
        self,
        rate: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        margin: float = LATENCY_MARGIN_S,
    ) -> None:
        self._bucket = TokenBucket(rate.per_second, rate.burst, margin=margin)
        self._clock = clock

    def delay(self) -> float:
        """Seconds until one more event fits the budget (0: now)."""
        return self._bucket.delay(self._clock())

    def reserve(self) -> float:
        """Book the next free slot; returns the seconds until it."""
        now = self._clock()
        wait = self._bucket.delay(now)
        self._bucket.take(now + wait)
        return wait

    async def wait(self) -> None:
        """Book a slot and sleep until it (background sends)."""
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)

    async def inline(self, max_wait: float = MAX_INLINE_WAIT_S) -> None:
        """For an outbox row: wait if the slot is near, else raise `RateLimited` so the
        outbox pauses this room and sends the newest content when the budget allows."""
        wait = self.delay()
        if wait > max_wait:
            raise RateLimited(wait, f"homeserver message budget: next slot in {wait:.1f} s")
        await self.wait()

    def pause(self, retry_after: float) -> None:
        """The homeserver said 429: nothing more until `retry_after` from now, then
        one event at a time until the bucket has refilled."""
        self._bucket.drain(self._clock() + max(0.0, retry_after))
