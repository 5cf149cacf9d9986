"""End to end on Matrix (real Synapse, encrypted room): Claude's question as numbered
reactions — a multi-select toggled by 1️⃣/3️⃣ and submitted with ✅, then the next
question answered by typing its option number in the thread."""

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


async def test_matrix_question_by_numbered_reactions_and_a_typed_number(h: MatrixHarness) -> None:
    h.model.on(
        "plan it", ToolUse("AskUserQuestion", {"questions": [FEAT_Q, DB_Q]}), Text("Planned.")
    )
    thread, _ = await h.new_session(str(h.root / "app"), "plan it")
    first = await h.phone.wait_message(lambda m: "Which features" in m.body)
    assert "React 1️⃣" in first.body and "or reply with the number(s)" in first.body
    await h.phone.wait(lambda: len(first.reaction_keys(h.bot.user_id)) == 5 or None)
    assert first.reaction_keys(h.bot.user_id) == [*KEYS, "✏️", "✅"]
    await h.react(first, KEYS[0])
    await h.phone.wait(lambda: "☑ 1." in first.body or None)
    await h.react(first, KEYS[2])
    await h.phone.wait(lambda: "☑ 3." in first.body or None)
    await h.react(first, "✅")
    second = await h.phone.wait_message(lambda m: "Which database" in m.body)
    await h.phone.wait(lambda: "Answered by" in first.body or None)
    await h.say("2", thread=thread)
    await h.wait_text("Planned.", thread=thread)
    await h.phone.wait(lambda: "Answered by" in second.body or None)
    assert h.model_saw('\\"Which features do you want?\\"=\\"Auth, Export\\"')
    assert h.model_saw('\\"Which database should I use?\\"=\\"PostgreSQL\\"')
