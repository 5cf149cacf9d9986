"""End to end on Slack: Claude Code's task list as one checklist message per turn
(mrkdwn: bold, strike-through), edited in place with chat.update and exact at the end,
with the real CLI against the fake model and the real slack-bolt adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.test_e2e_todos import MODEL, ThreeWrites, tool_results
from tests.support.fakes.slack import FakeMessage
from tests.support.fakes.slack.formatting import block_texts, mrkdwn_plain
from tests.support.slack_harness import SlackHarness, start_slack_harness, stop_slack_harness

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

FIRST = "📋 *Tasks* · 0/3 done\n☐ Write the parser\n☐ Test the parser\n☐ Ship it"
MIDDLE = "📋 *Tasks* · 1/3 done\n☑ ~Write the parser~\n◐ *Testing it*\n☐ Ship it"
LAST = "📋 *Tasks* · 3/3 done\n☑ ~Write the parser~\n☑ ~Test the parser~\n☑ ~Ship it~"


@pytest.fixture()
async def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SlackHarness]:
    monkeypatch.setenv("CLAUDE_CODE_ENABLE_TASKS", "false")  # TodoWrite, not TaskCreate
    harness = await start_slack_harness(tmp_path, speed=4.0, agent_extra={"model": MODEL})
    yield harness
    await stop_slack_harness(harness)


def checklists(h: SlackHarness, thread: str) -> list[FakeMessage]:
    return [m for m in h.bot_messages(thread) if m.visible_text.startswith("📋")]


async def test_slack_three_todo_writes_make_one_checklist_edited_in_place(
    h: SlackHarness,
) -> None:
    turn = ThreeWrites(h.model, "release it")
    thread, _ = await h.new_session(str(h.root / "app"), "release it")

    async def shown(n: int) -> None:
        await h.wait_msg(lambda m: m.visible_text == (FIRST, MIDDLE)[n], thread=thread)

    await turn.play(shown)
    await h.wait_text("Released.", thread=thread)
    assert await h.bridge.outbox.wait_idle(timeout=10)
    [checklist] = checklists(h, thread)  # one message, not one per TodoWrite
    versions = [mrkdwn_plain(block_texts(v.blocks)) for v in checklist.history]
    assert versions[:2] == [FIRST, MIDDLE], "edited in place"
    assert checklist.visible_text == LAST, "exact at the end of the turn"
    texts = [m.visible_text for m in h.bot_messages(thread)]
    assert not any("Allow" in t for t in texts), "TodoWrite never asks permission"
    assert not any("TodoWrite" in t for t in texts if "Done" in t), texts
    assert tool_results(h.model).count("modified successfully") == 3
