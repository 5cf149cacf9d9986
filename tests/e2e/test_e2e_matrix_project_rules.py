"""End to end on Matrix (real Synapse, encrypted room): "Allow always (project)" as the 📌
reaction — the prompt names the rule and the `always project` text answer, the reaction
writes the rule to `.claude/settings.local.json`, and a fresh session runs it unasked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.matrix_harness import MatrixHarness, start_matrix_harness, stop_matrix_harness
from tests.support.synapse import Synapse

pytestmark = pytest.mark.e2e


@pytest.fixture()
async def h(tmp_path: Path, synapse: Synapse) -> AsyncIterator[MatrixHarness]:
    harness = await start_matrix_harness(tmp_path, synapse)
    yield harness
    await stop_matrix_harness(harness)


async def test_matrix_always_project_by_reaction_and_a_fresh_session(h: MatrixHarness) -> None:
    app = h.root / "app"
    settings = app / ".claude" / "settings.local.json"
    h.model.on("touch it", ToolUse("Bash", {"command": "touch marker"}), Text("touched"))
    thread, _ = await h.new_session(str(app), "touch it")
    prompt = await h.phone.wait_message(lambda m: "🔐" in m.body and "Deny" in m.body)
    assert "📌 Always (project)" in prompt.body
    assert "or reply allow, always, always project or deny" in prompt.body
    assert f"writes `Bash(touch marker)` to `{settings.resolve()}`" in prompt.body
    await h.phone.wait(lambda: len(prompt.reaction_keys(h.bot.user_id)) == 4 or None)
    assert prompt.reaction_keys(h.bot.user_id) == ["✅", "♾️", "📌", "❌"]
    await h.react(prompt, "📌")
    await h.wait_text("touched", thread=thread)
    await h.phone.wait(lambda: "Allowed always in this project" in prompt.body or None)
    assert json.loads(settings.read_text()) == {"permissions": {"allow": ["Bash(touch marker)"]}}

    h.model.on("fresh", ToolUse("Bash", {"command": "touch marker"}), Text("fresh touched"))
    thread2, _ = await h.new_session(str(app), "fresh")
    await h.wait_text("fresh touched", thread=thread2)
    assert not any("🔐" in m.body for m in h.bot_messages(thread2)), "asked nothing"
