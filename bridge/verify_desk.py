"""Emoji (SAS) verifications of the bot, answered by the person where the homeserver
cannot reach: the database, read by `threadline verify` on the machine.

An adapter that verifies (Matrix) calls `VerificationDesk.watch` through the hook set
at composition (`set_verification_hook`) once a run's emoji are known: the run is
recorded with its emoji, then the desk polls its row until the CLI writes a decision
(first one wins: `SasRepo.decide`) and hands it to the adapter's `decide`, and records
how the run ended (verified, cancelled, or timed out when nobody answered in time).
The adapter's run object is read by duck typing (`transaction_id`, `user_id`,
`device_id`, `emoji`, `state`, `cancel_code`, `finished`), so bridge/ imports no adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from storage.sas_repo import SasRepo

log = logging.getLogger(__name__)

POLL_S = 0.3  # how often the row is read for the CLI's decision


class VerificationDesk:
    def __init__(self, repo: SasRepo, platform: str, *, poll: float = POLL_S) -> None:
        self.repo = repo
        self.platform = platform
        self.poll = poll

    async def watch(self, session: Any, decide: Callable[[bool], Awaitable[None]]) -> None:
        """Record `session`, pass the person's decision on, record its end."""
        row = await asyncio.to_thread(
            self.repo.add,
            str(session.transaction_id),
            platform=self.platform,
            user_id=str(session.user_id),
            device_id=str(session.device_id),
            emoji=[(str(e), str(n)) for e, n in session.emoji],
        )
        assert row.id is not None
        finished: asyncio.Event = session.finished
        decided = False
        try:
            while not finished.is_set():
                if not decided:
                    current = await asyncio.to_thread(self.repo.get, row.id)
                    if current is not None and current.decision:
                        decided = True
                        log.info(
                            "verification %s: %s by %s",
                            row.transaction_id,
                            current.decision,
                            current.decided_by,
                        )
                        await decide(current.decision == "confirm")
                        if current.decision == "confirm" and not finished.is_set():
                            await asyncio.to_thread(self.repo.finish, row.id, "confirmed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(finished.wait(), self.poll)
        finally:
            code = str(session.cancel_code or "")
            if session.state == "verified":
                end = "verified"
            elif code == "m.timeout":
                end = "timed_out"
            else:  # cancelled by a side, or the daemon stopped mid-run
                end, code = "cancelled", code or "daemon stopped"
            await asyncio.to_thread(self.repo.finish, row.id, end, code)
