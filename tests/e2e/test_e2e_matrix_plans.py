"""End to end on Matrix (real Synapse, encrypted room): Claude's plan as reactions and
typed answers — sent back by typing ``keep planning`` and then the feedback, the
revised (long, attached) plan approved with ⏩ (auto-accept edits), after which the
Write runs without asking."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.matrix_harness import MatrixHarness, start_matrix_harness, stop_matrix_harness
from tests.support.plan_steps import EXIT_PLAN, tool_results, write_plan
from tests.support.synapse import Synapse

pytestmark = pytest.mark.e2e
PLAN = "# Plan: greet\n\n1. Write `hello.txt`\n2. Say **done**\n"
LONG = "# Plan: revised\n\n" + "".join(f"{i}. step number {i} of the work\n" for i in range(400))


@pytest.fixture()
async def h(tmp_path: Path, synapse: Synapse) -> AsyncIterator[MatrixHarness]:
    harness = await start_matrix_harness(tmp_path, synapse, agent_extra={"permission_mode": "plan"})
    yield harness
    await stop_matrix_harness(harness)


async def test_matrix_plan_sent_back_by_text_then_auto_accepted_by_reaction(
    h: MatrixHarness,
) -> None:
    target = h.root / "app" / "hello.txt"
    h.model.on(
        "greet me",
        write_plan(PLAN),
        EXIT_PLAN,
        write_plan(LONG),
        EXIT_PLAN,
        ToolUse("Write", {"file_path": str(target), "content": "hello\n"}),
        Text("Built it."),
    )
    thread, sid = await h.new_session(str(h.root / "app"), "greet me")
    first = await h.phone.wait_message(lambda m: "Plan: greet" in m.body and "Approve" in m.body)
    assert "React ✅ Approve" in first.body and "or reply approve, auto" in first.body
    await h.phone.wait(lambda: len(first.reaction_keys(h.bot.user_id)) == 3 or None)
    assert first.reaction_keys(h.bot.user_id) == ["✅", "⏩", "✏️"]
    await h.say("keep planning", thread=thread)
    await h.phone.wait(lambda: "Write your feedback" in first.body or None)
    await h.say("Make it longer", thread=thread)
    second = await h.phone.wait_message(lambda m: "Plan: revised" in m.body)
    await h.phone.wait(lambda: "Sent back by" in first.body or None)
    assert any("Make it longer" in r for r in tool_results(h.model.requests))
    assert h.db.sessions.get(sid).mode == "plan"
    attached = await h.phone.wait_message(lambda m: m.msgtype == "m.file" and m.body == "plan.md")
    assert attached.sender == h.bot.user_id
    await h.phone.wait(lambda: len(second.reaction_keys(h.bot.user_id)) == 3 or None)
    await h.react(second, "⏩")
    await h.wait_text("Built it.", thread=thread)
    assert target.read_text() == "hello\n"
    await h.phone.wait(lambda: "Approved by" in second.body or None)
    assert h.db.sessions.get(sid).mode == "acceptEdits"
    assert not any("Allow Write" in m.body for m in h.bot_messages(thread))
