"""End to end on Matrix (real Synapse, encrypted room): a multi-select option chosen by
a reaction is unselected by taking the reaction back (its redaction), as a second tap
on a Telegram or Slack button does; the question says so. Taking back any other
reaction (the question's single-select answer, Done) changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.test_e2e_questions import DB_Q, FEAT_Q
from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.matrix_harness import MatrixHarness, start_matrix_harness, stop_matrix_harness
from tests.support.synapse import Synapse

pytestmark = pytest.mark.e2e
KEYS = [f"{n}\ufe0f\u20e3" for n in range(1, 4)]


@pytest.fixture()
async def h(tmp_path: Path, synapse: Synapse) -> AsyncIterator[MatrixHarness]:
    harness = await start_matrix_harness(tmp_path, synapse)
    yield harness
    await stop_matrix_harness(harness)


async def take_back(h: MatrixHarness, room_id: str, reaction_id: str) -> None:
    """As Element does when the person taps their own reaction again: a redaction."""
    resp = await h.phone.client.room_redact(room_id, reaction_id)
    assert getattr(resp, "event_id", None), resp


async def test_taking_back_a_reaction_unselects_a_multi_select_option(h: MatrixHarness) -> None:
    h.model.on(
        "plan it", ToolUse("AskUserQuestion", {"questions": [FEAT_Q, DB_Q]}), Text("Planned.")
    )
    thread, _ = await h.new_session(str(h.root / "app"), "plan it")
    first = await h.phone.wait_message(lambda m: "Which features" in m.body)
    assert "remove a reaction to unselect it" in first.body
    await h.phone.wait(lambda: len(first.reaction_keys(h.bot.user_id)) == 5 or None)
    one = await h.react(first, KEYS[0])
    await h.phone.wait(lambda: "☑ 1." in first.body or None)
    await h.react(first, KEYS[1])
    await h.phone.wait(lambda: "☑ 2." in first.body or None)
    await take_back(h, first.room_id, one)
    await h.phone.wait(lambda: "☐ 1." in first.body or None)
    assert "☑ 2." in first.body
    await h.react(first, "✅")
    second = await h.phone.wait_message(lambda m: "Which database" in m.body)
    assert "remove a reaction" not in second.body, "a single-select answer is final"
    await h.phone.wait(lambda: "Answered by" in first.body or None)
    await h.phone.wait(lambda: len(second.reaction_keys(h.bot.user_id)) >= 3 or None)
    pg = await h.react(second, KEYS[1])
    await h.wait_text("Planned.", thread=thread)
    await take_back(h, second.room_id, pg)  # after the answer: ignored
    assert h.model_saw('\\"Which features do you want?\\"=\\"Search\\"')
    assert h.model_saw('\\"Which database should I use?\\"=\\"PostgreSQL\\"')
