"""What a command or button handler is given: the event, its session, and the services.

A handler gets a `CommandContext` (a typed command) or a `PressContext` (a button
press), never the `Bridge`.  `Services` names, as a Protocol, the part of the core a
handler may use — configuration, the database's repositories, the outbox, the
permission broker, the agent host, access control, pairing, the schedule and disk
session services, the hosts sharing the database and the way to them (`bridge/forward.py`),
and the sessions operations (thread
of a session, its running agent, prompting it, binding a new session to its thread, a
paced platform call).
The composition root satisfies it structurally; this module imports nothing of the
bridge's composition, so a feature module can take a context without an import circle.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TypeVar

from adapters.messages import ButtonPress, ChatCommand, Outbound, Sender, ThreadRef, UserMessage
from bridge.commands.parse import Command
from storage.models import SessionRow
from storage.types import BindingKind, OutboxId

if TYPE_CHECKING:
    from adapters.base import ChatAdapter
    from agent.host import AgentHost
    from agent.session import AgentSession
    from agent.trust import FolderSettings
    from bridge.access.control import AccessControl
    from bridge.access.pairing import Pairing
    from bridge.approvals.permissions import PermissionBroker
    from bridge.config import Config
    from bridge.hosts import Hosts
    from bridge.outbox.outbox import Outbox
    from bridge.sources.importer import ClaudeSessions
    from bridge.sources.scheduler import Scheduler
    from storage.db import Database

log = logging.getLogger(__name__)

T = TypeVar("T")


class Sessions(Protocol):
    """The sessions operations: thread ↔ session, running agents, prompts."""

    def thread_of(self, session_id: str) -> ThreadRef | None: ...

    def forget_thread(self, session_id: str) -> None: ...

    async def agent_for(self, row: SessionRow) -> AgentSession: ...

    async def end_agent(self, session_id: str) -> None: ...

    async def prompt(
        self,
        session: SessionRow,
        thread: ThreadRef,
        text: str,
        *,
        images: list[tuple[str, bytes]] | None = None,
    ) -> None: ...

    def bind(
        self, row: SessionRow, thread: ThreadRef, header_id: str | None, kind: BindingKind
    ) -> None: ...

    async def platform_call(
        self, platform: str, chat_id: str, call: Callable[[], Awaitable[T]], *, calls: int = 1
    ) -> T: ...

    def reply(
        self, thread: ThreadRef, msg: Outbound, *, session_id: str | None = None
    ) -> list[OutboxId]: ...


class FolderTrustOps(Protocol):
    """Folder trust as the `trust` / `untrust` commands and the `t:` button use it."""

    async def inspect(self, cwd: str) -> FolderSettings: ...

    def ask(self, row: SessionRow, settings: FolderSettings, *, changed: bool = False) -> None: ...

    async def apply(self, path: str) -> bool: ...

    async def press(self, event: ButtonPress, rest: str) -> str: ...


class ImportOps(Protocol):
    """Import from disk as the `import` command and the `i:` button use it."""

    async def import_and_tell(self, origin: ThreadRef, owner: str, claude_id: str) -> None: ...


class ForwardOps(Protocol):
    """The way to the other hosts (`bridge/forward.py`) as `new`, `resume`, the host
    picker and `open_session` use it."""

    def known_hosts(self) -> list[str]: ...

    def message_target(self, session: SessionRow | None) -> str | None: ...

    async def forward_message(self, msg: UserMessage, host: str) -> None: ...

    async def forward_press(self, press: ButtonPress, host: str) -> None: ...

    def is_gateway(self, platform: str) -> bool: ...

    async def open_remote(
        self, row: SessionRow, origin: ThreadRef, title: str
    ) -> tuple[SessionRow, ThreadRef] | None: ...

    def tell_opened(self, host: str, session_id: str) -> None: ...


class Services(Sessions, Protocol):
    """Everything a command may use besides the sessions operations (read-only)."""

    @property
    def config(self) -> Config: ...
    @property
    def db(self) -> Database: ...
    @property
    def adapters(self) -> Mapping[str, ChatAdapter]: ...
    @property
    def outbox(self) -> Outbox: ...
    @property
    def broker(self) -> PermissionBroker: ...
    @property
    def host(self) -> AgentHost: ...
    @property
    def access(self) -> AccessControl: ...
    @property
    def pairing(self) -> Pairing: ...
    @property
    def scheduler(self) -> Scheduler: ...
    @property
    def claude_sessions(self) -> ClaudeSessions: ...
    @property
    def now(self) -> Callable[[], datetime]: ...
    @property
    def trust(self) -> FolderTrustOps: ...
    @property
    def importer(self) -> ImportOps: ...
    @property
    def hosts(self) -> Hosts: ...
    @property
    def forward(self) -> ForwardOps: ...


@dataclass(frozen=True, slots=True)
class CommandContext:
    """One typed command: `session` is the session of the thread it was typed in;
    `listing` the commands it was parsed against, in listing order (what `help` shows)."""

    command: Command
    message: UserMessage
    session: SessionRow | None
    services: Services
    listing: tuple[ChatCommand, ...]

    @property
    def thread(self) -> ThreadRef:
        return self.message.thread

    @property
    def sender(self) -> Sender:
        return self.message.sender

    @property
    def db(self) -> Database:
        return self.services.db

    @property
    def config(self) -> Config:
        return self.services.config

    def reply(self, msg: Outbound, *, session_id: str | None = None) -> list[OutboxId]:
        """Answer in the thread the command was typed in."""
        return self.services.reply(self.thread, msg, session_id=session_id)


@dataclass(frozen=True, slots=True)
class PressContext:
    """One button press, already placed in the thread of the message it was on."""

    press: ButtonPress
    services: Services

    @property
    def thread(self) -> ThreadRef:
        return self.press.thread

    @property
    def sender(self) -> Sender:
        return self.press.sender

    @property
    def db(self) -> Database:
        return self.services.db

    def reply(self, msg: Outbound, *, session_id: str | None = None) -> list[OutboxId]:
        return self.services.reply(self.thread, msg, session_id=session_id)

    def session_here(self, rest: str) -> tuple[SessionRow, ThreadRef, str] | None:
        """For ``<kind>:<session>:<arg>`` buttons: the session, its thread and the arg —
        if the button was pressed in that session's own thread; else refused, None."""
        session_id, _, arg = rest.partition(":")
        session = self.db.sessions.get(session_id)
        thread = self.services.thread_of(session.id) if session else None
        if session is None or thread is None or thread.key != self.thread.key:
            self.refuse("stale or foreign button")
            return None
        return session, thread, arg

    async def answer(self, text: str) -> None:
        """Tell only the presser (where the platform can).  Best effort: on a host
        that is not the gateway the adapter is not connected (the press came through
        the inbox), and the decision itself shows on the edited message anyway."""
        try:
            await self.services.adapters[self.thread.platform].answer_press(self.press, text)
        except Exception as e:
            log.info("press answer %r not shown: %s", text[:60], type(e).__name__)

    def refuse(self, why: str) -> None:
        """A press that does nothing (stale, foreign, unknown): logged and audited."""
        press = self.press
        log.warning("refused button %r from %s: %s", press.data[:64], press.sender.key, why)
        self.db.audit.log(
            platform=press.sender.platform,
            user=press.sender.key,
            action="button",
            detail=why,
            allowed=False,
        )
