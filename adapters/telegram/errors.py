"""Telegram failures → the outbox's error vocabulary, plus the plain-text retry.

python-telegram-bot raises `RetryAfter`, `TimedOut`, `NetworkError`, `BadRequest`,
`Forbidden`, `InvalidToken`, `ChatMigrated`, `Conflict` (`translate` below says
which of them, and which `BadRequest` descriptions, become which of ours).  The outbox only knows `RateLimited` (honour
`retry_after`), `TransientError` (back off and retry), `NotModified` (already
delivered), `ThreadGone` (the topic is unusable: fall back to a reply chain) and
`PermanentError` (give up on this row).  `TelegramErrors.call_html` also handles
Telegram refusing our HTML ("can't parse entities"): it retries once as plain text,
because a message that arrives unformatted beats one that never arrives.  Messages
are scrubbed of the bot token before they go into an exception or a log line.
"""

from __future__ import annotations

import datetime as dtm
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from adapters.base import (
    AdapterError,
    NotModified,
    PermanentError,
    RateLimited,
    ThreadGone,
    TransientError,
)
from adapters.telegram.render import visible_text

log = logging.getLogger(__name__)
T = TypeVar("T")

# BadRequest descriptions (lower-cased substrings) that mean "this topic can't be used".
THREAD_GONE = ("message thread not found", "topic_closed", "topic_deleted", "topic_id_invalid")
PARSE_ERROR = "can't parse entities"


def retry_after_seconds(e: RetryAfter) -> float:
    # PTB 22 warns on `retry_after` unless PTB_TIMEDELTA is set; the value is the same.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value: Any = e.retry_after
    if isinstance(value, dtm.timedelta):
        return max(value.total_seconds(), 0.0)
    return max(float(value), 0.0)


def html_to_plain(markup: str) -> str:
    """What the person would have seen, without formatting."""
    return visible_text(markup).strip() or "…"


class TelegramErrors:
    """Error translation bound to one bot token (so it can be redacted)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def redact(self, text: str) -> str:
        if self._token and self._token in text:
            text = text.replace(self._token, "[token]")
        return text

    def translate(self, e: TelegramError) -> AdapterError:
        text = self.redact(e.message)
        low = text.lower()
        if isinstance(e, RetryAfter):
            return RateLimited(retry_after_seconds(e), text)
        if isinstance(e, InvalidToken):
            return PermanentError(
                "Telegram refused the bot token (check [telegram] token and base_url): " + text
            )
        if isinstance(e, BadRequest):  # a NetworkError subclass: test it first
            if "message is not modified" in low:
                return NotModified(text)
            if any(s in low for s in THREAD_GONE):
                return ThreadGone(text)
            return PermanentError(text)
        if isinstance(e, ChatMigrated):
            return PermanentError(f"the group became supergroup {e.new_chat_id}; update chat_id")
        if isinstance(e, NetworkError):  # includes TimedOut and 5xx answers
            # PTB names transport failures "httpx.<Error>: ..." and raises TimedOut for
            # timeouts: then the call may have arrived.  Otherwise Telegram answered.
            unknown = isinstance(e, TimedOut) or text.startswith("httpx.")
            return TransientError(text, answered=not unknown)
        if isinstance(e, Forbidden):
            return PermanentError(text)
        return PermanentError(text)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one Bot API call, translating its failure."""
        try:
            return await fn()
        except TelegramError as e:
            raise self.translate(e) from e

    async def call_html(
        self, method: Callable[..., Awaitable[T]], kwargs: dict[str, Any], text_key: str
    ) -> T:
        """Call `method(**kwargs)`; if Telegram can't parse our HTML, send plain text once."""
        try:
            return await self.call(lambda: method(**kwargs))
        except PermanentError as e:
            if PARSE_ERROR not in str(e).lower() or not kwargs.get(text_key):
                raise
            log.warning("Telegram refused our HTML (%s); sending it as plain text", e)
        plain = {**kwargs, text_key: html_to_plain(kwargs[text_key]), "parse_mode": None}
        return await self.call(lambda: method(**plain))
