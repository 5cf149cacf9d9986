"""End to end on Slack: the real slack-bolt and slack_sdk against the fake Slack (Web
API, Socket Mode, signed HTTP delivery), the real Claude Code CLI against the fake
Anthropic API, and the whole bridge between.

Each test plays the people (messages, slash commands, button presses) and checks
what a person would see in the channel and what really happened on disk.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.slack import limits
from tests.fakes.anthropic import Text, ToolUse, turn_position
from tests.fakes.slack import FakeMessage, check_blocks
from tests.slack_harness import (
    OTHER,
    OWNER,
    OWNER2,
    STRANGER,
    SlackHarness,
    start_slack_harness,
    stop_slack_harness,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[SlackHarness]:
    harness = await start_slack_harness(tmp_path)
    yield harness
    await stop_slack_harness(harness)


def has_buttons(m: FakeMessage, *labels: str) -> bool:
    return all(any(label in b for b in m.button_labels) for label in labels)


async def prompt_in(h: SlackHarness, thread: str, timeout: float = 30.0) -> FakeMessage:
    return await h.wait_msg(lambda m: has_buttons(m, "Allow", "Deny"), timeout, thread)


def finals(h: SlackHarness, thread: str) -> list[FakeMessage]:
    return [m for m in h.bot_messages(thread) if "⏱" in m.visible_text]


def turns_started(h: SlackHarness, prompt: str) -> int:
    """How many model turns began with `prompt` (its first model call)."""
    return sum(1 for r in h.model.requests if turn_position(r.get("messages") or []) == (prompt, 0))


async def test_new_session_streams_natively_and_ends_with_one_exact_answer(
    h: SlackHarness,
) -> None:
    answer = "\n\n".join(
        f"Paragraph {i}: the test **failed** because `add()` subtracted & returned <None>."
        for i in range(14)
    )
    h.model.on("fix the failing test", Text(answer, chunk=30, delay=0.04))
    thread, sid = await h.new_session(str(h.root / "app"), "fix the failing test")
    header = h.slack.message(h.channel, thread)
    assert "app: fix the failing test" in header.visible_text and sid in header.visible_text
    final = await h.wait_text("⏱", thread=thread, timeout=40)
    assert answer.replace("**", "*").replace("`", "") in final.visible_text.replace("`", "")
    assert "*failed*" in final.mrkdwn and "&amp; returned &lt;None&gt;" in final.mrkdwn
    assert "$" in final.visible_text.splitlines()[-1], "the footer closes the final message"
    streams = h.slack.stream_messages(h.channel)
    assert streams, "the answer streamed with chat.startStream / appendStream"
    for s in streams:
        assert s.thread_ts == thread and s.deleted, "the stream gave way to the final message"
        assert len(s.stream_chunks) >= 2 and s.text.strip() and s.text in answer
    status = next(m for m in h.bot_messages(thread) if any("x:" in json.dumps(v.blocks) for v in m.history))
    assert not status.buttons, "the status message had a Stop button while running, none after"
    said = [s.status for s in h.slack.statuses if s.thread_ts == thread]
    assert said[:1] == ["is thinking…"] and said[-1] == ""
    assert len(finals(h, thread)) == 1, "the answer is not duplicated"
    assert h.slack.count_429 == 0
    row = h.db.sessions.get(sid)
    assert row is not None and row.cost_usd > 0 and row.claude_session_id


async def test_slash_command_new_and_the_session_commands(h: SlackHarness) -> None:
    app = h.root / "app"
    started = time.monotonic()
    thread, sid = await h.new_session(str(app), slash=True)
    delivery = next(d for d in h.slack.deliveries if d.kind == "slash_commands")
    await asyncio.wait_for(delivery.acked.wait(), 3)
    assert delivery.ack_seconds is not None and delivery.ack_seconds < 3
    await h.wait_text("Ready", thread=thread)
    assert time.monotonic() - started < 15
    h.say("!mode", thread=thread)
    picker = await h.wait_msg(lambda m: has_buttons(m, "Accept edits"), thread=thread)
    assert "Bypass" not in " ".join(picker.button_labels)
    h.say("!mode bypassPermissions", thread=thread)
    await h.wait_text("bypassPermissions is disabled", thread=thread)
    h.press(picker, "Accept edits")
    await h.wait_text("Permission mode: *acceptEdits*", thread=thread)
    h.model.on(
        "auto edit",
        ToolUse("Write", {"file_path": str(app / "auto.txt"), "content": "auto"}),
        Text("Auto-edited."),
    )
    h.say("auto edit", thread=thread)
    await h.wait_text("Auto-edited.", thread=thread)
    assert (app / "auto.txt").read_text() == "auto"
    assert not [m for m in h.bot_messages(thread) if has_buttons(m, "Allow")]
    h.say("!model claude-test-model", thread=thread)
    await h.wait_text("Model: *claude-test-model*", thread=thread)
    h.say("which model", thread=thread)
    await h.slack.wait_until(
        lambda: any(r.get("model") == "claude-test-model" for r in h.model.requests)
    )
    h.slash("sessions")
    listing = await h.wait_text("Sessions")
    assert sid in listing.visible_text and "app" in listing.visible_text and f"archives/{h.channel}/p" in listing.mrkdwn
    h.say("!help")
    help_msg = await h.wait_text("!new")
    for cmd in ("!stop", "!mode", "!model", "!end", "!sessions"):
        assert cmd in help_msg.visible_text
    h.say("!frobnicate")
    await h.wait_text("Unknown command")
    h.slash("stop")
    await h.wait_text("works inside a session's thread")
    h.say("!end", thread=thread)
    await h.wait_text("ended", thread=thread)
    assert h.db.sessions.get(sid).state == "ended"
    assert h.slack.count_429 == 0


async def test_permission_buttons_decide_and_a_second_click_gets_an_ephemeral(
    h: SlackHarness,
) -> None:
    app = h.root / "app"
    target = app / "hello.py"
    target.write_text("print('hello')\n")
    h.model.on(
        "greet the world",
        ToolUse("Write", {"file_path": str(target), "content": "print('hello, world')\n"}),
        Text("Updated hello.py."),
    )
    h.model.on(
        "make a secret",
        ToolUse("Write", {"file_path": str(app / "secret.txt"), "content": "x"}),
        Text("Fine, I won't."),
    )
    h.model.on("first touch", ToolUse("Bash", {"command": f"touch {app}/one"}), Text("one done"))
    h.model.on("second touch", ToolUse("Bash", {"command": f"touch {app}/two"}), Text("two done"))
    thread, _ = await h.new_session(str(app), "greet the world")
    prompt = await prompt_in(h, thread)
    assert [b["style"] for b in prompt.buttons if "style" in b] == ["primary", "danger"]
    assert prompt.button_labels == ["✅ Allow", "♾️ Allow for session", "❌ Deny"]
    assert f"<@{OWNER}>" in prompt.mrkdwn and f"<@{OWNER2}>" in prompt.mrkdwn, "owners mentioned"
    assert "-print('hello')" in prompt.visible_text and "+print('hello, world')" in prompt.visible_text
    assert "```" in prompt.mrkdwn and "hello.py" in prompt.visible_text
    click = h.press(prompt, "Allow")
    await asyncio.wait_for(click.acked.wait(), 3)
    await h.wait_text("Updated hello.py.", thread=thread)
    assert target.read_text() == "print('hello, world')\n"
    decided = h.slack.message(h.channel, prompt.ts)
    assert not decided.buttons and "Allowed by Ada" in decided.visible_text
    late = h.press(prompt, "Deny", user=OWNER2)  # a stale client still shows the buttons
    await asyncio.wait_for(late.acked.wait(), 3)
    note = await h.slack.wait_until(lambda: h.slack.ephemerals(OWNER2))
    assert note[0].text == "Already decided by Ada." and note[0].thread_ts == thread
    assert "Allowed by Ada" in h.slack.message(h.channel, prompt.ts).visible_text
    h.say("make a secret", thread=thread)
    second = await h.wait_msg(
        lambda m: has_buttons(m, "Deny") and "secret.txt" in m.visible_text, thread=thread
    )
    h.press(second, "Deny")
    await h.wait_text("Fine, I won't.", thread=thread)
    assert not (app / "secret.txt").exists()
    assert "Denied by Ada" in h.slack.message(h.channel, second.ts).visible_text
    h.say("first touch", thread=thread)
    third = await h.wait_msg(
        lambda m: has_buttons(m, "Allow") and "touch" in m.visible_text, thread=thread
    )
    h.press(third, "Allow for session")
    await h.wait_text("one done", thread=thread)
    h.say("second touch", thread=thread)
    await h.wait_text("two done", thread=thread)
    assert (app / "one").exists() and (app / "two").exists()
    asked = [m for m in h.bot_messages(thread) if m.history[0].blocks and "🔐" in m.history[0].text]
    assert len(asked) == 3, "the second touch matched the session rule"
    assert h.slack.count_429 == 0
