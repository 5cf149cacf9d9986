"""Matrix's sizes and rates, in one place.

Sizes come from the Matrix spec (client-server API, "Size limits"): a whole event,
as the homeserver stores it, must fit in 65,536 bytes of canonical JSON.  In an
encrypted room the content we write is encrypted and base64-encoded (×4/3) and then
wrapped in an `m.room.encrypted` envelope with keys, ids and signatures, and our
content carries both a plain `body` and an HTML `formatted_body`; an edit carries the
new content twice (`m.new_content` plus the fallback).  So we budget the JSON of one
content dict at `MAX_CONTENT_BYTES` (half of that for one edit's new content), which
keeps every event well under the limit however it is wrapped.

Rates: Synapse's default `rc_message` is 0.2 events/s with a burst of 10 *per user*,
across all rooms, and every event we send counts — messages, edits, reactions,
redactions, even joins and leaves (Synapse `config/ratelimiting.py`,
`handlers/message.py`; over the limit it answers 429
`M_LIMIT_EXCEEDED` with `retry_after_ms`).  A homeserver admin can raise or lift it
for the bot (admin API `override_ratelimit`); `MatrixAdapter(rate=...)` takes the
numbers that apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from adapters.base import Capabilities

MAX_CONTENT_BYTES: Final = 32_000  # our budget for one message's content JSON (UTF-8)
MAX_EDIT_CONTENT_BYTES: Final = MAX_CONTENT_BYTES // 2  # an edit carries it twice
MAX_TEXT: Final = 12_000  # characters a message aims for
MAX_UPLOAD_BYTES: Final = 50 * 1024 * 1024  # Synapse's default max_upload_size

SYNAPSE_RATE: Final = 0.2  # rc_message per_second, Synapse's default
SYNAPSE_BURST: Final = 10  # rc_message burst_count, Synapse's default


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The homeserver's per-user message budget: `per_second` with a `burst`."""

    per_second: float = SYNAPSE_RATE
    burst: int = SYNAPSE_BURST


def capabilities(rate: RateLimit) -> Capabilities:
    """What the outbox paces by.  The per-chat bucket is the homeserver's per-user
    budget (right for the usual single control room).  The bridge's global bucket
    derives its burst as ``int(global_rate)``, so it cannot express 0.2/s with a burst
    of 10; it is left wide and the adapter's own `Pacer` holds the per-user budget
    across rooms (and counts the reactions and joins the outbox does not see)."""
    return Capabilities(
        native_stream=False,
        delete_vanishes=False,
        per_chat_rate=rate.per_second,
        per_chat_burst=max(1, rate.burst),
        group_per_minute=0,
        global_rate=max(30.0, rate.per_second),
        draft_rate=1.0,
    )
