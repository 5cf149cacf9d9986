"""Claude Code faults under the whole daemon (issue 6, Reliability 2).

The real Claude Code CLI runs against the fake Anthropic API, the real slack-bolt
against the fake Slack (its limits and our pacing sped up alike). One session's turns meet a fault — its
CLI process killed mid-turn, the model API answering 500 or 529, a stream that
breaks off halfway — while a second session streams at the same time. Each time the
thread shows a clear error, the turn ends (its status message loses the Stop button,
its row is not left running), the next prompt works with the earlier context, and
the other session's answer arrives exact.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest
from sqlmodel import select

from adapters.messages import ThreadRef
from adapters.tasks import TaskGroup
from agent import AgentEvent, AgentHost, TextDelta, TurnEnded
from bridge.outbox.outbox import Outbox
from bridge.turns import TurnView
from storage.models import TurnRow
from tests.support.fakes.anthropic import Cut, Error, FakeAnthropic, Text, turn_position
from tests.support.fakes.claude_env import claude_env
from tests.support.fakes.slack import FakeMessage
from tests.support.slack_harness import SlackHarness as Harness
from tests.support.slack_harness import start_slack_harness, stop_slack_harness

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    # One retry per failed model call (the CLI's default is many, minutes of backoff):
    # enough to see a broken stream retried, bounded so the tests stay fast.
    harness = await start_slack_harness(
        tmp_path, speed=4.0, claude_extra={"CLAUDE_CODE_MAX_RETRIES": "1"}
    )
    yield harness
    await stop_slack_harness(harness)


def words(name: str, n: int) -> str:
    return " ".join(f"{name}{i}" for i in range(n))


def finals(h: Harness, thread: str) -> list[FakeMessage]:
    return [m for m in h.bot_messages(thread) if "⏱" in m.visible_text]


def statuses(h: Harness, thread: str) -> list[FakeMessage]:
    """The turns' status messages (they had a Stop button at some point), one per turn;
    deleted ones too (a finished turn's status goes when it showed nothing more)."""
    return [
        m
        for m in h.slack.messages(h.channel, thread, include_deleted=True)
        if any("x:" in str(v.blocks) for v in m.history)
    ]


def streamed(h: Harness, thread: str) -> list[FakeMessage]:
    return [s for s in h.slack.stream_messages(h.channel) if s.thread_ts == thread]


def turn_states(h: Harness, sid: str) -> list[str]:
    with h.db.session() as s:
        rows = s.exec(select(TurnRow).where(TurnRow.session_id == sid).order_by(TurnRow.id))
        return [r.state for r in rows]


def cli_pids(cwd: Path) -> list[int]:
    """Our child processes working in `cwd`: the session's Claude Code CLI."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == me and os.readlink(f"/proc/{entry}/cwd") == str(cwd):
                found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def errors_in(h: Harness, thread: str) -> list[FakeMessage]:
    return [m for m in h.bot_messages(thread) if "Claude Code failed" in m.visible_text]


def requests_for(h: Harness, prompt: str) -> list[dict]:
    """The model calls made for turns whose prompt contains `prompt`."""
    return [r for r in h.model.requests if prompt in turn_position(r.get("messages") or [])[0]]


async def assert_turn_failed(h: Harness, thread: str, turn: int, error: int, needle: str) -> None:
    """The thread's `turn`-th turn ended with its `error`-th error: a notice naming the
    error, a status message without a Stop button saying so, and a final message
    marked as an error."""
    await h.slack.wait_until(
        lambda: (len(errors_in(h, thread)) >= error and len(finals(h, thread)) >= turn) or None
    )
    assert needle in errors_in(h, thread)[error - 1].visible_text
    status = statuses(h, thread)[turn - 1]
    await h.slack.wait_until(lambda: not h.slack.message(h.channel, status.ts).buttons or None)
    assert "Ended with an error" in h.slack.message(h.channel, status.ts).visible_text
    assert "Error" in finals(h, thread)[turn - 1].visible_text


def final_text(m: FakeMessage) -> str:
    return " ".join(m.visible_text.rsplit("⏱", 1)[0].split())


async def test_a_cli_killed_mid_turn_ends_only_that_turn_and_the_session_resumes(
    h: Harness,
) -> None:
    other = words("beta", 100)
    go_on = asyncio.Event()  # the other session's answer is held halfway until the kill
    h.model.on("other job", Text(other, chunk=10, delay=0.02, gate=go_on))
    h.model.on("remember the word pelican", Text("I will remember pelican."))
    h.model.on("tell a long story", Text(words("story", 400), chunk=10, delay=0.1))
    h.model.on("which word", Text("The word was pelican."))
    app, elsewhere = h.root / "app", h.root / "other"
    elsewhere.mkdir()
    topic, sid = await h.new_session(str(app), "remember the word pelican")
    await h.wait_text("I will remember pelican.", thread=topic)
    other_topic, other_sid = await h.new_session(str(elsewhere), "other job")
    h.say("tell a long story", thread=topic)
    await h.slack.wait_until(lambda: any("story1" in m.text for m in streamed(h, topic)) or None)
    [victim] = cli_pids(app)
    [bystander] = cli_pids(elsewhere)
    assert not finals(h, other_topic), "the other session is still streaming"
    os.kill(victim, signal.SIGKILL)
    await assert_turn_failed(h, topic, 2, 1, "exit code")
    assert not finals(h, other_topic)
    go_on.set()
    assert turn_states(h, sid) == ["done", "error"], "the killed turn is not left running"
    assert h.db.sessions.get(sid).state != "running"
    # The other session never noticed.
    done = await h.wait_text("⏱", thread=other_topic, timeout=40)
    assert final_text(done) == other
    assert cli_pids(elsewhere) == [bystander], "its CLI lives on"
    assert turn_states(h, other_sid) == ["done"]
    # The killed session resumes, with its context.
    h.say("which word", thread=topic)
    await h.wait_text("The word was pelican.", thread=topic)
    assert "remember the word pelican" in json.dumps(requests_for(h, "which word")[-1])
    assert turn_states(h, sid) == ["done", "error", "done"]
    assert cli_pids(app) != [victim]


async def test_model_errors_and_a_broken_stream_end_the_turn_and_the_session_goes_on(
    h: Harness,
) -> None:
    other = words("gamma", 150)
    h.model.on("gamma job", Text(other, chunk=10, delay=0.05))
    h.model.on("first a 500", Error(500))
    h.model.on("then a 529", Error(529))
    h.model.on("then a cut", Cut(words("half", 40), recover=False))
    recovered = words("whole", 60)
    h.model.on("cut but recover", Cut(recovered))
    h.model.on("all good", Text("All good now."))
    elsewhere = h.root / "other"
    elsewhere.mkdir()
    topic, sid = await h.new_session(str(h.root / "app"), "first a 500")
    other_topic, other_sid = await h.new_session(str(elsewhere), "gamma job")
    await assert_turn_failed(h, topic, 1, 1, "500")
    h.say("then a 529", thread=topic)
    await assert_turn_failed(h, topic, 2, 2, "529")
    h.say("then a cut", thread=topic)
    await assert_turn_failed(h, topic, 3, 3, "API Error")
    # The CLI's retries are bounded (CLAUDE_CODE_MAX_RETRIES): two calls, no more.
    assert len(requests_for(h, "first a 500")) == 2
    assert len(requests_for(h, "then a 529")) == 2
    # A stream broken off twice, then answered whole: the answer is exact, and the
    # preview never showed the repeated start twice.
    h.say("cut but recover", thread=topic)
    await h.slack.wait_until(lambda: len(finals(h, topic)) >= 4 or None)
    assert final_text(finals(h, topic)[3]) == recovered
    shown = " ".join(m.text for m in streamed(h, topic) if "whole" in m.text)
    assert recovered.startswith(" ".join(shown.split())), f"the stream repeated text: {shown!r}"
    h.say("all good", thread=topic)
    await h.wait_text("All good now.", thread=topic)
    assert recovered in json.dumps(requests_for(h, "all good")[-1]), "the context is kept"
    assert turn_states(h, sid) == ["error", "error", "error", "done", "done"]
    assert len(errors_in(h, topic)) == 3
    done = await h.wait_text("⏱", thread=other_topic, timeout=40)
    assert final_text(done) == other and turn_states(h, other_sid) == ["done"]
    assert not errors_in(h, other_topic)


async def test_a_retried_stream_starts_the_preview_over_instead_of_repeating_it(
    tmp_path: Path,
) -> None:
    """The CLI retries a stream that broke off by streaming the answer again from its
    start: the agent marks the first piece of each retry (`TextDelta.restart`), and the
    turn's live preview shows the text once, not once per attempt."""
    fake = FakeAnthropic()
    await fake.start()
    answer = words("delta", 60)
    fake.on("break twice", Cut(answer))
    tasks = TaskGroup()
    view = TurnView(
        session_id="s",
        turn_no=1,
        thread=ThreadRef("test", "c"),
        cwd=str(tmp_path),
        outbox=cast(Outbox, None),  # never reached: the first flush is an hour away
        tasks=tasks,
        use_draft=False,
        min_interval=3600.0,
        clock=lambda: 0.0,
    )
    deltas: list[TextDelta] = []
    previews: list[str] = []
    done = asyncio.Event()

    async def sink(event: AgentEvent) -> None:
        if isinstance(event, TextDelta):
            deltas.append(event)
            view.on_delta(event)
            previews.append(view.preview_text())
        elif isinstance(event, TurnEnded):
            done.set()

    env = claude_env(tmp_path / "home", fake.base_url, CLAUDE_CODE_MAX_RETRIES="2")
    host = AgentHost(sink, env=env)
    try:
        session = await host.start_session("s", tmp_path)
        await session.send("break twice")
        await asyncio.wait_for(done.wait(), 60)
    finally:
        await host.close()
        await tasks.close()
        await fake.stop()
    assert [d.restart for d in deltas] == [False, True, True], "two retries, two restarts"
    half = answer[: len(answer) // 2]
    assert previews == [half] * 3, "the preview shows the text once, however often retried"
