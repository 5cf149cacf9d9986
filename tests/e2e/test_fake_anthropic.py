"""The fake Anthropic API drives the real Claude Code CLI through the real SDK.

Each CLI test starts the bundled CLI with ``ClaudeSDKClient`` (streaming mode, partial
messages, a ``can_use_tool`` callback) in a temp directory; the fake plays the model.
The first block tests the stateless turn matching on its own. What the CLI was seen to
send and how it behaves (endpoints, timing, quirks) is written up in the docstring of
``tests/support/fakes/anthropic.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    Message,
    PermissionResultAllow,
    PermissionResultDeny,
    ResultMessage,
    StreamEvent,
    TextBlock,
    ToolPermissionContext,
)

from tests.support.fakes.anthropic import (
    Cut,
    Error,
    FakeAnthropic,
    Text,
    ToolUse,
    ToolUses,
    turn_position,
)
from tests.support.fakes.claude_env import claude_env

# -- matching, without the CLI ------------------------------------------------------------


def _user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


ASSISTANT = {"role": "assistant", "content": [_text("ok")]}
TOOL_RESULT = _user({"type": "tool_result", "tool_use_id": "t1", "content": "done"})


def test_turn_position_counts_calls_since_the_prompt() -> None:
    first = _user(_text("<system-reminder>\nwrite a commit\n</system-reminder>\n"), _text("hi"))
    assert turn_position([first]) == ("hi", 0)
    assert turn_position([first, ASSISTANT, TOOL_RESULT]) == ("hi", 1)
    assert turn_position([first, ASSISTANT, TOOL_RESULT, ASSISTANT, TOOL_RESULT]) == ("hi", 2)
    assert turn_position([first, ASSISTANT, _user(_text("next"))]) == ("next", 0)
    # After an interrupt the CLI merges the next prompt into the unanswered user message.
    merged = _user(_text("slow"), _text("[Request interrupted by user]"), _text("after"))
    assert turn_position([first, ASSISTANT, merged]) == ("after", 0)
    # ... and after an interrupted permission prompt, into the rejected tool's result.
    rejected = _user(
        {"type": "tool_result", "tool_use_id": "t1", "content": "rejected", "is_error": True},
        _text("[Request interrupted by user for tool use]"),
        _text("next one"),
    )
    assert turn_position([first, ASSISTANT, rejected]) == ("next one", 0)
    system = {"role": "system", "content": "# Environment"}
    assert turn_position([first, system]) == ("hi", 0)


def test_later_registrations_win() -> None:
    fake = FakeAnthropic()
    fake.on("write", Text("first"))
    fake.on("write a file", Text("second"))
    body = {"messages": [_user(_text("please write a file"))]}
    assert fake.step_for(body) == Text("second")
    assert fake.step_for({"messages": [_user(_text("unknown"))]}) == Text("OK.")
    exhausted = {"messages": [_user(_text("write a file")), ASSISTANT, TOOL_RESULT]}
    assert fake.step_for(exhausted) == Text("OK.")


# -- the real CLI ----------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic()
    await server.start()
    yield server
    await server.stop()


class Cli:
    """One real CLI: records every permission request and answers by ``decide``."""

    def __init__(self, fake: FakeAnthropic, tmp_path: Path, deny: str = "") -> None:
        self.cwd = tmp_path / "work"
        self.cwd.mkdir(parents=True)
        self.asked: list[tuple[str, dict[str, Any]]] = []
        self.deny = deny
        self.options = ClaudeAgentOptions(
            cwd=str(self.cwd),
            env=claude_env(tmp_path / "home", fake.base_url),
            include_partial_messages=True,
            can_use_tool=self.can_use_tool,
        )
        self.client = ClaudeSDKClient(self.options)

    async def can_use_tool(
        self, name: str, tool_input: dict[str, Any], ctx: ToolPermissionContext
    ) -> PermissionResultAllow | PermissionResultDeny:
        self.asked.append((name, tool_input))
        if self.deny and self.deny in json.dumps(tool_input):
            return PermissionResultDeny(message="denied by test")
        return PermissionResultAllow()

    async def ask(self, prompt: str) -> list[Message]:
        await self.client.query(prompt)
        return [m async for m in self.client.receive_response()]


@pytest.fixture
async def cli(fake: FakeAnthropic, tmp_path: Path) -> AsyncIterator[Cli]:
    c = Cli(fake, tmp_path, deny="secret")
    await c.client.connect()
    yield c
    await c.client.disconnect()


def _streamed(messages: list[Message]) -> str:
    return "".join(
        m.event["delta"].get("text", "")
        for m in messages
        if isinstance(m, StreamEvent) and m.event.get("type") == "content_block_delta"
    )


def _result(messages: list[Message]) -> ResultMessage:
    last = messages[-1]
    assert isinstance(last, ResultMessage)
    return last


def _tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    content = request["messages"][-1]["content"]
    return [b for b in content if b.get("type") == "tool_result"]


async def test_plain_text_is_streamed_and_priced(fake: FakeAnthropic, cli: Cli) -> None:
    answer = "The quick brown fox jumps over the lazy dog. " * 3
    fake.on("fox", Text(answer, chunk=7))
    messages = await cli.ask("tell me about the fox")
    assert _streamed(messages) == answer
    result = _result(messages)
    assert result.result == answer and not result.is_error
    assert (result.total_cost_usd or 0) > 0
    assert [p.split("?")[0] for p in fake.paths] == ["POST /v1/messages"]
    assert fake.requests[0]["stream"] is True
    # An unscripted prompt gets the default answer.
    assert _result(await cli.ask("something else")).result == "OK."


async def test_write_allowed_writes_the_file(fake: FakeAnthropic, cli: Cli) -> None:
    target = cli.cwd / "hello.txt"
    fake.on(
        "create hello",
        ToolUse("Write", {"file_path": str(target), "content": "hi there\n"}, text_before="On it."),
        Text("Created hello.txt."),
    )
    messages = await cli.ask("create hello please")
    assert target.read_text() == "hi there\n"
    assert [name for name, _ in cli.asked] == ["Write"]
    assert _result(messages).result == "Created hello.txt."
    texts = [
        b.text
        for m in messages
        if isinstance(m, AssistantMessage)
        for b in m.content
        if isinstance(b, TextBlock)
    ]
    assert texts == ["On it.", "Created hello.txt."]
    assert len(fake.requests) == 2
    (tool_result,) = _tool_results(fake.requests[1])
    assert not tool_result.get("is_error")


async def test_write_denied_leaves_no_file(fake: FakeAnthropic, cli: Cli) -> None:
    target = cli.cwd / "secret.txt"
    fake.on("secret", ToolUse("Write", {"file_path": str(target), "content": "x"}), Text("Fine."))
    messages = await cli.ask("write the secret")
    assert not target.exists()
    assert _result(messages).result == "Fine."
    (tool_result,) = _tool_results(fake.requests[1])
    assert tool_result["is_error"] is True
    assert "denied by test" in json.dumps(tool_result["content"])


async def test_bash_commands_run_in_the_cwd(fake: FakeAnthropic, cli: Cli) -> None:
    fake.on(
        "run it",
        ToolUses(
            [
                ToolUse(
                    "Bash", {"command": "echo made > made.txt && echo first", "description": "make"}
                ),
                ToolUse("Bash", {"command": "echo second", "description": "echo"}),
            ]
        ),
        Text("Ran both."),
    )
    messages = await cli.ask("run it")
    assert (cli.cwd / "made.txt").read_text() == "made\n"
    assert _result(messages).result == "Ran both."
    outputs = [json.dumps(r["content"]) for r in _tool_results(fake.requests[1])]
    assert len(outputs) == 2 and "first" in outputs[0] and "second" in outputs[1]


async def test_interrupt_then_next_prompt(fake: FakeAnthropic, cli: Cli) -> None:
    fake.on("slow", Text("x" * 300, chunk=5, delay=0.05))
    await cli.client.query("a slow one")
    seen: list[Message] = []
    interrupted = False
    async for message in cli.client.receive_response():
        seen.append(message)
        if not interrupted and len(_streamed(seen)) >= 20:
            interrupted = True
            await cli.client.interrupt()
    assert len(_streamed(seen)) < 300
    result = seen[-1]
    assert isinstance(result, ResultMessage) and result.is_error
    assert result.subtype == "error_during_execution"
    assert _result(await cli.ask("after the break")).result == "OK."
    assert turn_position(fake.requests[-1]["messages"]) == ("after the break", 0)


async def test_api_errors_and_cut_streams(fake: FakeAnthropic, cli: Cli) -> None:
    fake.on("boom", Error(500))
    fake.on("overloaded", Error(529))
    fake.on("cut short", Cut("this answer is cut in the middle"))
    boom = _result(await cli.ask("boom"))
    assert boom.is_error and "500" in (boom.result or "")
    assert _result(await cli.ask("overloaded")).is_error
    # A broken stream is retried as a non-streaming call, which gets the whole answer.
    cut = _result(await cli.ask("cut short"))
    assert cut.result == "this answer is cut in the middle"
    assert fake.requests[-1].get("stream") is not True
    assert fake.errors_served == 3
    assert _result(await cli.ask("still there?")).result == "OK."


async def test_two_clis_share_one_fake(fake: FakeAnthropic, tmp_path: Path) -> None:
    fake.on("alpha", Text("A" * 60, chunk=6, delay=0.03), Text("unused"))
    fake.on("beta", Text("B" * 60, chunk=6, delay=0.03))
    clis = [Cli(fake, tmp_path / name) for name in ("a", "b")]
    await asyncio.gather(*(c.client.connect() for c in clis))
    try:
        a, b = await asyncio.gather(clis[0].ask("alpha"), clis[1].ask("beta"))
    finally:
        await asyncio.gather(*(c.client.disconnect() for c in clis))
    assert _result(a).result == "A" * 60
    assert _result(b).result == "B" * 60
