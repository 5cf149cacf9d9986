"""Slack's sizes and rates, in one place.

Sizes come from the Block Kit and Web API references (docs.slack.dev): a message has
at most 50 blocks; a section's text is 1-3000 characters; a context block has at
most 10 elements of up to 3000 characters; an actions block at most 25 elements; a
button's text 1-75 characters, its `value` up to 2000 and its `action_id` up to 255;
a message's `text` over 40,000 characters is refused with `msg_too_long`, and Slack
refuses a message whose blocks carry more than about 12-13k characters of text in
total with `msg_blocks_too_long` (we stay under 12,000, counting button labels too).
Streaming (`chat.startStream` / `appendStream` / `stopStream`) takes up to 12,000
characters of markdown per call; a stream lives about five minutes (later appends are
refused with `message_not_in_streaming_state`), so we roll over to a new stream well
before that, or once a streamed message grows long.

Rates: `chat.postMessage` is limited to about one message per second per channel,
with short bursts tolerated; `chat.update` and `chat.delete` are Tier 3 (about 50 per
minute per workspace), `chat.appendStream` Tier 4 (about 100 per minute),
`chat.startStream` / `chat.stopStream` Tier 2 (about 20 per minute).  The bridge's
outbox paces each channel with `CAPABILITIES` (edits and deletes count against the
same per-channel budget as posts); the workspace-wide method tiers are guarded inside
the adapter (`MethodGuard`), which waits a moment or answers `RateLimited` itself
rather than let Slack answer 429 (a stream preview it simply skips: the next one
carries its text).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from adapters.base import Capabilities
from adapters.ratelimit import TokenBucket

MAX_BLOCKS: Final = 50
MAX_SECTION_TEXT: Final = 3000
MAX_CONTEXT_TEXT: Final = 3000
MAX_ACTIONS_ELEMENTS: Final = 25
MAX_BUTTON_TEXT: Final = 75
MAX_BUTTON_VALUE: Final = 2000
MAX_BLOCK_TEXT: Final = 12_000  # all block text of one message, button labels included
MAX_TEXT: Final = 40_000  # the `text` field
MAX_FALLBACK_TEXT: Final = 3000  # what we put in `text` next to blocks (notifications)
MAX_STREAM_CALL: Final = 12_000  # markdown characters per stream call
STREAM_ROLLOVER_CHARS: Final = 10_000  # start a new streamed message past this
STREAM_ROLLOVER_S: Final = 240.0  # ... or this old (Slack ends a stream after ~5 min)
MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024  # inbound images passed to Claude
MAX_FILE_BYTES: Final = 20 * 1024 * 1024  # other inbound files

PER_CHAT_RATE: Final = 1.0  # chat.postMessage: ~1 per second per channel
PER_CHAT_BURST: Final = 3
GLOBAL_RATE: Final = 4.0  # all our calls through the outbox, across channels
# Stream previews per channel, as the outbox hands them to the adapter.  This is not
# what keeps Slack's limits: each turn's previews are debounced by the bridge (one per
# 0.8 s), the workspace tiers of the stream methods are kept by `MethodGuard` (a
# preview over one is skipped, its text goes with the next), and preview edits of a
# status message (no native streaming) are paced at 1/s per channel in `turns`.  So it
# only has to leave room for a new turn's first text right after the last turn's last
# preview: at 1/s that text waited up to ~1.2 s.
DRAFT_RATE: Final = 10.0

CAPABILITIES: Final = Capabilities(
    native_stream=True,
    stream_needs_status=True,
    per_chat_rate=PER_CHAT_RATE,
    per_chat_burst=PER_CHAT_BURST,
    group_per_minute=0,
    global_rate=GLOBAL_RATE,
    draft_rate=DRAFT_RATE,
)

# Workspace-wide guards, (rate per second, burst): rate·60 + burst stays under the
# tier's per-minute figure, so no 60-second window ever holds more than Slack allows.
METHOD_LIMITS: Final[dict[str, tuple[float, int]]] = {
    "chat.update": (0.7, 6),  # Tier 3, 50/min → at most 48
    "chat.delete": (0.7, 6),
    "chat.appendStream": (1.4, 10),  # Tier 4, 100/min → at most 94
    "chat.startStream": (0.25, 4),  # Tier 2, 20/min → at most 19
    "chat.stopStream": (0.25, 4),
}


class MethodGuard:
    """Token buckets per Web API method, for the workspace-wide Slack tiers.

    `wait(method)` says how long until a call fits (0: now) without taking; `take`
    records one.  Methods without a limit always fit.  (Calls are counted when taken:
    no latency margin, the workspace tiers are far from our pace.)"""

    def __init__(
        self,
        limits: dict[str, tuple[float, int]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = dict(METHOD_LIMITS if limits is None else limits)
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def scale(self, factor: float) -> None:
        """Multiply every rate (a workspace with raised limits; tests with a fake
        whose limits are scaled the same way)."""
        self._limits = {m: (rate * factor, burst) for m, (rate, burst) in self._limits.items()}
        for method, bucket in self._buckets.items():  # calls already counted stay counted
            bucket.interval = 1.0 / self._limits[method][0]

    def _bucket(self, method: str) -> TokenBucket | None:
        bucket = self._buckets.get(method)
        if bucket is None and method in self._limits:
            rate, burst = self._limits[method]
            bucket = self._buckets[method] = TokenBucket(rate, burst)
        return bucket

    def wait(self, method: str) -> float:
        bucket = self._bucket(method)
        return 0.0 if bucket is None else bucket.delay(self._clock())

    def take(self, method: str) -> None:
        bucket = self._bucket(method)
        if bucket is not None:
            bucket.take(self._clock())
