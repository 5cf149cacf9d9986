"""End to end on Telegram: Claude Code's task list as one checklist message per turn,
edited in place and exact at the end, with the real CLI against the fake model.

The bundled CLI offers its task tools only to some models (the claude-4 family and
older; not to its own default), so these sessions run on `claude-sonnet-4-6`; it then
offers TaskCreate/TaskUpdate, or TodoWrite when `CLAUDE_CODE_ENABLE_TASKS=false` (the
SDK lays the daemon's environment under the CLI's).  Neither asks permission."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.fakes.anthropic import FakeAnthropic, Text, ToolUse
from tests.support.fakes.telegram import FakeMessage
from tests.support.harness import Harness, start_harness, stop_harness

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

MODEL = "claude-sonnet-4-6"  # a model the CLI offers its task tools to


def todos(*statuses: str) -> dict[str, Any]:
    names = [("Write the parser", "Writing the parser"), ("Test the parser", "Testing it"),
             ("Ship it", "Shipping")]  # fmt: skip
    return {
        "todos": [
            {"content": c, "status": s, "activeForm": a}
            for (c, a), s in zip(names, statuses, strict=True)
        ]
    }


FIRST = "📋 Tasks · 0/3 done\n☐ Write the parser\n☐ Test the parser\n☐ Ship it"
LAST = "📋 Tasks · 3/3 done\n☑ Write the parser\n☑ Test the parser\n☑ Ship it"


MIDDLE = "📋 Tasks · 1/3 done\n☑ Write the parser\n◐ Testing it\n☐ Ship it"


class ThreeWrites:
    """A turn that writes the task list three times with text in between; each write
    after the first waits until the chat shows the one before (`advance`)."""

    def __init__(self, model: Any, prompt: str, last: Any = None) -> None:
        self.gates = [asyncio.Event(), asyncio.Event()]
        model.on(
            prompt,
            ToolUse("TodoWrite", todos("pending", "pending", "pending"), text_before="Planning."),
            ToolUse(
                "TodoWrite",
                todos("completed", "in_progress", "pending"),
                text_before="Parser done.",
                gate=self.gates[0],
            ),  # fmt: skip
            ToolUse(
                "TodoWrite",
                todos("completed", "completed", "completed"),
                text_before="Shipped.",
                gate=self.gates[1],
            ),  # fmt: skip
            last or Text("Released."),
        )

    async def play(self, wait_shown: Callable[[int], Awaitable[object]]) -> None:
        """`wait_shown(n)` waits until the checklist shows the n-th list (0, 1)."""
        await wait_shown(0)
        self.gates[0].set()
        await wait_shown(1)
        self.gates[1].set()


@pytest.fixture()
async def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    monkeypatch.setenv("CLAUDE_CODE_ENABLE_TASKS", "false")  # TodoWrite, not TaskCreate
    harness = await start_harness(tmp_path, agent_extra={"model": MODEL})
    yield harness
    await stop_harness(harness)


def tool_results(model: FakeAnthropic) -> str:
    """Every distinct tool_result the model was sent, joined."""
    seen: dict[str, str] = {}
    for req in model.requests:
        for msg in req.get("messages", []):
            if isinstance(msg.get("content"), list):
                for b in msg["content"]:
                    if isinstance(b, dict) and b.get("type") == "tool_result":
                        seen[b["tool_use_id"]] = str(b.get("content"))
    return "\n".join(seen.values())


def checklists(h: Harness, topic: int) -> list[FakeMessage]:
    return [m for m in h.bot_messages(topic) if m.visible_text.startswith("📋 Tasks")]


def every_version(h: Harness, topic: int) -> list[str]:
    """Every text any bot message in the topic ever showed, deleted ones included."""
    return [
        v.visible_text or ""
        for m in h.tg.messages(h.chat_id, topic, include_deleted=True)
        for v in m.history
    ]


async def test_three_todo_writes_make_one_checklist_edited_in_place(h: Harness) -> None:
    turn = ThreeWrites(h.model, "release it")
    topic, _ = await h.new_session(str(h.root / "app"), "release it")

    async def shown(n: int) -> None:
        await h.wait_msg(lambda m: m.visible_text == (FIRST, MIDDLE)[n], thread_id=topic)

    await turn.play(shown)
    await h.wait_text("Released.", thread_id=topic)
    assert await h.bridge.outbox.wait_idle(timeout=10)
    [checklist] = checklists(h, topic)  # one message, not one per TodoWrite
    versions = [v.visible_text for v in checklist.history]
    assert versions[:2] == [FIRST, MIDDLE], "edited in place"
    assert checklist.visible_text == LAST, "exact at the end of the turn"
    kinds = {e["type"] for e in checklist.current.entities}
    assert {"bold", "strikethrough"} <= kinds
    texts = [m.visible_text for m in h.bot_messages(topic)]
    assert not any("Allow" in t for t in texts), "TodoWrite never asks permission"
    # No message — a status message kept or removed at the end — ever showed a tool
    # line for the list: the checklist is the one place it appears.
    # (The final's footer still counts the calls among the tools used.)
    lines = [line for t in every_version(h, topic) for line in t.splitlines()]
    assert not any(line.startswith("▸ TodoWrite") for line in lines), "no duplicate tool line"
    assert tool_results(h.model).count("modified successfully") == 3, "the CLI took all three"


async def test_checklist_shows_the_running_task_by_its_active_form(h: Harness) -> None:
    gate = asyncio.Event()
    h.model.on(
        "parse it",
        ToolUse("TodoWrite", todos("completed", "in_progress", "pending"), text_before="Go."),
        Text("Still testing, this takes a while.", gate=gate, gate_at=0.3),
    )
    topic, _ = await h.new_session(str(h.root / "app"), "parse it")
    msg = await h.wait_msg(lambda m: m.visible_text.startswith("📋"), thread_id=topic)
    assert msg.visible_text == ("📋 Tasks · 1/3 done\n☑ Write the parser\n◐ Testing it\n☐ Ship it")
    gate.set()
    await h.wait_text("Still testing", thread_id=topic)


async def test_a_stopped_turn_leaves_the_last_list_marked_stopped(h: Harness) -> None:
    gate = asyncio.Event()
    h.model.on(
        "long job",
        ToolUse("TodoWrite", todos("in_progress", "pending", "pending"), text_before="On it."),
        Text("Working through the parser " * 20, gate=gate, gate_at=0.2),
    )
    topic, _ = await h.new_session(str(h.root / "app"), "long job")
    await h.wait_msg(lambda m: m.visible_text.startswith("📋"), thread_id=topic)
    status = await h.wait_msg(lambda m: "Stop" in " ".join(m.button_labels), thread_id=topic)
    h.press(status, "Stop")
    await h.wait_msg(lambda m: "stopped" in m.visible_text and "📋" in m.visible_text,
                     thread_id=topic)  # fmt: skip
    gate.set()
    assert await h.bridge.outbox.wait_idle(timeout=10)
    [checklist] = checklists(h, topic)
    assert checklist.visible_text == (
        "📋 Tasks · 0/3 done · ⏹ stopped\n◐ Writing the parser\n☐ Test the parser\n☐ Ship it"
    )


@pytest.fixture()
async def h_tasks(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path, agent_extra={"model": MODEL})
    yield harness
    await stop_harness(harness)


async def test_task_create_and_update_make_the_same_checklist(h_tasks: Harness) -> None:
    h = h_tasks
    h.model.on(
        "build it",
        ToolUse(
            "TaskCreate",
            {"subject": "Write the parser", "description": "x", "activeForm": "Writing the parser"},
        ),  # fmt: skip
        ToolUse("TaskCreate", {"subject": "Test the parser", "description": "y"}),
        ToolUse("TaskUpdate", {"taskId": "1", "status": "in_progress"}, text_before="Go."),
        ToolUse("TaskUpdate", {"taskId": "7", "status": "completed"}),  # no such task
        ToolUse("TaskUpdate", {"taskId": "1", "status": "completed"}),
        ToolUse("TaskUpdate", {"taskId": "2", "status": "completed", "subject": "Test it all"}),
        ToolUse("TaskList", {}),
        Text("Built."),
    )
    topic, _ = await h.new_session(str(h.root / "app"), "build it")
    await h.wait_text("Built.", thread_id=topic)
    assert await h.bridge.outbox.wait_idle(timeout=10)
    assert h.model_saw("Task #2 created successfully")  # the CLI's ids, as we assumed
    [checklist] = checklists(h, topic)
    assert checklist.visible_text == "📋 Tasks · 2/2 done\n☑ Write the parser\n☑ Test it all"
    lines = [line for t in every_version(h, topic) for line in t.splitlines()]
    assert not any(line.startswith("▸ Task") for line in lines)


async def test_a_daemon_stopped_mid_turn_leaves_the_last_list_marked_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon is stopped while the checklist's latest edit is still undelivered
    (its edits fail): the turn ends as stopped, and after the restart that final
    edit goes out.  (`kill -9` instead: tests/e2e/test_e2e_todos_restart.py.)"""
    monkeypatch.setenv("CLAUDE_CODE_ENABLE_TASKS", "false")
    h = await start_harness(tmp_path, agent_extra={"model": MODEL})
    try:
        turn = ThreeWrites(h.model, "release it")
        topic, _ = await h.new_session(str(h.root / "app"), "release it")
        await h.wait_msg(lambda m: m.visible_text == FIRST, thread_id=topic)
        down = h.tg.fail_next(
            "editMessageText", 502, times=None, match=lambda p: "Tasks" in str(p.get("text"))
        )
        turn.gates[0].set()
        await h.tg.wait_until(lambda: down.served >= 1 or None, timeout=30)
    finally:
        await stop_harness(h, keep_fakes=True)
    h.tg.clear_faults()
    h = await start_harness(tmp_path, agent_extra={"model": MODEL}, tg=h.tg, model=h.model)
    try:
        await h.wait_text("Interrupted", thread_id=topic)
        assert await h.bridge.outbox.wait_idle(timeout=30)
        [checklist] = checklists(h, topic)
        assert checklist.visible_text == MIDDLE.replace("done", "done · ⏹ stopped", 1)
    finally:
        turn.gates[1].set()
        await stop_harness(h)
