"""The token bucket every rate budget is built from: the outbox's per-chat and
per-platform budgets (`bridge/outbox/ratelimit.py`), the Matrix homeserver's
per-user budget (`adapters/matrix/pacing.py`) and Slack's per-method workspace tiers
(`adapters/slack/limits.py`).  It lives in adapters/ so that both sides of the seam
can import it.
"""

from __future__ import annotations


class TokenBucket:
    """A token bucket as GCRA ("theoretical arrival time"): `rate` calls/s, bursts
    of up to `burst` calls.

    `margin` covers the gap between taking a token here and the platform counting
    the call (request latency, and its jitter): the recorded arrival is pushed
    `margin` later.  While the bucket is drained that costs nothing; after an idle
    spell it costs margin·rate tokens of the burst.  In exchange our view is never
    more generous than a platform counting the same calls with the same rate and
    burst, as long as each call reaches it within `margin` of our `take()`."""

    __slots__ = ("interval", "burst", "margin", "_tat")

    def __init__(self, rate: float, burst: int = 1, *, margin: float = 0.0) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.interval = 1.0 / rate
        self.burst = burst
        # Capped at half an interval: a margin costs margin·rate tokens of burst, and a
        # very fast bucket (an unlimited platform) must keep its burst.
        self.margin = min(margin, self.interval / 2)
        self._tat = float("-inf")  # theoretical arrival time of the next call

    def delay(self, now: float) -> float:
        return max(0.0, self._tat - (self.burst - 1) * self.interval - now)

    def take(self, now: float) -> None:
        self._tat = max(self._tat, now + self.margin) + self.interval

    def settle(self, done: float) -> None:
        """A call taken here returned at `done`, so the platform may have counted it
        as late as that: the bucket is at least as full as one call at `done` makes
        it.  (Not cumulative: calls in flight together are each settled the same
        way, and their own intervals are already in the recorded arrival time.)"""
        self._tat = max(self._tat, done + self.interval)

    def drain(self, until: float) -> None:
        """Leave exactly one call available at `until`, then refill at the rate
        (after a 429 we no longer know the platform's view, so restart gently)."""
        self._tat = max(self._tat, until + (self.burst - 1) * self.interval)

    def shift(self, by: float) -> None:
        self._tat += by
