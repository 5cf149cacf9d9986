"""Import: sessions started in the terminal with plain `claude -p` (the bundled CLI,
against the fake model) are listed by `threadline import` and `/import`, brought into
a new thread with a recap by `/import ID` (chat) or `threadline import ID` (terminal,
through the running daemon's socket), and the next message continues them with their
context.  `/handoff` says how to go the other way."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import claude_agent_sdk
import pytest

from tests.support.fakes.anthropic import Text
from tests.support.harness import Harness, start_harness, stop_harness

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CLAUDE = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"


async def claude_p(h: Harness, cwd: Path, prompt: str) -> None:
    """`claude -p PROMPT` in `cwd`, as a person would run it in a terminal."""
    proc = await asyncio.create_subprocess_exec(
        str(CLAUDE),
        "-p",
        prompt,
        cwd=cwd,
        env={**os.environ, **h.env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()[-500:]


async def threadline(h: Harness, cfg: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.cli",
        *args,
        "--config",
        str(cfg),
        cwd=ROOT,
        env={**os.environ, **h.env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode()


def session_ids(h: Harness) -> dict[str, str]:
    """First prompt → Claude session id, read from the transcripts on disk."""
    from bridge.sources.importer import ClaudeSessions

    return {s.first_prompt: s.id for s in ClaudeSessions(["/"], h.env).recent()}


async def test_import_sessions_started_with_plain_claude(tmp_path: Path) -> None:
    h = await start_harness(tmp_path)
    try:
        app, other, outside = h.root / "app", h.root / "other", tmp_path / "outside"
        other.mkdir()
        outside.mkdir()
        h.model.on("remember the word pelican", Text("Pelican noted."))
        h.model.on("note the colour teal", Text("Teal noted."))
        h.model.on("a secret elsewhere", Text("Elsewhere."))
        h.model.on("which word was it", Text("It was pelican."))
        await claude_p(h, app, "remember the word pelican")
        await claude_p(h, other, "note the colour teal")
        await claude_p(h, outside, "a secret elsewhere")
        ids = session_ids(h)
        pelican, teal, secret = (
            ids["remember the word pelican"],
            ids["note the colour teal"],
            ids["a secret elsewhere"],
        )
        cfg = h.write_config(tmp_path / "config.toml")

        # the terminal lists what is on disk under allowed_roots, newest first
        code, out = await threadline(h, cfg, "import")
        assert code == 0, out
        assert pelican in out and teal in out and secret not in out
        assert out.index(teal) < out.index(pelican), "newest first"
        assert "note the colour teal" in out

        # so does the chat, with a button per session
        h.say("/import")
        listing = await h.wait_text("Claude Code sessions on disk")
        assert "remember the word pelican" in listing.visible_text
        assert any(pelican in b["callback_data"] for b in listing.buttons)

        # import from the chat: a new topic with a recap
        before = set(h.tg.topics(h.chat_id))
        h.say(f"/import {pelican}")
        topic = await h.tg.wait_until(
            lambda: next(iter(set(h.tg.topics(h.chat_id)) - before), None), timeout=30
        )
        recap = await h.wait_text("Imported Claude Code session", thread_id=topic)
        assert "remember the word pelican" in recap.visible_text
        assert "Pelican noted." in recap.visible_text
        binding = h.db.bindings.by_thread_key(f"telegram:{h.chat_id}:{topic}")
        assert binding is not None
        row = h.db.sessions.get(binding.session_id)
        assert row is not None and row.claude_session_id == pelican and row.cwd == str(app)

        # the next message continues that session, with its context
        n = len(h.model.requests)
        h.say("which word was it", thread_id=topic)
        await h.wait_text("It was pelican.", thread_id=topic)
        later = h.model.requests[n:]
        assert any("remember the word pelican" in str(r.get("messages")) for r in later)
        assert h.db.sessions.get(row.id).claude_session_id == pelican, "resumed, not forked"

        # importing it again points at the thread it is in
        h.say(f"/import {pelican[:8]}")
        await h.wait_text(f"is already session `{row.id}`".replace("`", ""))

        # handoff: how to continue at the desk
        h.say("/handoff", thread_id=topic)
        handoff = await h.wait_text("claude --resume", thread_id=topic)
        assert f"threadline claude --resume {pelican}" in handoff.visible_text
        assert f"threadline attach {row.id}" in handoff.visible_text

        # import from the terminal, through the running daemon
        before = set(h.tg.topics(h.chat_id))
        code, out = await threadline(h, cfg, "import", teal[:8])
        assert code == 0, out
        assert "Imported as session" in out
        topic2 = await h.tg.wait_until(
            lambda: next(iter(set(h.tg.topics(h.chat_id)) - before), None), timeout=30
        )
        await h.wait_text("Teal noted.", thread_id=topic2)

        # a session outside allowed_roots cannot be imported
        code, out = await threadline(h, cfg, "import", secret)
        assert code == 1 and "No Claude Code session" in out
        h.say(f"/import {secret}")
        await h.wait_text("No Claude Code session")
        assert len(h.tg.topics(h.chat_id)) == 2
    finally:
        await stop_harness(h)
