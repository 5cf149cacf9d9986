"""The rate budget: how many API calls the bridge may make, per chat and overall.

One `RateBudget` per platform holds, from that adapter's `Capabilities`:

- per chat, a token bucket of `per_chat_rate` calls/s with a burst of
  `per_chat_burst` for sends, edits and deletes (Telegram counts edits too);
- per chat, a separate bucket of `draft_rate` calls/s for native stream drafts;
- per group chat (`is_group(chat_id)`), a sliding window of `group_per_minute`
  calls in any 60 s;
- per platform, a token bucket of `global_rate` calls/s.

A call is recorded when it is taken, pushed `margin` later to cover its trip to the
platform; when the call returns, `settle()` corrects the record if the call was
later than that (an event loop busy with ten streaming sessions can hold a request
for longer than the margin): the platform counted it before it answered, so the
answer's time is a bound that never makes our view more generous than the
platform's.  Without it, a group window (20 per minute) filled by late calls
opens a moment too early and the 21st call draws a 429.

A 429's `retry_after` pauses one chat's whole budget until then.  The outbox asks
`delay()` (how long until a call is allowed) without blocking, so that it can pick
*what* to send at the moment capacity appears — the newest coalesced stream content,
or a permission prompt that arrived meanwhile — and then `take()`s atomically from
every budget involved.

Why not aiolimiter: its `AsyncLimiter` only offers a blocking `acquire()` on a
single limiter, reads the event loop's clock (not injectable), and has no way to
pause for a `retry_after`.  Acquiring three limiters in turn would hold capacity in
one while waiting for another, and a waiting `acquire()` commits the caller before
it knows which row it will send.  A GCRA bucket (`adapters.ratelimit.TokenBucket`,
shared with the adapters' own pacing) is a few lines, exact, and needs nothing but a
clock.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from adapters.base import Capabilities
from adapters.ratelimit import TokenBucket

Kind = Literal["message", "draft"]
Clock = Callable[[], float]


class SlidingWindow:
    """At most `limit` calls in any `period` seconds (Telegram: 20 per minute per group)."""

    __slots__ = ("limit", "period", "margin", "_times")

    def __init__(self, limit: int, period: float = 60.0, *, margin: float = 0.0) -> None:
        if limit < 1 or period <= 0:
            raise ValueError("limit must be >= 1 and period > 0")
        self.limit = limit
        self.period = period
        self.margin = margin
        self._times: deque[float] = deque()

    def delay(self, now: float) -> float:
        while self._times and self._times[0] <= now - self.period:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.period - now

    def take(self, now: float) -> None:
        self._times.append(now + self.margin)

    def settle(self, recorded: float, actual: float) -> None:
        """The call recorded at `recorded` (its take time + margin) counted at
        `actual`: move it, so the window frees its slot no earlier than the
        platform's does."""
        if actual <= recorded:
            return
        try:
            self._times.remove(recorded)
        except ValueError:
            return  # already out of the window
        self._times.append(actual)
        if len(self._times) > 1 and self._times[-2] > actual:
            self._times = deque(sorted(self._times))

    def shift(self, by: float) -> None:
        self._times = deque(t + by for t in self._times)


@dataclass(slots=True)
class _ChatBudget:
    messages: TokenBucket
    drafts: TokenBucket
    group: SlidingWindow | None
    paused_until: float = field(default=float("-inf"))


class RateBudget:
    """All rate budgets of one platform.  Not thread-safe; one event loop owns it."""

    def __init__(
        self,
        caps: Capabilities,
        *,
        is_group: Callable[[str], bool] = lambda _chat_id: False,
        clock: Clock = time.monotonic,
        margin: float = 0.2,
    ) -> None:
        self.caps = caps
        self._is_group = is_group
        self._clock = clock
        self._margin = margin
        self._global = TokenBucket(caps.global_rate, max(1, int(caps.global_rate)), margin=margin)
        self._chats: dict[str, _ChatBudget] = {}
        self._last = clock()

    def _now(self) -> float:
        """The clock, with backward jumps (a wall clock set back) absorbed by moving
        every recorded time back too, so the budget neither stalls nor bursts."""
        now = self._clock()
        if now < self._last:
            by = now - self._last
            self._global.shift(by)
            for b in self._chats.values():
                b.messages.shift(by)
                b.drafts.shift(by)
                b.paused_until += by
                if b.group is not None:
                    b.group.shift(by)
        self._last = now
        return now

    def _chat(self, chat_id: str) -> _ChatBudget:
        budget = self._chats.get(chat_id)
        if budget is None:
            c, m = self.caps, self._margin
            group = (
                SlidingWindow(c.group_per_minute, 60.0, margin=m)
                if c.group_per_minute > 0 and self._is_group(chat_id)
                else None
            )
            budget = _ChatBudget(
                messages=TokenBucket(c.per_chat_rate, max(1, c.per_chat_burst), margin=m),
                drafts=TokenBucket(c.draft_rate, 1, margin=m),
                group=group,
            )
            self._chats[chat_id] = budget
        return budget

    def delay(self, chat_id: str, kind: Kind = "message") -> float:
        """Seconds until one call of `kind` in this chat fits every budget (0: now)."""
        now = self._now()
        buckets, group = self._budgets(chat_id, kind)
        waits = [self._chat(chat_id).paused_until - now, *(x.delay(now) for x in buckets)]
        if group is not None:
            waits.append(group.delay(now))
        return max(0.0, *waits)

    def take(self, chat_id: str, kind: Kind = "message") -> float:
        """Record one call now; call only when `delay()` is 0 (it does not check).
        Returns the time recorded, for `settle()`."""
        now = self._now()
        self._take_at(chat_id, kind, now)
        return now

    def settle(self, chat_id: str, kind: Kind, taken_at: float) -> None:
        """The call taken (or booked) at `taken_at` has returned — answered, failed
        or timed out: it reached the platform no later than now.  If that is later
        than `taken_at + margin`, every budget it was counted in is corrected."""
        now = self._now()
        buckets, group = self._budgets(chat_id, kind)
        for bucket in buckets:
            bucket.settle(now)
        if group is not None:
            group.settle(taken_at + group.margin, now)

    def book(self, chat_id: str, kind: Kind = "message") -> float:
        """Book the next free slot for one call; returns its clock time (for
        `settle()`).  The booking counts at once, so the outbox's workers cannot take
        the slot first."""
        at = self._now() + self.delay(chat_id, kind)
        self._take_at(chat_id, kind, at)
        return at

    async def acquire(self, chat_id: str, kind: Kind = "message", calls: int = 1) -> list[float]:
        """Book `calls` slots and wait for the last (for calls made outside the
        outbox, e.g. `open_thread` creating a topic and posting its header).
        Returns the booked times, for `settle()` once the calls have returned."""
        slots = [self.book(chat_id, kind) for _ in range(max(1, calls))]
        wait = slots[-1] - self._now()
        if wait > 0:
            await asyncio.sleep(wait)
        return slots

    def _budgets(self, chat_id: str, kind: Kind) -> tuple[list[TokenBucket], SlidingWindow | None]:
        """Every budget one call of `kind` in this chat counts in: buckets, group window."""
        b = self._chat(chat_id)
        if kind == "draft":
            return [self._global, b.drafts], None
        return [self._global, b.messages], b.group

    def _take_at(self, chat_id: str, kind: Kind, at: float) -> None:
        buckets, group = self._budgets(chat_id, kind)
        for bucket in buckets:
            bucket.take(at)
        if group is not None:
            group.take(at)

    def pause(self, chat_id: str, retry_after: float) -> float:
        """A 429: nothing goes to this chat for `retry_after` seconds.  Returns the
        clock time the pause ends."""
        until = self._now() + max(0.0, retry_after)
        b = self._chat(chat_id)
        b.paused_until = max(b.paused_until, until)
        b.messages.drain(until)
        b.drafts.drain(until)
        return b.paused_until
