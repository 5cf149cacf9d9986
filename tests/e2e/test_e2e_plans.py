"""End to end: Claude's plan (ExitPlanMode) as Approve / Approve & auto-accept edits /
Keep planning on Telegram, with the real Claude Code CLI against the fake model.  The
model writes its plan to the plan file the CLI names and calls ExitPlanMode; what
reaches the model is read from the tool_result of its next request, and the CLI's
own permission requests show whether an edit still asks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.harness import OWNER, STRANGER, Harness, start_harness, stop_harness
from tests.support.plan_steps import EXIT_PLAN, tool_results, write_plan

pytestmark = pytest.mark.e2e

PLAN = "# Plan: greet\n\n1. Write `hello.txt`\n2. Say **done**\n"


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path, agent_extra={"permission_mode": "plan"})
    yield harness
    await stop_harness(harness)


async def plan_in(h: Harness, topic: int, needle: str = "Plan: greet"):  # noqa: ANN201
    return await h.wait_msg(
        lambda m: needle in m.visible_text and any("Keep planning" in b for b in m.button_labels),
        thread_id=topic,
    )


async def test_approve_and_auto_accept_switches_mode_and_the_next_write_does_not_ask(
    h: Harness,
) -> None:
    target = h.root / "app" / "hello.txt"
    h.model.on(
        "greet auto",
        write_plan(PLAN),
        EXIT_PLAN,
        ToolUse("Write", {"file_path": str(target), "content": "hello\n"}),
        Text("Built it."),
    )
    topic, sid = await h.new_session(str(h.root / "app"), "greet auto")
    msg = await plan_in(h, topic)
    assert "Write hello.txt" in msg.visible_text or "hello.txt" in msg.visible_text
    assert "Allow" not in " ".join(msg.button_labels), "not a generic permission prompt"
    assert all(len(b["callback_data"].encode()) <= 64 for b in msg.buttons)
    h.press(msg, "Approve & auto-accept edits")
    await h.wait_text("Built it.", thread_id=topic)
    assert target.read_text() == "hello\n"
    # the Write ran without asking: no permission prompt was ever posted for it
    assert not any("Allow" in " ".join(m.button_labels) for m in h.bot_messages(topic))
    assert not any(r.tool_name == "Write" for r in h.db.permissions.pending(sid))
    await h.wait_text("Permission mode: acceptEdits", thread_id=topic)
    assert h.db.sessions.get(sid).mode == "acceptEdits"
    edited = h.tg.message(h.chat_id, msg.message_id)
    assert not edited.buttons and "Approved by Ada" in edited.visible_text
    assert "acceptEdits" in edited.visible_text
    assert any("User has approved your plan" in r for r in tool_results(h.model.requests))
    assert any(r.action == "plan" and "acceptEdits" in r.detail for r in h.db.audit.recent())


async def test_keep_planning_sends_the_next_text_as_feedback(h: Harness) -> None:
    h.model.on("greet again", write_plan(PLAN), EXIT_PLAN, Text("Revising the plan."))
    topic, sid = await h.new_session(str(h.root / "app"), "greet again")
    msg = await plan_in(h, topic)
    h.press(msg, "Keep planning")
    await h.wait_msg(
        lambda m: m.message_id == msg.message_id and "Write your feedback" in m.visible_text,
        thread_id=topic,
    )
    h.say("Also greet in French, please", thread_id=topic)
    await h.wait_text("Revising the plan.", thread_id=topic)
    results = tool_results(h.model.requests)
    print("TOOL_RESULT feedback:", results)
    assert any("Also greet in French, please" in r and "Stay in plan mode" in r for r in results)
    assert not h.model_saw('"text": "Also greet in French, please"'), "not sent as a prompt"
    edited = h.tg.message(h.chat_id, msg.message_id)
    assert not edited.buttons and "Sent back by Ada" in edited.visible_text
    assert "Also greet in French" in edited.visible_text
    assert h.db.sessions.get(sid).mode == "plan", "still planning"


async def test_plain_approve_goes_to_default_mode_where_edits_ask(tmp_path: Path) -> None:
    h = await start_harness(tmp_path)  # default mode; the person switches to plan
    try:
        target = h.root / "app" / "hi.txt"
        h.model.on(
            "greet plainly",
            write_plan(PLAN),
            EXIT_PLAN,
            ToolUse("Write", {"file_path": str(target), "content": "hi\n"}),
            Text("Wrote it."),
        )
        topic, sid = await h.new_session(str(h.root / "app"))
        h.say("/mode plan", thread_id=topic)
        await h.wait_text("Permission mode: plan", thread_id=topic)
        h.say("greet plainly", thread_id=topic)
        msg = await plan_in(h, topic)
        h.press(msg, "Approve")
        await h.wait_text("Permission mode: default", thread_id=topic)
        assert h.db.sessions.get(sid).mode == "default"
        prompt = await h.wait_msg(
            lambda m: "hi.txt" in m.visible_text and "Allow" in " ".join(m.button_labels),
            thread_id=topic,
        )
        assert not target.exists(), "in default mode the edit asks first"
        h.press(prompt, "Allow")
        await h.wait_text("Wrote it.", thread_id=topic)
        assert target.read_text() == "hi\n"
        edited = h.tg.message(h.chat_id, msg.message_id)
        assert not edited.buttons and "Approved by Ada" in edited.visible_text
    finally:
        await stop_harness(h)


async def test_a_strangers_press_is_refused_and_a_long_plan_is_attached(h: Harness) -> None:
    long_plan = "# Plan: big\n\n" + "".join(
        f"{i}. step number {i} of the work\n" for i in range(400)
    )
    assert len(long_plan) > 6000
    h.model.on("big job", write_plan(long_plan), EXIT_PLAN, Text("Starting."))
    topic, _ = await h.new_session(str(h.root / "app"), "big job")
    msg = await plan_in(h, topic, "Plan: big")
    assert "step number 399" not in msg.visible_text
    assert "attached as plan.md" in msg.visible_text
    doc = await h.wait_msg(lambda m: m.kind == "document", thread_id=topic)
    assert doc.file is not None and doc.file.file_name == "plan.md"
    assert len(msg.visible_text) <= 4096
    assert b"step number 399 of the work" in doc.file.data
    stranger = {"id": STRANGER, "is_bot": False, "first_name": "Mallory"}
    query = h.tg.press_button(h.chat_id, msg.message_id, msg.callback_data("Approve"), stranger)
    await h.tg.wait_until(lambda: h.tg.callback_answer(query))
    await asyncio.sleep(0.3)
    assert h.tg.message(h.chat_id, msg.message_id).buttons, "the plan still waits"
    assert not any("approved your plan" in r for r in tool_results(h.model.requests))
    late = msg.callback_data("Keep planning")
    h.press(msg, "Approve")
    owner = {"id": OWNER, "is_bot": False, "first_name": "Ada"}
    h.tg.press_button(h.chat_id, msg.message_id, late, owner, strict=False)  # first wins
    await h.wait_text("Starting.", thread_id=topic)
    refused = [r for r in h.db.audit.recent() if not r.allowed]
    assert any(r.user == f"telegram:{STRANGER}" for r in refused)
    assert any("already" in r.detail for r in refused), "the late press was refused"
    edited = h.tg.message(h.chat_id, msg.message_id)
    assert "Approved by Ada" in edited.visible_text and "Sent back" not in edited.visible_text


async def test_keep_planning_without_feedback_times_out(tmp_path: Path) -> None:
    h = await start_harness(
        tmp_path, agent_extra={"permission_mode": "plan", "permission_timeout_s": 2}
    )
    try:
        h.model.on("quiet plan", write_plan(PLAN), EXIT_PLAN, Text("No answer came."))
        topic, sid = await h.new_session(str(h.root / "app"), "quiet plan")
        msg = await plan_in(h, topic)
        h.press(msg, "Keep planning")
        notice = await h.wait_text("No answer to Claude's plan", thread_id=topic, timeout=20)
        assert "denied" in notice.visible_text
        await h.wait_text("No answer came.", thread_id=topic)
        closed = h.tg.message(h.chat_id, msg.message_id)
        assert not closed.buttons and "No answer in 2 s" in closed.visible_text
        assert h.db.sessions.get(sid).mode == "plan"
    finally:
        await stop_harness(h)


async def test_a_reply_to_the_plan_is_feedback_without_pressing(h: Harness) -> None:
    h.model.on("greet by reply", write_plan(PLAN), EXIT_PLAN, Text("Taking it back."))
    topic, sid = await h.new_session(str(h.root / "app"), "greet by reply")
    msg = await plan_in(h, topic)
    h.say("Greet the world, not just me", thread_id=topic, reply_to=msg.message_id)
    await h.wait_text("Taking it back.", thread_id=topic)
    assert any("Greet the world, not just me" in r for r in tool_results(h.model.requests))
    edited = h.tg.message(h.chat_id, msg.message_id)
    assert not edited.buttons and "Sent back by Ada" in edited.visible_text
    assert any(r.action == "plan" and "sent back" in r.detail for r in h.db.audit.recent())


async def test_claude_entering_plan_mode_itself_then_auto_accept(tmp_path: Path) -> None:
    """EnterPlanMode is not asked about (the CLI switches on its own): the thread says
    so and the stored mode follows; approving with auto-accept must still reach the
    CLI, and the next Write must not ask."""
    h = await start_harness(tmp_path)
    try:
        target = h.root / "app" / "self.txt"
        h.model.on(
            "plan it yourself",
            ToolUse("EnterPlanMode", {}),
            write_plan(PLAN),
            EXIT_PLAN,
            ToolUse("Write", {"file_path": str(target), "content": "self\n"}),
            Text("Did it."),
        )
        topic, sid = await h.new_session(str(h.root / "app"), "plan it yourself")
        msg = await plan_in(h, topic)
        await h.wait_text("Claude switched the permission mode: plan", thread_id=topic)
        assert h.db.sessions.get(sid).mode == "plan"
        h.press(msg, "Approve & auto-accept edits")
        await h.wait_text("Did it.", thread_id=topic)
        assert target.read_text() == "self\n"
        assert not any("Allow" in " ".join(m.button_labels) for m in h.bot_messages(topic))
        assert h.db.sessions.get(sid).mode == "acceptEdits"
    finally:
        await stop_harness(h)
