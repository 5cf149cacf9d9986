"""End to end: Claude's clarifying questions (AskUserQuestion) as buttons on Telegram,
with the real Claude Code CLI against the fake model.  What reaches the model is read
from the tool_result of its next request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.harness import OWNER, STRANGER, Harness, start_harness, stop_harness

pytestmark = pytest.mark.e2e

DB_Q = {
    "question": "Which database should I use?",
    "header": "Database",
    "multiSelect": False,
    "options": [
        {"label": "SQLite", "description": "embedded, zero setup"},
        {"label": "PostgreSQL", "description": "a server"},
        {"label": "DuckDB", "description": "analytics"},
    ],
}
FEAT_Q = {
    "question": "Which features do you want?",
    "header": "Features",
    "multiSelect": True,
    "options": [
        {"label": "Auth", "description": "log in"},
        {"label": "Search", "description": "full text"},
        {"label": "Export", "description": "CSV"},
    ],
}


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path)
    yield harness
    await stop_harness(harness)


def tool_results(h: Harness) -> list[str]:
    """Every tool_result text the model was sent, in order."""
    out: list[str] = []
    for req in h.model.requests:
        for msg in req.get("messages", []):
            content = msg.get("content")
            if not isinstance(content, list):
                continue
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    inner: Any = block.get("content")
                    out.append(inner if isinstance(inner, str) else json.dumps(inner))
    return out


async def question_in(h: Harness, topic: int, needle: str):  # noqa: ANN201
    return await h.wait_msg(
        lambda m: needle in m.visible_text and any("Other" in b for b in m.button_labels),
        thread_id=topic,
    )


async def test_single_select_answered_by_button(h: Harness) -> None:
    h.model.on("pick a db", ToolUse("AskUserQuestion", {"questions": [DB_Q]}), Text("Using it."))
    topic, _ = await h.new_session(str(h.root / "app"), "pick a db")
    msg = await question_in(h, topic, "Which database should I use?")
    text = msg.visible_text
    assert "Database" in text and "embedded, zero setup" in text and "DuckDB" in text
    assert "Allow" not in " ".join(msg.button_labels), "not a generic permission prompt"
    assert all(len(b["callback_data"].encode()) <= 64 for b in msg.buttons)
    late = msg.callback_data("DuckDB")
    h.press(msg, "PostgreSQL")
    owner = {"id": OWNER, "is_bot": False, "first_name": "Ada"}
    h.tg.press_button(h.chat_id, msg.message_id, late, owner, strict=False)  # first wins
    await h.wait_text("Using it.", thread_id=topic)
    results = tool_results(h)
    assert not any("DuckDB" in r for r in results)
    print("TOOL_RESULT single:", results)
    assert any("PostgreSQL" in r and "Which database should I use?" in r for r in results)
    edited = h.tg.message(h.chat_id, msg.message_id)
    assert not edited.buttons and "Answered by Ada" in edited.visible_text
    assert "PostgreSQL" in edited.visible_text


async def test_other_then_text_reply_is_the_free_answer(h: Harness) -> None:
    h.model.on("pick another", ToolUse("AskUserQuestion", {"questions": [DB_Q]}), Text("Noted."))
    topic, _ = await h.new_session(str(h.root / "app"), "pick another")
    msg = await question_in(h, topic, "Which database")
    h.press(msg, "Other")
    await h.wait_msg(
        lambda m: m.message_id == msg.message_id and "next message" in m.visible_text,
        thread_id=topic,
    )
    h.say("MariaDB on the old box", thread_id=topic)
    await h.wait_text("Noted.", thread_id=topic)
    results = tool_results(h)
    print("TOOL_RESULT other:", results)
    assert any("MariaDB on the old box" in r for r in results)
    assert "MariaDB on the old box" in h.tg.message(h.chat_id, msg.message_id).visible_text


async def test_two_questions_in_order_and_multi_select_toggled_then_done(h: Harness) -> None:
    h.model.on(
        "plan the app",
        ToolUse("AskUserQuestion", {"questions": [DB_Q, FEAT_Q]}),
        Text("Planned."),
    )
    topic, _ = await h.new_session(str(h.root / "app"), "plan the app")
    first = await question_in(h, topic, "Which database")
    assert "1/2" in first.visible_text
    h.say("1", thread_id=topic)  # an option's number typed (Matrix's way without reactions)
    second = await question_in(h, topic, "Which features")
    assert "2/2" in second.visible_text and "Done" in " ".join(second.button_labels)
    h.press(second, "Auth")
    await h.wait_msg(
        lambda m: m.message_id == second.message_id and "☑ 1." in m.visible_text, thread_id=topic
    )
    h.press(second, "Export")
    await h.wait_msg(
        lambda m: m.message_id == second.message_id and "☑ 3." in m.visible_text, thread_id=topic
    )
    h.press(second, "Search")
    await h.wait_msg(
        lambda m: m.message_id == second.message_id and "☑ 2." in m.visible_text, thread_id=topic
    )
    h.press(second, "Search")  # toggled off again
    await h.wait_msg(
        lambda m: m.message_id == second.message_id and "☐ 2." in m.visible_text, thread_id=topic
    )
    h.press(second, "Done")
    await h.wait_text("Planned.", thread_id=topic)
    results = tool_results(h)
    print("TOOL_RESULT multi:", results)
    # several labels of a multi-select are joined with ", " (as the SDK documents)
    assert any(
        '"Which database should I use?"="SQLite"' in r
        and '"Which features do you want?"="Auth, Export"' in r
        and "Search" not in r
        for r in results
    )
    assert "Export" in h.tg.message(h.chat_id, second.message_id).visible_text


async def test_a_strangers_press_is_refused_and_audited(h: Harness) -> None:
    h.model.on("ask owner", ToolUse("AskUserQuestion", {"questions": [DB_Q]}), Text("Owner's."))
    topic, _ = await h.new_session(str(h.root / "app"), "ask owner")
    msg = await question_in(h, topic, "Which database")
    stranger = {"id": STRANGER, "is_bot": False, "first_name": "Mallory"}
    query = h.tg.press_button(h.chat_id, msg.message_id, msg.callback_data("DuckDB"), stranger)
    await h.tg.wait_until(lambda: h.tg.callback_answer(query))
    await asyncio.sleep(0.5)
    assert h.tg.message(h.chat_id, msg.message_id).buttons, "the question still waits"
    assert not any("DuckDB" in r for r in tool_results(h))
    # a forged press for a question index that is not open is refused too
    forged = msg.callback_data("SQLite").rsplit(":", 2)[0] + ":3:0"
    owner = {"id": OWNER, "is_bot": False, "first_name": "Ada"}
    forged_query = h.tg.press_button(h.chat_id, msg.message_id, forged, owner, strict=False)
    await h.tg.wait_until(lambda: h.tg.callback_answer(forged_query))
    await h.tg.wait_until(
        lambda: any("not the open question" in r.detail for r in h.db.audit.recent())
    )
    h.press(msg, "SQLite")
    await h.wait_text("Owner's.", thread_id=topic)
    assert any("SQLite" in r for r in tool_results(h))
    refused = [r for r in h.db.audit.recent() if not r.allowed]
    assert any(r.user == f"telegram:{STRANGER}" for r in refused)


async def test_an_unanswered_question_times_out_and_claude_is_denied(tmp_path: Path) -> None:
    h = await start_harness(tmp_path, agent_extra={"permission_timeout_s": 2})
    try:
        h.model.on("ask late", ToolUse("AskUserQuestion", {"questions": [DB_Q]}), Text("No reply."))
        topic, _ = await h.new_session(str(h.root / "app"), "ask late")
        msg = await question_in(h, topic, "Which database")
        notice = await h.wait_text("No answer to Claude's question", thread_id=topic, timeout=20)
        assert "denied" in notice.visible_text
        await h.wait_text("No reply.", thread_id=topic)
        closed = h.tg.message(h.chat_id, msg.message_id)
        assert not closed.buttons and "No answer in 2 s" in closed.visible_text
        results = tool_results(h)
        assert results and "answered" not in results[-1], results
        print("TOOL_RESULT timeout:", results)
    finally:
        await stop_harness(h)
