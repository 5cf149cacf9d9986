"""The live view of one session's running turn in its chat thread.

A `TurnView` receives the agent's events for one turn and turns them into outbox
operations: a status message (tool lines, the text so far where there is no native
streaming, and a Stop button), a native stream draft where the platform has one
(Telegram `sendMessageDraft` in private chats), and at the end a final message
with the answer and a footer.  Stream updates are debounced here (`min_interval`)
and coalesced again by the outbox, so a fast model costs few API calls; the status
message's last edit and the final message are priority 0 and always delivered.
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

PREVIEW_CHARS = 3000  # tail of the streamed text shown in an edited status message
LONG_TURN_S = 60.0


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

    @property
    def status_id(self) -> int | None:
        """The outbox row of this turn's status message (None before `begin()`)."""
        return self._status_id

    # --- events ---------------------------------------------------------------

    def begin(self) -> None:
        msg = render.status_message(
            [], "", running=True, stop_data=self._stop_data, max_preview=PREVIEW_CHARS
        )
        self._last_status = msg
        self._status_id = self.outbox.enqueue(
            self.thread, msg, session_id=self.session_id, priority=0
        )[0]

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
        if self._status_id is not None and status != self._last_status:
            self._last_status = status
            self.outbox.enqueue_edit(
                self.thread,
                self._status_id,
                status,
                priority=1,
                stream_key=f"{self.stream_key}:status",
            )

    def end(self, ev: TurnEnded) -> None:
        """Final status edit (no Stop button) and the answer as a new message."""
        self.todos.end(interrupted=ev.interrupted)
        if self._flush_task is not None:
            self._flush_task.cancel()
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
            and not self.use_draft
            and self.outbox.withdraw(self._status_id)
        ):
            # A busy chat never got to the status message: nobody saw it, so it and its
            # "Done" edit are dropped and the answer goes first.  (Not with a native
            # stream: its end is the status edit.)
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
            self.outbox.enqueue_edit(self.thread, self._status_id, status, priority=0)
        # The answer after the status edit: adapters take the status message's edit to
        # role "done" as the end of the turn's stream (Slack stops its native stream).
        self.outbox.enqueue(self.thread, final, session_id=self.session_id, priority=0)

    # --- streaming ------------------------------------------------------------

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
        if self._status_id is not None and status != self._last_status:
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
