"""One notifying event per answer on Matrix (real Synapse, encrypted room, the real
CLI against the fake model).

Matrix's default push rules notify for `m.text` in a one-to-one room and never for
`m.notice` (`.m.rule.suppress_notices`), and for a mention anywhere.  A turn's status
message is a notice (edited in place: edits never notify), its answer the one
`m.text`; only the answer of a long turn mentions the owner.  A redacted event stays
as a "Message deleted" placeholder in Element, so here the status stays as a silent
"✅ Done" rather than being redacted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.fakes.anthropic import Text
from tests.support.matrix_harness import MatrixHarness, start_matrix_harness, stop_matrix_harness
from tests.support.matrix_phone import PhoneMessage
from tests.support.synapse import Synapse

pytestmark = pytest.mark.e2e


@pytest.fixture()
async def h(tmp_path: Path, synapse: Synapse) -> AsyncIterator[MatrixHarness]:
    harness = await start_matrix_harness(tmp_path, synapse)
    yield harness
    await stop_matrix_harness(harness)


def notifies(m: PhoneMessage) -> bool:
    first = m.versions[0]  # what arrived: edits (m.replace) never notify
    return first.get("msgtype") != "m.notice" or bool(first.get("m.mentions", {}).get("user_ids"))


async def test_each_answer_is_the_one_notifying_event_of_its_turn(h: MatrixHarness) -> None:
    h.model.on("first question", Text("ANS1: " + "the first answer. " * 30, chunk=20, delay=0.03))
    h.model.on("second question", Text("ANS2: the second answer."))
    thread, _ = await h.new_session(str(h.root / "app"))
    await h.wait_text("Ready", thread=thread)
    for prompt, marker in (("first question", "ANS1"), ("second question", "ANS2")):
        before = {m.event_id for m in h.bot_messages(thread)}
        await h.say(prompt, thread=thread)
        await h.phone.wait(
            lambda marker=marker: (
                any(  # type: ignore[misc]
                    marker in m.body and "⏱" in m.body for m in h.bot_messages(thread)
                )
                or None
            )
        )
        assert await h.bridge.outbox.wait_idle(timeout=15)
        made = [m for m in h.bot_messages(thread) if m.event_id not in before]
        loud = [m for m in made if notifies(m)]
        assert len(loud) == 1 and marker in loud[0].body and "⏱" in loud[0].body, made
        assert loud[0].msgtype == "m.text"
        assert all(m.msgtype == "m.notice" for m in made if m is not loud[0])
