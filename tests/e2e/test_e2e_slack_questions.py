"""End to end on Slack: Claude's question (AskUserQuestion) as Block Kit buttons, with
the real Claude Code CLI against the fake model and the real slack-bolt adapter
against the fake Slack: options toggled and Done, then Other… answered in the thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.e2e.test_e2e_questions import DB_Q, FEAT_Q
from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.fakes.slack import FakeMessage, check_blocks
from tests.support.slack_harness import SlackHarness, start_slack_harness, stop_slack_harness

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[SlackHarness]:
    harness = await start_slack_harness(tmp_path, speed=4.0)
    yield harness
    await stop_slack_harness(harness)


def results(h: SlackHarness) -> str:
    return "\n".join(
        str(b.get("content"))
        for r in h.model.requests
        for m in r.get("messages", [])
        if isinstance(m.get("content"), list)
        for b in m["content"]
        if isinstance(b, dict) and b.get("type") == "tool_result"
    )


async def test_slack_multi_select_then_other_with_a_thread_reply(h: SlackHarness) -> None:
    h.model.on(
        "plan it", ToolUse("AskUserQuestion", {"questions": [FEAT_Q, DB_Q]}), Text("Planned.")
    )
    thread, _ = await h.new_session(str(h.root / "app"), "plan it")

    def asking(needle: str) -> Callable[[FakeMessage], bool]:
        return lambda m: needle in m.visible_text and "✏️ Other…" in m.button_labels

    first = await h.wait_msg(asking("Which features"), thread=thread)
    errors, _ = check_blocks(first.blocks)
    assert not errors, errors
    assert first.button_labels == ["1. Auth", "2. Search", "3. Export", "✏️ Other…", "✅ Done"]
    click = h.press(first, "Search")
    await asyncio.wait_for(click.acked.wait(), 3)
    await h.wait_msg(lambda m: m.ts == first.ts and "☑ 2." in m.visible_text, thread=thread)
    h.press(h.slack.message(h.channel, first.ts), "Done")
    second = await h.wait_msg(asking("Which database"), thread=thread)
    assert "Answered by Ada" in h.slack.message(h.channel, first.ts).visible_text
    h.press(second, "Other")
    await h.wait_msg(
        lambda m: m.ts == second.ts and "next message" in m.visible_text, thread=thread
    )
    h.say("CockroachDB", thread=thread)
    await h.wait_text("Planned.", thread=thread)
    sent = results(h)
    assert '"Which features do you want?"="Search"' in sent
    assert '"Which database should I use?"="CockroachDB"' in sent
