"""Folder trust in the chat: Trust this folder / Not now, `trust` and `untrust`.

A session's Claude Code loads its folder's own settings (hooks, MCP servers, env,
apiKeyHelper, status line, plugins, allow rules — `agent/trust.py` lists them) only if
the owner trusted the folder *as it is now*: `FolderTrust.wanted` is asked by
`SessionRouter.agent_for` (`bridge/sessions.py`) before every CLI start and every
prompt. Trust is remembered per resolved folder with the fingerprint of what was shown;
a folder whose settings changed since is asked about again and runs without them
meanwhile. Claude Code's own `hasTrustDialogAccepted` record counts as trust (recorded
as source "claude") unless the folder was untrusted here. The prompt's buttons carry a
stored request's random id; a press is honoured only from an owner, in the prompt's
thread, while pending, and only if the folder's settings still have the fingerprint the
prompt showed — otherwise nothing is trusted and the folder is asked about again. What
the CLI is given is the snapshot that was fingerprinted (`agent/trust.py`), never the
files as they are later. A change of trust restarts an idle session's CLI (the
conversation resumes by its Claude session id); a running turn is never cut.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.messages import Button, ButtonPress, Code, FileOut, Markdown, Outbound
from agent.host import AgentHost
from agent.trust import FolderSettings, claude_trusted, inspect_folder
from bridge import render
from bridge.access.control import AccessControl
from bridge.approvals import project_rules
from bridge.commands.context import CommandContext, PressContext
from bridge.commands.registry import Section, button, command
from bridge.outbox.outbox import Outbox
from bridge.threads import Threads
from storage.db import Database
from storage.models import SessionRow, TrustRequestRow

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

INLINE_LIST_CHARS = 3000


def _listing(settings: FolderSettings) -> str:
    return "\n".join(f"• {item.text}  [{item.source}]" for item in settings.items)


def prompt(
    request_id: str, settings: FolderSettings, platform: str, *, changed: bool = False
) -> Outbound:
    why = "changed since it was trusted" if changed else "are not loaded: the folder is not trusted"
    head = (
        f"🛡 This folder's own Claude Code settings {why} — `{settings.folder}`. "
        "Claude Code runs without them. Trusting the folder lets them run:"
    )
    listing = _listing(settings)
    file = None
    if len(listing) > INLINE_LIST_CHARS:
        file = FileOut("folder-settings.txt", listing.encode(), "everything trusting would enable")
        listing = listing[:INLINE_LIST_CHARS].rsplit("\n", 1)[0] + "\n… (the full list is attached)"
    blocks: tuple[Markdown | Code, ...] = (Markdown(head), Code(listing))
    if settings.unreadable:
        blocks += (
            Markdown(
                "⚠️ A settings file could not be read, so what it would run cannot be shown: "
                f"fix or remove it, then send {render.cmd(platform, 'trust')}."
            ),
        )
        return Outbound(blocks, notify=True, file=file, mention=True)
    buttons = (
        Button("🛡 Trust this folder", f"t:{request_id}:y", "danger"),
        Button("Not now", f"t:{request_id}:n"),
    )
    return Outbound(blocks, (buttons,), notify=True, file=file, mention=True, role="prompt")


def _decided(row: TrustRequestRow, text: str) -> Outbound:
    return render.notice(f"🛡 `{row.path}`: {text}")


class FolderTrust:
    """Folder trust for the sessions: what a CLI start may load, the prompt, the answer."""

    def __init__(
        self,
        db: Database,
        host: AgentHost,
        threads: Threads,
        outbox: Outbox,
        access: AccessControl,
    ) -> None:
        self.db = db
        self.host = host
        self.threads = threads
        self.outbox = outbox
        self.access = access

    async def inspect(self, cwd: str) -> FolderSettings:
        return await asyncio.to_thread(inspect_folder, Path(cwd), self.host.cli_env())

    async def wanted(self, row: SessionRow, *, ask_now: bool = True) -> FolderSettings | None:
        """The folder settings the session's CLI may be given (trusted as they are now), or
        None; when None and the folder has some, the thread is asked once (per session and
        settings version)."""
        settings = await self.inspect(row.cwd)
        if not settings.needs_trust or project_rules.only_ours(self.db, settings):
            return None  # nothing to load; CLAUDE.md comes through the system prompt anyway
        path = str(settings.folder)
        record = self.db.trust.folder(path)
        if not settings.unreadable:
            if record is not None and record.revoked_at is None:
                if record.fingerprint == settings.fingerprint:
                    return settings
            elif record is None and await asyncio.to_thread(
                claude_trusted, settings.folder, self.host.cli_env()
            ):
                self.db.trust.trust(path, settings.fingerprint, by="claude", source="claude")
                self.db.audit.log(
                    platform=row.platform,
                    user="claude",
                    action="trust",
                    detail=f"{path} trusted by Claude Code's own record (hasTrustDialogAccepted)",
                )
                thread = self.threads.thread_of(row.id)
                if thread is not None:
                    self.threads.reply(
                        thread,
                        render.notice(
                            f"🛡 `{path}` is trusted in Claude Code itself (its trust dialog was "
                            "accepted there), so its own settings are loaded. "
                            f"{render.cmd(thread.platform, 'untrust')} stops that."
                        ),
                        session_id=row.id,
                    )
                return settings
        if ask_now and not self.db.trust.asked(row.id, settings.fingerprint):
            changed = record is not None and record.revoked_at is None
            self.ask(row, settings, changed=changed)
        return None

    def ask(self, row: SessionRow, settings: FolderSettings, *, changed: bool = False) -> None:
        """Post the Trust this folder / Not now prompt for exactly `settings`."""
        thread = self.threads.thread_of(row.id)
        if thread is None:
            return
        request_id = secrets.token_urlsafe(12)
        self.db.trust.add_request(
            TrustRequestRow(
                id=request_id,
                session_id=row.id,
                path=str(settings.folder),
                fingerprint=settings.fingerprint,
                thread_key=thread.key,
            )
        )
        ids = self.threads.reply(
            thread,
            prompt(request_id, settings, thread.platform, changed=changed),
            session_id=row.id,
        )
        self.db.trust.set_prompt(request_id, ids[0])

    async def press(self, event: ButtonPress, rest: str) -> str:
        """A press on Trust this folder (`y`) or Not now (`n`); the answer for the presser."""
        request_id, _, choice = rest.rpartition(":")
        row = self.db.trust.request(request_id) if request_id else None
        by = event.sender.key
        if row is None or choice not in ("y", "n"):
            return self._refused(event, "unknown trust request", "Unknown request.")
        if not self.access.is_owner(event.sender):
            return self._refused(event, "not an owner", "Only an owner can decide this.")
        if row.thread_key != event.thread.key:
            return self._refused(event, "from another thread", "That button does not belong here.")
        if row.state != "pending":
            return self._refused(event, f"already {row.state}", "Already decided.")
        name = event.sender.display_name or by
        if choice == "n":
            if not self.db.trust.decide(row.id, "declined", by=name):
                return self._refused(event, "already decided", "Already decided.")
            self.db.audit.log(
                platform=event.sender.platform,
                user=by,
                action="trust",
                detail=f"not now {row.path}",
            )
            self._edit(
                row,
                f"not trusted (Not now, {name}). {render.cmd(event.thread.platform, 'trust')} asks again.",
            )
            return "Not trusted."
        settings = await self.inspect(row.path)
        if settings.fingerprint != row.fingerprint or settings.unreadable:
            self.db.trust.decide(row.id, "stale", by=name)
            self._refused(event, f"settings changed since shown {row.path}", "")
            self._edit(row, "its settings changed after this was shown — nothing was trusted.")
            session = self.db.sessions.get(row.session_id)
            if session is not None and settings.needs_trust:
                self.ask(session, settings)
            return "The folder's settings changed since this was shown; nothing was trusted."
        if not self.db.trust.decide(row.id, "trusted", by=name):
            return self._refused(event, "already decided", "Already decided.")
        self.db.trust.trust(row.path, row.fingerprint, by=by, source="chat")
        self.db.audit.log(
            platform=event.sender.platform,
            user=by,
            action="trust",
            detail=f"{row.path} {row.fingerprint[:16]}",
        )
        self._edit(row, f"trusted by {name}. Its own settings are loaded from the next message.")
        busy = await self.apply(row.path)
        if busy:
            thread = self.threads.thread_of(row.session_id)
            if thread is not None:
                self.threads.reply(
                    thread, render.notice("Trusted; it takes effect when the current turn ends.")
                )
        return "Trusted."

    async def apply(self, path: str) -> bool:
        """Stop the idle CLIs in `path` whose trust changed (the next prompt resumes the
        conversation with the right settings); True if one was busy and is left running."""
        busy = False
        for session_id, agent in self.host.sessions.items():
            if str(await asyncio.to_thread(agent.cwd.resolve)) != path:
                continue
            row = self.db.sessions.get(session_id)
            if row is None:
                continue
            project = await self.wanted(row, ask_now=False)
            if (project.fingerprint if project else "") == agent.project_fingerprint:
                continue
            if agent.busy:
                busy = True
                continue
            await self.host.end_session(session_id)
        return busy

    def _edit(self, row: TrustRequestRow, text: str) -> None:
        thread = self.threads.thread_of(row.session_id)
        if thread is not None and row.prompt_outbox_id is not None:
            self.outbox.enqueue_edit(thread, row.prompt_outbox_id, _decided(row, text), priority=0)

    def _refused(self, event: ButtonPress, why: str, answer: str) -> str:
        log.warning("refused trust press %r from %s: %s", event.data[:64], event.sender.key, why)
        self.db.audit.log(
            platform=event.sender.platform,
            user=event.sender.key,
            action="trust",
            detail=f"refused: {why}"[:300],
            allowed=False,
        )
        return answer


@button("t")
async def press_trust(ctx: PressContext, rest: str) -> None:
    """``t:<trust request>:<y|n>``: checked against its stored request."""
    answer = await ctx.services.trust.press(ctx.press, rest)
    log.info("trust press → %s", answer)
    await ctx.answer(answer)


@command(
    "trust",
    help="show what this folder's own Claude Code settings would run, and trust it",
    section=Section.TRUST,
    in_session=True,
    menu=False,
)
async def cmd_trust(ctx: CommandContext) -> None:
    b, session, msg = ctx.services, ctx.session, ctx.message
    assert session is not None
    settings = await b.trust.inspect(session.cwd)
    if not settings.needs_trust:
        b.reply(
            msg.thread,
            render.notice(
                f"Nothing to trust: `{settings.folder}` has no Claude Code settings of its own "
                "(hooks, MCP servers, env, rules)."
            ),
        )
        return
    record = b.db.trust.folder(str(settings.folder))
    if record and record.revoked_at is None and record.fingerprint == settings.fingerprint:
        b.reply(
            msg.thread,
            Outbound(
                (
                    Markdown(
                        f"🛡 `{settings.folder}` is trusted ({record.source}). Its settings run:"
                    ),
                    Code(_listing(settings)[:INLINE_LIST_CHARS]),
                    Markdown(f"{render.cmd(msg.thread.platform, 'untrust')} stops them."),
                )
            ),
        )
        return
    b.trust.ask(session, settings, changed=record is not None and record.revoked_at is None)


@command(
    "untrust",
    help="stop loading this folder's own Claude Code settings",
    section=Section.TRUST,
    in_session=True,
    menu=False,
)
async def cmd_untrust(ctx: CommandContext) -> None:
    b, session, msg = ctx.services, ctx.session, ctx.message
    assert session is not None
    agent = b.host.get(session.id)
    if agent is not None and agent.busy and agent.project_fingerprint:
        b.reply(
            msg.thread,
            render.notice(
                f"A turn is running; send {render.cmd(msg.thread.platform, 'stop')} or wait for "
                f"it to end, then {render.cmd(msg.thread.platform, 'untrust')}."
            ),
        )
        return
    path = str((await b.trust.inspect(session.cwd)).folder)
    was = b.db.trust.revoke(path, by=msg.sender.key)
    b.db.audit.log(platform=msg.sender.platform, user=msg.sender.key, action="untrust", detail=path)
    await b.trust.apply(path)
    b.reply(
        msg.thread,
        render.notice(
            f"🛡 `{path}` is no longer trusted: Claude Code runs without its own settings "
            "(the conversation goes on)."
            if was
            else f"`{path}` was not trusted; it stays that way (Claude Code's own trust record "
            "for it is no longer honoured here either)."
        ),
    )
