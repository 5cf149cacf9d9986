"""Starting a chat adapter when the network or the platform is not there yet.

A daemon started by systemd at boot may come up before the network, and a homeserver
or the Bot API may be down for a while: a connection that fails is retried with a
backoff (1 s doubling to 60 s, with jitter so that hosts do not retry in step), one log
line per attempt, until it works or the daemon is stopped (the caller cancels).  A
failure that waiting cannot cure — a rejected token, a missing setting — ends the start
with `StartupError`, whose message is the one line the person needs.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from adapters.base import ChatAdapter, InboundSink, PermanentError, RateLimited, TransientError

log = logging.getLogger(__name__)

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 60.0


class StartupError(Exception):
    """The daemon cannot start; `str()` is one line saying why and what to do."""


def _retryable(error: BaseException) -> bool:
    return isinstance(error, TransientError | RateLimited | OSError | TimeoutError)


async def start_adapter(
    adapter: ChatAdapter,
    sink: InboundSink,
    *,
    first_delay: float = FIRST_DELAY_S,
    max_delay: float = MAX_DELAY_S,
    jitter: Callable[[], float] = random.random,
) -> None:
    """Start `adapter`, retrying while it cannot reach its platform."""
    delay = first_delay
    attempt = 1
    while True:
        try:
            await adapter.start(sink)
        except PermanentError as e:
            raise StartupError(f"{adapter.platform}: {e}") from None
        except Exception as e:
            if not _retryable(e):
                log.debug("starting %s failed", adapter.platform, exc_info=True)
                raise StartupError(f"{adapter.platform}: could not start: {e}") from None
            wait = max(delay, float(e.retry_after) if isinstance(e, RateLimited) else 0.0)
            wait *= 1 + 0.2 * jitter()
            log.warning(
                "%s: cannot reach the platform (%s); attempt %d failed, trying again in %.0f s",
                adapter.platform,
                str(e) or type(e).__name__,
                attempt,
                wait,
            )
            await asyncio.sleep(wait)
            delay = min(delay * 2, max_delay)
            attempt += 1
        else:
            if attempt > 1:
                log.info("%s: connected after %d attempts", adapter.platform, attempt)
            return
