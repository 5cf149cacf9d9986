"""A permission prompt follows the tool lines that led to it, whatever the timing.

The status message is made lazily (debounced, or only when there is something to
show); a prompt posted while that flush still waits would overtake it, and the thread
would show the prompt first and the tools after — in some runs and not in others.
`TurnView.before_prompt` flushes first.  The real `TurnView` and `Outbox` on SQLite,
delivering to the outbox tests' recording platform.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.messages import Markdown, Outbound, ThreadRef
from adapters.tasks import TaskGroup
from agent.events import ToolStarted
from bridge.outbox.outbox import Outbox
from bridge.turns import TurnView
from storage.db import Database
from tests.integration.test_outbox import FakePlatform

THREAD = ThreadRef("fake", "c1", "t1")


@pytest.fixture
def db(tmp_path: Path) -> Any:
    database = Database(f"sqlite:///{tmp_path}/t.db")
    database.migrate()
    yield database
    database.close()


async def test_the_status_goes_before_a_prompt_even_while_its_flush_waits(db: Database) -> None:
    fake = FakePlatform()
    outbox = Outbox(db, {"fake": fake}, retry_initial=0.01)
    tasks = TaskGroup()
    now = [100.0]
    view = TurnView(
        session_id="s1", turn_no=1, thread=THREAD, cwd="/w", outbox=outbox, tasks=tasks,
        use_draft=False, min_interval=10.0, clock=lambda: now[0], status_after=60.0,
    )  # fmt: skip
    view.begin()
    view._last_flush = now[0]  # a flush just happened: the next one waits 10 s
    view.on_tool(ToolStarted("s1", "t1", "Read", {"file_path": "/w/notes.txt"}))
    view.before_prompt()  # what the turn router does before the broker posts a prompt
    prompt = Outbound((Markdown("🔐 Write notes.txt"),), notify=True, role="prompt")
    outbox.enqueue(THREAD, prompt, session_id="s1")
    await outbox.start()
    try:
        assert await outbox.wait_idle(timeout=5)
    finally:
        await outbox.stop()
        await tasks.close()
    sends = [c.text for c in fake.calls if c.op == "send"]
    assert len(sends) == 2, sends
    assert "Read notes.txt" in sends[0] and sends[1].startswith("🔐 Write notes.txt")
