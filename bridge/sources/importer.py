"""Claude Code sessions already on disk: list them, recap them, bring them into a thread.

A session started in the terminal with plain `claude` leaves a transcript under the
Claude config directory; the SDK's `list_sessions` / `get_session_info` /
`get_session_messages` read them.  `ClaudeSessions` keeps only those whose directory
lies under `allowed_roots`, newest first, and turns a transcript's last messages into a
short recap (`Exchange`s).  `Importer.import_session` opens a thread for one: a session
row that carries the Claude session id, so the next prompt resumes it (`resume=<id>`)
with its full context.  The chat command `import [ID]` and the daemon side of
`threadline import ID` both end up there.

The SDK reads the config directory from `CLAUDE_CONFIG_DIR` in `os.environ` only; the
daemon may run Claude Code with a different one (`agent_env`, as the tests do), so the
lookups run with that variable set to the agent's for their duration (`_claude_env`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import claude_agent_sdk

from adapters.base import ChatAdapter
from adapters.messages import Button, Markdown, Outbound, ThreadRef
from bridge import render
from bridge.access.control import PathRefused, resolve_session_dir
from bridge.config import Config
from bridge.threads import Threads
from storage.db import Database
from storage.models import SessionRow

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

LIST_LIMIT: Final = 20
RECAP_MESSAGES: Final = 6
_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.DOTALL)
_NOISE = re.compile(r"^\s*(\[Request interrupted|<command-|<local-command-)")
_env_lock = threading.Lock()


class OpenSession(Protocol):
    """Opens a session and its thread, announced in `origin` (the `new` command's way);
    None at the session cap (`origin` was told)."""

    async def __call__(
        self,
        origin: ThreadRef,
        owner: str,
        cwd: Path,
        *,
        title: str,
        claude_session_id: str | None = None,
    ) -> tuple[SessionRow, ThreadRef] | None: ...


@dataclass(frozen=True, slots=True)
class DiskSession:
    id: str  # the Claude session id (a UUID)
    cwd: str
    title: str
    first_prompt: str
    modified: datetime


@dataclass(frozen=True, slots=True)
class Exchange:
    role: Literal["user", "assistant"]
    text: str


@contextlib.contextmanager
def _claude_env(env: Mapping[str, str]) -> Iterator[None]:
    wanted = env.get("CLAUDE_CONFIG_DIR")
    with _env_lock:
        if not wanted or os.environ.get("CLAUDE_CONFIG_DIR") == wanted:
            yield
            return
        old = os.environ.get("CLAUDE_CONFIG_DIR")
        os.environ["CLAUDE_CONFIG_DIR"] = wanted
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("CLAUDE_CONFIG_DIR", None)
            else:
                os.environ["CLAUDE_CONFIG_DIR"] = old


def _under(path: str, roots: Sequence[Path]) -> bool:
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError):
        return False
    return any(real == r or r in real.parents for r in roots)


def _when(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000, UTC)


def _text_of(message: Any) -> tuple[str, list[str]]:
    """(visible text, tool lines) of a transcript message's content."""
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    texts: list[str] = []
    tools: list[str] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, Mapping):
            continue
        if block.get("type") == "text":
            text = _REMINDER.sub("", str(block.get("text", ""))).strip()
            if text and not _NOISE.match(text):
                texts.append(text)
        elif block.get("type") == "tool_use":
            tools.append(render.tool_line(str(block.get("name", "")), block.get("input") or {}))
    return "\n\n".join(texts), tools


class ClaudeSessions:
    """Claude Code sessions on disk whose directory is under `roots`."""

    def __init__(self, roots: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.roots = [Path(os.path.expanduser(r)).resolve() for r in roots]
        self.env = dict(env or {})

    def recent(self, limit: int = LIST_LIMIT) -> list[DiskSession]:
        with _claude_env(self.env):
            infos = claude_agent_sdk.list_sessions()
        out = [self._disk(i) for i in infos if i.cwd and _under(i.cwd, self.roots)]
        out.sort(key=lambda s: s.modified, reverse=True)
        return out[:limit]

    def get(self, claude_id: str) -> DiskSession | None:
        """One session by id, or by a unique prefix of at least 6 characters."""
        claude_id = claude_id.strip().lower()
        if len(claude_id) < 36:
            matches = [s for s in self.recent(limit=1000) if s.id.startswith(claude_id)]
            return matches[0] if len(claude_id) >= 6 and len(matches) == 1 else None
        with _claude_env(self.env):
            info = claude_agent_sdk.get_session_info(claude_id)
        if info is None or not info.cwd or not _under(info.cwd, self.roots):
            return None
        return self._disk(info)

    def exchanges(
        self, claude_id: str, cwd: str | None = None, limit: int = RECAP_MESSAGES
    ) -> list[Exchange]:
        """The last `limit` messages with visible text (tool calls summarised)."""
        with _claude_env(self.env):
            messages = claude_agent_sdk.get_session_messages(claude_id, cwd)
        out: list[Exchange] = []
        for m in messages:
            text, tools = _text_of(m.message)
            if m.type == "assistant" and tools:
                text = "\n".join([text, *(f"▸ {t}" for t in tools)]).strip()
            if not text:
                continue
            if out and out[-1].role == m.type:  # one assistant turn spans several messages
                out[-1] = Exchange(m.type, f"{out[-1].text}\n\n{text}")
            else:
                out.append(Exchange(m.type, text))
        return out[-limit:]

    @staticmethod
    def _disk(info: claude_agent_sdk.SDKSessionInfo) -> DiskSession:
        return DiskSession(
            id=info.session_id,
            cwd=info.cwd or "",
            title=info.custom_title or info.summary or "",
            first_prompt=" ".join((info.first_prompt or "").split()),
            modified=_when(info.last_modified),
        )


def recap(disk: DiskSession, exchanges: Sequence[Exchange]) -> Outbound:
    """The first message of an imported session's thread."""
    lines = [f"📥 Imported Claude Code session `{disk.id}` from `{disk.cwd.replace('`', '')}`."]
    if exchanges:
        lines.append("**Last exchanges:**")
    for ex in exchanges:
        who = "🧑 **You:**" if ex.role == "user" else "🤖 **Claude:**"
        text = " ".join(ex.text.split())
        limit = 300 if ex.role == "user" else 600
        shown = text if len(text) <= limit else text[: limit - 1] + "…"
        lines.append(f"{who} {render.md_escape(shown)}")
    lines.append("Send a message here to continue this session.")
    return Outbound((Markdown("\n\n".join(lines)),), notify=True)


def listing(sessions: Sequence[DiskSession], platform: str) -> Outbound:
    if not sessions:
        return render.notice("No Claude Code sessions on disk under the allowed roots.")
    lines = [f"**Claude Code sessions on disk** ({len(sessions)}, newest first)"]
    for s in sessions:
        prompt = s.first_prompt or s.title or "(no prompt)"
        prompt = prompt if len(prompt) <= 70 else prompt[:69] + "…"
        lines.append(
            f"• `{s.id[:8]}` · `{Path(s.cwd).name}` · {s.modified:%Y-%m-%d %H:%M} · "
            f"{render.md_escape(prompt)}"
        )
    lines.append(
        f"{render.cmd(platform, 'import ID')} (or a button) continues one in a new thread."
    )
    buttons = tuple(
        (Button(f"📥 {Path(s.cwd).name}: {(s.first_prompt or s.title)[:30]}", f"i:{s.id}"),)
        for s in sessions[:5]
    )
    return Outbound((Markdown("\n".join(lines)),), buttons=buttons)


class Importer:
    """Brings sessions on disk into threads (the `import` command, `threadline import`)."""

    def __init__(
        self,
        config: Config,
        db: Database,
        adapters: Mapping[str, ChatAdapter],
        threads: Threads,
        claude_sessions: ClaudeSessions,
        open_session: OpenSession,
    ) -> None:
        self.config = config
        self.db = db
        self.adapters = adapters
        self.threads = threads
        self.claude_sessions = claude_sessions
        self.open_session = open_session

    async def import_session(
        self, origin: ThreadRef | None, owner: str, claude_id: str
    ) -> tuple[SessionRow | None, str]:
        """Open a thread for a session on disk; (session, what to tell the person).
        Without `origin` (from the terminal) the thread opens where the first configured
        owner's sessions open."""
        sessions = self.claude_sessions
        origin = origin or self.default_origin()
        if origin is None:
            return None, "No chat to open the thread in (no owner on an enabled platform)."
        disk = await asyncio.to_thread(sessions.get, claude_id)
        if disk is None:
            return None, f"No Claude Code session `{claude_id[:40]}` under the allowed roots."
        existing = self.db.sessions.by_claude_id(disk.id)
        if existing is not None and self.threads.thread_of(existing.id) is not None:
            return existing, f"Session `{disk.id[:8]}` is already session `{existing.id}` here."
        try:
            cwd = resolve_session_dir(disk.cwd, self.config.agent.allowed_roots)
        except PathRefused as e:
            return None, f"🚫 {e}"
        cap = self.config.agent.max_concurrent_sessions
        if self.db.sessions.count_open() >= cap:
            return None, (
                f"🚫 {cap} sessions are open already; {render.cmd(origin.platform, 'end')} one first."
            )
        summary = " ".join((disk.first_prompt or disk.title).split())[:60]
        opened = await self.open_session(
            origin, owner, cwd, title=f"{cwd.name}: {summary}" if summary else cwd.name,
            claude_session_id=disk.id,
        )  # fmt: skip
        if opened is None:  # the cap, reached in the meantime: `origin` was told
            return None, f"🚫 {cap} sessions are open already."
        row, thread = opened
        exchanges = await asyncio.to_thread(sessions.exchanges, disk.id, disk.cwd)
        self.threads.reply(thread, recap(disk, exchanges), session_id=row.id)
        self.db.audit.log(platform=thread.platform, user=owner, action="import", detail=disk.id)
        link = self.adapters[thread.platform].thread_link(thread)
        return row, f"Imported as session `{row.id}`" + (f": {link}" if link else ".")

    def default_origin(self) -> ThreadRef | None:
        """Where a thread opened from the terminal goes: the chat of the most recently
        active session (where the owner talks to the bot), else the first owner's
        private chat on the first enabled platform."""
        for row in self.db.sessions.list()[:20]:
            binding = self.db.bindings.for_session(row.id)
            if binding is not None and binding.platform in self.adapters:
                adapter = self.adapters[binding.platform]
                origin = ThreadRef(binding.platform, binding.chat_id)
                return ThreadRef(binding.platform, adapter.default_chat(origin))
        for platform, adapter in self.adapters.items():
            for owner in self.config.access.owners:
                kind, _, user_id = owner.partition(":")
                if kind == platform and user_id:
                    chat = adapter.default_chat(ThreadRef(platform, user_id))
                    return ThreadRef(platform, chat)
        return None

    async def import_and_tell(self, origin: ThreadRef, owner: str, claude_id: str) -> None:
        row, said = await self.import_session(origin, owner, claude_id)
        thread = self.threads.thread_of(row.id) if row is not None else None
        if row is None or thread is None or thread.key != origin.key:
            self.threads.reply(origin, render.notice(said))


__all__ = [
    "ClaudeSessions",
    "DiskSession",
    "Exchange",
    "Importer",
    "listing",
    "recap",
]
