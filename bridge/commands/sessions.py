"""Session commands: `new`, `end`, `resume`, `sessions`, `handoff`, and the picker
buttons of `new` (``nh:<host>``: that host's directories; ``n:<session>``: a new
session in that session's directory; ``nd:``: a root or a repository in one).

`new HOST:PATH` is handed to HOST (`bridge/forward.py`), which resolves PATH under
its own `allowed_roots` and opens the session there.  Opening a session and its thread
is `bridge/commands/opening.py` (`open_session`, re-exported here).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from pathlib import Path

from adapters.messages import Button, Code, Markdown, Outbound, ThreadRef
from bridge import render
from bridge.access.control import PathRefused, resolve_session_dir
from bridge.commands import dir_picker
from bridge.commands.context import CommandContext, PressContext, Services
from bridge.commands.hosts import session_hosts
from bridge.commands.opening import open_session
from bridge.commands.registry import Section, button, command
from storage.models import SessionRow

log = logging.getLogger(__name__)


@command(
    "new",
    usage="[HOST:][PATH] [PROMPT]",
    help="start a session in PATH (on HOST), optionally with a first prompt",
    section=Section.SESSION,
)
async def cmd_new(ctx: CommandContext) -> None:
    s = ctx.services
    hosts = s.forward.known_hosts()
    target = ctx.command.new_target(hosts)
    if target.worktree:
        ctx.reply(render.notice("`--worktree` is not available yet."))
        return
    if target.unknown_host is not None:
        listed = ", ".join(f"`{h}`" for h in hosts)
        ctx.reply(
            render.notice(
                f"🚫 No host is named `{render.md_escape(target.unknown_host)}`; the hosts are "
                f"{listed}. (A directory with ':' in its name: write `./` before it.)"
            )
        )
        return
    if target.host is not None and target.host != s.hosts.name:
        # That host resolves PATH under its own roots and opens the session itself.
        await s.forward.forward_message(ctx.message, target.host)
        return
    if target.path is None:
        online = [h for h in s.hosts.statuses() if h.online]
        if target.host is None and len(online) > 1:  # first: which machine
            ctx.reply(_host_picker([h.name for h in online], s.hosts.name))
        else:  # recent directories, the roots and the repos in them
            ctx.reply(await _dir_picker(s, ctx.thread.platform))
        return
    cwd = _allowed_dir(ctx, target.path)
    if cwd is not None:
        await _new_session(s, ctx.thread, ctx.sender.key, cwd, target.prompt)


def _host_picker(names: list[str], this: str) -> Outbound:
    buttons = [
        (Button(f"{name} (this host)" if name == this else name, f"nh:{name}"),) for name in names
    ]
    return Outbound((Markdown("Start a session on which host?"),), tuple(buttons))


async def _dir_picker(s: Services, platform: str) -> Outbound:
    recent = [(r.cwd, Button(Path(r.cwd).name or r.cwd, f"n:{r.id}")) for r in _recent_dirs(s)]
    roots = s.config.agent.allowed_roots
    return await asyncio.to_thread(dir_picker.picker, platform, roots, recent)


@button("nh")
async def press_new_on_host(ctx: PressContext, rest: str) -> None:
    # a host offered by `new` without a path: that host posts its own directory
    # picker, so the presses on it come back to it (`outbox.host`)
    s = ctx.services
    if rest == s.hosts.name:
        ctx.reply(await _dir_picker(s, ctx.thread.platform))
    elif rest in s.forward.known_hosts():
        await s.forward.forward_press(ctx.press, rest)
    else:
        ctx.refuse("stale or foreign button")


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
    elsewhere = s.forward.message_target(target)
    if elsewhere is not None:  # its Claude Code runs there
        await s.forward.forward_message(ctx.message, elsewhere)
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
