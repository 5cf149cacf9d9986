"""The terminal side of `threadline attach ID` (and of `threadline import ID`).

`AttachConnection` speaks the daemon's newline-delimited JSON protocol over the Unix
socket (`bridge/sources/attach.py` documents it); tests drive a session through it directly.
`TerminalView` renders the daemon's events with rich: the recent history, prompts
from the chat (marked with where they came from), Claude's text as it streams, one
dim line per tool call, permission prompts as panels with the diff or command,
Claude's questions with numbered options, Claude's plan as Markdown, and a footer per
turn.  `run_terminal` joins the two with the keyboard: a line typed is a prompt — or
it answers the newest open request: a permission's `allow` / `always` /
`deny [reason]` (also `a`, `s`, `d`), a question's option number(s) or free answer, a
plan's `approve` / `auto` / `keep planning` or feedback; `/stop` interrupts the turn;
`/detach` or Ctrl-C leaves, and the session keeps running in the daemon.

Nothing received is trusted to be terminal-safe or markup-free: every string in
every event passes through `bridge.cli.terminal_text.clean` as it is read (escape
sequences and control characters neutralised), and received text is only ever
printed as rich `Text`, `Markdown` or `Syntax`, or escaped before it joins our own
markup, so a title like `[/x]` is shown as typed rather than read as rich markup.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from bridge.cli.terminal_text import clean_event

MAX_LINE: Final = 1 << 22
ANSWERS: Final = {
    "a": "a", "allow": "a", "y": "a", "yes": "a",
    "s": "s", "always": "s",
    "d": "d", "deny": "d", "n": "d", "no": "d",
}  # fmt: skip
# A bare answer word typed with no prompt open is a mistake, not a prompt for Claude.
ANSWER_WORDS: Final = frozenset({"allow", "always", "deny"})
NO_PROMPT: Final = "No permission request is open."
HELP: Final = (
    "Type a prompt and press Enter.  While a permission prompt is open: "
    "allow (a), always (s: allow for this session), deny (d) [reason].  "
    "Claude's question: the option's number (1, 3 for several) or your own answer.  "
    "Claude's plan: approve, auto (approve and auto-accept edits), or your feedback "
    "to keep planning.  "
    "/stop interrupts the turn, /detach (or Ctrl-C) leaves; the session keeps running."
)


class DaemonUnavailable(Exception):
    """No daemon answers on the socket."""


class AttachConnection:
    """One connection to the daemon's attach socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: Path) -> AttachConnection:
        try:
            reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise DaemonUnavailable(
                f"the daemon is not running (no socket at {path}); start it with `threadline run`"
            ) from e
        except PermissionError as e:
            raise DaemonUnavailable(f"no permission to use {path}") from e
        return cls(reader, writer)

    async def send(self, op: str, **fields: Any) -> None:
        self.writer.write(json.dumps({"op": op, **fields}).encode() + b"\n")
        await self.writer.drain()

    async def recv(self) -> dict[str, Any] | None:
        """The next event; None when the daemon closed the connection."""
        line = await self.reader.readline()
        if not line:
            return None
        try:
            event = clean_event(json.loads(line))
        except ValueError:
            return {"t": "error", "error": "bad event"}
        return event if isinstance(event, dict) else {"t": "error", "error": "bad event"}

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        while (event := await self.recv()) is not None:
            yield event

    async def attach(self, session: str) -> dict[str, Any]:
        """Attach to a session; the `attached` event, or an `error` event."""
        await self.send("attach", session=session)
        event = await self.recv()
        return event or {"t": "error", "error": "the daemon closed the connection"}

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()

    async def __aenter__(self) -> AttachConnection:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class TerminalView:
    """Renders daemon events on a rich console; remembers the open permission prompts."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.conn: int | None = None
        self.pending: list[str] = []  # open permission requests, oldest first
        # open requests of every kind, oldest first: what a typed line answers
        self.open: list[tuple[str, str]] = []  # (request, "permission" | "question" | "plan")
        self.questions: dict[str, tuple[list[dict[str, Any]], int]] = {}  # request → (qs, open)
        self._streaming = False  # text deltas printed since the last newline
        self._streamed = False  # this turn's text was shown as it streamed

    def _end_stream(self) -> None:
        if self._streaming:
            self.console.print()
            self._streaming = False

    def show(self, ev: dict[str, Any]) -> None:
        kind = ev.get("t")
        c = self.console
        if kind == "delta":
            if ev.get("restart") and self._streaming:
                self._end_stream()
                c.print("[dim]↻ the model call was retried; the answer starts over:[/]")
            c.print(Text(str(ev.get("text", ""))), end="")
            self._streaming = self._streamed = True
            return
        self._end_stream()
        if kind == "attached":
            self.conn = ev.get("conn")
            s = ev.get("session") or {}
            title = Text(str(s.get("title") or s.get("id")), style="bold")
            c.rule(title + Text(f" · {s.get('cwd')} · {s.get('state')}"))
            if ev.get("busy"):
                c.print("[dim]A turn is running.[/]")
        elif kind == "history":
            for item in ev.get("items") or []:
                who = (
                    "[bold cyan]you ›[/]"
                    if item.get("role") == "user"
                    else "[bold green]claude ›[/]"
                )
                c.print(who)
                c.print(Markdown(str(item.get("text", ""))))
            c.rule("[dim]live[/]")
            c.print(Text(HELP, style="dim"))
        elif kind == "prompt":
            if ev.get("source") == "terminal" and ev.get("conn") == self.conn:
                return  # our own, already on screen as typed
            where = "terminal" if ev.get("source") == "terminal" else str(ev.get("source"))
            c.print(Text(f"{ev.get('by')} ({where}) › ", style="bold cyan"), end="")
            c.print(Text(str(ev.get("text", ""))))
        elif kind == "turn":
            self._streamed = False
        elif kind == "text" and not self._streamed:
            c.print(Markdown(str(ev.get("text", ""))))
        elif kind == "tool":
            c.print(Text(f"▸ {ev.get('line')}", style="dim"))
        elif kind == "tool_done" and ev.get("error"):
            c.print(Text(f"  ⚠ {str(ev.get('output', ''))[-400:]}", style="red"))
        elif kind == "permission":
            self._permission(ev)
        elif kind == "question":
            self._question(ev)
        elif kind == "plan":
            self._plan(ev)
        elif kind == "decided":
            self._decided(ev)
        elif kind == "end":
            self._turn_end(ev)
        elif kind == "failed":
            error = escape(str(ev.get("error")))
            c.print(f"[red]⚠ Claude Code failed:[/] {error}", highlight=False)
        elif kind in ("notice", "error"):
            style = "red" if kind == "error" else "yellow"
            c.print(Text(str(ev.get("text") or ev.get("error") or ""), style=style))
        elif kind == "answered":
            c.print(Text(str(ev.get("result", "")), style="dim"))
            request, index = str(ev.get("request")), ev.get("index")
            if request in self.questions and isinstance(index, int):
                qs, shown = self.questions[request]
                if index != shown and 0 <= index < len(qs):
                    self.questions[request] = (qs, index)
                    self._show_question(request)

    def _opened(self, request: str, kind: str) -> None:
        if (request, kind) not in self.open:
            self.open.append((request, kind))

    def _question(self, ev: dict[str, Any]) -> None:
        request = str(ev.get("request"))
        qs = [q for q in ev.get("questions") or [] if isinstance(q, dict)]
        index = ev.get("index")
        if not qs:
            return
        self._opened(request, "question")
        self.questions[request] = (qs, index if isinstance(index, int) else 0)
        self._show_question(request)

    def _show_question(self, request: str) -> None:
        qs, index = self.questions[request]
        q = qs[min(index, len(qs) - 1)]
        body = Text()
        body.append(str(q.get("question", "")) + "\n\n", style="bold")
        for n, o in enumerate(q.get("options") or [], 1):
            body.append(f"{n}. {o.get('label', '')}", style="bold")
            body.append(f" — {o['description']}\n" if o.get("description") else "\n")
        count = f" {index + 1}/{len(qs)}" if len(qs) > 1 else ""
        how = "option numbers (e.g. 1, 3)" if q.get("multi") else "an option number"
        self.console.print(
            Panel(
                body,
                title=Text(f"❓ {q.get('header') or 'Claude asks'}{count}"),
                subtitle=Text(f"answer with {how}, or type your own answer"),
                border_style="cyan",
            )
        )

    def _plan(self, ev: dict[str, Any]) -> None:
        self._opened(str(ev.get("request")), "plan")
        self.console.print(
            Panel(
                Markdown(str(ev.get("plan", ""))),
                title=Text("📋 Claude's plan"),
                subtitle=Text("approve · auto (approve & auto-accept edits) · or your feedback"),
                border_style="magenta",
            )
        )

    def route(self, line: str) -> tuple[str, dict[str, Any]] | None:
        """The operation a typed line is, when the newest open request is Claude's
        question (its open question's answer) or plan (approve, auto, keep planning,
        feedback); None otherwise (a permission answer or a prompt)."""
        if not self.open or self.open[-1][1] == "permission":
            return None
        request, kind = self.open[-1]
        if kind == "question":
            _, index = self.questions[request]
            return "question", {"request": request, "index": index, "text": line.strip()}
        return "plan", {"request": request, "text": line.strip()}

    def _permission(self, ev: dict[str, Any]) -> None:
        request = str(ev.get("request"))
        self._opened(request, "permission")
        if request not in self.pending:
            self.pending.append(request)
        body = Syntax(str(ev.get("detail", "")), str(ev.get("language") or "text"), word_wrap=True)
        self.console.print(
            Panel(
                body,
                title=Text(f"🔐 Allow {ev.get('line')}?"),
                subtitle=Text("allow (a) · always (s) · deny (d) [reason]"),
                border_style="yellow",
            )
        )

    def _decided(self, ev: dict[str, Any]) -> None:
        request = str(ev.get("request"))
        if request in self.pending:
            self.pending.remove(request)
        kinds = {k for r, k in self.open if r == request}
        self.open = [(r, k) for r, k in self.open if r != request]
        self.questions.pop(request, None)
        state = str(ev.get("state"))
        by = f" by {ev['by']}" if ev.get("by") else ""
        if "plan" in kinds and state in ("allowed", "denied"):
            self.console.print(
                Text(
                    f"✅ Plan approved{by} · permission mode {ev.get('mode') or 'default'}"
                    if state == "allowed"
                    else f"✏️ Plan sent back{by}: Claude keeps planning",
                    style="bold",
                )
            )
            return
        if "question" in kinds and state == "allowed":
            self.console.print(Text(f"✅ Answered{by}", style="bold"))
            return
        label = {
            "allowed": f"✅ Allowed{by}",
            "allowed_session": f"♾️ Allowed for this session{by}",
            "allowed_project": f"📌 Allowed always in this project{by}",
            "denied": f"❌ Denied{by}",
            "timeout": "⏱ No answer in time — denied",
        }.get(state, f"⌛ {state}")
        self.console.print(Text(label, style="bold"))

    def _turn_end(self, ev: dict[str, Any]) -> None:
        if not self._streamed and ev.get("result"):
            self.console.print(Markdown(str(ev["result"])))
        seconds = int(ev.get("duration_ms") or 0) / 1000
        tools = ev.get("tools") or []
        parts = [f"⏱ {seconds:.1f}s", f"${float(ev.get('cost') or 0):.4f}"]
        if tools:
            parts.append(f"{len(tools)} tool{'s' if len(tools) != 1 else ''}")
        state = (
            "⏹ stopped · " if ev.get("interrupted") else ("⚠ error · " if ev.get("error") else "")
        )
        self.console.print(Text(state + " · ".join(parts), style="dim"))
        self._streamed = False

    def answer_for(self, line: str) -> tuple[str, str, str] | None:
        """(request, choice, reason) if `line` answers the newest open permission
        prompt: `allow`, `always`, or `deny` with an optional reason for Claude."""
        word, _, reason = line.strip().partition(" ")
        choice = ANSWERS.get(word.lower())
        if choice is None or not self.pending or (reason and choice != "d"):
            return None
        return self.pending[-1], choice, reason.strip()


async def stdin_lines() -> AsyncIterator[str]:
    """Lines typed on standard input, without blocking the event loop.  (asyncio
    makes the descriptor non-blocking; the caller restores it, since the shell that
    started us shares it.)"""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        yield line.decode(errors="replace").rstrip("\n")


async def run_terminal(
    path: Path,
    session: str,
    console: Console,
    lines: AsyncIterator[str],
    *,
    detach_on_eof: bool = True,
) -> int:
    """Attach, show the stream, send what is typed.  0 when the person detached
    (`/detach`, end of input unless `detach_on_eof` is false, as for piped input),
    1 when the session or the daemon could not be reached or went away."""
    try:
        conn = await AttachConnection.open(path)
    except DaemonUnavailable as e:
        console.print(Text(str(e), style="red"), highlight=False)
        return 1
    view = TerminalView(console)
    async with conn:
        hello = await conn.attach(session)
        if hello.get("t") != "attached":
            console.print(Text(str(hello.get("error")), style="red"), highlight=False)
            return 1
        view.show(hello)

        async def show_events() -> None:
            async for ev in conn.events():
                view.show(ev)

        shower = asyncio.create_task(show_events())
        typing = asyncio.create_task(_type(conn, view, lines, detach_on_eof))
        done, _ = await asyncio.wait({shower, typing}, return_when=asyncio.FIRST_COMPLETED)
        for task in (shower, typing):
            task.cancel()
        await asyncio.gather(shower, typing, return_exceptions=True)
        if shower in done:
            console.print("[yellow]The daemon closed the connection.[/]")
            return 1
    console.print("[dim]Detached; the session keeps running.[/]")
    return 0


async def _type(
    conn: AttachConnection, view: TerminalView, lines: AsyncIterator[str], detach_on_eof: bool
) -> None:
    async for line in lines:
        text = line.strip()
        if not text:
            continue
        if text in ("/detach", "/quit", "/exit"):
            return
        if text == "/stop":
            await conn.send("stop")
        elif text == "/help":
            view.console.print(Text(HELP, style="dim"))
        elif (routed := view.route(text)) is not None:
            await conn.send(routed[0], **routed[1])
        elif (answer := view.answer_for(text)) is not None:
            await conn.send("answer", request=answer[0], choice=answer[1], reason=answer[2])
        elif text.lower().rstrip(".!") in ANSWER_WORDS:
            view.console.print(Text(NO_PROMPT, style="yellow"))
        else:
            await conn.send("prompt", text=line)
    if not detach_on_eof:
        await asyncio.Event().wait()  # piped input ended: keep showing the stream


async def request_import(path: Path, claude_id: str) -> tuple[bool, str]:
    """Ask the running daemon to open a thread for a Claude Code session on disk."""
    async with await AttachConnection.open(path) as conn:
        await conn.send("import", id=claude_id)
        event = await conn.recv()
    if event is None:
        return False, "the daemon closed the connection"
    return event.get("t") == "imported", str(event.get("message") or event.get("error") or "")


__all__ = [
    "AttachConnection",
    "DaemonUnavailable",
    "TerminalView",
    "request_import",
    "run_terminal",
    "stdin_lines",
]
