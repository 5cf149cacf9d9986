"""What the real Claude Code CLI (2.1.337) does with ExitPlanMode, at the agent layer —
the facts the plan desk (`bridge/approvals/plan_desk.py`) is built on:

- `can_use_tool` gets ``{"plan": <the plan file's text>, "planFilePath": …}``; the
  file's text replaces whatever `plan` the model wrote in the call;
- allowing it leaves plan mode for ``default`` (the next Write asks);
- switching the session to ``acceptEdits`` while ExitPlanMode waits, then allowing it,
  leaves the CLI in ``acceptEdits`` (the next Write does not ask);
- denying it keeps plan mode, and Claude reads the deny message as the tool_result."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent import AgentHost, PermissionAsked, PermissionDecision
from tests.e2e.test_agent import Recorder
from tests.support.fakes.anthropic import FakeAnthropic, Text, ToolUse
from tests.support.fakes.claude_env import claude_env
from tests.support.plan_steps import tool_results, write_plan

pytestmark = pytest.mark.e2e
PLAN = "# Plan\n\n1. Write hello.txt\n"


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def host(fake: FakeAnthropic, tmp_path: Path) -> AsyncIterator[tuple[AgentHost, Recorder]]:
    sink = Recorder()
    h = AgentHost(sink, env=claude_env(tmp_path / "home", fake.base_url))
    yield h, sink
    await h.close()


def script(fake: FakeAnthropic, prompt: str, target: Path) -> None:
    fake.on(
        prompt,
        write_plan(PLAN),
        ToolUse("ExitPlanMode", {"plan": "what the model typed"}),
        ToolUse("Write", {"file_path": str(target), "content": "hi\n"}),
        Text("Finished."),
    )


async def test_the_plan_comes_from_the_plan_file_and_an_allow_goes_to_default(
    host: tuple[AgentHost, Recorder], fake: FakeAnthropic, tmp_path: Path
) -> None:
    agents, sink = host
    (tmp_path / "a").mkdir()
    script(fake, "plan plain", tmp_path / "a" / "hello.txt")
    sink.decide = lambda _: PermissionDecision(allow=True)
    session = await agents.start_session("s1", tmp_path / "a", mode="plan")
    await session.send("plan plain")
    await sink.turns("s1", 1)
    asked = sink.of("s1", PermissionAsked)
    assert [a.name for a in asked] == ["ExitPlanMode", "Write"], "the Write asks: default mode"
    assert asked[0].input["plan"] == PLAN
    assert str(asked[0].input["planFilePath"]).endswith(".md")
    assert any("User has approved your plan" in r for r in tool_results(fake.requests))


async def test_accept_edits_set_before_the_allow_holds_and_a_deny_is_the_feedback(
    host: tuple[AgentHost, Recorder], fake: FakeAnthropic, tmp_path: Path
) -> None:
    agents, sink = host
    (tmp_path / "b").mkdir()
    script(fake, "plan auto", tmp_path / "b" / "hello.txt")
    session = await agents.start_session("s2", tmp_path / "b", mode="plan")
    await session.send("plan auto")
    await sink.wait(lambda: bool(sink.of("s2", PermissionAsked)))
    [exit_plan] = sink.of("s2", PermissionAsked)
    await session.set_mode("acceptEdits")  # first the mode, then the allow
    exit_plan.future.set_result(PermissionDecision(allow=True))
    await sink.turns("s2", 1)
    assert [a.name for a in sink.of("s2", PermissionAsked)] == ["ExitPlanMode"]
    assert (tmp_path / "b" / "hello.txt").read_text() == "hi\n"

    (tmp_path / "c").mkdir()
    fake.on("plan denied", write_plan(PLAN), ToolUse("ExitPlanMode", {}), Text("Revising."))
    sink.decide = lambda e: (
        PermissionDecision(allow=False, message="FEEDBACK: add tests")
        if e.name == "ExitPlanMode"
        else None
    )
    other = await agents.start_session("s3", tmp_path / "c", mode="plan")
    await other.send("plan denied")
    await sink.turns("s3", 1)
    assert "FEEDBACK: add tests" in tool_results(fake.requests)


async def test_a_mode_set_after_claude_entered_plan_mode_itself_reaches_the_cli(
    host: tuple[AgentHost, Recorder], fake: FakeAnthropic, tmp_path: Path
) -> None:
    """Claude can switch the CLI to plan mode on its own (EnterPlanMode never asks).
    The person's `mode default` afterwards must reach the CLI although default is the
    mode Threadline set last: the CLI then tells Claude it has left plan mode (measured:
    "## Exited Plan Mode … You can now make edits" in the next model request), where
    without it Claude would be told nothing and keep planning."""
    agents, sink = host
    (tmp_path / "d").mkdir()
    fake.on("think first", ToolUse("EnterPlanMode", {}), Text("Planning."))
    fake.on("now act", Text("Acting."))
    session = await agents.start_session("s4", tmp_path / "d")
    await session.send("think first")
    await sink.turns("s4", 1)
    await session.set_mode("default")
    await session.send("now act")
    await sink.turns("s4", 2)
    assert "Exited Plan Mode" in json.dumps(fake.requests[-1])
