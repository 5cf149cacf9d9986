"""Matrix failures → the outbox's error vocabulary.

matrix-nio answers a failed request with an `ErrorResponse` (Matrix `errcode`,
`error`, `retry_after_ms`, and the HTTP status on `transport_response`) and raises for
transport failures (`aiohttp.ClientError`, timeouts, once `max_timeouts` is spent) and
local problems (`LocalProtocolError`, `EncryptionError`, `SendRetryError`).  The outbox
knows `RateLimited` (honour `retry_after`), `TransientError` (back off and retry) and
`PermanentError` (give up on this row).  So: `M_LIMIT_EXCEEDED` / HTTP 429 →
`RateLimited(retry_after_ms / 1000)`, HTTP 5xx, timeouts and connection errors →
`TransientError`, everything else → `PermanentError`.  Messages are scrubbed of the
access token and password before they go into an exception or a log line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import aiohttp
from nio import ErrorResponse
from nio.exceptions import (
    EncryptionError,
    GroupEncryptionError,
    LocalProtocolError,
    OlmTrustError,
    ProtocolError,
)

from adapters.base import AdapterError, PermanentError, RateLimited, TransientError

T = TypeVar("T")
DEFAULT_RETRY_S = 5.0  # when a 429 names no retry_after_ms


def http_status(resp: Any) -> int | None:
    transport = getattr(resp, "transport_response", None)
    status = getattr(transport, "status", None)
    return status if isinstance(status, int) else None


class MatrixErrors:
    """Error translation bound to the secrets it must never repeat."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = [s for s in secrets if s and len(s) >= 6]

    def add_secret(self, secret: str) -> None:
        if secret and len(secret) >= 6 and secret not in self._secrets:
            self._secrets.append(secret)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def translate(self, resp: ErrorResponse) -> AdapterError:
        status = http_status(resp)
        text = self.redact(f"{resp.status_code or status or ''} {resp.message}".strip())
        if resp.status_code == "M_LIMIT_EXCEEDED" or status == 429:
            retry = (resp.retry_after_ms or 0) / 1000 or DEFAULT_RETRY_S
            return RateLimited(retry, text)
        if status is None or status >= 500:
            return TransientError(text)
        return PermanentError(text)

    def check(self, resp: T) -> T:
        """Raise the translated error if `resp` is an `ErrorResponse`."""
        if isinstance(resp, ErrorResponse):
            raise self.translate(resp)
        return resp

    def exception(self, e: BaseException) -> AdapterError:
        if isinstance(e, AdapterError):
            return e
        text = self.redact(f"{type(e).__name__}: {e}")[:300]
        if isinstance(e, aiohttp.ClientError | asyncio.TimeoutError | TimeoutError | OSError):
            return TransientError(text)
        if isinstance(
            e, LocalProtocolError | ProtocolError | EncryptionError | GroupEncryptionError
        ):
            # e.g. the room's members or keys are not synced yet, a key share raced
            return TransientError(text)
        if isinstance(e, OlmTrustError):
            return TransientError(text)
        return PermanentError(text)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one nio call; its error response or exception becomes an `AdapterError`."""
        try:
            resp = await fn()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            raise self.exception(e) from e
        return self.check(resp)
