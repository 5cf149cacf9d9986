"""One message per plain answer on Slack (real slack-bolt/slack_sdk against the fake
Slack, the real CLI against the fake model).

Slack has no silent messages, so what counts is what a turn leaves in the thread:
the status message (Stop button, the anchor of the native stream) goes once the
answer is in when it showed nothing the answer does not; the answer stays.  No
status message mentions the owner.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.fakes.slack import FakeMessage
from tests.support.slack_harness import OWNER, SlackHarness, start_slack_harness, stop_slack_harness

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[SlackHarness]:
    harness = await start_slack_harness(tmp_path, speed=4.0)
    yield harness
    await stop_slack_harness(harness)


async def _turn(h: SlackHarness, thread: str, prompt: str, marker: str) -> list[FakeMessage]:
    """The bot's replies in `thread` that the turn made (deleted ones too), in order."""
    before = {m.ts for m in h.slack.messages(h.channel, thread, include_deleted=True)}
    h.say(prompt, thread=thread)
    await h.wait_msg(lambda m: marker in m.visible_text and "⏱" in m.visible_text, thread=thread)
    assert await h.bridge.outbox.wait_idle(timeout=15)
    return [
        m for m in h.slack.messages(h.channel, thread, include_deleted=True) if m.ts not in before
    ]


async def test_each_plain_answer_leaves_one_message_in_the_thread(h: SlackHarness) -> None:
    h.model.on("first question", Text("ANS1: " + "the first answer. " * 20, chunk=20, delay=0.03))
    h.model.on("second question", Text("ANS2: the second answer."))
    thread, _ = await h.new_session(str(h.root / "app"))
    await h.wait_text("Ready", thread=thread)
    for prompt, marker in (("first question", "ANS1"), ("second question", "ANS2")):
        made = await _turn(h, thread, prompt, marker)
        kept = [m for m in made if not m.deleted]
        assert len(kept) == 1 and marker in kept[0].visible_text, f"one reply per turn: {made}"
        # the status message (if the channel's budget reached it before the answer was
        # in: otherwise it was never sent) went with the turn, and never mentioned anyone
        statuses = [m for m in made if m.deleted]
        assert len(statuses) <= 1
        assert not any(f"<@{OWNER}>" in v.text for m in statuses for v in m.versions)
    assert h.slack.count_429 == 0


async def test_with_a_tool_the_status_stays_with_its_tool_line(h: SlackHarness) -> None:
    notes = h.root / "app" / "NOTES.md"
    notes.write_text("the build uses make\n")
    h.model.on(
        "read the notes",
        ToolUse("Read", {"file_path": str(notes)}),
        Text("TOOLANS: the build uses make."),
    )
    thread, _ = await h.new_session(str(h.root / "app"))
    await h.wait_text("Ready", thread=thread)
    made = await _turn(h, thread, "read the notes", "TOOLANS")
    assert not any(m.deleted for m in made)
    status, final = made
    assert "NOTES.md" in status.visible_text and not status.buttons
    assert "TOOLANS" in final.visible_text
