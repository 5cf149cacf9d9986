"""Chat command handlers and button presses.

One method per command in SPEC §3; each validates its input, answers in the thread
it came from, and leaves the heavy lifting to the bridge (sessions, outbox) and the
broker (permissions).  Commands with a module of their own are routed there
(`EXTERNAL`): `import` (`bridge/sources/importer.py`), `get` (`bridge/files.py`),
`schedule` / `schedules` / `unschedule` (`bridge/sources/scheduler.py`), `pair`
(`bridge/access/pairing.py`), `rules` (`bridge/approvals/rules_cmd.py`).  Button data is opaque and short: ``p:<request>:<a|s|d>``
(permission), ``x:<session>`` (stop), ``m:<session>:<mode index>`` (mode),
``n:<session>`` (new session in that one's directory), ``i:<claude session id>``
(import), ``t:<trust request>:<y|n>`` (folder trust, `bridge/approvals/trust.py`), ``r:<session>:<rule id>``
(remove a session rule).  Every press is checked against the thread it came from.
"""

from __future__ import annotations

import logging
import secrets
import shlex
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.messages import Button, ButtonPress, Code, Markdown, Outbound, ThreadRef, UserMessage
from bridge import files, gitsafe, render
from bridge.access import pairing
from bridge.access.control import PathRefused, resolve_session_dir
from bridge.approvals import rules_cmd, trust
from bridge.commands.parse import Command
from bridge.config import PERMISSION_MODES
from bridge.outbox.outbox import DeliveryFailed
from bridge.sources import importer, scheduler
from storage.models import SessionRow

if TYPE_CHECKING:
    from bridge.app import Bridge

log = logging.getLogger(__name__)

IMPLEMENTED = (
    "new",
    "stop",
    "mode",
    "model",
    "diff",
    "cost",
    "end",
    "resume",
    "sessions",
    "import",
    "get",
    "handoff",
    "schedule",
    "schedules",
    "unschedule",
    "pair",
    "trust",
    "untrust",
    "rules",
    "help",
)
Handler = Callable[["Bridge", Command, UserMessage, SessionRow | None], Awaitable[None]]
EXTERNAL: dict[str, Handler] = {
    "import": importer.cmd_import,
    "get": files.cmd_get,
    "schedule": scheduler.cmd_schedule,
    "schedules": scheduler.cmd_schedules,
    "unschedule": scheduler.cmd_unschedule,
    "pair": pairing.cmd_pair,
    "trust": trust.cmd_trust,
    "untrust": trust.cmd_untrust,
    "rules": rules_cmd.cmd_rules,
}
IN_SESSION = (
    "stop",
    "mode",
    "model",
    "diff",
    "end",
    "handoff",
    "get",
    "schedule",
    "trust",
    "untrust",
    "rules",
)
_MODE_LABELS = {
    "default": "Default",
    "acceptEdits": "Accept edits",
    "plan": "Plan",
    "bypassPermissions": "Bypass",
}


class Handlers:
    def __init__(self, bridge: Bridge) -> None:
        self.b = bridge

    # --- dispatch -------------------------------------------------------------

    async def command(self, cmd: Command, msg: UserMessage, session: SessionRow | None) -> None:
        name = cmd.name
        if name == "ignored":  # `/cmd@otherbot` in a group: not for us
            return
        if name not in IMPLEMENTED:
            shown = cmd.original if name == "unknown" else name
            self.b.reply(msg.thread, render.notice(f"Unknown command `{shown}` — see `/help`."))
            return
        if name in IN_SESSION and session is None:
            self.b.reply(
                msg.thread,
                render.notice(f"`{name}` works inside a session's thread. `/sessions` lists them."),
            )
            return
        if name in EXTERNAL:
            await EXTERNAL[name](self.b, cmd, msg, session)
            return
        await getattr(self, f"cmd_{name}")(cmd, msg, session)

    async def button(self, press: ButtonPress) -> None:
        kind, _, rest = press.data.partition(":")
        if kind == "p":
            request_id, _, choice = rest.rpartition(":")
            answer = await self.b.broker.press(
                request_id, choice, press.thread, press.sender.key, press.sender.display_name
            )
            log.info("permission press %s → %s", choice, answer)
            if not answer.startswith(("Allowed", "Denied")):
                await self.b.adapters[press.thread.platform].answer_press(press, answer)
            return
        if kind == "t":  # trust prompt: checked against its stored request (bridge/approvals/trust.py)
            answer = await self.b.trust.press(press, rest)
            log.info("trust press → %s", answer)
            await self.b.adapters[press.thread.platform].answer_press(press, answer)
            return
        if kind == "i":
            await self.b.importer.import_and_tell(press.thread, press.sender.key, rest)
            return
        session = self.b.db.sessions.get(rest.partition(":")[0])
        if kind == "n" and session is not None:
            # the directory picker of `new` is posted wherever `new` was typed: it is
            # tied to no thread, only to a directory still under allowed_roots
            await self._new_in_recent_dir(press, session)
            return
        thread = self.b.thread_of(session.id) if session else None
        if session is None or thread is None or thread.key != press.thread.key:
            self._refuse_press(press, "stale or foreign button")
            return
        index = rest.partition(":")[2]
        if kind == "x":
            await self.stop_turn(session, thread)
        elif kind == "m" and index.isdigit() and int(index) < len(PERMISSION_MODES):
            await self._set_mode(session, thread, PERMISSION_MODES[int(index)])
        elif kind == "r":
            await rules_cmd.remove_pressed(self.b, press, session, thread, index)
        else:
            self._refuse_press(press, "unknown button")

    def _refuse_press(self, press: ButtonPress, why: str) -> None:
        log.warning("refused button %r from %s: %s", press.data[:64], press.sender.key, why)
        self.b.db.audit.log(
            platform=press.sender.platform,
            user=press.sender.key,
            action="button",
            detail=why,
            allowed=False,
        )

    async def _new_in_recent_dir(self, press: ButtonPress, recent: SessionRow) -> None:
        try:
            cwd = resolve_session_dir(recent.cwd, self.b.config.agent.allowed_roots)
        except PathRefused as e:
            self.b.db.audit.log(
                platform=press.sender.platform,
                user=press.sender.key,
                action="new",
                detail=f"refused path {recent.cwd[:200]}",
                allowed=False,
            )
            self.b.reply(press.thread, render.notice(f"🚫 {e}"))
            return
        await self._new_session(press.thread, press.sender.key, cwd, "")

    # --- commands -------------------------------------------------------------

    async def cmd_help(self, cmd: Command, msg: UserMessage, session: SessionRow | None) -> None:
        prefix = "/" if msg.thread.platform == "telegram" else "!"
        self.b.reply(msg.thread, render.help_message(prefix, only=IMPLEMENTED))

    async def cmd_new(self, cmd: Command, msg: UserMessage, session: SessionRow | None) -> None:
        raw_path, prompt = cmd.path, cmd.prompt
        if raw_path is None:
            recent = self._recent_dirs()
            if not recent:
                self.b.reply(
                    msg.thread, render.notice("Which directory? `/new ~/code/app [prompt]`")
                )
                return
            buttons = tuple((Button(Path(r.cwd).name or r.cwd, f"n:{r.id}"),) for r in recent)
            self.b.reply(
                msg.thread,
                Outbound(
                    blocks=(Markdown("Start a session in which directory?"),), buttons=buttons
                ),
            )
            return
        try:
            cwd = resolve_session_dir(raw_path, self.b.config.agent.allowed_roots)
        except PathRefused as e:
            self.b.db.audit.log(
                platform=msg.sender.platform,
                user=msg.sender.key,
                action="new",
                detail=f"refused path {raw_path[:200]}",
                allowed=False,
            )
            self.b.reply(msg.thread, render.notice(f"🚫 {e}"))
            return
        await self._new_session(msg.thread, msg.sender.key, cwd, prompt or "")

    async def _new_session(self, origin: ThreadRef, owner: str, cwd: Path, prompt: str) -> None:
        summary = " ".join(prompt.split())[:60]
        title = f"{cwd.name}: {summary}" if summary else cwd.name
        opened = await self.open_session(origin, owner, cwd, title=title)
        if opened is None:
            return
        row, thread = opened
        if prompt:  # `prompt` starts Claude Code, the session "running" from the start
            await self.b.prompt(row, thread, prompt)
        else:
            await self.b.agent_for(row)
            self.b.reply(
                thread,
                render.notice("Ready. Send a message to give Claude its first prompt."),
                session_id=row.id,
            )

    async def open_session(
        self,
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
        b = self.b
        if b.db.sessions.count_open() >= b.config.agent.max_concurrent_sessions:
            b.reply(
                origin,
                render.notice(
                    f"🚫 {b.config.agent.max_concurrent_sessions} sessions are open already; `/end` one first."
                ),
            )
            return None
        adapter = b.adapters[origin.platform]
        row = SessionRow(
            id=secrets.token_hex(3),
            platform=origin.platform,
            cwd=str(cwd),
            title=title,
            owner=owner,
            mode=b.config.agent.permission_mode,
            model=b.config.agent.model,
            claude_session_id=claude_session_id,
            state="opening",
        )
        session_id = row.id
        header = render.session_header(session_id, str(cwd), row.mode, row.model)
        chat = adapter.default_chat(origin)
        early: list[ThreadRef] = []

        def created(topic: ThreadRef) -> None:
            # The topic exists, its header does not yet: recorded now, a daemon killed
            # in between finds the session ("opening") and finishes it on restart.
            if not early:
                b.bind(row, topic, None, "topic")
                early.append(topic)

        thread, header_id = await b.platform_call(
            origin.platform,
            chat,
            lambda: adapter.open_thread(chat, title[:120], header, on_created=created),
            calls=2,
        )
        kind = "reply" if (thread.thread_id or "").startswith("reply:") else "topic"
        row.state = "active"
        if early:  # the header is in; the thread may have become a reply chain meanwhile
            b.db.bindings.rebind(
                early[0].key,
                thread_id=thread.thread_id,
                thread_key=thread.key,
                kind=kind,
                header_message_id=header_id,
            )
            b.forget_thread(session_id)
            b.db.sessions.update(session_id, state="active")
        else:
            b.bind(row, thread, header_id, kind)
        b.db.audit.log(
            platform=origin.platform, user=owner, action="new", detail=f"{session_id} {cwd}"
        )
        if thread.key != origin.key:
            b.reply(
                origin, render.session_started(session_id, str(cwd), adapter.thread_link(thread))
            )
        return row, thread

    def _recent_dirs(self) -> list[SessionRow]:
        seen: set[str] = set()
        out: list[SessionRow] = []
        for row in self.b.db.sessions.list():
            if row.cwd not in seen:
                seen.add(row.cwd)
                out.append(row)
        return out[:5]

    async def cmd_stop(self, cmd: Command, msg: UserMessage, session: SessionRow | None) -> None:
        assert session is not None
        await self.stop_turn(session, msg.thread)

    async def stop_turn(self, session: SessionRow, thread: ThreadRef) -> None:
        agent = self.b.host.get(session.id)
        if agent is None or not agent.busy:
            self.b.reply(thread, render.notice("Nothing is running."))
            return
        await self.b.broker.cancel_session(session.id, "stopped")
        await agent.interrupt()

    async def cmd_mode(self, cmd: Command, msg: UserMessage, session: SessionRow | None) -> None:
        assert session is not None
        if not cmd.args:
            buttons = tuple(
                (
                    Button(
                        ("• " if m == session.mode else "") + _MODE_LABELS[m], f"m:{session.id}:{i}"
                    ),
                )
                for i, m in enumerate(PERMISSION_MODES)
                if m != "bypassPermissions" or self.b.config.agent.allow_bypass
            )
            self.b.reply(
                msg.thread,
                Outbound(
                    blocks=(Markdown(f"Permission mode: **{session.mode}**"),), buttons=buttons
                ),
            )
            return
        wanted = {m.lower(): m for m in PERMISSION_MODES}.get(cmd.args[0].lower())
        if wanted is None:
            self.b.reply(
                msg.thread,
                render.notice(
                    f"Unknown mode `{cmd.args[0][:40]}`; one of: {', '.join(PERMISSION_MODES)}."
                ),
            )
            return
        await self._set_mode(session, msg.thread, wanted)

    async def _set_mode(self, session: SessionRow, thread: ThreadRef, mode: str) -> None:
        if mode == "bypassPermissions" and not self.b.config.agent.allow_bypass:
            self.b.reply(
                thread,
                render.notice(
                    "🚫 bypassPermissions is disabled (set `allow_bypass = true` in [agent] to allow it)."
                ),
            )
            return
        agent = await self.b.agent_for(session)
        await agent.set_mode(mode)
        self.b.db.sessions.update(session.id, mode=mode)
        self.b.reply(thread, render.notice(f"Permission mode: **{mode}**"), session_id=session.id)

    async def cmd_model(self, cmd: Command, msg: UserMessage, session: SessionRow | None) -> None:
        assert session is not None
        if not cmd.args:
            self.b.reply(
                msg.thread,
                render.notice(
                    f"Model: **{session.model or 'Claude Code default'}**. `/model NAME` switches."
                ),
            )
            return
        name = cmd.args[0][:100]
        agent = await self.b.agent_for(session)
        await agent.set_model(name)
        self.b.db.sessions.update(session.id, model=name)
        self.b.reply(msg.thread, render.notice(f"Model: **{name}**"), session_id=session.id)

    async def cmd_end(self, cmd: Command, msg: UserMessage, session: SessionRow | None) -> None:
        assert session is not None
        thread = self.b.thread_of(session.id) or msg.thread
        await self.b.broker.cancel_session(session.id, "session ended")
        await self.b.host.end_session(session.id)
        self.b.db.sessions.update(session.id, state="ended")
        ids = self.b.reply(
            thread,
            render.notice(f"Session `{session.id}` ended. `resume {session.id}` reopens it."),
            session_id=session.id,
        )
        try:
            await self.b.outbox.wait_sent(ids[-1], timeout=30)
        except (TimeoutError, DeliveryFailed):
            log.warning(
                "session %s: end notice not delivered in time; closing the thread anyway",
                session.id,
            )
        adapter = self.b.adapters[thread.platform]
        await self.b.platform_call(
            thread.platform, thread.chat_id, lambda: adapter.close_thread(thread)
        )

    async def cmd_resume(self, cmd: Command, msg: UserMessage, session: SessionRow | None) -> None:
        target = self.b.db.sessions.get(cmd.args[0]) if cmd.args else session
        if target is None:
            self.b.reply(msg.thread, render.notice("Which session? `/sessions` lists them."))
            return
        thread = self.b.thread_of(target.id)
        if thread is None:
            return
        cap = self.b.config.agent.max_concurrent_sessions
        reopens = target.state not in ("opening", "active", "running")
        if reopens and self.b.db.sessions.count_open() >= cap:
            self.b.reply(
                msg.thread,
                render.notice(f"🚫 {cap} sessions are open already; `/end` one first."),
            )
            return
        await self.b.agent_for(target)
        self.b.db.sessions.update(target.id, state="active")
        self.b.reply(
            thread,
            render.notice(f"Session `{target.id}` is open again; send a message to continue."),
            session_id=target.id,
        )

    async def cmd_sessions(
        self, cmd: Command, msg: UserMessage, session: SessionRow | None
    ) -> None:
        rows = []
        for row in self.b.db.sessions.list()[:30]:
            thread = self.b.thread_of(row.id)
            link = (
                self.b.adapters[thread.platform].thread_link(thread)
                if thread and thread.platform in self.b.adapters
                else None
            )
            rows.append(
                render.SessionSummary(
                    row.id, row.title, row.cwd, row.state, row.last_activity, row.cost_usd, link
                )
            )
        self.b.reply(msg.thread, render.sessions_message(rows))

    async def cmd_cost(self, cmd: Command, msg: UserMessage, session: SessionRow | None) -> None:
        """Sums of the turns' own costs (`TurnEnded.cost_usd`, per turn, not the CLI's
        cumulative total); "today" and "this month" in the owner's time zone."""
        now = self.b.now().astimezone(self.b.config.agent.tz())
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        month = day.replace(day=1)
        lines = []
        if session is not None:
            cost, tin, tout = self.b.db.turns.cost_since(
                datetime(1970, 1, 1, tzinfo=UTC), session.id
            )
            lines.append(f"This session: **${cost:.4f}** · {tin:,} in / {tout:,} out tokens")
        for label, since in (("Today", day), ("This month", month)):
            cost, tin, tout = self.b.db.turns.cost_since(since)
            lines.append(f"{label}: **${cost:.4f}** · {tin:,} in / {tout:,} out tokens")
        self.b.reply(msg.thread, render.notice("\n".join(lines)))

    async def cmd_diff(self, cmd: Command, msg: UserMessage, session: SessionRow | None) -> None:
        assert session is not None
        try:  # run so the repository's config cannot run programs (bridge/gitsafe.py)
            result = await gitsafe.diff_head(session.cwd)
        except (OSError, TimeoutError) as e:
            self.b.reply(msg.thread, render.notice(f"`git diff` failed: {e}"))
            return
        if result.code != 0:
            self.b.reply(msg.thread, render.notice(f"`git diff` failed: {result.err[:300]}"))
            return
        diff = result.out
        if not diff.strip():
            self.b.reply(msg.thread, render.notice("No changes against HEAD."))
            return
        self.b.reply(msg.thread, render.diff_message(diff, name=f"{Path(session.cwd).name}.diff"))

    async def cmd_handoff(self, cmd: Command, msg: UserMessage, session: SessionRow | None) -> None:
        assert session is not None
        q = shlex.quote  # a directory may hold spaces or `;`: every word printed is quoted
        lines = [f"cd {q(session.cwd)}"]
        if session.claude_session_id:
            lines.append(f"claude --resume {q(session.claude_session_id)}")
        attach = f"threadline attach {q(session.id)}"
        self.b.reply(
            msg.thread,
            Outbound(
                blocks=(
                    Markdown("Continue at your desk — on your own (end the session here first):"),
                    Code("\n".join(lines), "bash"),
                    Markdown("…or alongside this chat, the same live session:"),
                    Code(attach, "bash"),
                )
            ),
        )


__all__ = ["Handlers", "IMPLEMENTED"]
