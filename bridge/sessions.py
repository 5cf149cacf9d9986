"""The sessions router: inbound chat events → commands or prompts to a session's agent.

Inbound events from adapters are checked against access control first (nothing a
stranger sends is downloaded: the adapters hand over attachments unfetched).  Messages
are placed in their thread (a reply to one of our messages belongs to that message's
thread: reply-chain sessions; `bridge/placement.py`), serialised per thread (so prompts
keep their order) but handled concurrently across threads, and dispatched to a command
handler or sent to the session as a prompt.  Button presses are placed in the thread of
the message they were pressed on (as the outbox recorded it; a press on anything else
is refused) and handled at once, never queued behind a thread's messages.

A prompt reaches the session's agent through `agent_for`, which starts (resumes) Claude
Code when needed — every CLI start goes through it, so it is where folder trust
(`bridge/approvals/trust.py`) and modes the config no longer allows
(`bridge/approvals/revoke.py`) are applied.  Attachments become image blocks or inbox
files (`bridge/files.py`) before the prompt is sent.  Which thread belongs to which
session is `bridge/threads.py`.

Several hosts: an event for a session that runs on another host (a message in its
thread, a press on a message that host posted) is handed to that host after the
access check and placement (`bridge/forward.py`, through the `inbox` table), still in
the thread's order; that host's inbox gives it to its own router through `deliver`,
which handles it exactly as an event from its own adapter.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Mapping
from typing import Protocol

from adapters.base import ChatAdapter
from adapters.messages import ButtonPress, Inbound, ThreadRef, UserMessage
from adapters.tasks import TaskGroup
from agent.host import AgentHost
from agent.session import AgentSession
from bridge import files, placement, render
from bridge.access.control import AccessControl
from bridge.approvals import revoke
from bridge.approvals.permissions import PermissionBroker
from bridge.approvals.trust import FolderTrust
from bridge.commands.dispatch import parse_command
from bridge.commands.parse import Command
from bridge.config import AgentConfig
from bridge.forward import Forwarder
from bridge.threads import Threads
from bridge.turn_router import TurnRouter
from storage.db import Database
from storage.models import SessionRow

log = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 100_000


class Commands(Protocol):
    """Where chat commands and button presses are handled (`bridge/commands/`)."""

    async def command(self, cmd: Command, msg: UserMessage, session: SessionRow | None) -> None: ...

    async def button(self, press: ButtonPress) -> None: ...


def stranger_refusal(platform: str) -> str:
    """What a stranger is told (at most once an hour): the refusal and the one way in.
    Shown to anyone who writes to the bot, so it names nothing of the owner's: no
    owner, session, path or configuration."""
    return (
        "Sorry — this bot only works for its owners. To become one, ask the owner to run "
        f"`threadline pair`, then send {render.cmd(platform, 'pair CODE')} with the code it "
        "prints."
    )


class SessionRouter:
    def __init__(
        self,
        agent: AgentConfig,
        db: Database,
        adapters: Mapping[str, ChatAdapter],
        threads: Threads,
        host: AgentHost,
        *,
        access: AccessControl,
        broker: PermissionBroker,
        trust: FolderTrust,
        turns: TurnRouter,
        tasks: TaskGroup,
        commands: Commands,
        forward: Forwarder | None = None,
    ) -> None:
        self.agent = agent
        self.db = db
        self.adapters = adapters
        self.threads = threads
        self.host = host
        self.access = access
        self.broker = broker
        self.trust = trust
        self.turns = turns
        self.tasks = tasks
        self.commands = commands
        self.forward = forward  # events for sessions on other hosts (`bridge/forward.py`)
        self.stopping = False  # set on shutdown: inbound events are ignored from then on
        self._thread_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._agent_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def thread_lock(self, thread: ThreadRef) -> asyncio.Lock:
        """Held while a thread's input is handled, so its prompts keep their order."""
        return self._thread_locks[thread.key]

    # --- the session's agent ----------------------------------------------------

    async def end_agent(self, session_id: str) -> None:
        """Stop the session's CLI once any `agent_for` under way has finished, so an
        `end` that arrives while the session's agent is being set up is not undone."""
        async with self._agent_locks[session_id]:
            await self.host.end_session(session_id)

    async def agent_for(self, row: SessionRow) -> AgentSession:
        """The running agent for a session, started (resumed) if needed."""
        async with self._agent_locks[row.id]:
            # Every CLI start (new, resume, import, schedules) and every prompt comes
            # here: the CLI gets the folder's own settings only while the folder is
            # trusted as it is now, and then exactly those (a snapshot).
            project = await self.trust.wanted(row)
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
                    # no bypass the config revoked
                    mode=revoke.startable_mode(self.agent, self.db, self.threads, row),
                    project=project,
                )
                # An interrupted session in use again is active (`prompt` may have set it
                # running meanwhile).  An ended one stays ended: only `resume` reopens it,
                # and an `end` that came while this CLI was being set up must stick.
                current = self.db.sessions.get(row.id)
                if current is not None and current.state == "interrupted":
                    self.db.sessions.update(row.id, state="active")
            return agent

    async def prompt(
        self,
        session: SessionRow,
        thread: ThreadRef,
        text: str,
        *,
        images: list[tuple[str, bytes]] | None = None,
    ) -> None:
        if session.state == "ended":
            self.threads.reply(
                thread,
                render.notice(
                    f"This session has ended. {render.cmd(thread.platform, f'resume {session.id}')}"
                    " reopens it."
                ),
            )
            return
        if len(text) > MAX_PROMPT_CHARS:
            self.threads.reply(
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
            self.threads.reply(
                thread,
                render.notice("📥 Queued — it runs when the current turn ends."),
                session_id=session.id,
            )

    # --- inbound --------------------------------------------------------------

    async def on_inbound(self, event: Inbound) -> None:
        """The adapters' sink.  Never raises; never blocks other threads."""
        try:
            if self.stopping:
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

    def deliver(self, event: Inbound, bot: str) -> None:
        """An event the gateway received for this host (`bridge/inbox.py`), access
        checked and placed there: queued as if this host's adapter had received it
        (synchronous, so the inbox marks it done in the step it is queued).  `bot` is
        the bot's username on the gateway, for `/cmd@bot`."""
        if isinstance(event, ButtonPress):
            self.tasks.spawn(self._press(event, bot=bot), name=f"press-{event.thread.key}")
        else:
            self.tasks.spawn(
                self._handle_in_order(event, bot=bot), name=f"inbound-{event.thread.key}"
            )

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
            self.threads.reply(event.thread, render.notice(stranger_refusal(event.thread.platform)))

    async def _press(self, press: ButtonPress, *, bot: str | None = None) -> None:
        """`bot` is None for a press from this host's adapter, the gateway's bot
        username for one the gateway placed and forwarded here."""
        if bot is not None:  # placed on the gateway already
            await self._guarded(press, self.commands.button(press))
            return
        at = placement.place_press_at(self.db, press)
        if at is not None and self.forward is not None:
            host = self.forward.press_target(at[1])  # the host that posted the message
            if host is not None:
                await self._guarded(at[0], self.forward.forward_press(at[0], host))
                return
        placed = at[0] if at is not None else None
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

    async def _handle_in_order(self, msg: UserMessage, *, bot: str | None = None) -> None:
        """`bot` is None for an event from this host's adapter (it may be for another
        host), the gateway's bot username for one forwarded here."""
        msg = placement.place_message(self.db, msg)
        async with self.thread_lock(msg.thread):
            if bot is None and self.forward is not None:
                host = self.forward.message_target(self.threads.session_for(msg))
                if host is not None:  # in order: forwarded under the thread's lock
                    await self._guarded(msg, self.forward.forward_message(msg, host))
                    return
            await self._guarded(msg, self._message(msg, bot))

    async def _guarded(self, event: Inbound, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception as e:
            log.exception("handling %s failed", type(event).__name__)
            self.threads.reply(
                event.thread,
                render.notice(
                    f"⚠️ Something went wrong: {type(e).__name__}. The error is in the daemon's log."
                ),
            )

    async def _message(self, msg: UserMessage, bot: str | None = None) -> None:
        adapter = self.adapters[msg.thread.platform]
        cmd = parse_command(msg.text, bot_username=adapter.username if bot is None else bot)
        session = self.threads.session_for(msg)
        if cmd is not None:
            self.db.audit.log(
                platform=msg.sender.platform, user=msg.sender.key, action=f"command:{cmd.name}"
            )
            await self.commands.command(cmd, msg, session)
            return
        if session is None:
            self.threads.reply(
                msg.thread,
                render.notice(
                    f"Start a session with {render.cmd(msg.thread.platform, 'new PATH PROMPT')}"
                    f" (see {render.cmd(msg.thread.platform, 'help')})."
                ),
            )
            return
        thread = self.threads.thread_of(session.id) or msg.thread
        if not msg.attachments and await self.broker.answer_text(
            thread, msg.text, msg.sender.key, msg.sender.display_name, reply_to=msg.reply_to
        ):
            return
        parts = await files.prompt_parts(
            self.threads, files.max_bytes(self.agent), session, msg, thread
        )
        if parts is None:  # only a file, and it was left out (the thread was told)
            return
        text, images = parts
        by = msg.sender.display_name or msg.sender.user_id
        self.turns.publish(
            session.id, {"t": "prompt", "source": msg.thread.platform, "by": by, "text": text}
        )
        await self.prompt(session, thread, text, images=images)


__all__ = ["MAX_PROMPT_CHARS", "Commands", "SessionRouter"]
