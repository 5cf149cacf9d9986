"""The bridge: sessions ↔ threads.

`Bridge` is the router between the three seams.  Inbound events from adapters are
checked against access control first (nothing a stranger sends is downloaded: the
adapters hand over attachments unfetched).  Messages are placed in their thread (a
reply to one of our messages belongs to that message's thread: reply-chain sessions),
serialised per thread (so prompts keep their order) but handled concurrently across
threads, and dispatched to a command (`bridge/commands/dispatch.py`) or sent to the
session as a prompt.  Button presses are placed in the thread of the message they
were pressed on (as the outbox recorded it; a press on anything else is refused;
`bridge/placement.py`) and handled at once, never queued behind a thread's messages.  Agent events are routed
to the session's `TurnView` (streaming, final message) or to the permission broker.
Everything outgoing goes through the durable outbox.

Prompts from elsewhere — the terminal (`threadline attach`, `bridge/sources/attach.py`) and
schedules (`bridge/sources/scheduler.py`) — come in through `bridge/sources/prompts.py`, which shows
them in the thread marked with their source; chat prompts and every agent event are
shown to attached terminals.  Attachments become image blocks or inbox files
(`bridge/files.py`) before the prompt is sent.

On start it recovers from whatever the previous run left (`bridge/recovery.py`):
orphaned Claude Code processes are ended, turns that were running are marked
interrupted and their threads told so, pending permission prompts are expired,
undelivered outbox rows are delivered.  Sessions resume lazily: the next prompt in a
thread restarts Claude Code with `resume=<claude session id>`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from adapters.base import ChatAdapter, RateLimited, TransientError
from adapters.messages import ButtonPress, Inbound, Outbound, ThreadRef, UserMessage
from adapters.tasks import TaskGroup
from agent.events import (
    AgentEvent,
    AgentFailed,
    PermissionAsked,
    SessionStarted,
    TextDelta,
    TextDone,
    ToolFinished,
    ToolStarted,
    TurnEnded,
    TurnStarted,
)
from agent.host import AgentHost
from agent.session import AgentSession
from bridge import files, placement, recovery, render
from bridge.access.control import AccessControl
from bridge.access.pairing import Pairing, load_signing_key
from bridge.access.pairing import key_path as pairing_key_path
from bridge.access.pairing import load_owners as load_paired_owners
from bridge.approvals import revoke, trust
from bridge.approvals.permissions import PermissionBroker
from bridge.commands.dispatch import Commands, menu, parse_command
from bridge.config import Config
from bridge.outbox.outbox import Outbox
from bridge.sources import prompts as sources
from bridge.sources.attach import AttachServer
from bridge.sources.importer import ClaudeSessions
from bridge.sources.scheduler import Scheduler, TriggerFactory, cron_trigger
from bridge.turns import TurnView
from storage.db import Database
from storage.models import SessionRow, ThreadBinding, utcnow
from storage.types import BindingKind, OutboxId

log = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 100_000
T = TypeVar("T")


class Bridge:
    def __init__(
        self,
        config: Config,
        db: Database,
        adapters: Mapping[str, ChatAdapter],
        *,
        agent_env: Mapping[str, str] | None = None,
        stream_interval: float = 0.8,
        now: Callable[[], datetime] = utcnow,
        schedule_trigger: TriggerFactory = cron_trigger,
    ) -> None:
        self.config = config
        self.db = db
        self.adapters = dict(adapters)
        self.tasks = TaskGroup()
        self.outbox = Outbox(
            db, self.adapters, thread_fallback=lambda t: recovery.thread_fallback(self, t)
        )
        self.host = AgentHost(
            self.on_agent_event,
            env=agent_env,
            cli_path=config.agent.cli_path or None,
            default_model=config.agent.model,
            default_mode=config.agent.permission_mode,
        )
        self.broker = PermissionBroker(
            db, self.outbox, self.tasks, timeout_s=config.agent.permission_timeout_s
        )
        self.access = AccessControl(db, config.access.owners)
        self.pairing = Pairing(db, load_signing_key(pairing_key_path(config)), now=now)
        self.stream_interval = stream_interval
        self.now = now
        self.claude_sessions = ClaudeSessions(config.agent.allowed_roots, agent_env)
        run_dir = config.attach_socket().parent
        self.attach = AttachServer(self, config.attach_socket())
        cli = Path(config.agent.cli_path).name if config.agent.cli_path else "claude"
        self.reaper = recovery.CliReaper(run_dir / "claude.pids", marker=cli)
        self.scheduler = Scheduler(
            db,
            tz=config.agent.tz(),
            missed=config.agent.schedule_missed,
            run=lambda schedule: sources.run_scheduled(self, schedule),
            report=lambda schedule, text: sources.schedule_notice(self, schedule, text),
            spawn=lambda coro, name: self.tasks.spawn(coro, name=name),
            trigger_for=schedule_trigger,
            now=now,
        )
        self._stopping = False
        self._threads: dict[str, ThreadRef] = {}
        self.views: dict[str, TurnView] = {}
        self._turn_rows: dict[str, int] = {}
        self._thread_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._agent_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.commands = Commands(self)

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        self.recover()
        load_paired_owners(self)
        await self.outbox.start()
        for adapter in self.adapters.values():
            adapter.set_commands(menu())
            await adapter.start(self.on_inbound)
        await self.attach.start()
        await self.scheduler.start()
        log.info("bridge started with %s", ", ".join(self.adapters) or "no adapters")

    async def stop(self) -> None:
        """Stop taking input, interrupt running turns (their threads are told), give the
        outbox a few seconds to deliver, then disconnect.  Whatever is still undelivered
        stays in the database for the next start."""
        self._stopping = True
        await self.scheduler.stop()
        await self.attach.stop()
        for session_id, view in list(self.views.items()):
            recovery.mark_interrupted(
                self, session_id, view.thread, reason="the daemon is stopping"
            )
        await self.host.close()
        await self.tasks.close()
        if not await self.outbox.wait_idle(timeout=5):
            log.warning("some messages are still undelivered; they are sent on the next start")
        for adapter in self.adapters.values():
            try:
                await adapter.stop()
            except Exception:
                log.exception("stopping %s adapter failed", adapter.platform)
        await self.outbox.stop()

    def recover(self) -> None:
        """Tidy up after a previous run that stopped abruptly."""
        recovery.recover(self)

    # --- threads and sessions -------------------------------------------------

    def thread_of(self, session_id: str) -> ThreadRef | None:
        """The session's thread; cached, because every agent event asks for it."""
        cached = self._threads.get(session_id)
        if cached is not None:
            return cached
        binding = self.db.bindings.for_session(session_id)
        if binding is None:
            return None
        thread = self._threads[session_id] = ThreadRef(
            binding.platform, binding.chat_id, binding.thread_id
        )
        return thread

    def forget_thread(self, session_id: str) -> None:
        """Drop the cached thread after the session was moved to another one."""
        self._threads.pop(session_id, None)

    def session_for(self, msg: Inbound) -> SessionRow | None:
        """The session of the thread an event was placed in (`bridge/placement.py`)."""
        binding = self.db.bindings.by_thread_key(msg.thread.key)
        return self.db.sessions.get(binding.session_id) if binding else None

    async def agent_for(self, row: SessionRow) -> AgentSession:
        """The running agent for a session, started (resumed) if needed."""
        async with self._agent_locks[row.id]:
            # Every CLI start (new, resume, import, schedules) and every prompt comes
            # here: the CLI gets the folder's own settings only while the folder is
            # trusted as it is now, and then exactly those (a snapshot).
            project = await trust.wanted(self, row)
            fingerprint = project.fingerprint if project else ""
            agent = self.host.get(row.id)
            resume = row.claude_session_id
            if agent is not None and agent.project_fingerprint != fingerprint and not agent.busy:
                resume = agent.claude_session_id or resume
                await self.host.end_session(row.id)  # restarted below, resuming
                agent = None
            if agent is None:
                agent = await self.host.start_session(
                    row.id,
                    row.cwd,
                    resume=resume,
                    model=row.model or None,
                    mode=revoke.startable_mode(self, row),  # no bypass the config revoked
                    project=project,
                )
                current = self.db.sessions.get(row.id)  # `prompt` may have set running
                if current is not None and current.state in ("interrupted", "ended"):
                    self.db.sessions.update(row.id, state="active")
            return agent

    async def platform_call(
        self, platform: str, chat_id: str, call: Callable[[], Awaitable[T]], *, calls: int = 1
    ) -> T:
        """A platform call made outside the outbox (opening or closing a thread): paced
        by the chat's rate budget like everything else, retried on 429 and 5xx."""
        budget = self.outbox.budget(platform)
        for attempt in range(1, 6):
            slots = await budget.acquire(chat_id, calls=calls)
            backoff = 0.0  # after a 429 the budget's pause is the wait
            try:
                return await call()
            except RateLimited as e:
                budget.pause(chat_id, e.retry_after)
                if attempt == 5:
                    raise
            except TransientError:
                if attempt == 5:
                    raise
                backoff = min(30.0, 0.5 * 2**attempt)
            finally:
                for at in slots:  # settled when the call returned, not after a backoff
                    budget.settle(chat_id, "message", at)
            await asyncio.sleep(backoff)
        raise AssertionError("unreachable")

    def reply(
        self, thread: ThreadRef, msg: Outbound, *, session_id: str | None = None
    ) -> list[OutboxId]:
        return self.outbox.enqueue(thread, msg, session_id=session_id, priority=0)

    def bind(
        self, row: SessionRow, thread: ThreadRef, header_id: str | None, kind: BindingKind
    ) -> None:
        self.db.sessions.add(row)
        self.db.bindings.add(
            ThreadBinding(
                session_id=row.id,
                platform=thread.platform,
                chat_id=thread.chat_id,
                thread_id=thread.thread_id,
                header_message_id=header_id,
                kind=kind,
                thread_key=thread.key,
            )
        )

    def thread_lock(self, thread: ThreadRef) -> asyncio.Lock:
        """Held while a thread's input is handled, so its prompts keep their order."""
        return self._thread_locks[thread.key]

    # --- inbound --------------------------------------------------------------

    async def on_inbound(self, event: Inbound) -> None:
        """The adapters' sink.  Never raises; never blocks other threads."""
        try:
            if self._stopping:
                log.info("ignoring inbound %s: shutting down", type(event).__name__)
                return
            adapter = self.adapters[event.thread.platform]
            if isinstance(event, UserMessage) and not adapter.accepts_chat(
                event.thread, event.chat_type
            ):
                log.info(
                    "ignoring a message in %s: not a chat this bot serves", event.thread.chat_id
                )
                self.db.audit.log(
                    platform=event.sender.platform,
                    user=event.sender.key,
                    action="ignored-chat",
                    detail=event.thread.chat_id,
                    allowed=False,
                )
                return
            if not self.access.is_owner(event.sender) and not self._is_pairing(event):
                self._refuse(event)  # before anything of theirs is fetched or looked at
                return
            if isinstance(event, ButtonPress):
                # Never behind a thread's messages (a slow download, Claude Code
                # starting): Allow, Deny and Stop act at once; the broker and the
                # handlers decide each press atomically on their own.
                self.tasks.spawn(self._press(event), name=f"press-{event.thread.key}")
                return
            self.tasks.spawn(self._handle_in_order(event), name=f"inbound-{event.thread.key}")
        except Exception:
            log.exception("inbound event could not be handled")

    def _is_pairing(self, event: Inbound) -> bool:
        """`pair CODE` (Telegram: `/start CODE`) is the one thing a stranger may send."""
        if not isinstance(event, UserMessage):
            return False
        adapter = self.adapters[event.thread.platform]
        cmd = parse_command(event.text, bot_username=adapter.username)
        return cmd is not None and cmd.name == "pair"

    def _refuse(self, event: Inbound) -> None:
        what = "button" if isinstance(event, ButtonPress) else "message"
        detail = event.data if isinstance(event, ButtonPress) else event.text[:200]
        if self.access.refuse(event.sender, what, detail):
            self.reply(event.thread, render.notice("Sorry — this bot only works for its owners."))

    async def _press(self, press: ButtonPress) -> None:
        placed = placement.place_press(self.db, press)
        if placed is None:
            log.warning(
                "refused button %r from %s: not on a message of ours in %s",
                press.data[:64],
                press.sender.key,
                press.thread.key,
            )
            self.db.audit.log(
                platform=press.sender.platform,
                user=press.sender.key,
                action="button",
                detail=f"not on a message of ours: {press.message_id[:100]}",
                allowed=False,
            )
            return
        await self._guarded(placed, self.commands.button(placed))

    async def _handle_in_order(self, msg: UserMessage) -> None:
        msg = placement.place_message(self.db, msg)
        async with self.thread_lock(msg.thread):
            await self._guarded(msg, self._message(msg))

    async def _guarded(self, event: Inbound, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception as e:
            log.exception("handling %s failed", type(event).__name__)
            self.reply(
                event.thread,
                render.notice(
                    f"⚠️ Something went wrong: {type(e).__name__}. The error is in the daemon's log."
                ),
            )

    async def _message(self, msg: UserMessage) -> None:
        adapter = self.adapters[msg.thread.platform]
        cmd = parse_command(msg.text, bot_username=adapter.username)
        session = self.session_for(msg)
        if cmd is not None:
            self.db.audit.log(
                platform=msg.sender.platform, user=msg.sender.key, action=f"command:{cmd.name}"
            )
            await self.commands.command(cmd, msg, session)
            return
        if session is None:
            self.reply(
                msg.thread, render.notice("Start a session with `/new PATH PROMPT` (see `/help`).")
            )
            return
        thread = self.thread_of(session.id) or msg.thread
        if not msg.attachments and await self.broker.answer_text(
            thread, msg.text, msg.sender.key, msg.sender.display_name, reply_to=msg.reply_to
        ):
            return
        parts = await files.prompt_parts(self, session, msg, thread)
        if parts is None:  # only a file, and it was left out (the thread was told)
            return
        text, images = parts
        by = msg.sender.display_name or msg.sender.user_id
        self.attach.publish(
            session.id, {"t": "prompt", "source": msg.thread.platform, "by": by, "text": text}
        )
        await self.prompt(session, thread, text, images=images)

    async def prompt(
        self,
        session: SessionRow,
        thread: ThreadRef,
        text: str,
        *,
        images: list[tuple[str, bytes]] | None = None,
    ) -> None:
        if session.state == "ended":
            self.reply(
                thread, render.notice(f"This session has ended. `resume {session.id}` reopens it.")
            )
            return
        if len(text) > MAX_PROMPT_CHARS:
            self.reply(
                thread,
                render.notice(
                    f"That message is too long ({len(text)} characters; the limit is {MAX_PROMPT_CHARS})."
                ),
            )
            return
        # Running from now on, not from the turn's first event: a restart while Claude
        # Code starts must still tell the person that this prompt was interrupted.
        self.db.sessions.update(session.id, state="running")
        try:
            agent = await self.agent_for(session)
            queued = await agent.send(text, images or ())
        except Exception:
            self.db.sessions.update(session.id, state="active")
            raise
        self.db.sessions.touch(session.id)
        if queued:
            self.reply(
                thread,
                render.notice("📥 Queued — it runs when the current turn ends."),
                session_id=session.id,
            )

    # --- agent events ---------------------------------------------------------

    async def on_agent_event(self, ev: AgentEvent) -> None:
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
        self.attach.agent_event(ev)
        thread = self.thread_of(sid)
        if thread is None:
            log.warning("event for unknown session %s", sid)
            if isinstance(ev, PermissionAsked) and not ev.future.done():
                from agent.events import PermissionDecision

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
            )
            self.views[sid] = view
            self._turn_rows[sid] = turn_id
            view.begin()
            if view.status_id is not None:  # a restart marks this message interrupted
                self.db.turns.set_status_message(turn_id, view.status_id)
        elif isinstance(ev, TextDelta) and view:
            view.on_delta(ev)
        elif isinstance(ev, TextDone) and view:
            view.on_text_done(ev)
        elif isinstance(ev, ToolStarted) and view:
            view.on_tool(ev)
        elif isinstance(ev, ToolFinished) and view:
            view.on_tool_done(ev)
        elif isinstance(ev, PermissionAsked):
            row = self.db.sessions.get(sid)
            await self.broker.ask(ev, thread, row.cwd if row else "")
            self.attach.permission_asked(ev)
        elif isinstance(ev, TurnEnded):
            self._end_turn(sid, ev)
        elif isinstance(ev, AgentFailed):
            # The turn's TurnEnded follows; this only tells the person what went wrong.
            self.reply(
                thread,
                render.notice(f"⚠️ Claude Code failed: {ev.error[:500]}", notify=True),
                session_id=sid,
            )

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
