"""The live view of one session's running turn in its chat thread.

A `TurnView` receives the agent's events for one turn and turns them into outbox
operations: a status message (tool lines, the text so far where there is no native
streaming, and a Stop button), a native stream draft where the platform has one
(Telegram `sendMessageDraft` in private chats), and at the end a final message
with the answer and a footer.  Stream updates are debounced here (`min_interval`)
and coalesced again by the outbox, so a fast model costs few API calls.

One notifying message per turn: the answer.  The status message is sent silently,
and only once it has something to show — a tool, the streamed text where no native
stream shows it, or a turn running longer than `status_after` (the Stop button) —
so a quick plain answer costs one message.  At the end a status that carried
nothing the answer does not (no tool ran, not stopped, no error) is deleted after
the answer; otherwise it stays, edited silently to "✅ Done" (or "⏹ Stopped") — as does every status where a
deleted message leaves a placeholder (`Capabilities.delete_vanishes`: Matrix,
where the status is an `m.notice`, which does not notify).  Where the platform's native stream
hangs on the status message (`Capabilities.stream_needs_status`, Slack) the status
is sent at once and its end (edit or delete) goes before the answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

from adapters.messages import Outbound, ThreadRef
from adapters.tasks import TaskGroup
from agent.events import ApiRetrying, TextDelta, TextDone, ToolFinished, ToolStarted, TurnEnded
from bridge import render
from bridge.outbox.outbox import Outbox
from bridge.todos import TodoView
from storage.outbox_pick import DeliveryClass

PREVIEW_CHARS = 3000  # tail of the streamed text shown in an edited status message
LONG_TURN_S = 60.0
# A turn with nothing to show yet gets its status message (and Stop button) this late:
# a plain answer is usually done by then and needs no second message.
STATUS_AFTER_S = 3.0


class TurnView:
    def __init__(
        self,
        *,
        session_id: str,
        turn_no: int,
        thread: ThreadRef,
        cwd: str,
        outbox: Outbox,
        tasks: TaskGroup,
        use_draft: bool,
        min_interval: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
        status_after: float | None = None,  # None: STATUS_AFTER_S
        on_status: Callable[[int], None] | None = None,
    ) -> None:
        self.session_id = session_id
        self.thread = thread
        self.cwd = cwd
        self.outbox = outbox
        self.tasks = tasks
        self.use_draft = use_draft
        self.min_interval = min_interval
        self.clock = clock
        self.started = clock()
        self.stream_key = f"{session_id}:{turn_no}"
        self.tool_lines: list[str] = []
        self.tools_used: list[str] = []
        self.blocks: list[str] = []  # finished text blocks of this turn
        self.current = ""  # the text block being streamed
        self._lines_by_id: dict[str, str] = {}
        self.last_output: tuple[str, str] | None = None  # (tool line, output), shown folded
        self._status_id: int | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._last_flush = 0.0
        self._stop_data = f"x:{session_id}"
        self._last_status: Outbound | None = None
        self.todos = TodoView(
            session_id=session_id, thread=thread, outbox=outbox, stream_key=self.stream_key
        )
        self.status_after = STATUS_AFTER_S if status_after is None else status_after
        self._on_status = on_status  # told the status message's row once it exists
        self._status_timer: asyncio.Task[None] | None = None
        self._ended = False

    @property
    def _anchored(self) -> bool:
        """The native stream hangs on the status message (Slack): it goes out at once,
        and its end goes before the answer."""
        return self.use_draft and self.outbox.budget(self.thread.platform).caps.stream_needs_status

    @property
    def _may_delete(self) -> bool:
        """A deleted message vanishes on this platform (no placeholder)."""
        return self.outbox.budget(self.thread.platform).caps.delete_vanishes

    @property
    def status_id(self) -> int | None:
        """The outbox row of this turn's status message (None before `begin()`)."""
        return self._status_id

    # --- events ---------------------------------------------------------------

    def begin(self) -> None:
        if self._anchored or self.status_after <= 0:
            self._open_status(
                render.status_message(
                    [], "", running=True, stop_data=self._stop_data, max_preview=PREVIEW_CHARS
                )
            )
            return
        self._status_timer = self.tasks.spawn(
            self._status_later(), name=f"status-{self.stream_key}"
        )

    async def _status_later(self) -> None:
        await asyncio.sleep(self.status_after)
        if not self._ended and self._status_id is None:
            self.flush()

    def _open_status(self, msg: Outbound) -> None:
        """Send the status message (silent, class STREAM: decoration)."""
        self._last_status = msg
        self._status_id = self.outbox.enqueue(self.thread, msg, session_id=self.session_id)[0]
        if self._on_status is not None:
            self._on_status(self._status_id)

    def on_delta(self, ev: TextDelta) -> None:
        if ev.restart:  # the model call was retried: its text streams again from the start
            self.current = ""
        self.current += ev.text
        self._schedule()

    def on_text_done(self, ev: TextDone) -> None:
        self.blocks.append(ev.text)
        self.current = ""
        self._schedule()

    def on_tool(self, ev: ToolStarted) -> None:
        if self.todos.on_tool(ev):  # the checklist message shows it, not a tool line
            self.tools_used.append(ev.name)
            return
        line = render.tool_line(ev.name, ev.input, cwd=self.cwd)
        self._lines_by_id[ev.tool_use_id] = line
        self.tool_lines.append(line)
        self.tools_used.append(ev.name)
        self._schedule()

    def on_tool_done(self, ev: ToolFinished) -> None:
        if self.todos.on_tool_done(ev):
            return
        if ev.output.strip():
            line = self._lines_by_id.get(ev.tool_use_id, ev.name)
            self.last_output = (("⚠️ " if ev.is_error else "") + line, ev.output)
            self._schedule()

    def on_failed(self, text: str) -> None:
        """The turn failed: `text` (Markdown) ends its answer, so the final message says
        what went wrong and the phone buzzes once, not for a notice and the answer."""
        if self.current:
            self.blocks.append(self.current)
            self.current = ""
        self.blocks.append(text)

    def on_retry(self, ev: ApiRetrying) -> None:
        """Claude Code retries a failed model call: the status message says so until
        the next update (text, a tool) replaces it."""
        if self._flush_task is not None:
            self._flush_task.cancel()  # it would show the same, without this line
            self._flush_task = None
        of = f"/{ev.max_retries}" if ev.max_retries else ""
        line = (
            f"🔁 _Claude Code is retrying (attempt {ev.attempt}{of}, next try in "
            f"{max(1, round(ev.delay_s))} s): {render.md_escape(ev.error)}_"
        )
        text = self.preview_text()
        status = render.status_message(
            self.tool_lines,
            f"{text}\n\n{line}" if text and not self.use_draft else line,
            running=True,
            stop_data=self._stop_data,
            max_preview=PREVIEW_CHARS,
            last_output=self.last_output,
        )
        if self._status_id is None:
            if not self._ended:  # the person is waiting: show it now, not in 3 s
                self._open_status(status)
        elif status != self._last_status:
            self._last_status = status
            self.outbox.enqueue_edit(
                self.thread,
                self._status_id,
                status,
                priority=1,
                stream_key=f"{self.stream_key}:status",
            )

    def end(self, ev: TurnEnded) -> None:
        """The answer as a new message; the status message deleted, or edited to its
        last state (no Stop button) where tools ran.  The checklist's last edit first."""
        self._ended = True
        self.todos.end(interrupted=ev.interrupted)
        if self._flush_task is not None:
            self._flush_task.cancel()
        if self._status_timer is not None:
            self._status_timer.cancel()
        self.outbox.supersede(self.stream_key)
        self.outbox.supersede(f"{self.stream_key}:status")
        if self.current:
            self.blocks.append(self.current)
            self.current = ""
        duration = self.clock() - self.started
        answer = (
            "\n\n".join(b for b in self.blocks if b.strip())
            or ev.result
            or ("(stopped)" if ev.interrupted else "(no text)")
        )
        final = render.final_message(
            answer,
            duration_s=duration,
            cost_usd=ev.cost_usd,
            tools=self.tools_used,
            is_error=ev.is_error,
        )
        if duration >= LONG_TURN_S:
            final = dataclasses.replace(final, mention=True)
        if (
            self._status_id is not None
            and not self._anchored
            and not (self.tool_lines or self.last_output)
            and self.outbox.withdraw(self._status_id)
        ):
            # A busy chat never got to the status message: nobody saw it and it showed
            # nothing the answer does not, so it and its end are dropped.  (Not where the
            # native stream hangs on it: its end is the status edit.  One with tool lines
            # is kept, so a turn's messages do not depend on the chat's timing.)
            self._status_id = None
        # Where the native stream hangs on the status (Slack stops it when the status
        # is edited to "done" or deleted), that end goes before the answer; elsewhere
        # the answer goes first and the status is tidied after it.
        tidy = DeliveryClass.FINAL if self._anchored else DeliveryClass.STREAM
        if (
            self._status_id is not None
            and self._may_delete
            and not (self.tool_lines or self.last_output)
            and not (ev.interrupted or ev.is_error)  # "Stopped" / "error" stay said
        ):
            # It showed nothing the answer does not: one message per turn.
            self.outbox.enqueue_delete(self.thread, self._status_id, klass=tidy)
            self._status_id = None
        if self._status_id is not None:
            label = (
                "⏹ Stopped"
                if ev.interrupted
                else ("⚠️ Ended with an error" if ev.is_error else "✅ Done")
            )
            status = render.status_message(
                self.tool_lines, label, running=False, stop_data="", max_preview=PREVIEW_CHARS
            )
            self.outbox.enqueue_edit(self.thread, self._status_id, status, klass=tidy)
        self.outbox.enqueue(self.thread, final, session_id=self.session_id)

    # --- streaming ------------------------------------------------------------

    def _wants_status(self, shown_text: str) -> bool:
        """Whether the status message has something to show yet: a tool, text no
        native stream shows, or a turn long enough to want its Stop button."""
        return bool(
            self.tool_lines
            or self.last_output
            or shown_text
            or self.clock() - self.started >= self.status_after
        )

    def preview_text(self) -> str:
        return "\n\n".join([*self.blocks, self.current]).strip()

    def _schedule(self) -> None:
        if self._flush_task is not None and not self._flush_task.done():
            return
        delay = max(0.0, self._last_flush + self.min_interval - self.clock())
        self._flush_task = self.tasks.spawn(
            self._flush_after(delay), name=f"stream-{self.stream_key}"
        )

    async def _flush_after(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        self._last_flush = self.clock()
        self.flush()

    def before_prompt(self) -> None:
        """A permission prompt (or question, or plan) is about to be posted: what the
        turn did so far goes first, now rather than after the debounce, so the prompt
        always follows the tool lines that led to it, whatever the timing."""
        if self._flush_task is not None and not self._flush_task.done():
            self._flush_task.cancel()
            self._flush_task = None
            self._last_flush = self.clock()
            self.flush()

    def flush(self) -> None:
        text = self.preview_text()
        if self.use_draft and text:
            preview = render.stream_preview(text, max_chars=PREVIEW_CHARS)
            self.outbox.update_stream(
                self.thread, self.stream_key, preview, session_id=self.session_id
            )
            text = ""  # the draft shows the text; the status message keeps the tools
        status = render.status_message(
            self.tool_lines,
            text,
            running=True,
            stop_data=self._stop_data,
            max_preview=PREVIEW_CHARS,
            last_output=self.last_output,
        )
        if self._status_id is None:
            if self._wants_status(text):
                self._open_status(status)
            return
        if status != self._last_status:
            # Unchanged (only the draft moved on): an edit would cost a call and come
            # back "message is not modified".
            self._last_status = status
            self.outbox.enqueue_edit(
                self.thread,
                self._status_id,
                status,
                priority=1,
                stream_key=f"{self.stream_key}:status",
            )
