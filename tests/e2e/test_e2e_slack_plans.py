"""End to end on Slack: Claude's plan (ExitPlanMode) as Block Kit buttons, with the real
Claude Code CLI against the fake model and the real slack-bolt adapter against the fake
Slack: approved with auto-accept (the next Write runs without asking), sent back with
feedback written in the thread, a stranger's press refused, a long plan attached."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.fakes.slack import FakeMessage, check_blocks
from tests.support.plan_steps import EXIT_PLAN, tool_results, write_plan
from tests.support.slack_harness import (
    STRANGER,
    SlackHarness,
    start_slack_harness,
    stop_slack_harness,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
PLAN = "# Plan: greet\n\n1. Write `hello.txt`\n2. Say **done**\n"


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[SlackHarness]:
    harness = await start_slack_harness(
        tmp_path, speed=4.0, agent_extra={"permission_mode": "plan"}
    )
    yield harness
    await stop_slack_harness(harness)


async def plan_in(h: SlackHarness, thread: str, needle: str = "Plan: greet") -> FakeMessage:
    return await h.wait_msg(
        lambda m: needle in m.visible_text and "✏️ Keep planning" in m.button_labels,
        thread=thread,
    )


async def test_slack_plan_auto_accepted_then_the_write_does_not_ask(h: SlackHarness) -> None:
    target = h.root / "app" / "hello.txt"
    h.model.on(
        "greet auto",
        write_plan(PLAN),
        EXIT_PLAN,
        ToolUse("Write", {"file_path": str(target), "content": "hello\n"}),
        Text("Built it."),
    )
    thread, sid = await h.new_session(str(h.root / "app"), "greet auto")
    msg = await plan_in(h, thread)
    errors, _ = check_blocks(msg.blocks)
    assert not errors, errors
    assert msg.button_labels == [
        "✅ Approve",
        "⏩ Approve & auto-accept edits",
        "✏️ Keep planning",
    ]
    click = h.press(msg, "Approve & auto-accept edits")
    await asyncio.wait_for(click.acked.wait(), 3)
    await h.wait_text("Built it.", thread=thread)
    assert target.read_text() == "hello\n"
    assert not any("Allow" in " ".join(m.button_labels) for m in h.bot_messages(thread))
    await h.wait_msg(
        lambda m: "Permission mode" in m.visible_text and "acceptEdits" in m.visible_text,
        thread=thread,
    )
    assert h.db.sessions.get(sid).mode == "acceptEdits"
    edited = h.slack.message(h.channel, msg.ts)
    assert not edited.buttons and "Approved by" in edited.visible_text


async def test_slack_plan_sent_back_with_feedback_after_a_strangers_press(
    h: SlackHarness,
) -> None:
    long_plan = "# Plan: big\n\n" + "".join(
        f"{i}. step number {i} of the work\n" for i in range(400)
    )
    h.model.on("big job", write_plan(long_plan), EXIT_PLAN, Text("Revising."))
    thread, sid = await h.new_session(str(h.root / "app"), "big job")
    msg = await plan_in(h, thread, "Plan: big")
    assert "whole plan is attached" in msg.visible_text and "plan.md" in msg.visible_text
    upload = await h.slack.wait_until(
        lambda: [f for f in h.slack.files.values() if f.name == "plan.md" and f.channel]
    )
    assert upload[0].thread_ts == thread and b"step number 399 of the work" in upload[0].data
    click = h.press(msg, "Approve", user=STRANGER)
    await asyncio.wait_for(click.acked.wait(), 3)
    await h.slack.wait_until(
        lambda: any(not r.allowed and r.user.endswith(STRANGER) for r in h.db.audit.recent())
    )
    assert h.slack.message(h.channel, msg.ts).buttons, "the plan still waits"
    h.press(msg, "Keep planning")
    await h.wait_msg(
        lambda m: m.ts == msg.ts and "Write your feedback" in m.visible_text, thread=thread
    )
    h.say("Split step 3 in two", thread=thread)
    await h.wait_text("Revising.", thread=thread)
    assert any("Split step 3 in two" in r for r in tool_results(h.model.requests))
    assert not any("approved your plan" in r for r in tool_results(h.model.requests))
    edited = h.slack.message(h.channel, msg.ts)
    assert not edited.buttons and "Sent back by" in edited.visible_text
    assert h.db.sessions.get(sid).mode == "plan"
