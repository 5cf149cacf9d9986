"""Session rules and permission answers end to end: the real Claude Code CLI against the
fake model, the real Telegram adapter against the fake Bot API, the whole bridge between.

"Allow for session" must not widen: after it, a different command or a write to a
place that runs code is asked about again, and nothing runs unasked.  Text answers
decide the prompt they reply to; `yes` is a prompt for Claude.  `rules` lists the
rules and removes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.events import PermissionAsked
from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.fakes.telegram import FakeMessage
from tests.support.harness import OWNER, OWNER_NAME, Harness, start_harness, stop_harness

pytestmark = pytest.mark.e2e
OWNER_USER = {"id": OWNER, "is_bot": False, "first_name": OWNER_NAME}


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path)
    yield harness
    await stop_harness(harness)


def is_prompt(m: FakeMessage, needle: str = "") -> bool:
    labels = getattr(m, "button_labels", [])
    return any("Deny" in b for b in labels) and needle in (m.visible_text or "")


def prompts(h: Harness, topic: int) -> list[FakeMessage]:
    return [m for m in h.bot_messages(topic) if "🔐" in (m.visible_text or "")]


async def test_allow_for_session_on_bash_does_not_cover_a_widened_command(h: Harness) -> None:
    app = h.root / "app"
    (app / "in.json").write_text("{}\n")
    approved = "python3 -m json.tool in.json"
    widened = "python3 -m json.tool in.json pwned.json"  # the old prefix rule: "python3"
    h.model.on("check json", ToolUse("Bash", {"command": approved}), Text("json ok"))
    h.model.on("again", ToolUse("Bash", {"command": approved}), Text("again ok"))
    h.model.on("widen", ToolUse("Bash", {"command": widened}), Text("widen over"))
    topic, sid = await h.new_session(str(app), "check json")
    first = await h.wait_msg(lambda m: is_prompt(m, "json.tool"), thread_id=topic)
    offered = first.visible_text
    h.press(first, "Allow for session")
    await h.wait_text("json ok", thread_id=topic)

    h.say("again", thread_id=topic)
    await h.wait_text("again ok", thread_id=topic)
    assert len(prompts(h, topic)) == 1, "the exact command runs without asking again"

    h.say("widen", thread_id=topic)
    second = await h.wait_msg(lambda m: is_prompt(m, "pwned.json"), thread_id=topic)
    assert not (app / "pwned.json").exists(), "nothing ran before the owner answered"
    h.press(second, "Deny")
    await h.wait_text("widen over", thread_id=topic)
    assert not (app / "pwned.json").exists()
    # what the person was told: the rule before the press, and after it
    assert f"Bash({approved})" in offered, "the prompt says which rule it would store"
    decided = h.tg.message(h.chat_id, first.message_id)
    assert f"later exactly {approved} runs without asking" in decided.visible_text
    assert [(r.tool_name, r.pattern) for r in h.db.permissions.rules(sid)] == [("Bash", approved)]


async def test_allow_for_session_on_a_write_does_not_cover_claude_settings(
    h: Harness, tmp_path: Path
) -> None:
    app = h.root / "app"
    settings = app / ".claude" / "settings.local.json"
    hook = '{"hooks": {"SessionStart": [{"hooks": [{"type": "command", "command": "id"}]}]}}'
    outside = tmp_path / "outside.txt"
    h.model.on(
        "write code",
        ToolUse("Write", {"file_path": str(app / "src.py"), "content": "a = 1\n"}),
        Text("code written"),
    )
    h.model.on(
        "more code",
        ToolUse("Write", {"file_path": str(app / "more.py"), "content": "b = 2\n"}),
        ToolUse("Write", {"file_path": str(settings), "content": hook}),
        ToolUse("Write", {"file_path": str(outside), "content": "x"}),
        Text("more over"),
    )
    topic, sid = await h.new_session(str(app), "write code")
    first = await h.wait_msg(lambda m: is_prompt(m, "src.py"), thread_id=topic)
    h.press(first, "Allow for session")
    await h.wait_text("code written", thread_id=topic)

    h.say("more code", thread_id=topic)
    planted = await h.wait_msg(lambda m: is_prompt(m, "settings.local.json"), thread_id=topic)
    assert (app / "more.py").read_text() == "b = 2\n", "a write inside the folder ran unasked"
    assert not settings.exists()
    assert planted.button_labels == ["✅ Allow", "❌ Deny"], "no session button for .claude/"
    forged = planted.callback_data("Allow")[:-1] + "s"  # the button that was not offered
    h.tg.press_button(h.chat_id, planted.message_id, forged, OWNER_USER, strict=False)
    await h.tg.wait_until(
        lambda: any("no session rule offered" in a.detail for a in h.db.audit.recent(20)), 30
    )
    assert len(h.db.permissions.rules(sid)) == 1 and not settings.exists()
    h.press(planted, "Deny")
    away = await h.wait_msg(lambda m: is_prompt(m, "outside.txt"), thread_id=topic)
    assert "Outside the session directory" in away.visible_text
    assert away.button_labels == ["✅ Allow", "❌ Deny"]
    h.press(away, "Deny")
    await h.wait_text("more over", thread_id=topic)
    assert not settings.exists() and not outside.exists()
    [rule] = h.db.permissions.rules(sid)
    assert rule.tool_name == "Edit" and rule.pattern.endswith(f"{app.resolve()}/**")


async def test_text_answers_decide_the_prompt_they_reply_to(h: Harness) -> None:
    """The CLI asks one request at a time (measured: two parallel Writes are asked in
    turn), so two pending prompts — subagents, or a prompt left while another came —
    are made here by handing the bridge two requests as the CLI would."""
    app = h.root / "app"
    release = asyncio.Event()  # the `yes` turn runs until the test is done
    h.model.on("yes", Text("you said yes, " * 20, chunk=10, gate=release, gate_at=0.3))
    topic, sid = await h.new_session(str(app))
    await h.wait_text("Ready", thread_id=topic)
    loop = asyncio.get_running_loop()
    asks = [
        PermissionAsked(
            sid, f"tool-{n}", "Bash", {"command": f"touch {name}"}, loop.create_future()
        )
        for n, name in enumerate(("first", "second"))
    ]
    for ask in asks:
        await h.bridge.on_agent_event(ask)
    p1 = await h.wait_msg(lambda m: is_prompt(m, "touch first"), thread_id=topic)
    p2 = await h.wait_msg(lambda m: is_prompt(m, "touch second"), thread_id=topic)
    h.say("yes", thread_id=topic)
    await h.tg.wait_until(lambda: h.model_saw("yes"), 30)  # `yes` went to Claude as a prompt
    h.say("allow", thread_id=topic)
    await h.wait_text("2 requests are waiting", thread_id=topic)
    assert not any(a.future.done() for a in asks), "a plain yes/allow decided nothing"
    h.say("allow", thread_id=topic, reply_to=p2.message_id)
    await h.wait_msg(
        lambda m: m.message_id == p2.message_id and "Allowed by Ada" in (m.visible_text or ""),
        thread_id=topic,
    )
    assert asks[1].future.result().allow and not asks[0].future.done()
    h.say("deny not that one", thread_id=topic)  # one pending now: it decides that one
    await h.wait_msg(
        lambda m: m.message_id == p1.message_id and "Denied by Ada" in (m.visible_text or ""),
        thread_id=topic,
    )
    decision = asks[0].future.result()
    assert not decision.allow and decision.message == "not that one"
    release.set()
    await h.wait_text("⏱", thread_id=topic)


async def test_rules_lists_and_removes_a_session_rule(h: Harness) -> None:
    app = h.root / "app"
    (app / ".claude").mkdir()
    (app / ".claude" / "settings.json").write_text(
        '{"permissions": {"allow": ["Bash(make:*)"]}, "hooks": {}}'
    )
    h.model.on("touch it", ToolUse("Bash", {"command": "touch marker"}), Text("touched"))
    h.model.on("touch again", ToolUse("Bash", {"command": "touch marker"}), Text("again"))
    topic, sid = await h.new_session(str(app), "touch it")
    first = await h.wait_msg(lambda m: is_prompt(m, "touch marker"), thread_id=topic)
    h.press(first, "Allow for session")
    await h.wait_text("touched", thread_id=topic)

    h.say("/rules", thread_id=topic)
    listing = await h.wait_msg(
        lambda m: any("Remove" in b for b in m.button_labels), thread_id=topic
    )
    assert "Bash(touch marker)" in listing.visible_text
    assert "This folder's own rules" in listing.visible_text
    assert "Bash(make:*)" in listing.visible_text and "trusted" in listing.visible_text
    assert listing.button_labels == ["Remove 1"]
    data = listing.callback_data("Remove 1")
    assert len(data.encode()) <= 64
    elsewhere = next(m for m in h.bot_messages() if m.thread_id != topic)
    h.tg.press_button(h.chat_id, elsewhere.message_id, data, OWNER_USER, strict=False)
    await h.tg.wait_until(
        lambda: any(a.detail == "stale or foreign button" for a in h.db.audit.recent(20)), 30
    )
    assert len(h.db.permissions.rules(sid)) == 1, "a press from another thread removes nothing"
    h.press(listing, "Remove 1")
    await h.wait_text("Removed Bash(touch marker)", thread_id=topic)
    assert h.db.permissions.rules(sid) == []
    assert any(a.action == "rule-remove" and a.allowed for a in h.db.audit.recent(20)), (
        "the removal is audit-logged"
    )
    h.press(listing, "Remove 1")  # pressing it again removes nothing and breaks nothing
    for forged in (f"r:{sid}:" + "9" * 40, f"r:{sid}:-1", f"r:{sid}:١"):
        h.tg.press_button(h.chat_id, listing.message_id, forged, OWNER_USER, strict=False)
    h.say("touch again", thread_id=topic)
    again = await h.wait_msg(
        lambda m: is_prompt(m, "touch marker") and m.message_id != first.message_id,
        thread_id=topic,
    )
    h.press(again, "Deny")
    await h.wait_text("again", thread_id=topic)
    assert not any("went wrong" in (m.visible_text or "") for m in h.bot_messages(topic))


async def test_a_long_command_is_asked_with_the_whole_text_attached(h: Harness) -> None:
    app = h.root / "app"
    command = "python3 -m json.tool " + "a" * 5000 + " out.json"
    h.model.on("long one", ToolUse("Bash", {"command": command}), Text("long over"))
    topic, _ = await h.new_session(str(app), "long one")
    prompt = await h.wait_msg(lambda m: is_prompt(m, "not shown here"), thread_id=topic)
    doc = await h.wait_msg(lambda m: m.kind == "document", thread_id=topic)
    assert doc.file is not None and doc.file.data == command.encode()
    assert f"this exact {len(command)}-character command" in prompt.visible_text
    assert "a" * 3001 not in prompt.visible_text, "the message shows the start, the file all"
    h.press(prompt, "Deny")
    await h.wait_text("long over", thread_id=topic)
