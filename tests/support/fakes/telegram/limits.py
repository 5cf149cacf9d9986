"""Telegram's limits as the fake enforces them: sizes and lengths, the methods that
count against the flood limits, the limits themselves (`RateLimits`) and the check
that answers 429 when a budget is spent (the buckets are the shared `..ratelimit`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..ratelimit import SlidingWindow, TokenBucket
from .errors import ApiError
from .wire import maybe_int

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
CALLBACK_DATA_LIMIT = 64
TOPIC_NAME_LIMIT = 128
UPLOAD_LIMIT = 50 * 1024 * 1024
DOWNLOAD_LIMIT = 20 * 1024 * 1024
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "query is too old and response timeout expired or query id is invalid"
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)


@dataclass
class RateLimits:
    """Flood limits.  Telegram publishes no exact numbers; these mimic its behaviour."""

    enabled: bool = True
    chat_rate: float = 1.0  # tokens per second, per chat
    chat_burst: int = 3
    group_per_minute: int = 20  # per group/supergroup/channel, sliding 60 s window
    global_rate: float = 30.0
    global_burst: int = 30
    draft_rate: float = 5.0  # sendMessageDraft, per chat
    draft_burst: int = 10
    min_retry_after: int = 1


_RATE_LIMITED = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "editMessageText",
        "editMessageReplyMarkup",
        "editMessageCaption",
    }
)


class LimitsMixin:
    """The flood limits of a `FakeTelegram`: tuning them and checking a call against them."""

    # ---------------------------------------------------------------- configuration
    def set_rate_limits(self, **changes: Any) -> RateLimits:
        """Change RateLimits fields (e.g. ``enabled=False``, ``chat_burst=10``) and reset
        all buckets."""
        for k, v in changes.items():
            if not hasattr(self.rate_limits, k):
                raise AttributeError(k)
            setattr(self.rate_limits, k, v)
        self.reset_rate_limits()
        return self.rate_limits

    def reset_rate_limits(self) -> None:
        """Forget all consumed budget (buckets refill, windows empty)."""
        self._chat_buckets.clear()
        self._draft_buckets.clear()
        self._group_windows.clear()
        self._global_bucket = None

    # ---------------------------------------------------------------- rate limiting
    def _check_rate(self, method: str, params: dict[str, Any]) -> Callable[[], None]:
        """429 if any budget is exhausted; else a callable that consumes the budget
        (called only when the call succeeds: refused and invalid calls cost nothing)."""
        lim = self.rate_limits
        if not lim.enabled or (method not in _RATE_LIMITED and method != "sendMessageDraft"):
            return lambda: None
        now = self.clock()
        chat_id = maybe_int(params.get("chat_id"))
        chat = self._chats.get(chat_id) if chat_id is not None else None
        waits: list[float] = []
        takes: list[Callable[[], None]] = []
        if method == "sendMessageDraft":
            if chat is not None:
                b = self._draft_buckets.get(chat.id)
                if b is None:
                    b = self._draft_buckets[chat.id] = TokenBucket(lim.draft_rate, lim.draft_burst, now)
                waits.append(b.wait(now))
                takes.append(b.take)
        else:
            if self._global_bucket is None:
                self._global_bucket = TokenBucket(lim.global_rate, lim.global_burst, now)
            gb = self._global_bucket
            waits.append(gb.wait(now))
            takes.append(gb.take)
            if chat is not None:
                b = self._chat_buckets.get(chat.id)
                if b is None:
                    b = self._chat_buckets[chat.id] = TokenBucket(lim.chat_rate, lim.chat_burst, now)
                waits.append(b.wait(now))
                takes.append(b.take)
                if chat.type != "private":
                    w = self._group_windows.get(chat.id)
                    if w is None:
                        w = self._group_windows[chat.id] = SlidingWindow(lim.group_per_minute)
                    waits.append(w.wait(now))
                    takes.append(lambda w=w: w.take(now))
        wait = max(waits, default=0.0)
        if wait > 0:
            n = max(lim.min_retry_after, math.ceil(wait))
            raise ApiError(429, f"Too Many Requests: retry after {n}", {"retry_after": n})

        def commit() -> None:
            for take in takes:
                take()

        return commit
