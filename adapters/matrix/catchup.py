"""Which events of a sync response are new to the bot, and how late they are.

The receiver takes every event after its saved sync position (`inbox.py`), with
two exceptions decided here: the events of a room that come before the bot's own
join in that room's timeline (history from before it was there: not meant for it,
and in an encrypted room not decryptable by it), and — in `receiver.py` — the whole
first sync of a new device.  A timeline the homeserver cut short (`limited`: more
events since the position than the filter's limit) is completed from `/messages`,
paging back from the timeline's start to the position, so a long downtime leaves no
gap.  A message handled long after it was sent (the daemon was down) gets a notice
saying so, in its thread, before its answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from nio import AsyncClient, ErrorResponse, MessageDirection

log = logging.getLogger(__name__)

LATE_S = 60.0  # a message older than this when handled gets the "it waited" notice
GAP_PAGE = 100
GAP_PAGES = 20  # at most this many events are recovered per room and sync: 2,000


def _is_own_join(event: Any, user_id: str) -> bool:
    source: dict[str, Any] = getattr(event, "source", {}) or {}
    if source.get("type") != "m.room.member" or source.get("state_key") != user_id:
        return False
    content = source.get("content")
    if not isinstance(content, dict) or content.get("membership") != "join":
        return False
    unsigned = source.get("unsigned")
    prev = unsigned.get("prev_content") if isinstance(unsigned, dict) else None
    prev = prev if isinstance(prev, dict) else source.get("prev_content")
    # a profile change is a join after a join: the bot was there already
    return not (isinstance(prev, dict) and prev.get("membership") == "join")


def after_own_join(events: Sequence[Any], user_id: str) -> tuple[list[Any], int]:
    """The events after the bot's (latest) join in this timeline, and how many came
    before it; all of them when the join is not in the timeline (it came earlier)."""
    for i in range(len(events) - 1, -1, -1):
        if _is_own_join(events[i], user_id):
            return list(events[i + 1 :]), i + 1
    return list(events), 0


async def fill_gap(client: AsyncClient, room_id: str, start: str | None, since: str) -> list[Any]:
    """The events between the saved position `since` and a limited timeline's
    `start` (its `prev_batch`), oldest first; as many as `GAP_PAGES` pages allow."""
    if not start:
        return []
    found: list[Any] = []
    token = start
    for _ in range(GAP_PAGES):
        try:
            resp = await client.room_messages(
                room_id, start=token, end=since, direction=MessageDirection.back, limit=GAP_PAGE
            )
        except Exception as e:
            log.warning("Matrix: cannot read the missed events of %s: %s", room_id, e)
            break
        if isinstance(resp, ErrorResponse):
            log.warning("Matrix: cannot read the missed events of %s: %s", room_id, resp)
            break
        found.extend(resp.chunk)  # newest first (paging backwards)
        if not resp.chunk or not resp.end or resp.end == token:
            break
        token = resp.end
    else:
        log.warning(
            "Matrix: more than %d events missed in %s; the oldest are skipped",
            GAP_PAGE * GAP_PAGES,
            room_id,
        )
    if found:
        log.info("Matrix: read %d missed events of %s from the room's history", len(found), room_id)
    return list(reversed(found))


def age_s(source: dict[str, Any], now: float | None = None) -> float:
    """How long ago the homeserver received the event (0 when it does not say)."""
    ts = source.get("origin_server_ts")
    if not isinstance(ts, int) or isinstance(ts, bool) or ts <= 0:
        return 0.0
    return max(0.0, (time.time() if now is None else now) - ts / 1000)


def waited(age: float) -> str:
    """ "N min ago" (hours past two hours, days past two days)."""
    minutes = int(age // 60)
    if minutes < 1:
        return "under a minute ago"
    if minutes < 120:
        return f"{minutes} min ago"
    if minutes < 48 * 60:
        return f"{minutes // 60} h ago"
    return f"{minutes // (24 * 60)} days ago"


def late_notice(age: float) -> str:
    return f"⏳ This message arrived while the daemon was down ({waited(age)})."
