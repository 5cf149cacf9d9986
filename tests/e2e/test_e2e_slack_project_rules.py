"""End to end on Slack: "Allow always (project)" as a Block Kit button, with the real
Claude Code CLI against the fake model and the real slack-bolt adapter against the fake
Slack — the rule is written to the folder's `.claude/settings.local.json` and a fresh
session there runs the command without asking."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.fakes.slack import FakeMessage, check_blocks
from tests.support.slack_harness import SlackHarness, start_slack_harness, stop_slack_harness

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[SlackHarness]:
    harness = await start_slack_harness(tmp_path, speed=4.0)
    yield harness
    await stop_slack_harness(harness)


def is_prompt(m: FakeMessage) -> bool:
    return "❌ Deny" in m.button_labels


async def test_slack_always_project_writes_the_rule_and_a_fresh_session_honours_it(
    h: SlackHarness,
) -> None:
    app = h.root / "app"
    settings = app / ".claude" / "settings.local.json"
    h.model.on("touch it", ToolUse("Bash", {"command": "touch marker"}), Text("touched"))
    thread, _ = await h.new_session(str(app), "touch it")
    prompt = await h.wait_msg(
        lambda m: is_prompt(m) and "touch marker" in m.visible_text, thread=thread
    )
    errors, _ = check_blocks(prompt.blocks)
    assert not errors, errors
    assert prompt.button_labels == [
        "✅ Allow",
        "♾️ Allow for session",
        "📌 Always (project)",
        "❌ Deny",
    ]
    offered = prompt.visible_text.replace("`", "")
    assert f"writes Bash(touch marker) to {settings.resolve()}" in offered
    click = h.press(prompt, "Always (project)")
    await asyncio.wait_for(click.acked.wait(), 3)
    await h.wait_text("touched", thread=thread)
    assert json.loads(settings.read_text()) == {"permissions": {"allow": ["Bash(touch marker)"]}}
    decided = h.slack.message(h.channel, prompt.ts)
    assert "Allowed always in this project by" in decided.visible_text
    assert decided.button_labels == []

    h.model.on("fresh", ToolUse("Bash", {"command": "touch marker"}), Text("fresh touched"))
    thread2, _ = await h.new_session(str(app), "fresh")
    await h.wait_text("fresh touched", thread=thread2)
    assert not any(is_prompt(m) for m in h.bot_messages(thread2)), "asked nothing"
