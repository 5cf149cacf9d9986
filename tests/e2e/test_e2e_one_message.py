"""One notifying message per turn on Telegram, with the real CLI and the fake Bot API.

A plain answer leaves exactly one message (the answer, with sound); the turn's status
message appears only when there is something to show — the streamed text where no
native draft shows it, a tool, a turn long enough to want its Stop button — is sent
silently, and is deleted after the answer when it showed nothing the answer does
not.  With tools it stays, silent, edited to "✅ Done" with the tool lines.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import bridge.turns as turns
from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.fakes.telegram import FakeMessage
from tests.support.harness import Harness, start_harness, stop_harness


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path)
    yield harness
    await stop_harness(harness)


def _stop_buttons(m: FakeMessage) -> bool:
    """Whether any version of `m` carried a Stop button (a turn's status message)."""
    return any(
        b.get("callback_data", "").startswith("x:")
        for v in m.history
        for row in (getattr(v, "reply_markup", None) or {}).get("inline_keyboard", [])
        for b in row
    )


async def _turn(h: Harness, topic: int, prompt: str, marker: str) -> list[FakeMessage]:
    """Say `prompt` in `topic`; when the answer is in and nothing is pending, the bot
    messages the turn produced (deleted ones too), in order."""
    before = max((m.message_id for m in h.tg.messages(h.chat_id, include_user=True)), default=0)
    h.say(prompt, thread_id=topic)
    await h.wait_msg(lambda m: marker in m.visible_text and "⏱" in m.visible_text, thread_id=topic)
    assert await h.bridge.outbox.wait_idle(timeout=15)
    return [
        m for m in h.tg.messages(h.chat_id, topic, include_deleted=True) if m.message_id > before
    ]


def _assert_one_notifying_answer(made: list[FakeMessage], marker: str) -> FakeMessage:
    notifying = [m for m in made if not m.disable_notification and not m.deleted]
    assert len(notifying) == 1, f"one message with sound per turn, got {notifying}"
    [answer] = notifying
    assert marker in answer.visible_text and "⏱" in answer.visible_text
    return answer


async def test_a_plain_answer_is_one_message_turn_after_turn(h: Harness) -> None:
    h.model.on("first question", Text("ANS1: the answer to the first question.", chunk=10))
    h.model.on("second question", Text("ANS2: the answer to the second question.", chunk=10))
    topic, _ = await h.new_session(str(h.root / "app"))
    await h.wait_text("Ready", thread_id=topic)
    for prompt, marker in (("first question", "ANS1"), ("second question", "ANS2")):
        made = await _turn(h, topic, prompt, marker)
        answer = _assert_one_notifying_answer(made, marker)
        assert made == [answer], f"the answer is the turn's only message: {made}"
    assert h.tg.count_429 == 0


async def test_a_long_turn_shows_stop_then_leaves_only_its_answer(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `status_after` the silent status message with its Stop button appears; the
    turn used no tool, so at the end it is deleted and the answer is the one left."""
    monkeypatch.setattr(turns, "STATUS_AFTER_S", 0.5)
    answer = " ".join(f"LONG{i}" for i in range(60))
    h.model.on("think long", Text(answer, chunk=8, delay=0.05))  # ~2 s of streaming
    topic, _ = await h.new_session(str(h.root / "app"))
    await h.wait_text("Ready", thread_id=topic)
    made = await _turn(h, topic, "think long", "LONG59")
    final = _assert_one_notifying_answer(made, "LONG59")
    statuses = [m for m in made if _stop_buttons(m)]
    assert len(statuses) == 1, "the running turn had its status message with Stop"
    [status] = statuses
    assert status.disable_notification, "the status message was sent silently"
    assert status.deleted, "it showed nothing the answer does not: deleted"
    assert status.message_id < final.message_id
    assert [m for m in made if not m.deleted] == [final]


async def test_a_turn_with_tools_keeps_its_silent_status_with_the_tool_lines(
    h: Harness,
) -> None:
    notes = h.root / "app" / "NOTES.md"
    notes.write_text("the build uses make\n")
    h.model.on(
        "read the notes",
        ToolUse("Read", {"file_path": str(notes)}),
        # a couple of seconds after the tool, so the chat's budget reaches the status
        # message before the answer is in (one never sent is simply dropped)
        Text("TOOLANS: the build uses make, " + "and so on " * 20, chunk=8, delay=0.08),
    )
    topic, _ = await h.new_session(str(h.root / "app"))
    await h.wait_text("Ready", thread_id=topic)
    made = await _turn(h, topic, "read the notes", "TOOLANS")
    final = _assert_one_notifying_answer(made, "TOOLANS")
    [status] = [m for m in made if _stop_buttons(m)]
    assert status.disable_notification and not status.deleted
    assert not status.buttons, "the Stop button is gone once the turn ended"
    assert "Done" in status.visible_text and "NOTES.md" in status.visible_text
    assert [m for m in made if not m.deleted] == [status, final]


async def test_in_a_group_the_text_streams_into_the_status_and_one_message_stays(
    tmp_path: Path,
) -> None:
    """No native drafts in groups: the text so far shows in the status message, which
    goes once the answer is in."""
    h = await start_harness(tmp_path, group=True)
    try:
        answer = " ".join(f"GRP{i}" for i in range(60))
        h.model.on("stream it", Text(answer, chunk=8, delay=0.04))
        topic, _ = await h.new_session(str(h.root / "app"))
        await h.wait_text("Ready", thread_id=topic)
        made = await _turn(h, topic, "stream it", "GRP59")
        final = _assert_one_notifying_answer(made, "GRP59")
        [status] = [m for m in made if _stop_buttons(m)]
        assert any("GRP" in (v.text or "") for v in status.history), "the text streamed into it"
        assert status.deleted and status.disable_notification
        assert [m for m in made if not m.deleted] == [final]
        assert h.tg.count_429 == 0
    finally:
        await stop_harness(h)
