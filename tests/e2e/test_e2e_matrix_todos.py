"""End to end on Matrix (real Synapse, encrypted room): Claude Code's task list as one
checklist message per turn (HTML: bold, strike-through), edited in place with
m.replace edits and exact at the end, with the real CLI against the fake model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.test_e2e_todos import MODEL, ThreeWrites, tool_results
from tests.support.matrix_harness import MatrixHarness, start_matrix_harness, stop_matrix_harness
from tests.support.matrix_phone import PhoneMessage
from tests.support.synapse import Synapse

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

# The event's body is the Markdown; formatted_body its HTML.
FIRST = "📋 **Tasks** · 0/3 done\n☐ Write the parser\n☐ Test the parser\n☐ Ship it"
MIDDLE = "📋 **Tasks** · 1/3 done\n☑ ~~Write the parser~~\n◐ **Testing it**\n☐ Ship it"
LAST = "📋 **Tasks** · 3/3 done\n☑ ~~Write the parser~~\n☑ ~~Test the parser~~\n☑ ~~Ship it~~"


@pytest.fixture()
async def h(
    tmp_path: Path, synapse: Synapse, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MatrixHarness]:
    monkeypatch.setenv("CLAUDE_CODE_ENABLE_TASKS", "false")  # TodoWrite, not TaskCreate
    harness = await start_matrix_harness(tmp_path, synapse, agent_extra={"model": MODEL})
    yield harness
    await stop_matrix_harness(harness)


def checklists(h: MatrixHarness, thread: str) -> list[PhoneMessage]:
    return [m for m in h.bot_messages(thread) if m.body.startswith("📋")]


async def test_matrix_three_todo_writes_make_one_checklist_edited_in_place(
    h: MatrixHarness,
) -> None:
    turn = ThreeWrites(h.model, "release it")
    thread, _ = await h.new_session(str(h.root / "app"), "release it")

    async def shown(n: int) -> None:
        want = (FIRST, MIDDLE)[n]
        await h.phone.wait(lambda: any(m.body == want for m in checklists(h, thread)) or None)

    await turn.play(shown)
    await h.wait_text("Released.", thread=thread)
    assert await h.bridge.outbox.wait_idle(timeout=10)
    await h.phone.wait(lambda: any(m.body == LAST for m in checklists(h, thread)) or None)
    [checklist] = checklists(h, thread)  # one message, not one per TodoWrite
    bodies = [str(v.get("body")) for v in checklist.versions]
    assert bodies[:2] == [FIRST, MIDDLE], "edited in place"
    assert checklist.body == LAST, "exact at the end of the turn"
    assert checklist.html == (
        "<p>📋 <strong>Tasks</strong> · 3/3 done<br />\n☑ <del>Write the parser</del><br />\n"
        "☑ <del>Test the parser</del><br />\n☑ <del>Ship it</del></p>"
    )
    texts = [m.body for m in h.bot_messages(thread)]
    assert not any("Allow" in t for t in texts), "TodoWrite never asks permission"
    assert not any("TodoWrite" in t for t in texts if "Done" in t), texts
    assert tool_results(h.model).count("modified successfully") == 3
