"""agent/ against the real Claude Code CLI, with the fake Anthropic API playing the model.

Every test drives ``AgentHost`` / ``AgentSession`` as the bridge would: prompts in,
``AgentEvent``s out through one sink, permission prompts answered through their futures.
Each session is a real CLI process (≈0.5 s to start); tests that need several sessions run
them side by side.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar, overload

import pytest

from agent import (
    AgentEvent,
    AgentFailed,
    AgentHost,
    PermissionAsked,
    PermissionDecision,
    SessionStarted,
    TextDelta,
    TextDone,
    ToolFinished,
    ToolStarted,
    TurnEnded,
    TurnStarted,
)
from tests.support.fakes.anthropic import Error, FakeAnthropic, Text, ToolUse, turn_position
from tests.support.fakes.claude_env import claude_env

E = TypeVar("E")
TIMEOUT = 30.0
# The smallest valid PNG (1×1, transparent).
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


class Recorder:
    """The sink: keeps every event with its arrival time; answers permission prompts with
    ``decide`` (None leaves the future for the test to resolve)."""

    def __init__(self) -> None:
        self.events: list[tuple[float, AgentEvent]] = []
        self.decide: Callable[[PermissionAsked], PermissionDecision | None] = lambda _: None
        self._changed = asyncio.Condition()

    async def __call__(self, event: AgentEvent) -> None:
        if isinstance(event, PermissionAsked) and (decision := self.decide(event)) is not None:
            event.future.set_result(decision)
        async with self._changed:
            self.events.append((time.monotonic(), event))
            self._changed.notify_all()

    @overload
    def of(self, session_id: str) -> list[AgentEvent]: ...
    @overload
    def of(self, session_id: str, kind: type[E]) -> list[E]: ...
    def of(self, session_id: str, kind: type[Any] = object) -> list[Any]:
        return [e for _, e in self.events if e.session_id == session_id and isinstance(e, kind)]

    def at(self, event: AgentEvent) -> float:
        return next(t for t, e in self.events if e is event)

    async def wait(self, ready: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT), self._changed:
            await self._changed.wait_for(ready)

    async def turns(self, session_id: str, n: int) -> list[TurnEnded]:
        """Wait for the ``n``-th TurnEnded of the session; all of them so far."""
        await self.wait(lambda: len(self.of(session_id, TurnEnded)) >= n)
        return self.of(session_id, TurnEnded)

    async def first(self, session_id: str, kind: type[E]) -> E:
        await self.wait(lambda: bool(self.of(session_id, kind)))
        return self.of(session_id, kind)[0]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def sink() -> Recorder:
    return Recorder()


@pytest.fixture
async def host(fake: FakeAnthropic, sink: Recorder, tmp_path: Path) -> AsyncIterator[AgentHost]:
    h = AgentHost(sink, env=claude_env(tmp_path / "home", fake.base_url))
    yield h
    await h.close()


def workdir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


async def test_text_streams_and_costs_are_per_turn(
    host: AgentHost, sink: Recorder, fake: FakeAnthropic, tmp_path: Path
) -> None:
    answer = "Streaming works, one small piece at a time. " * 4
    fake.on("stream", Text(answer, chunk=9))
    session = await host.start_session("s1", workdir(tmp_path, "w"))
    assert host.get("s1") is session and not session.busy
    assert await session.send("stream it") is False
    await sink.turns("s1", 1)
    await session.send("stream again")
    first, second = await sink.turns("s1", 2)

    events = sink.of("s1")
    kinds = [type(e) for e in events]
    assert kinds[0] is TurnStarted and kinds.count(SessionStarted) == 1
    turn1 = events[: events.index(first) + 1]
    deltas = [e.text for e in turn1 if isinstance(e, TextDelta)]
    assert "".join(deltas) == answer and len(deltas) > 10
    assert [e.text for e in turn1 if isinstance(e, TextDone)] == [answer]
    last_delta = max(i for i, e in enumerate(turn1) if isinstance(e, TextDelta))
    assert isinstance(turn1[last_delta + 1], TextDone)
    assert first.result == answer and not first.is_error and not first.interrupted
    assert first.usage["input_tokens"] > 0 and first.duration_ms > 0 and first.tools == ()
    # Turn 2 sends slightly more context; a cumulative figure would be about twice turn 1.
    assert first.cost_usd > 0 and 0.8 * first.cost_usd < second.cost_usd < 1.5 * first.cost_usd
    assert (session.claude_session_id, session.cwd) == (
        sink.of("s1", SessionStarted)[0].claude_session_id,
        tmp_path / "w",
    )


async def test_permissions_allow_deny_and_cancel(
    host: AgentHost, sink: Recorder, fake: FakeAnthropic, tmp_path: Path
) -> None:
    dirs = {name: workdir(tmp_path, name) for name in ("allow", "deny", "cancel")}
    for name, directory in dirs.items():
        write = {"file_path": str(directory / "out.txt"), "content": f"{name}\n"}
        fake.on(f"please {name}", ToolUse("Write", write), Text(f"{name} handled"))

    def decide(asked: PermissionAsked) -> PermissionDecision | None:
        if asked.session_id == "allow":
            return PermissionDecision(allow=True)
        if asked.session_id == "deny":
            return PermissionDecision(allow=False, message="not today")
        asked.future.cancel()  # e.g. the bridge's approval window ran out
        return None

    sink.decide = decide
    for name, directory in dirs.items():
        await (await host.start_session(name, directory)).send(f"please {name}")
    ended = await asyncio.gather(*(sink.turns(name, 1) for name in dirs))

    assert (dirs["allow"] / "out.txt").read_text() == "allow\n"
    assert not (dirs["deny"] / "out.txt").exists() and not (dirs["cancel"] / "out.txt").exists()
    for name, (turn,) in zip(dirs, ended, strict=True):
        assert turn.result == f"{name} handled" and turn.tools == ("Write",)
        (asked,) = sink.of(name, PermissionAsked)
        (started,) = sink.of(name, ToolStarted)
        (finished,) = sink.of(name, ToolFinished)
        assert asked.name == started.name == finished.name == "Write"
        assert asked.tool_use_id == started.tool_use_id == finished.tool_use_id
        assert asked.input["content"] == f"{name}\n"
        assert finished.is_error is (name != "allow")
    assert "not today" in sink.of("deny", ToolFinished)[0].output


async def test_prompts_queue_behind_a_running_turn(
    host: AgentHost, sink: Recorder, fake: FakeAnthropic, tmp_path: Path
) -> None:
    fake.on("first", Text("first answer, slowly", chunk=4, delay=0.05))
    fake.on("second", Text("second answer"))
    session = await host.start_session("q", workdir(tmp_path, "w"))
    assert await session.send("first") is False
    assert await session.send("second") is True
    assert session.busy
    await sink.turns("q", 2)
    flow = [e for e in sink.of("q") if isinstance(e, TurnStarted | TurnEnded)]
    assert [(type(e).__name__, getattr(e, "prompt", getattr(e, "result", ""))) for e in flow] == [
        ("TurnStarted", "first"),
        ("TurnEnded", "first answer, slowly"),
        ("TurnStarted", "second"),
        ("TurnEnded", "second answer"),
    ]
    assert not session.busy


async def test_interrupt_stops_the_turn_and_the_session_goes_on(
    host: AgentHost, sink: Recorder, fake: FakeAnthropic, tmp_path: Path
) -> None:
    fake.on("slow", Text("z" * 400, chunk=4, delay=0.05))
    fake.on("guarded", ToolUse("Write", {"file_path": str(tmp_path / "g.txt"), "content": "g"}))
    stream, guarded = [await host.start_session(n, workdir(tmp_path, n)) for n in ("st", "pm")]
    await stream.send("slow please")
    await guarded.send("guarded write")
    await sink.first("st", TextDelta)
    asked = await sink.first("pm", PermissionAsked)
    await asyncio.gather(stream.interrupt(), guarded.interrupt())
    (stopped,) = await sink.turns("st", 1)
    (stopped_pm,) = await sink.turns("pm", 1)

    assert stopped.interrupted and len("".join(e.text for e in sink.of("st", TextDelta))) < 400
    assert stopped_pm.interrupted and asked.future.cancelled()
    assert not (tmp_path / "g.txt").exists()
    assert not sink.of("st", AgentFailed) and not sink.of("pm", AgentFailed)
    await stream.send("anything else")
    _, after = await sink.turns("st", 2)
    assert after.result == "OK." and not after.interrupted and not after.is_error
    assert turn_position(fake.requests[-1]["messages"]) == ("anything else", 0)


async def test_sessions_run_concurrently(
    host: AgentHost, sink: Recorder, fake: FakeAnthropic, tmp_path: Path
) -> None:
    fake.on("count", Text("".join(f"{i} " for i in range(1, 31)), chunk=3, delay=0.05))
    sessions = [await host.start_session(n, workdir(tmp_path, n)) for n in ("a", "b", "c")]
    # Warm up first, so that the CLIs' start-up (slow on a loaded machine) is not measured.
    for session in sessions:
        await session.send("hello")
    for session in sessions:
        await sink.turns(session.session_id, 1)
    for session in sessions:
        await session.send("count for me")
    ended = [(await sink.turns(s.session_id, 2))[1] for s in sessions]
    spans = [
        (sink.at(sink.of(s.session_id, TextDelta)[1]), sink.at(end))
        for s, end in zip(sessions, ended, strict=True)
    ]
    # Every session was streaming while each other one was: the turns overlap in time.
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    assert all(e.result.startswith("1 2 3 ") for e in ended)


async def test_resume_continues_the_conversation(
    host: AgentHost, sink: Recorder, fake: FakeAnthropic, tmp_path: Path
) -> None:
    cwd = workdir(tmp_path, "w")
    fake.on("remember", Text("I will remember the word pelican."))
    first = await host.start_session("one", cwd)
    await first.send("remember the word pelican")
    await sink.turns("one", 1)
    claude_id = first.claude_session_id
    assert claude_id
    await host.end_session("one")
    assert host.get("one") is None

    again = await host.start_session("two", cwd, resume=claude_id)
    await again.send("which word was it?")
    await sink.turns("two", 1)
    seen = json.dumps(fake.requests[-1]["messages"])
    assert "remember the word pelican" in seen and "I will remember the word pelican." in seen
    assert again.claude_session_id == claude_id
    assert [e.claude_session_id for e in sink.of("two", SessionStarted)] == [claude_id]


async def test_api_error_fails_the_turn_not_the_session(
    host: AgentHost, sink: Recorder, fake: FakeAnthropic, tmp_path: Path
) -> None:
    fake.on("explode", Error(500))
    session = await host.start_session("e", workdir(tmp_path, "w"))
    await session.send("explode now")
    (failed_turn,) = await sink.turns("e", 1)
    (failure,) = sink.of("e", AgentFailed)
    assert "500" in failure.error and failed_turn.is_error and not failed_turn.interrupted
    assert failed_turn.cost_usd == 0
    assert sink.of("e")[-2:] == [failure, failed_turn]
    assert not sink.of("e", TextDone)  # the CLI's "API Error" message is not an answer
    await session.send("are you there?")
    _, ok = await sink.turns("e", 2)
    assert ok.result == "OK." and not ok.is_error


async def test_a_crashed_cli_is_resumed_on_the_next_prompt(
    host: AgentHost, sink: Recorder, fake: FakeAnthropic, tmp_path: Path
) -> None:
    # The Bash tool's shell is a child of the CLI: this kills the CLI mid-turn.
    fake.on("crash", ToolUse("Bash", {"command": "kill -9 $PPID", "description": "crash"}))
    sink.decide = lambda _: PermissionDecision(allow=True)
    session = await host.start_session("c", workdir(tmp_path, "w"))
    await session.send("crash the cli")
    (crashed,) = await sink.turns("c", 1)
    assert crashed.is_error and sink.of("c", AgentFailed)
    claude_id = session.claude_session_id
    await session.send("back again?")
    _, back = await sink.turns("c", 2)
    assert back.result == "OK." and session.claude_session_id == claude_id
    # One SessionStarted per CLI process: the crashed one and the one that resumed.
    assert [e.claude_session_id for e in sink.of("c", SessionStarted)] == [claude_id] * 2
    assert "crash the cli" in json.dumps(fake.requests[-1]["messages"])


async def test_model_and_mode_switches(
    host: AgentHost, sink: Recorder, fake: FakeAnthropic, tmp_path: Path
) -> None:
    target = tmp_path / "w" / "edit.txt"
    fake.on("edit", ToolUse("Write", {"file_path": str(target), "content": "e"}), Text("edited"))
    session = await host.start_session("m", workdir(tmp_path, "w"), model="claude-haiku-4-5")
    await session.send("hello")
    await sink.turns("m", 1)
    assert fake.requests[-1]["model"] == "claude-haiku-4-5"
    await session.set_model("claude-sonnet-4-5")
    await session.set_mode("acceptEdits")
    await session.send("edit the file")
    await sink.turns("m", 2)
    assert fake.requests[-1]["model"] == "claude-sonnet-4-5"
    assert target.read_text() == "e" and not sink.of("m", PermissionAsked)
    with pytest.raises(ValueError, match="unknown permission mode"):
        await session.set_mode("yolo")


async def test_images_reach_the_model(
    host: AgentHost, sink: Recorder, fake: FakeAnthropic, tmp_path: Path
) -> None:
    session = await host.start_session("i", workdir(tmp_path, "w"))
    await session.send("what is in this picture?", images=[("image/png", PNG)])
    await sink.turns("i", 1)
    content: list[dict[str, Any]] = fake.requests[-1]["messages"][0]["content"]
    images = [b for b in content if b["type"] == "image"]
    assert images == [
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": "image/png",
                "data": base64.b64encode(PNG).decode(),
            },
        }
    ]
    assert turn_position(fake.requests[-1]["messages"]) == ("what is in this picture?", 0)


async def test_host_refuses_bad_input_and_closes_everything(
    fake: FakeAnthropic, sink: Recorder, tmp_path: Path
) -> None:
    with pytest.raises(ValueError):
        AgentHost(sink, default_mode="nonsense")
    host = AgentHost(sink, env=claude_env(tmp_path / "home", fake.base_url))
    with pytest.raises(FileNotFoundError):
        await host.start_session("x", tmp_path / "missing")
    fake.on("long", Text("y" * 200, chunk=2, delay=0.05))
    session = await host.start_session("x", workdir(tmp_path, "w"))
    with pytest.raises(ValueError, match="already running"):
        await host.start_session("x", tmp_path / "w")
    await session.send("long story")
    await sink.first("x", TextDelta)
    started = time.monotonic()
    await host.close()
    assert time.monotonic() - started < 3  # the CLI is interrupted, not left to time out
    assert host.get("x") is None
    last = sink.of("x")[-1]  # the interrupted turn still ends, with its cost
    assert isinstance(last, TurnEnded) and last.interrupted and last.cost_usd > 0
    with pytest.raises(RuntimeError):
        await session.send("after close")
    with pytest.raises(RuntimeError):
        await host.start_session("y", tmp_path / "w")


@pytest.mark.slow  # 70 s
async def test_a_permission_prompt_may_wait_longer_than_a_minute(
    host: AgentHost, sink: Recorder, fake: FakeAnthropic, tmp_path: Path
) -> None:
    target = tmp_path / "w" / "late.txt"
    fake.on("late", ToolUse("Write", {"file_path": str(target), "content": "late"}), Text("done"))
    session = await host.start_session("late", workdir(tmp_path, "w"))
    await session.send("late write")
    asked = await sink.first("late", PermissionAsked)
    await asyncio.sleep(70)
    asked.future.set_result(PermissionDecision(allow=True))
    (ended,) = await sink.turns("late", 1)
    assert ended.result == "done" and target.read_text() == "late"
