"""Emoji (SAS) verifications of the bot, answered by the person where the homeserver
cannot reach: `threadline verify` on the machine, and a message with ✅/❌ buttons to
the owners on the other configured platforms (Telegram, Slack).

An adapter that verifies (Matrix) calls `VerificationDesk.watch` through the hook set
at composition (`set_verification_hook`) once a run's emoji are known: the run is
recorded with its emoji (table `sas_verifications`), announced to the owners of the
other platforms, then its row is polled until a decision is written (the CLI or a
button press here; the first one wins: `SasRepo.decide`), which goes to the adapter's
`decide`; how the run ended is recorded (verified, cancelled, or timed out).

Config owners are per platform and say nothing about who is who across platforms, so
the message goes to every owner of every other platform, and says whose verification
it is.  The adapter's run object is read by duck typing (`transaction_id`, `user_id`,
`device_id`, `emoji`, `state`, `cancel_code`, `finished`): bridge/ imports no adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from adapters.messages import Button, Markdown, Outbound, ThreadRef
from bridge import render
from bridge.commands.context import PressContext
from bridge.commands.registry import button
from bridge.outbox.outbox import Outbox
from storage.models import SasVerificationRow
from storage.sas_repo import SasRepo, emoji_of

log = logging.getLogger(__name__)

POLL_S = 0.3  # how often the row is read for a decision
KIND = "sas"  # button data: sas:<row id>:y|n


class VerificationDesk:
    def __init__(
        self,
        repo: SasRepo,
        platform: str,
        outbox: Outbox | None = None,
        owners: Sequence[str] = (),
        *,
        poll: float = POLL_S,
    ) -> None:
        self.repo = repo
        self.platform = platform
        self.outbox = outbox
        self.owners = tuple(owners)
        self.poll = poll

    async def watch(self, session: Any, decide: Callable[[bool], Awaitable[None]]) -> None:
        """Record `session`, ask the person, pass their decision on, record its end."""
        row = await asyncio.to_thread(
            self.repo.add,
            str(session.transaction_id),
            platform=self.platform,
            user_id=str(session.user_id),
            device_id=str(session.device_id),
            emoji=[(str(e), str(n)) for e, n in session.emoji],
        )
        assert row.id is not None
        self._announce(row)
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

    def _announce(self, row: SasVerificationRow) -> None:
        """The emoji and ✅/❌ to every owner on another platform (their DM with the bot)."""
        if self.outbox is None:
            return
        for owner in self.owners:
            platform, _, user = owner.partition(":")
            if not user or platform == self.platform:
                continue
            try:
                self.outbox.enqueue(ThreadRef(platform, user, None), announcement(row))
            except Exception:  # that platform not running here: the CLI still works
                log.exception("verification %s: cannot tell %s", row.transaction_id, owner)


def announcement(row: SasVerificationRow) -> Outbound:
    pairs = emoji_of(row)
    text = (
        f"🔐 **{render.md_escape(row.user_id)}** is verifying this bot on {row.platform} "
        f"(device `{row.device_id}`). Compare the emoji on that device:\n\n"
        f"{'  '.join(e for e, _ in pairs)}\n"
        f"{render.md_escape(', '.join(n for _, n in pairs))}\n\n"
        "Sent to every owner of the bot's other platforms. Only the person verifying "
        "should answer; `threadline verify` on the machine works too."
    )
    buttons = (
        (
            Button("✅ They match", f"{KIND}:{row.id}:y", "primary"),
            Button("❌ They don't match", f"{KIND}:{row.id}:n", "danger"),
        ),
    )
    return Outbound((Markdown(text),), notify=True, buttons=buttons)


@button(KIND)
async def press_verification(ctx: PressContext, rest: str) -> None:
    """``sas:<row id>:<y|n>``: the first decision (here or `threadline verify`) wins."""
    number, _, answer = rest.partition(":")
    if not number.isdigit() or answer not in ("y", "n"):
        ctx.refuse("malformed verification button")
        return
    decision = "confirm" if answer == "y" else "cancel"
    won = await asyncio.to_thread(ctx.db.sas.decide, int(number), decision, ctx.sender.key)
    if won:
        text = (
            "✅ Confirmed: the bot tells your device they match."
            if answer == "y"
            else ("❌ Cancelled: your device is told the emoji do not match.")
        )
    else:
        text = "This verification is not waiting any more."
    ctx.db.audit.log(
        platform=ctx.sender.platform,
        user=ctx.sender.key,
        action="verify",
        detail=f"#{number} {decision}: {'taken' if won else 'too late'}",
        allowed=won,
    )
    await ctx.answer(text)
    ctx.reply(render.notice(f"Verification #{number}: {text}"))
