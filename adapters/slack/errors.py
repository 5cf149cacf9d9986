"""Slack failures → the outbox's error vocabulary, with the tokens scrubbed.

slack_sdk raises `SlackApiError` for every answer that is not ``ok`` (its `response`
carries the HTTP status, the ``error`` string and the headers, ``Retry-After`` on a
429), `SlackRequestError` for failed uploads, and lets aiohttp's connection errors
and timeouts through.  The outbox knows `RateLimited` (honour `retry_after`),
`TransientError` (back off and retry), `NotModified`, `ThreadGone` (the thread can't
take messages: the bridge moves the session to a new one) and `PermanentError`
(give up on this row).  Every message is scrubbed of the bot token, the app token
and the signing secret before it goes into an exception or a log line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError

from adapters.base import AdapterError, PermanentError, RateLimited, ThreadGone, TransientError

T = TypeVar("T")

TRANSIENT: Final = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"}
)
THREAD_GONE: Final = frozenset({"thread_not_found", "channel_not_found", "is_archived"})
AUTH: Final = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
HINTS: Final = {
    "not_in_channel": "invite the app to the channel (/invite @app)",
    "missing_scope": "add the scope to the app (adapters/slack/manifest.yaml) and reinstall it",
    "channel_not_found": "check [slack] channel and that the app is in it",
}


def error_code(e: SlackApiError) -> str:
    response: Any = e.response
    try:
        data = response.data if hasattr(response, "data") else response
        return str(data.get("error") or "") if isinstance(data, dict) else ""
    except Exception:  # noqa: BLE001 - a malformed answer has no code
        return ""


def status_of(e: SlackApiError) -> int:
    return int(getattr(e.response, "status_code", 200) or 200)


def retry_after_of(e: SlackApiError) -> float:
    headers = getattr(e.response, "headers", None) or {}
    try:
        return max(0.0, float(headers.get("Retry-After") or headers.get("retry-after") or 1))
    except (TypeError, ValueError):
        return 1.0


class SlackErrors:
    """Error translation bound to the secrets it must never repeat."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = [s for s in secrets if s and len(s) >= 6]

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text

    def translate(self, e: BaseException, *, in_thread: bool = False) -> AdapterError:
        if isinstance(e, AdapterError):
            return e
        if isinstance(e, SlackApiError):
            code, status = error_code(e), status_of(e)
            text = self.redact(f"{code or 'HTTP ' + str(status)}")
            if status == 429 or code == "ratelimited":
                return RateLimited(retry_after_of(e), text)
            if status >= 500 or code in TRANSIENT:
                return TransientError(text)
            if code in AUTH:
                return PermanentError(f"Slack refused the token ({code}): check [slack] bot_token")
            if in_thread and code in THREAD_GONE:
                return ThreadGone(text)
            hint = HINTS.get(code)
            return PermanentError(f"{text}: {hint}" if hint else text)
        if isinstance(e, TimeoutError | aiohttp.ClientError | OSError):
            return TransientError(self.redact(f"{type(e).__name__}: {e}"))
        if isinstance(e, SlackClientError):  # a failed upload, a malformed answer
            return TransientError(self.redact(f"{type(e).__name__}: {str(e)[:300]}"))
        return PermanentError(self.redact(f"{type(e).__name__}: {str(e)[:300]}"))

    async def call(self, fn: Callable[[], Awaitable[T]], *, in_thread: bool = False) -> T:
        """Run one Web API call, translating its failure."""
        try:
            return await fn()
        except (TimeoutError, SlackClientError, aiohttp.ClientError, OSError) as e:
            raise self.translate(e, in_thread=in_thread) from None
