"""Native streaming: the bridge's stream previews → ``chat.startStream`` /
``chat.appendStream`` / ``chat.stopStream``.

The outbox hands `draft()` the whole current preview each time — the *tail* of the
turn's text so far (``render.stream_preview``: at most ~3000 characters, a leading
"…" line when cut, a code fence reopened at the cut and one closed at the end) —
while Slack's stream only appends.  `next_chunk` finds where the preview continues
what was already streamed (the longest overlap of the streamed text's end with the
preview's start, so repeated text is never appended twice) and returns the new part,
committed only up to a whitespace run followed by text: a half-written word or
formatting entity, and the synthetic closing fence, wait for the next preview, and
no chunk starts with whitespace (Slack drops leading whitespace at chunk joins).

`Streamer` keeps one stream per thread: it starts the stream on the first chunk
(whether or not the turn's status message is posted yet: the text is what the person
waits for), rolls over to a new streamed message before Slack's ~5-minute stream
lifetime or ~12k-character message size runs out (and when Slack says the stream is
over), and `finish()` stops the stream and deletes its messages, because the turn's
final message carries the exact answer; a preview of a turn whose stream was finished
is ignored, so nothing restarts it.  The workspace-wide method tiers are checked with
`MethodGuard` before each call: a preview that would exceed one is skipped (its text
goes out with the next preview, which carries everything since), rather than pausing
the whole channel's deliveries as a `RateLimited` would.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import RateLimited, TransientError
from adapters.messages import ThreadRef
from adapters.slack import limits
from adapters.slack.errors import SlackErrors, error_code

log = logging.getLogger(__name__)

_FENCE_LINE = re.compile(r" {0,3}(`{3,}|~{3,})\s*")
_GAP = "\n\n…\n\n"
STREAM_OVER = frozenset({"message_not_in_streaming_state", "message_not_found"})


def overlap(streamed: str, preview: str) -> int:
    """The length of the longest start of `preview` that `streamed` ends with."""
    n = min(len(streamed), len(preview))
    if n == 0:
        return 0
    head, tail = preview[:n].replace("\0", " "), streamed[-n:].replace("\0", " ")
    s = head + "\0" + tail
    pi = [0] * len(s)
    for i in range(1, len(s)):
        k = pi[i - 1]
        while k and s[i] != s[k]:
            k = pi[k - 1]
        if s[i] == s[k]:
            k += 1
        pi[i] = k
    return pi[-1]


def _commit(rest: str) -> str:
    """`rest` up to its last whitespace run that is followed by text."""
    for i in range(len(rest) - 1, 0, -1):
        if rest[i - 1].isspace() and not rest[i].isspace():
            return rest[:i]
    return ""


def next_chunk(streamed: str, preview: str) -> str:
    """What to append to a stream showing `streamed` so it shows `preview`'s text."""
    body = preview
    cut = body.startswith("…\n")
    if cut:
        body = body[2:]
    lines = body.split("\n")
    if len(lines) > 1 and _FENCE_LINE.fullmatch(lines[-1]):
        body = "\n".join(lines[:-1])  # a fence closed only for display: hold it back
    base = streamed.rstrip()
    if not base:
        return _commit(body.lstrip())
    committed_ws = streamed[len(base) :]
    candidates = [body] + ([body.split("\n", 1)[1]] if cut and "\n" in body else [])
    k, best = max(((overlap(base, c), c) for c in candidates), key=lambda kc: kc[0])
    if k == 0 and cut:
        return _commit(_GAP + body)
    rest = best[k:]
    lead = rest[: len(rest) - len(rest.lstrip())]
    if committed_ws:
        rest = rest[len(committed_ws) :] if lead.startswith(committed_ws) else rest[len(lead) :]
    return _commit(rest)


@dataclass(slots=True)
class _Stream:
    draft_id: int
    ts: str | None = None
    started: float = 0.0
    chars: int = 0  # in the current streamed message
    streamed: str = ""  # everything appended this turn, across rollovers
    messages: list[str] = field(default_factory=list)
    dead: bool = False  # the person stopped it: ignore the rest of this turn


class Streamer:
    def __init__(
        self,
        client: Callable[[], AsyncWebClient],
        errors: SlackErrors,
        guard: limits.MethodGuard,
        recipient: Callable[[ThreadRef], tuple[str, str] | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._errors = errors
        self._guard = guard
        self._recipient = recipient
        self._clock = clock
        self._streams: dict[str, _Stream] = {}
        self._ended: dict[str, int] = {}  # thread key → draft id of its last finished stream

    async def _call(self, method: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        wait = self._guard.wait(method)
        if wait > 0:
            raise RateLimited(wait, f"{method}: workspace budget")
        self._guard.take(method)
        return await fn()

    async def push(self, thread: ThreadRef, draft_id: int, preview: str) -> None:
        """Show `preview` (the turn's text so far) in the thread's stream."""
        if self._ended.get(thread.key) == draft_id:
            return  # that turn is over: its final message has the answer
        st = self._streams.get(thread.key)
        if st is None or st.draft_id != draft_id:
            await self.finish(thread)  # a stream left from an earlier turn
            st = self._streams[thread.key] = _Stream(draft_id)
        if st.dead:
            return
        chunk = next_chunk(st.streamed, preview)[: limits.MAX_STREAM_CALL]
        if not chunk:
            return
        rollover = st.ts is not None and (
            st.chars + len(chunk) > limits.STREAM_ROLLOVER_CHARS
            or self._clock() - st.started > limits.STREAM_ROLLOVER_S
        )
        method = "chat.startStream" if st.ts is None or rollover else "chat.appendStream"
        if self._guard.wait(method) > 0:
            log.debug("%s: workspace tier spent; this preview goes with the next", method)
            return
        if rollover:
            await self._stop(thread, st)
        try:
            if st.ts is None:
                await self._start(thread, st, chunk)
            else:
                await self._append(thread, st, chunk)
        except SlackApiError as e:
            code = error_code(e)
            if code == "stopped_by_user":
                st.dead = True
                return
            if code in STREAM_OVER and st.ts is not None:  # Slack ended it: roll over
                st.ts = None
                await self._errors.call(lambda: self._start(thread, st, chunk), in_thread=True)
            else:
                raise self._errors.translate(e, in_thread=True) from None
        st.streamed += chunk

    async def _start(self, thread: ThreadRef, st: _Stream, chunk: str) -> None:
        who = self._recipient(thread)
        user, team = who if who else ("", "")
        resp = await self._call(
            "chat.startStream",
            lambda: self._client().chat_startStream(
                channel=thread.chat_id,
                thread_ts=thread.thread_id or "",
                markdown_text=chunk,
                recipient_user_id=user or None,
                recipient_team_id=team or None,
            ),
        )
        st.ts, st.started, st.chars = str(resp["ts"]), self._clock(), len(chunk)
        st.messages.append(st.ts)

    async def _append(self, thread: ThreadRef, st: _Stream, chunk: str) -> None:
        ts = st.ts or ""
        await self._call(
            "chat.appendStream",
            lambda: self._client().chat_appendStream(
                channel=thread.chat_id, ts=ts, markdown_text=chunk
            ),
        )
        st.chars += len(chunk)

    async def _stop(self, thread: ThreadRef, st: _Stream) -> None:
        ts, st.ts = st.ts, None
        if ts is None:
            return
        try:
            await self._call(
                "chat.stopStream",
                lambda: self._client().chat_stopStream(channel=thread.chat_id, ts=ts),
            )
        except Exception as e:  # over already, rate limited: it ends by itself
            log.debug("stopping stream %s failed: %s", ts, self._errors.translate(e))

    async def finish(self, thread: ThreadRef) -> None:
        """The turn is over: stop its stream and delete the streamed messages (the
        final message replaces them). A deletion that fails for a passing reason (5xx,
        timeout, reset, 429) is raised, the stream kept with the messages still to
        delete: the caller's retry finishes the job, so no partial copy of the answer
        stays in the thread after an outage."""
        st = self._streams.pop(thread.key, None)
        if st is None:
            return
        self._ended[thread.key] = st.draft_id
        await self._stop(thread, st)
        for i, ts in enumerate(st.messages):
            wait = self._guard.wait("chat.delete")
            if wait > 0:
                await asyncio.sleep(wait)
            self._guard.take("chat.delete")
            try:
                await self._client().chat_delete(channel=thread.chat_id, ts=ts)
            except Exception as e:
                error = self._errors.translate(e)
                if isinstance(error, TransientError | RateLimited):
                    st.messages, st.dead = st.messages[i:], True
                    self._streams[thread.key] = st
                    raise error from None
                log.warning("deleting streamed message %s failed: %s", ts, error)
