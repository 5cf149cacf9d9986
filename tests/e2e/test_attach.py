"""`threadline attach`: the terminal and the chat on the same live session.

The daemon (the whole bridge, the real python-telegram-bot against the fake Bot API,
the real Claude Code CLI against the fake model) runs in the test; the terminal is
driven through the attach protocol (`AttachConnection`), and once as the real
`threadline attach` process with its stdin and stdout piped.  Prompts typed in the
terminal show in the chat marked as from the terminal and the other way round; a
permission is answered in either place and the first answer wins in both."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bridge.cli.attach_client import AttachConnection, TerminalView
from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.harness import OWNER, Harness, start_harness, stop_harness

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


class Terminal:
    """A test's terminal: an attach connection whose events are collected."""

    def __init__(self, conn: AttachConnection) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for ev in self.conn.events():
            self.events.append(ev)
            self._changed.set()

    async def wait(
        self, t: str, timeout: float = 30, *, since: int = 0, **match: Any
    ) -> dict[str, Any]:
        """The first event of type `t` (from index `since` on) with these fields."""
        async with asyncio.timeout(timeout):
            while True:
                for ev in self.events[since:]:
                    if ev.get("t") == t and all(ev.get(k) == v for k, v in match.items()):
                        return ev
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        await self.conn.close()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def has_buttons(m: Any) -> bool:
    return any("Allow" in b for b in getattr(m, "button_labels", []))


async def test_terminal_and_chat_share_a_session(tmp_path: Path) -> None:
    h: Harness = await start_harness(tmp_path)
    terminal: Terminal | None = None
    try:
        app = h.root / "app"
        h.model.on("hello from the chat", Text("Hi chat."))
        h.model.on(
            "write the greeting",
            ToolUse("Write", {"file_path": str(app / "greeting.txt"), "content": "hello\n"}),
            Text("Greeting written."),
        )
        h.model.on(
            "write the farewell",
            ToolUse("Write", {"file_path": str(app / "farewell.txt"), "content": "bye\n"}),
            Text("No farewell then."),
        )
        topic, sid = await h.new_session(str(app), "hello from the chat")
        await h.wait_text("Hi chat.", thread_id=topic)

        sock = h.config.attach_socket()
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700

        terminal = Terminal(await AttachConnection.open(sock))
        await terminal.conn.send("attach", session=sid)
        hello = await terminal.wait("attached")
        assert hello["session"]["id"] == sid and hello["session"]["cwd"] == str(app)
        history = await terminal.wait("history")
        texts = [item["text"] for item in history["items"]]
        assert "hello from the chat" in texts[0] and "Hi chat." in texts[-1]

        # a prompt typed in the terminal shows in the chat, marked as from the terminal
        await terminal.conn.send("prompt", text="write the greeting")
        marked = await h.wait_text("From the terminal", thread_id=topic)
        assert "write the greeting" in marked.visible_text
        # its permission prompt shows in both places; the terminal answers it
        asked = await terminal.wait("permission", tool="Write")
        assert "+hello" in asked["detail"] and "greeting.txt" in asked["line"]
        prompt = await h.wait_msg(has_buttons, thread_id=topic)
        deny = prompt.callback_data("Deny")
        await terminal.conn.send("answer", request=asked["request"], choice="a")
        answered = await terminal.wait("answered", request=asked["request"])
        assert answered["result"] == "Allowed."
        decided = await terminal.wait("decided", request=asked["request"])
        assert decided["state"] == "allowed" and "(terminal)" in decided["by"]
        await h.wait_text("Greeting written.", thread_id=topic)
        assert (app / "greeting.txt").read_text() == "hello\n"
        edited = h.tg.message(h.chat_id, prompt.message_id)
        assert not edited.buttons and "(terminal)" in edited.visible_text
        # the chat's button no longer acts: the first answer won
        owner = {"id": OWNER, "is_bot": False, "first_name": "Ada"}
        query = h.tg.press_button(h.chat_id, prompt.message_id, deny, owner, strict=False)
        await h.tg.wait_until(lambda: h.tg.callback_answer(query))
        # Not a pause then "nothing changed": the bridge has handled the press (refused it,
        # audited) and whatever it queued has reached the chat before the prompt is read.
        await h.tg.wait_until(
            lambda: any(
                r.action == "permission" and not r.allowed for r in h.db.audit.recent(20)
            ),
            timeout=20,
        )
        await h.bridge.outbox.wait_idle(timeout=20)
        assert "Allowed by" in h.tg.message(h.chat_id, prompt.message_id).visible_text
        end = await terminal.wait("end")
        assert end["cost"] > 0 and not end["error"]
        streamed = "".join(ev["text"] for ev in terminal.events if ev["t"] == "delta")
        assert "Greeting written." in streamed

        # the other way round: a chat prompt shows in the terminal, marked as from the
        # chat, and its permission is answered in the chat
        mark = len(terminal.events)
        h.say("write the farewell", thread_id=topic)
        from_chat = await terminal.wait("prompt", source="telegram", since=mark)
        assert from_chat["by"] == "Ada" and from_chat["text"] == "write the farewell"
        asked2 = await terminal.wait("permission", tool="Write", since=mark)
        assert "farewell.txt" in asked2["line"]
        prompt2 = await h.wait_msg(
            lambda m: has_buttons(m) and m.message_id != prompt.message_id, thread_id=topic
        )
        h.press(prompt2, "Deny")
        decided2 = await terminal.wait("decided", request=asked2["request"])
        assert decided2["state"] == "denied" and decided2["by"] == "Ada"
        await terminal.conn.send("answer", request=asked2["request"], choice="a")
        late = await terminal.wait("answered", request=asked2["request"])
        assert late["result"].startswith("Already decided")
        await h.wait_text("No farewell then.", thread_id=topic)
        assert not (app / "farewell.txt").exists()

        # the terminal renders everything it was sent
        console = Console(record=True, width=100, file=io.StringIO())
        view = TerminalView(console)
        for ev in terminal.events:
            view.show(ev)
        shown = console.export_text()
        for needle in (
            "Hi chat.",
            "Allow Write greeting.txt",
            "Allowed by",
            "Denied by Ada",
            "Ada (telegram) ›",
        ):
            assert needle in shown, needle
        assert not view.pending

        # Ctrl-C on the terminal: the session carries on
        await terminal.close()
        terminal = None
        h.model.on("still there", Text("Still here."))
        h.say("still there", thread_id=topic)
        await h.wait_text("Still here.", thread_id=topic)

        # the real `threadline attach`, typed into through a pipe
        await _cli_attach(h, tmp_path, sid, topic)
    finally:
        if terminal is not None:
            await terminal.close()
        await stop_harness(h)


async def _cli_attach(h: Harness, tmp_path: Path, sid: str, topic: int) -> None:
    cfg = h.write_config(tmp_path / "config.toml")
    h.model.on("ping from the pipe", Text("Pong from Claude."))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.cli",
        "attach",
        sid,
        "--config",
        str(cfg),
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "120"},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    seen = ""
    try:

        async def read_until(needle: str) -> None:
            nonlocal seen
            async with asyncio.timeout(30):
                while needle not in seen:
                    chunk = await proc.stdout.read(4096)  # type: ignore[union-attr]
                    if not chunk:
                        raise AssertionError(f"attach ended early: {seen[-2000:]}")
                    seen += chunk.decode(errors="replace")

        await read_until("Still here.")  # the history, then the live stream
        proc.stdin.write(b"ping from the pipe\n")
        await proc.stdin.drain()
        marked = await h.wait_text("ping from the pipe", thread_id=topic)
        assert "From the terminal" in marked.visible_text
        await read_until("Pong from Claude.")
        h.say("and hello from the phone", thread_id=topic)
        await read_until("Ada (telegram) › and hello from the phone")
    finally:
        proc.send_signal(signal.SIGINT)
        rc = await asyncio.wait_for(proc.wait(), timeout=20)
    rest = await proc.stdout.read()
    assert rc == 0 and "Detached" in seen + rest.decode(errors="replace")


def test_typed_permission_answers() -> None:
    view = TerminalView(Console(file=io.StringIO()))
    assert view.answer_for("allow") is None, "nothing to answer"
    view.pending = ["r1", "r2"]
    assert view.answer_for("allow") == ("r2", "a", ""), "the newest prompt"
    assert view.answer_for("Always") == ("r2", "s", "")
    assert view.answer_for("deny not that file") == ("r2", "d", "not that file")
    assert view.answer_for("allow me to explain the plan") is None, "a prompt, not an answer"


def test_a_retried_model_call_starts_the_terminal_stream_over() -> None:
    """A stream that broke off and was retried by Claude Code sends its text again
    from the start (TextDelta.restart): the terminal says so instead of showing the
    beginning twice as one run-on line."""
    out = io.StringIO()
    view = TerminalView(Console(file=out, width=200))
    view.show({"t": "delta", "text": "The answer beg"})
    view.show({"t": "delta", "text": "The answer begins", "restart": True})
    view.show({"t": "delta", "text": " here."})
    lines = out.getvalue().splitlines()
    assert lines[0] == "The answer beg"
    assert "starts over" in lines[1]
    assert lines[2] == "The answer begins here."


async def test_an_answer_word_with_no_prompt_open_is_not_a_prompt(tmp_path: Path) -> None:
    """`allow` / `always` / `deny` typed in the real attach client while no permission
    prompt is open: the terminal says so, and nothing reaches Claude or the chat.  The
    daemon refuses the same words from any client that sends them as a prompt."""
    from bridge.cli.attach_client import run_terminal

    h: Harness = await start_harness(tmp_path)
    terminal: Terminal | None = None
    try:
        h.model.on("hello there", Text("Hi."))
        topic, sid = await h.new_session(str(h.root / "app"), "hello there")
        await h.wait_text("Hi.", thread_id=topic)
        asked = len(h.model.requests)
        written = asyncio.Event()

        class Out(io.StringIO):
            def write(self, s: str) -> int:
                written.set()
                return super().write(s)

        out = Out()
        console = Console(file=out, width=200)

        async def typed() -> Any:
            for word in ("allow", "always", "deny"):
                yield word
            async with asyncio.timeout(30):
                while out.getvalue().count("No permission request is open.") < 3:
                    written.clear()
                    await written.wait()
            yield "/detach"

        sock = h.config.attach_socket()
        assert await asyncio.wait_for(run_terminal(sock, sid, console, typed()), 60) == 0
        terminal = Terminal(await AttachConnection.open(sock))
        await terminal.conn.send("attach", session=sid)
        await terminal.wait("attached")
        await terminal.conn.send("prompt", text="allow")
        notice = await terminal.wait("notice")
        assert notice["text"] == "No permission request is open."
        h.model.on("ping after", Text("Pong."))
        h.say("ping after", thread_id=topic)
        await h.wait_text("Pong.", thread_id=topic)
        sent = [str(r["messages"][-1]) for r in h.model.requests[asked:]]
        assert sent and all("ping after" in s for s in sent), "only the phone's prompt ran"
        assert not any("terminal" in m.visible_text for m in h.tg.messages(h.chat_id))
    finally:
        if terminal is not None:
            await terminal.close()
        await stop_harness(h)
