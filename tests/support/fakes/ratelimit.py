"""The rate limiter every fake platform shares: a token bucket (a rate with a burst) and a
sliding window (at most N in any span of seconds), on a clock the caller passes in.

Both answer "how long until one more call fits" (`wait`) separately from consuming it
(`take`), so a fake can check every budget a call touches first and consume them only
when the call succeeds — a refused or invalid call costs nothing, as on the real
platforms."""

from __future__ import annotations

from collections import deque


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; starts full."""

    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, float(burst), now

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0.0: one is)."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1


class SlidingWindow:
    """At most `limit` calls in any `span` seconds."""

    __slots__ = ("limit", "span", "hits")

    def __init__(self, limit: int, span: float = 60.0) -> None:
        self.limit, self.span, self.hits = limit, span, deque[float]()

    def wait(self, now: float) -> float:
        """Seconds until the oldest call leaves the window (0.0: there is room)."""
        while self.hits and self.hits[0] <= now - self.span:
            self.hits.popleft()
        return 0.0 if len(self.hits) < self.limit else self.hits[0] + self.span - now

    def take(self, now: float) -> None:
        self.hits.append(now)


__all__ = ["SlidingWindow", "TokenBucket"]
