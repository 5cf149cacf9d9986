"""Slots of a chat's budget for calls made outside the outbox, after what is urgent.

Opening a thread (a Telegram topic and its header) is a platform call the bridge makes
itself, paced by the same per-chat budget as the outbox.  Booked the moment `new` is
typed, six sessions opening at once used to book ten seconds of the chat ahead of a
permission prompt raised meanwhile.  Here slots are booked only when the budget has
room now and no prompt or final answer is ready to go in the chat — those go first —
unless the chat's worker cannot take the slot (not started, or inside a delivery: a
thread fallback opens its reply chain from there), and never for longer than
`GIVE_WAY_MAX_S`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from bridge.outbox.ratelimit import RateBudget
from storage.outbox_pick import DeliveryClass
from storage.outbox_repo import OutboxRepo
from storage.types import OutboxOp

POLL_S = 0.05  # looked at again this soon after giving way
GIVE_WAY_MAX_S = 10.0  # …and gives way for no longer than this in all
MESSAGE_OPS: tuple[OutboxOp, ...] = ("send", "edit", "delete")


async def reserve_slots(
    budget: RateBudget,
    repo: OutboxRepo,
    *,
    chat_key: str,
    chat_id: str,
    calls: int,
    worker_free: Callable[[], bool],
    wake: Callable[[], None],
    now: Callable[[], datetime],
) -> list[float]:
    """Book `calls` slots and wait for the last; returns the booked times (for
    `RateBudget.settle`).  `worker_free`: the chat's worker could take a slot now;
    `wake`: nudge it."""
    loop = asyncio.get_running_loop()
    give_way_until = loop.time() + GIVE_WAY_MAX_S
    while True:
        wait = budget.delay(chat_id)
        if wait <= 0:
            ready = repo.next_for_chat(chat_key, now(), MESSAGE_OPS)
            if (
                ready is None
                or ready.priority > DeliveryClass.FINAL
                or not worker_free()
                or loop.time() > give_way_until
            ):
                return await budget.acquire(chat_id, calls=calls)  # books at once
            wake()
            wait = POLL_S  # the worker takes this slot; look again after
        await asyncio.sleep(min(wait, 1.0))
