"""Session commands: `new`, `end`, `resume`, `sessions`, `handoff`, and the directory
picker's button (``n:<session>``: a new session in that session's directory).

`open_session` is also how an imported Claude Code session gets its thread
(`bridge/sources/importer.py`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shlex
from pathlib import Path

from adapters.messages import Button, Code, Markdown, Outbound, ThreadRef
from bridge import render
from bridge.access.control import PathRefused, resolve_session_dir
from bridge.commands import dir_picker
from bridge.commands.context import CommandContext, PressContext, Services
from bridge.commands.hosts import session_hosts
from bridge.commands.registry import Section, button, command
from storage.models import SessionRow
from storage.types import BindingKind, SessionId

log = logging.getLogger(__name__)


@command(
    "new",
    usage="[PATH] [PROMPT]",
    help="start a session in PATH, optionally with a first prompt",
    section=Section.SESSION,
)
async def cmd_new(ctx: CommandContext) -> None:
    raw_path, prompt = ctx.command.path, ctx.command.prompt
    if raw_path is None:  # offer recent directories, the roots and the repos in them
        recent = [
            (r.cwd, Button(Path(r.cwd).name or r.cwd, f"n:{r.id}"))
            for r in _recent_dirs(ctx.services)
        ]
        roots = ctx.services.config.agent.allowed_roots
        ctx.reply(await asyncio.to_thread(dir_picker.picker, ctx.thread.platform, roots, recent))
        return
    cwd = _allowed_dir(ctx, raw_path)
    if cwd is not None:
        await _new_session(ctx.services, ctx.thread, ctx.sender.key, cwd, prompt or "")


@button("nd")
async def press_new_in_root(ctx: PressContext, rest: str) -> None:
    # a root or a git repository inside one, offered by `new` without a path
    raw = dir_picker.resolve(ctx.services.config.agent.allowed_roots, rest)
    if raw is None:
        ctx.refuse("stale or foreign button")
        return
    cwd = _allowed_dir(ctx, raw)  # the roots may have changed since
    if cwd is not None:
        await _new_session(ctx.services, ctx.thread, ctx.sender.key, cwd, "")


@button("n")
async def press_new_in_recent_dir(ctx: PressContext, rest: str) -> None:
    # the directory picker of `new` is posted wherever `new` was typed: it is tied to
    # no thread, only to a directory still under allowed_roots
    recent = ctx.db.sessions.get(rest.partition(":")[0])
    if recent is None:
        ctx.refuse("stale or foreign button")
        return
    cwd = _allowed_dir(ctx, recent.cwd)  # the roots may have changed since
    if cwd is not None:
        await _new_session(ctx.services, ctx.thread, ctx.sender.key, cwd, "")


def _allowed_dir(ctx: CommandContext | PressContext, raw: str) -> Path | None:
    """`raw` resolved under `allowed_roots`, or None after telling the person why and
    auditing the refusal."""
    try:
        return resolve_session_dir(raw, ctx.services.config.agent.allowed_roots)
    except PathRefused as e:
        ctx.services.db.audit.log(
            platform=ctx.sender.platform,
            user=ctx.sender.key,
            action="new",
            detail=f"refused path {raw[:200]}",
            allowed=False,
        )
        ctx.reply(render.notice(f"🚫 {e}"))
        return None


async def _new_session(s: Services, origin: ThreadRef, owner: str, cwd: Path, prompt: str) -> None:
    summary = " ".join(prompt.split())[:60]
    title = f"{cwd.name}: {summary}" if summary else cwd.name
    opened = await open_session(s, origin, owner, cwd, title=title)
    if opened is None:
        return
    row, thread = opened
    if prompt:  # `prompt` starts Claude Code, the session "running" from the start
        await s.prompt(row, thread, prompt)
    else:
        await s.agent_for(row)
        s.reply(
            thread,
            render.notice("Ready. Send a message to give Claude its first prompt."),
            session_id=row.id,
        )


async def open_session(
    s: Services,
    origin: ThreadRef,
    owner: str,
    cwd: Path,
    *,
    title: str,
    claude_session_id: str | None = None,
) -> tuple[SessionRow, ThreadRef] | None:
    """A session row and its new thread (a topic, or a reply chain), announced in
    `origin` if that is elsewhere; None (and `origin` told why) at the session cap.
    With `claude_session_id` the session continues that Claude session."""
    if s.db.sessions.count_open() >= s.config.agent.max_concurrent_sessions:
        s.reply(
            origin,
            render.notice(
                f"🚫 {s.config.agent.max_concurrent_sessions} sessions are open already; "
                f"{render.cmd(origin.platform, 'end')} one first."
            ),
        )
        return None
    adapter = s.adapters[origin.platform]
    row = SessionRow(
        id=SessionId(secrets.token_hex(3)),
        platform=origin.platform,
        cwd=str(cwd),
        title=title,
        owner=owner,
        mode=s.config.agent.permission_mode,
        model=s.config.agent.model,
        claude_session_id=claude_session_id,
        state="opening",
        host=s.config.daemon.host,
    )
    session_id = row.id
    header = render.session_header(session_id, str(cwd), row.mode, row.model)
    chat = adapter.default_chat(origin)
    early: list[ThreadRef] = []

    def created(topic: ThreadRef) -> None:
        # The topic exists, its header does not yet: recorded now, a daemon killed
        # in between finds the session ("opening") and finishes it on restart.
        if not early:
            s.bind(row, topic, None, "topic")
            early.append(topic)

    thread, header_id = await s.platform_call(
        origin.platform,
        chat,
        lambda: adapter.open_thread(chat, title[:120], header, on_created=created),
        calls=2,
    )
    kind: BindingKind = "reply" if thread.kind == "reply" else "topic"
    row.state = "active"
    if early:  # the header is in; the thread may have become a reply chain meanwhile
        s.db.bindings.rebind(
            early[0].key,
            thread_id=thread.thread_id,
            thread_key=thread.key,
            kind=kind,
            header_message_id=header_id,
        )
        s.forget_thread(session_id)
        s.db.sessions.update(session_id, state="active")
    else:
        s.bind(row, thread, header_id, kind)
    s.db.audit.log(platform=origin.platform, user=owner, action="new", detail=f"{session_id} {cwd}")
    if thread.key != origin.key:
        s.reply(origin, render.session_started(session_id, str(cwd), adapter.thread_link(thread)))
    return row, thread


def _recent_dirs(s: Services) -> list[SessionRow]:
    seen: set[str] = set()
    out: list[SessionRow] = []
    for row in s.db.sessions.list():
        if row.cwd not in seen:
            seen.add(row.cwd)
            out.append(row)
    return out[:5]


@command(
    "end",
    help="end the session and close its thread",
    section=Section.SESSION,
    in_session=True,
)
async def cmd_end(ctx: CommandContext) -> None:
    s, session = ctx.services, ctx.session
    assert session is not None
    thread = s.thread_of(session.id) or ctx.thread
    await s.broker.cancel_session(session.id, "session ended")
    await s.end_agent(session.id)
    s.db.sessions.update(session.id, state="ended")
    s.reply(
        thread,
        render.notice(
            f"Session `{session.id}` ended. "
            f"{render.cmd(thread.platform, f'resume {session.id}')} reopens it."
        ),
        session_id=session.id,
    )
    # Closed by the gateway after the notice (FIFO in the thread), on whichever host.
    s.outbox.enqueue_close(thread, session_id=session.id)


@command(
    "resume",
    usage="[ID]",
    help="reopen an ended or interrupted session",
    section=Section.SESSION,
)
async def cmd_resume(ctx: CommandContext) -> None:
    s = ctx.services
    target = s.db.sessions.get(ctx.command.args[0]) if ctx.command.args else ctx.session
    if target is None:
        ctx.reply(
            render.notice(
                f"Which session? {render.cmd(ctx.thread.platform, 'sessions')} lists them."
            )
        )
        return
    thread = s.thread_of(target.id)
    if thread is None:
        return
    cap = s.config.agent.max_concurrent_sessions
    reopens = target.state not in ("opening", "active", "running")
    if reopens and s.db.sessions.count_open() >= cap:
        ctx.reply(
            render.notice(
                f"🚫 {cap} sessions are open already; {render.cmd(ctx.thread.platform, 'end')} one first."
            )
        )
        return
    await s.agent_for(target)
    s.db.sessions.update(target.id, state="active")
    s.reply(
        thread,
        render.notice(f"Session `{target.id}` is open again; send a message to continue."),
        session_id=target.id,
    )


@command(
    "sessions",
    help="list sessions with their state and threads",
    section=Section.SESSION,
)
async def cmd_sessions(ctx: CommandContext) -> None:
    s = ctx.services
    rows = []
    hosts = session_hosts(s)  # None: one host, not worth a word per session
    for row in s.db.sessions.list()[:30]:
        thread = s.thread_of(row.id)
        link = (
            s.adapters[thread.platform].thread_link(thread)
            if thread and thread.platform in s.adapters
            else None
        )
        host = row.host or s.hosts.name
        rows.append(
            render.SessionSummary(
                row.id, row.title, row.cwd, row.state, row.last_activity, row.cost_usd, link,
                host=host if hosts is not None else None,
                host_online=hosts.get(host, False) if hosts is not None else True,
            )
        )  # fmt: skip
    ctx.reply(render.sessions_message(rows, platform=ctx.thread.platform))


@command(
    "handoff",
    help="how to continue this session at your desk",
    section=Section.SESSION,
    in_session=True,
)
async def cmd_handoff(ctx: CommandContext) -> None:
    session = ctx.session
    assert session is not None
    q = shlex.quote  # a directory may hold spaces or `;`: every word printed is quoted
    lines = [f"cd {q(session.cwd)}"]
    if session.claude_session_id:
        # The CLI the daemon runs, with its environment: `claude` may not be on PATH.
        lines.append(f"threadline claude --resume {q(session.claude_session_id)}")
    attach = f"threadline attach {q(session.id)}"
    ctx.reply(
        Outbound(
            blocks=(
                Markdown("Continue at your desk — on your own (end the session here first):"),
                Code("\n".join(lines), "bash"),
                Markdown("…or alongside this chat, the same live session:"),
                Code(attach, "bash"),
            )
        )
    )
