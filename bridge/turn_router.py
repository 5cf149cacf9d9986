"""The turn router: agent events → the thread's turn view, the broker, the subscribers.

Every `AgentEvent` from the agent host comes here.  A turn's events drive its
`TurnView` (`bridge/turns.py`: the status message with its Stop button, the streamed
answer, the final message) and its row in the `turns` table; a permission request goes
to the broker (`bridge/approvals/permissions.py`), which posts the prompt and resolves
the request's future; a failure is told in the thread.  Besides the thread, the events
are shown to an explicit list of subscribers (`subscribe`): the terminal attach server
(`bridge/sources/attach.py`) is one.  Subscribers also see the prompts sent to a session
(`publish`), wherever they were typed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from adapters.base import ChatAdapter
from adapters.tasks import TaskGroup
from agent.events import (
    AgentEvent,
    AgentFailed,
    ApiRetrying,
    ModeChanged,
    PermissionAsked,
    PermissionDecision,
    SessionStarted,
    TextDelta,
    TextDone,
    ToolFinished,
    ToolStarted,
    TurnEnded,
    TurnStarted,
)
from bridge import render
from bridge.approvals.permissions import PermissionBroker
from bridge.outbox.outbox import Outbox
from bridge.recovery import CliReaper
from bridge.threads import Threads
from bridge.turns import TurnView
from storage.db import Database

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    """Something shown what happens in sessions besides their threads."""

    def publish(self, session_id: str, event: dict[str, Any]) -> None:
        """A prompt sent to the session (`{"t": "prompt", "source", "by", "text"}`)."""

    def agent_event(self, ev: AgentEvent) -> None:
        """Any event of a session's agent, as it happens."""

    def permission_asked(self, ev: PermissionAsked) -> None:
        """A permission request, after the broker posted (or decided) it."""


class TurnRouter:
    def __init__(
        self,
        db: Database,
        adapters: Mapping[str, ChatAdapter],
        threads: Threads,
        outbox: Outbox,
        tasks: TaskGroup,
        broker: PermissionBroker,
        reaper: CliReaper,
        *,
        stream_interval: float = 0.8,
    ) -> None:
        self.db = db
        self.adapters = adapters
        self.threads = threads
        self.outbox = outbox
        self.tasks = tasks
        self.broker = broker
        self.reaper = reaper
        self.stream_interval = stream_interval
        self.views: dict[str, TurnView] = {}
        self._turn_rows: dict[str, int] = {}
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def publish(self, session_id: str, event: dict[str, Any]) -> None:
        """Show the subscribers a prompt sent to `session_id`."""
        for subscriber in self._subscribers:
            subscriber.publish(session_id, event)

    async def on_agent_event(self, ev: AgentEvent) -> None:
        """The agent host's sink.  Never raises."""
        try:
            await self._agent_event(ev)
        except Exception:
            log.exception(
                "agent event %s for %s could not be handled", type(ev).__name__, ev.session_id
            )

    async def _agent_event(self, ev: AgentEvent) -> None:
        sid = ev.session_id
        if isinstance(ev, SessionStarted):
            self.db.sessions.update(sid, claude_session_id=ev.claude_session_id)
            await asyncio.to_thread(self.reaper.record)  # a CLI just started
            return
        for subscriber in self._subscribers:
            subscriber.agent_event(ev)
        thread = self.threads.thread_of(sid)
        if thread is None:
            log.warning("event for unknown session %s", sid)
            if isinstance(ev, PermissionAsked) and not ev.future.done():
                ev.future.set_result(
                    PermissionDecision(allow=False, message="no thread for this session")
                )
            return
        view = self.views.get(sid)
        if isinstance(ev, TurnStarted):
            row = self.db.sessions.update(sid, state="running")
            turn_id = self.db.turns.start(sid, ev.prompt)
            adapter = self.adapters[thread.platform]
            use_draft = adapter.capabilities.native_stream and adapter.supports_draft(thread)
            view = TurnView(
                session_id=sid,
                turn_no=turn_id,
                thread=thread,
                cwd=row.cwd if row else "",
                outbox=self.outbox,
                tasks=self.tasks,
                use_draft=use_draft,
                min_interval=self.stream_interval,
                # a restart marks the status message interrupted
                on_status=functools.partial(self.db.turns.set_status_message, turn_id),
            )
            self.views[sid] = view
            self._turn_rows[sid] = turn_id
            view.begin()
        elif isinstance(ev, TextDelta) and view:
            view.on_delta(ev)
        elif isinstance(ev, TextDone) and view:
            view.on_text_done(ev)
        elif isinstance(ev, ToolStarted) and view:
            view.on_tool(ev)
        elif isinstance(ev, ToolFinished) and view:
            view.on_tool_done(ev)
        elif isinstance(ev, PermissionAsked):
            if view is not None:
                view.before_prompt()
            row = self.db.sessions.get(sid)
            await self.broker.ask(ev, thread, row.cwd if row else "")
            for subscriber in self._subscribers:
                subscriber.permission_asked(ev)
        elif isinstance(ev, TurnEnded):
            self._end_turn(sid, ev)
        elif isinstance(ev, ModeChanged):
            # Claude switched the mode itself: store it (a resumed CLI starts in it)
            # and say so, as a person's `mode` would be.
            self.db.sessions.update(sid, mode=ev.mode)
            self.threads.reply(
                thread,
                render.notice(f"Claude switched the permission mode: **{ev.mode}**"),
                session_id=sid,
            )
        elif isinstance(ev, ApiRetrying) and view:
            view.on_retry(ev)
        elif isinstance(ev, AgentFailed):
            # The turn's TurnEnded follows: what went wrong goes into its final message
            # (a notice of its own only when there is no turn view to end).
            text = ev.error[:1500] if ev.login else f"Claude Code failed: {ev.error[:500]}"
            if view is not None:
                view.on_failed(text)
            else:
                self.threads.reply(thread, render.notice(f"⚠️ {text}", notify=True), session_id=sid)

    def _end_turn(self, sid: str, ev: TurnEnded) -> None:
        view = self.views.pop(sid, None)
        if view is not None:
            view.end(ev)
        turn_id = self._turn_rows.pop(sid, None)
        if turn_id is not None:
            usage = dict(ev.usage or {})
            self.db.turns.finish(
                turn_id,
                state="interrupted" if ev.interrupted else ("error" if ev.is_error else "done"),
                cost_usd=ev.cost_usd,
                input_tokens=int(usage.get("input_tokens", 0) or 0),
                output_tokens=int(usage.get("output_tokens", 0) or 0),
                duration_ms=ev.duration_ms,
                tools=",".join(ev.tools),
            )
        self.db.sessions.add_cost(sid, ev.cost_usd)
        row = self.db.sessions.get(sid)
        if row is not None and row.state == "running":
            self.db.sessions.update(sid, state="active")
        self.tasks.spawn(
            self.broker.cancel_session(sid, "the turn ended"), name=f"cancel-permissions-{sid}"
        )


__all__ = ["Subscriber", "TurnRouter"]
