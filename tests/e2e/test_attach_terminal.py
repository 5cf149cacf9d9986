"""What `threadline attach` prints can never act on the owner's terminal.

A small attach server speaking the daemon's protocol (`bridge/sources/attach.py`) sends the
real attach client (`run_terminal`) one of every event, each carrying hostile text:
OSC 52 clipboard writes, OSC 8 hyperlinks, cursor movement that would overwrite a
permission prompt's command, C1 controls, a carriage return, a bidi override, rich
markup in the session title and names, and a line that is not JSON.  The terminal's
output (a real rich console, colours on) holds no escape sequence but rich's own
colours, and shows the hostile text as inert, readable characters."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bridge.cli.attach_client import run_terminal
from bridge.cli.terminal_text import clean
from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.harness import Harness, start_harness, stop_harness

ROOT = Path(__file__).resolve().parents[2]

OSC52 = "\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07"
HOSTILE_EVENTS: list[dict[str, Any]] = [
    {
        "t": "attached",
        "conn": 1,
        "busy": False,
        "session": {
            "id": "s1",
            "title": "[bold]Fix[/bold] the [/oops] bug \x1b]0;pwned\x07",
            "cwd": "/code/app\x1b[2J",
            "state": "idle",
        },
    },
    {"t": "history", "items": [{"role": "assistant", "text": f"copied {OSC52} for you"}]},
    {"t": "prompt", "source": "telegram", "by": "Eve [/] [link=x]", "text": "hi\x9b2J there"},
    {"t": "turn", "prompt": "x"},
    {"t": "delta", "text": "Click \x1b]8;;https://evil.example/\x1b\\here\x1b]8;;\x1b\\ now\r"},
    {"t": "delta", "text": "safe\u202eexe.txt\n"},
    {"t": "tool", "id": "t1", "name": "Bash", "line": "Bash rm -rf ~\x1b[1A\x1b[2Kls -la"},
    {"t": "tool_done", "id": "t1", "error": True, "output": "\x1b[?1049h\x1bcboom\x90q\x9c"},
    {
        "t": "permission",
        "request": "r1",
        "tool": "Bash",
        "line": "Bash echo hi [/x] \x1b[2K\r",
        "detail": "echo hi\x1b[8m\x1b[1A; rm -rf ~\x07",
        "language": "bash",
    },
    {"t": "decided", "request": "r1", "state": "denied", "by": "[bold]Mallory\x07"},
    {"t": "end", "result": OSC52, "duration_ms": 1200, "cost": 0.01, "tools": ["t1"]},
    {"t": "failed", "error": "[/boom] " + OSC52},
    {"t": "notice", "text": "\x1bP+q544e\x1b\\notice"},
    {"t": "error", "error": "[red]err\x1b[6n"},
]

# rich's own colour codes; anything else that starts an escape is ours to find
RICH_SGR = re.compile(r"\x1b\[[0-9;]*m")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


async def _serve(path: Path, lines: list[bytes]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        op = json.loads(await reader.readline())
        assert op == {"op": "attach", "session": "s1"}
        for line in lines:
            writer.write(line)
        await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(handle, path=str(path))


async def _no_input() -> AsyncIterator[str]:
    await asyncio.Event().wait()
    yield ""


async def test_hostile_text_is_shown_inert_through_the_attach_client(tmp_path: Path) -> None:
    sock = tmp_path / "attach.sock"
    lines = [json.dumps(ev).encode() + b"\n" for ev in HOSTILE_EVENTS]
    lines.insert(5, b"\x1b]52;c;not json\x07\n")  # not JSON: reported, not a crash
    server = await _serve(sock, lines)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="standard", width=200)
    try:
        code = await asyncio.wait_for(run_terminal(sock, "s1", console, _no_input()), 30)
    finally:
        server.close()
    assert code == 1, "the daemon closed the connection"
    raw = out.getvalue()
    assert "\x1b" in raw, "colours on: rich's own codes are there"
    shown = RICH_SGR.sub("", raw)
    assert not CONTROL.findall(shown), sorted(set(CONTROL.findall(shown)))
    flat = " ".join(shown.split())
    for needle in (
        "[bold]Fix[/bold] the [/oops] bug ␛]0;pwned␇",  # markup shown as typed
        "Eve [/] [link=x] (telegram)",
        "copied ␛]52;c;Y3VybCBldmlsLnNoIHwgc2g=␇ for you",  # the clipboard write, inert
        "hi\\x9b2J there",
        "Click ␛]8;;https://evil.example/␛\\here",
        "safe<U+202E>exe.txt",
        "Bash rm -rf ~␛[1A␛[2Kls -la",
        "Allow Bash echo hi [/x] ␛[2K␍?",
        "echo hi␛[1A; rm -rf ~␇",  # the whole command: conceal dropped, cursor-up inert
        "Denied by [bold]Mallory␇",
        "⚠ Claude Code failed: [/boom] ␛]52;c;",
        "bad event",
        "␛P+q544e␛\\notice",
        "[red]err␛[6n",
        "The daemon closed the connection.",
    ):
        assert needle in flat, (needle, flat)


def test_clean_keeps_text_newlines_tabs_and_drops_only_colour() -> None:
    assert clean("a\tb\nc") == "a\tb\nc"
    assert clean("\x1b[1;31mred\x1b[0m \x9b32mgreen\x9b0m") == "red green"
    assert clean("\x00\x07\x08\x0b\x0c\r\x1b\x7f\x85\x9c") == "␀␇␈␋␌␍␛␡\\x85\\x9c"
    assert clean("é€😀 ordinary") == "é€😀 ordinary"


@pytest.mark.e2e
async def test_a_real_session_shown_in_threadline_attach_stays_inert(tmp_path: Path) -> None:
    """The whole path: the real Claude Code CLI (against the fake model) runs a Bash
    command whose output writes the clipboard (OSC 52) and answers with escape
    sequences of its own; the session's title has rich markup in it.  The real
    `threadline attach` process, typed into through a pipe, approves the command and
    shows all of it as inert text."""
    h: Harness = await start_harness(tmp_path)
    proc: asyncio.subprocess.Process | None = None
    try:
        app = h.root / "app"
        h.model.on("paint [bold]it", Text("Painted."))
        h.model.on(
            "show the escapes",
            ToolUse("Bash", {"command": "printf 'clip\\033]52;c;cHduZWQ=\\007board'; exit 3"}),
            Text("Done \x1b]52;c;cHduZWQ=\x07 and \x1b[2J\x1b[Hcleared."),
        )
        topic, sid = await h.new_session(str(app), "[/x] paint [bold]it[/bold]")
        await h.wait_text("Painted.", thread_id=topic)
        cfg = h.write_config(tmp_path / "config.toml")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "attach", sid, "--config", str(cfg),
            cwd=ROOT, env={**os.environ, "COLUMNS": "200"},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        seen = ""

        async def read_until(needle: str) -> None:
            nonlocal seen
            async with asyncio.timeout(60):
                while needle not in " ".join(seen.split()):
                    chunk = await proc.stdout.read(4096)  # type: ignore[union-attr]
                    if not chunk:
                        raise AssertionError(f"attach ended early: {seen[-3000:]}")
                    seen += chunk.decode(errors="replace")

        await read_until("Painted.")  # the history is on screen: the title was shown
        h.say("show the escapes", thread_id=topic)
        await read_until("Allow Bash")
        proc.stdin.write(b"allow\n")
        await proc.stdin.drain()
        await read_until("cleared.")
        await h.wait_text("cleared.", thread_id=topic)
        proc.stdin.write(b"/detach\n")
        await proc.stdin.drain()
        rest, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
        seen += rest.decode(errors="replace")
        assert proc.returncode == 0
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        await stop_harness(h)
    assert not CONTROL.findall(seen), sorted(set(CONTROL.findall(seen)))
    flat = " ".join(seen.split())
    for needle in (
        "app: [/x] paint [bold]it[/bold]",  # the title, markup and all
        "clip␛]52;c;cHduZWQ=␇board",  # the tool's output: the clipboard write, inert
        "Done ␛]52;c;cHduZWQ=␇ and ␛[2J␛[Hcleared.",  # the model's text
        "Detached",
    ):
        assert needle in flat, (needle, flat[-3000:])
