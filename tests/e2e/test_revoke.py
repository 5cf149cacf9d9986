"""Low items of issue 10 that take back or bound what was granted: a stored bypass
mode after `allow_bypass = false`, `resume` past `max_concurrent_sessions`, and
`handoff`'s shell lines quoted.  The bypass proof runs the real Claude Code CLI: in
bypass mode it would write the file without asking."""

from __future__ import annotations

import shlex
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.harness import Harness, start_harness, stop_harness

pytestmark = pytest.mark.e2e


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path, agent_extra={"max_concurrent_sessions": 1})
    yield harness
    await stop_harness(harness)


async def test_a_stored_bypass_mode_does_not_outlive_allow_bypass_false(h: Harness) -> None:
    target = h.root / "app" / "planted.txt"
    h.model.on(
        "write the file",
        ToolUse("Write", {"file_path": str(target), "content": "x\n"}),
        Text("Written."),
    )
    topic, sid = await h.new_session(str(h.root / "app"))
    await h.wait_text("Ready.", thread_id=topic)
    # switched to bypass while an earlier config allowed it
    h.db.sessions.update(sid, mode="bypassPermissions")
    await h.bridge.host.end_session(sid)  # as after a restart: the next prompt starts it
    assert not h.config.agent.allow_bypass
    h.say("write the file", thread_id=topic)
    notice = await h.wait_text("no longer allows", thread_id=topic)
    assert "bypassPermissions" in notice.visible_text and "default" in notice.visible_text
    prompt = await h.wait_msg(
        lambda m: any("Allow" in b for b in m.button_labels), thread_id=topic, timeout=60
    )
    assert not target.exists(), "Claude Code asked first: it did not start in bypass mode"
    h.press(prompt, "Deny")
    await h.wait_text("Written.", thread_id=topic, timeout=60)
    assert not target.exists()
    row = h.db.sessions.get(sid)
    assert row is not None and row.mode == "default"
    assert any(a.action == "mode-revoked" for a in h.db.audit.recent(20))


async def test_resume_respects_max_concurrent_sessions(h: Harness) -> None:
    topic_a, sid_a = await h.new_session(str(h.root / "app"))
    h.say("/end", thread_id=topic_a)
    await h.wait_text("ended", thread_id=topic_a)
    other = h.root / "other"
    other.mkdir()
    await h.new_session(str(other))
    h.say(f"/resume {sid_a}")
    await h.wait_text("sessions are open already")
    row = h.db.sessions.get(sid_a)
    assert row is not None and row.state == "ended"
    assert h.bridge.host.get(sid_a) is None


async def test_handoff_quotes_every_shell_word(h: Harness) -> None:
    topic, sid = await h.new_session(str(h.root / "app"))
    odd = "/tmp/my project; touch /tmp/pwned"
    h.db.sessions.update(sid, cwd=odd, claude_session_id="abc-123")
    h.say("/handoff", thread_id=topic)
    shown = await h.wait_text("claude --resume", thread_id=topic)
    line = next(x for x in shown.visible_text.splitlines() if x.startswith("cd "))
    assert shlex.split(line) == ["cd", odd]
