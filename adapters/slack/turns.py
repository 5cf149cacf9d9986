"""What the Slack adapter knows about running turns, per thread.

A turn's status message has the role ``"status"`` while the turn runs (marked in
its rendered payload, `render.TURN_RUNNING`) and another in the turn's last edit,
just before the final message is sent.  `Turns` watches for that to

* set the assistant status ("is thinking…") when a turn starts (without holding up
  the channel's next delivery) and clear it at the end
  (``assistant.threads.setStatus``; where the app is no AI app Slack refuses, and we
  stop asking),
* finish the native stream at the end (`Streamer.finish`: stop it, delete the
  streamed messages — the final message carries the exact answer), on the status
  message's last edit or on its deletion,
* and, if the workspace refused native streaming during the turn, show the turn's
  previews inside its status message instead (`merge_preview`), both when a preview
  arrives and when the bridge edits the status.  Previews may arrive before the
  status message is even sent (drafts have their own rate budget), so they are kept
  per thread until the turn ends.  Such a preview edit is made at most once a second
  per channel and only while ``chat.update``'s workspace tier has room; otherwise the
  preview is only kept, and shows with the next edit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.messages import ThreadRef
from adapters.ratelimit import TokenBucket
from adapters.slack.errors import SlackErrors
from adapters.slack.limits import MethodGuard
from adapters.slack.render import TURN_RUNNING, merge_preview
from adapters.slack.stream import Streamer

log = logging.getLogger(__name__)

THINKING = "is thinking…"
PREVIEW_EDIT_RATE = 1.0  # preview edits of status messages, per channel per second
Payload = dict[str, Any]
Update = Callable[[ThreadRef, str, Payload], Awaitable[None]]


def is_running_status(payload: Payload) -> bool:
    """Whether a rendered message is a running turn's status."""
    return bool(payload.get(TURN_RUNNING))


@dataclass(slots=True)
class _Turn:
    status_ts: str
    status: Payload  # the status message's latest payload
    thinking: asyncio.Task[None] | None = None  # setting "is thinking…"


class Turns:
    def __init__(
        self,
        streams: Streamer,
        web: Callable[[], AsyncWebClient],
        errors: SlackErrors,
        update: Update,
        guard: MethodGuard,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.streams = streams
        self._web = web
        self._errors = errors
        self._update = update
        self._guard, self._clock = guard, clock
        self._edit_pace: dict[str, TokenBucket] = {}  # channel → its preview edits
        self._turns: dict[str, _Turn] = {}
        self._previews: dict[str, tuple[Payload, ...]] = {}  # threads streaming by edits
        self.no_stream = False  # the workspace refused native streaming
        self._no_status = False

    def draft_allowed(self, thread: ThreadRef) -> bool:
        """Native streaming, or this turn's previews going into its status message."""
        return not self.no_stream or thread.key in self._previews

    def falling_back(self, thread: ThreadRef) -> bool:
        return self.no_stream or thread.key in self._previews

    def sending(self, thread: ThreadRef, payload: Payload) -> Payload:
        """Before a post: a status message shows the turn's preview if one came first."""
        preview = self._previews.get(thread.key)
        return (
            merge_preview(payload, preview) if preview and is_running_status(payload) else payload
        )

    async def sent(self, thread: ThreadRef, ts: str, payload: Payload) -> None:
        if is_running_status(payload):
            # Not awaited: the turn's first streamed text is often next in the channel's
            # delivery queue, and need not wait for another round trip.
            thinking = asyncio.ensure_future(self.set_status(thread, THINKING))
            self._turns[thread.key] = _Turn(ts, payload, thinking)

    async def editing(self, thread: ThreadRef, ts: str, payload: Payload) -> Payload:
        """Before an edit: what to send instead (a status with its preview)."""
        turn = self._turns.get(thread.key)
        if turn is None or turn.status_ts != ts:
            return payload
        if not is_running_status(payload):  # the turn ended: its final message follows
            await self.streams.finish(thread)  # raises (to be retried) if it could not
            del self._turns[thread.key]
            self._previews.pop(thread.key, None)
            if turn.thinking is not None:
                await turn.thinking  # cleared after it was set, never before
            await self.set_status(thread, "")
            return payload
        turn.status = payload
        preview = self._previews.get(thread.key)
        return merge_preview(payload, preview) if preview else payload

    async def deleting(self, thread: ThreadRef, ts: str) -> None:
        """Before a delete: a running turn's status going away ends the turn (the
        bridge deletes a status that showed nothing the answer will not)."""
        turn = self._turns.get(thread.key)
        if turn is None or turn.status_ts != ts:
            return
        await self.streams.finish(thread)  # raises (to be retried) if it could not
        del self._turns[thread.key]
        self._previews.pop(thread.key, None)
        await self.set_status(thread, "")

    async def answering(self, thread: ThreadRef) -> None:
        """Before a turn's answer is posted: its stream ends here at the latest.  The
        stream starts on the first text, before the status message; a status the bridge
        dropped because the answer came first leaves no edit or delete to end it on."""
        await self.streams.finish(thread)  # raises (to be retried) if it could not
        turn = self._turns.pop(thread.key, None)
        self._previews.pop(thread.key, None)
        if turn is not None:
            if turn.thinking is not None:
                await turn.thinking
            await self.set_status(thread, "")

    async def preview(self, thread: ThreadRef, payload: Payload) -> None:
        """A stream preview where native streaming is unavailable."""
        preview = tuple(b for b in payload.get("blocks") or () if b.get("type") != "actions")
        self._previews[thread.key] = preview
        turn = self._turns.get(thread.key)
        if turn is None:
            return
        pace = self._edit_pace.setdefault(thread.chat_id, TokenBucket(PREVIEW_EDIT_RATE))
        now = self._clock()
        if pace.delay(now) > 0 or self._guard.wait("chat.update") > 0:
            return  # kept: the next preview or status edit shows it
        pace.take(now)
        await self._update(thread, turn.status_ts, merge_preview(turn.status, preview))

    async def set_status(self, thread: ThreadRef, status: str) -> None:
        if self._no_status or not thread.thread_id:
            return
        try:
            await self._web().assistant_threads_setStatus(
                channel_id=thread.chat_id, thread_ts=thread.thread_id, status=status
            )
        except Exception as e:  # not an AI app, no assistant:write: fine, stop asking
            self._no_status = True
            log.info("assistant status unavailable (%s); not set again", self._errors.translate(e))
