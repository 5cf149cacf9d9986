"""Slack's rate limits as the fake enforces them (`RateLimits`: a per-channel bucket for new
messages, per-workspace minutes for updates and streams) on the shared `..ratelimit`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..ratelimit import SlidingWindow, TokenBucket
from .errors import ApiError


@dataclass
class RateLimits:
    enabled: bool = True
    post_rate: float = 1.0  # new messages per second per channel
    post_burst: int = 3
    window_s: float = 60.0  # the "minute" of the per-minute limits (tests may shorten it)
    per_minute: dict[str, int] = field(
        default_factory=lambda: {
            "chat.update": 50,
            "chat.delete": 50,
            "chat.appendStream": 100,
            "chat.startStream": 20,
            "chat.stopStream": 20,
        }
    )


class LimitsMixin:
    """The rate limits of a `FakeSlack`: tuning them and checking a call against them."""

    def set_rate_limits(self, **changes: Any) -> RateLimits:
        for key, value in changes.items():
            setattr(self.rate_limits, key, value)
        self._buckets.clear()
        self._windows.clear()
        return self.rate_limits

    def _check_rate(self, method: str, params: dict[str, Any]) -> Callable[[], None]:
        rl = self.rate_limits
        now = time.monotonic()
        if not rl.enabled:
            return lambda: None
        if method == "chat.postMessage" or (
            method == "files.completeUploadExternal" and params.get("channel_id")
        ):
            channel = str(params.get("channel") or params.get("channel_id"))
            bucket = self._buckets.setdefault(channel, TokenBucket(rl.post_rate, rl.post_burst, now))
            wait = bucket.wait(now)
            if wait > 0:
                raise ApiError("ratelimited", status=429, retry_after=wait)
            return bucket.take
        if method in rl.per_minute:
            window = self._windows.setdefault(method, SlidingWindow(rl.per_minute[method], rl.window_s))
            wait = window.wait(now)
            if wait > 0:
                raise ApiError("ratelimited", status=429, retry_after=wait)
            return lambda: window.take(time.monotonic())
        return lambda: None
