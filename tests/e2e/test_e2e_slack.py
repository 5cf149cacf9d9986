"""End to end on Slack: the real slack-bolt and slack_sdk against the fake Slack (Web
API, Socket Mode, signed HTTP delivery), the real Claude Code CLI against the fake
Anthropic API, and the whole bridge between.

Each test plays the people (messages, slash commands, button presses) and checks
what a person would see in the channel and what really happened on disk.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.slack import limits
from tests.support.fakes.anthropic import Text, ToolUse, turn_position
from tests.support.fakes.slack import FakeMessage, check_blocks
from tests.support.slack_harness import (
    OTHER,
    OWNER,
    OWNER2,
    STRANGER,
    SlackHarness,
    start_slack_harness,
    stop_slack_harness,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


FAST = 4.0  # functional tests: Slack's limits (fake) and our pacing (adapter) both ×4


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[SlackHarness]:
    harness = await start_slack_harness(tmp_path, speed=FAST)
    yield harness
    await stop_slack_harness(harness)


@pytest.fixture()
async def real(tmp_path: Path) -> AsyncIterator[SlackHarness]:
    """Slack's real rate limits, for the tests that prove we keep them."""
    harness = await start_slack_harness(tmp_path)
    yield harness
    await stop_slack_harness(harness)


def has_buttons(m: FakeMessage, *labels: str) -> bool:
    return all(any(label in b for b in m.button_labels) for label in labels)


async def prompt_in(h: SlackHarness, thread: str, timeout: float = 30.0) -> FakeMessage:
    return await h.wait_msg(lambda m: has_buttons(m, "Allow", "Deny"), timeout, thread)


def finals(h: SlackHarness, thread: str) -> list[FakeMessage]:
    return [m for m in h.bot_messages(thread) if "⏱" in m.visible_text]


def words(text: str) -> str:
    """Text with its whitespace normalised (a split at a word boundary ends a section)."""
    return " ".join(text.split())


def turns_started(h: SlackHarness, prompt: str) -> int:
    """How many model turns began with `prompt` (its first model call)."""
    return sum(1 for r in h.model.requests if turn_position(r.get("messages") or []) == (prompt, 0))


async def test_new_session_streams_natively_and_ends_with_one_exact_answer(
    real: SlackHarness,
) -> None:
    h = real
    answer = "\n\n".join(
        f"Paragraph {i}: the test **failed** because `add()` subtracted & returned <None>."
        for i in range(14)
    )
    h.model.on("fix the failing test", Text(answer, chunk=20, delay=0.05))
    thread, sid = await h.new_session(str(h.root / "app"), "fix the failing test")
    header = h.slack.message(h.channel, thread)
    assert "app: fix the failing test" in header.visible_text and sid in header.visible_text
    final = await h.wait_text("⏱", thread=thread, timeout=40)
    assert answer.replace("**", "*").replace("`", "") in final.visible_text.replace("`", "")
    assert "*failed*" in final.mrkdwn and "&amp; returned &lt;None&gt;" in final.mrkdwn
    assert "$" in final.visible_text.splitlines()[-1], "the footer closes the final message"
    streams = h.slack.stream_messages(h.channel)
    assert streams, "the answer streamed with chat.startStream / appendStream"
    assert await h.bridge.outbox.wait_idle(timeout=15)
    status = next(
        m
        for m in h.slack.messages(h.channel, thread, include_deleted=True)
        if any("x:" in json.dumps(v.blocks) for v in m.history)
    )
    for s in streams:
        # (The stream starts as soon as there is text, even before the status message
        # is posted: it may run above or below it.)
        assert s.thread_ts == thread and s.deleted, "the stream gave way to the final message"
        assert len(s.stream_chunks) >= 2 and s.text.strip() and s.text in answer
    # The status message had a Stop button while running; it showed nothing the answer
    # does not (no tool ran), so it went with the turn: the answer is the one reply.
    assert status.deleted, "the status message went away at the end of the turn"
    assert [m for m in h.bot_messages(thread)] == [final]
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
    assert (
        sid in listing.visible_text
        and "app" in listing.visible_text
        and f"archives/{h.channel}/p" in listing.mrkdwn
    )
    h.say("!help")
    help_msg = await h.wait_text("!new")
    for cmd in ("!stop", "!mode", "!model", "!end", "!sessions"):
        assert cmd in help_msg.visible_text
    h.say("!frobnicate")
    unknown = await h.wait_text("Unknown command")
    assert "!help" in unknown.visible_text and "/help" not in unknown.visible_text
    h.slash("stop")
    outside = await h.wait_text("works inside a session's thread")
    assert "`!sessions` lists them" in outside.visible_text, outside.visible_text
    h.say("!end", thread=thread)
    ended = await h.wait_text("ended", thread=thread)
    assert f"`!resume {sid}` reopens it" in ended.visible_text, ended.visible_text
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
    h.model.on("second touch", ToolUse("Bash", {"command": f"touch {app}/one"}), Text("two done"))
    thread, _ = await h.new_session(str(app), "greet the world")
    prompt = await prompt_in(h, thread)
    assert [b["style"] for b in prompt.buttons if "style" in b] == ["primary", "danger"]
    assert prompt.button_labels == ["✅ Allow", "♾️ Allow for session", "❌ Deny"]
    assert f"<@{OWNER}>" in prompt.mrkdwn and f"<@{OWNER2}>" in prompt.mrkdwn, "owners mentioned"
    assert (
        "-print('hello')" in prompt.visible_text and "+print('hello, world')" in prompt.visible_text
    )
    assert "```" in prompt.mrkdwn and "hello.py" in prompt.visible_text
    click = h.press(prompt, "Allow")
    await asyncio.wait_for(click.acked.wait(), 3)
    await h.wait_text("Updated hello.py.", thread=thread)
    assert target.read_text() == "print('hello, world')\n"
    decided = h.slack.message(h.channel, prompt.ts)
    assert not decided.buttons and "Allowed by Ada" in decided.visible_text
    late = h.press(prompt, "Deny", user=OWNER2, stale=True)  # a client not yet refreshed
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
    assert (app / "one").exists()
    asked = [m for m in h.bot_messages(thread) if m.history[0].blocks and "🔐" in m.history[0].text]
    assert len(asked) == 3, "the same touch again matched the session rule (exact command)"
    assert h.slack.count_429 == 0


async def test_stop_button_stop_command_and_queued_prompts(h: SlackHarness) -> None:
    slow = Text("word " * 400, chunk=5, delay=0.05)
    h.model.on("count slowly", slow)
    h.model.on("count again", slow)
    h.model.on("follow up", Text("Follow-up answered."))
    thread, sid = await h.new_session(str(h.root / "app"), "count slowly")
    status = await h.wait_msg(lambda m: has_buttons(m, "Stop"), thread=thread)
    await h.slack.wait_until(lambda: h.slack.stream_messages(h.channel), 20)
    h.press(status, "Stop")
    await h.slack.wait_until(lambda: len(finals(h, thread)) >= 1, 30)
    stopped = h.slack.message(h.channel, status.ts)
    assert not stopped.buttons and "Stopped" in stopped.visible_text
    assert all(s.deleted for s in h.slack.stream_messages(h.channel))
    h.say("count again", thread=thread)
    second = await h.wait_msg(lambda m: has_buttons(m, "Stop") and m.ts != status.ts, thread=thread)
    h.say("follow up", thread=thread)
    await h.wait_text("Queued", thread=thread)
    await asyncio.sleep(0.5)
    h.say("!stop", thread=thread)
    await h.wait_text("Follow-up answered.", thread=thread, timeout=40)
    # The whole answer streams in 20 s, inside that 40 s wait: the follow-up's answer alone
    # does not prove !stop.  A stop shows as "Stopped" on the status.
    assert not h.slack.message(h.channel, second.ts).buttons
    await h.slack.wait_until(
        lambda: "Stopped" in h.slack.message(h.channel, second.ts).visible_text, 10
    )
    assert len(finals(h, thread)) == 3
    assert turns_started(h, "follow up") == 1, "the queued prompt ran once"
    assert h.db.sessions.get(sid).state == "active"
    assert h.slack.count_429 == 0


async def test_long_answers_split_within_limits_and_a_long_diff_is_a_file(
    h: SlackHarness,
) -> None:
    paras = [
        f"Section {i}. " + ("Lorem <ipsum> & dolor sit amet, consectetur. " * 9) for i in range(40)
    ]
    code = "```python\n" + "\n".join(f"print({i})  # a < b && c > d" for i in range(120)) + "\n```"
    answer = "\n\n".join(paras[:20] + [code] + paras[20:])
    assert len(answer) > 20_000
    h.model.on("write an essay", Text(answer, chunk=2000))
    target = h.root / "app" / "big.py"
    target.write_text("value = 0\n")
    git = ["git", "-C", str(h.root / "app"), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "big.py"], ["commit", "-qm", "start"]):
        await asyncio.to_thread(subprocess.run, [*git, *args], check=True)
    content = "".join(f"value_{i} = {i} * 2  # generated line\n" for i in range(400))
    h.model.on(
        "write a big file",
        ToolUse("Write", {"file_path": str(target), "content": content}),
        Text("Big file written."),
    )
    thread, _ = await h.new_session(str(h.root / "app"), "write an essay")
    await h.wait_text("⏱", thread=thread, timeout=60)
    parts = [
        m
        for m in h.bot_messages(thread)
        if "Section" in m.visible_text or "print(" in m.visible_text
    ]
    assert len(parts) >= 2
    for m in parts:
        errors, total = check_blocks(m.blocks)
        assert not errors and total <= limits.MAX_BLOCK_TEXT and len(m.blocks) <= limits.MAX_BLOCKS
        for b in m.blocks:
            body = b["text"]["text"]
            assert len(body) <= limits.MAX_SECTION_TEXT
            assert sum(1 for line in body.split("\n") if line == "```") % 2 == 0, "fences balanced"
    joined = "\n".join(m.visible_text for m in parts)
    for i in range(40):
        assert f"Section {i}." in joined
    assert joined.count("Lorem <ipsum> & dolor") == 40 * 9, "escaped text arrives intact"
    assert joined.count("# a < b && c > d") == 120
    h.say("write a big file", thread=thread)
    prompt = await prompt_in(h, thread)
    upload = await h.slack.wait_until(
        lambda: [f for f in h.slack.files.values() if f.name.endswith(".diff") and f.channel]
    )
    assert upload[0].thread_ts == thread and b"+value_399 = 399 * 2" in upload[0].data
    assert "full diff attached" in prompt.visible_text
    h.press(prompt, "Allow")
    await h.wait_text("Big file written.", thread=thread)
    assert target.read_text() == content
    h.say("!diff", thread=thread)
    await h.slack.wait_until(lambda: [f for f in h.slack.files.values() if f.name == "app.diff"])
    shown = await h.wait_msg(
        lambda m: "more lines" in m.visible_text and m.ts != prompt.ts and not m.buttons,
        thread=thread,
    )
    assert "+value_0 = 0 * 2" in shown.visible_text and "```" in shown.mrkdwn
    assert h.slack.count_429 == 0


async def test_strangers_and_other_channels_are_ignored(h: SlackHarness) -> None:
    target = h.root / "app" / "x.txt"
    h.model.on(
        "owner asks",
        ToolUse("Write", {"file_path": str(target), "content": "x"}),
        Text("Owner done."),
    )
    thread, _ = await h.new_session(str(h.root / "app"), "owner asks")
    prompt = await prompt_in(h, thread)
    h.say(f"!new {h.root / 'app'} steal the keys", user=STRANGER)
    h.say("please run rm -rf", user=STRANGER, thread=thread)
    h.slash(f"new {h.root / 'app'} via slash", user=STRANGER)
    refusal = await h.wait_text("only works for its owners")
    click = h.press(prompt, "Allow", user=STRANGER)
    await asyncio.wait_for(click.acked.wait(), 3)
    # the owner in a channel that is not [slack] channel, bots, edits and joins
    h.say(f"!new {h.root / 'app'} from elsewhere", channel=OTHER)
    h.slack.bot_message(h.channel, "!help")
    h.slack.user_edit(h.say("harmless", thread=thread), "!end")
    h.slack.user_join(h.channel, "U0NEW00001")
    await asyncio.sleep(1.5)
    assert not target.exists(), "a stranger's press approves nothing"
    assert h.slack.message(h.channel, prompt.ts).buttons, "the prompt still waits"
    assert not h.slack.messages(OTHER), "nothing is said in other channels"
    h.press(prompt, "Deny")
    await h.wait_text("Owner done.", thread=thread)
    refusals = [
        m for m in h.slack.transcript if m.is_bot and "only works for its owners" in m.visible_text
    ]
    assert refusals == [refusal], "one refusal, not one per message"
    for needle in ("steal the keys", "rm -rf", "via slash", "from elsewhere"):
        assert not h.model_saw(needle)
    refused = [r for r in h.db.audit.recent() if not r.allowed and r.action != "ignored-chat"]
    assert len(refused) >= 4 and all(r.user == f"slack:{STRANGER}" for r in refused)
    elsewhere = [r for r in h.db.audit.recent() if r.action == "ignored-chat"]
    assert [r.detail for r in elsewhere] == [OTHER], "the other channel's message is audited"
    assert (
        h.db.sessions.get(
            h.db.bindings.by_thread_key(f"slack:{h.channel}:{thread}").session_id
        ).state
        != "ended"
    )
    dm = h.slack.add_dm(OWNER)
    h.say("!help", channel=dm)
    await h.slack.wait_for(lambda m: "!new" in m.visible_text, channel=dm)


async def test_http_mode_verifies_signatures_and_handles_a_retry_once(tmp_path: Path) -> None:
    h = await start_slack_harness(tmp_path, mode="http")
    try:
        body = json.dumps({"type": "event_callback", "event_id": "EvFORGED", "event": {}})
        status, _ = await h.slack.deliver_raw(body, signature="v0=" + "0" * 64)
        assert status == 401, "a bad signature is refused"
        old = str(int(time.time()) - 600)
        status, _ = await h.slack.deliver_raw(
            body, timestamp=old, signature=h.slack.sign(body, old)
        )
        assert status == 401, "a correctly signed but stale request is refused"
        target = h.root / "app" / "http.txt"
        h.model.on(
            "over http",
            ToolUse("Write", {"file_path": str(target), "content": "http"}),
            Text("Written over HTTP."),
        )
        h.slack.lose_acks(1)  # Slack never sees our first answer: it retries the event
        first = h.say(f"!new {h.root / 'app'} over http")
        thread, _ = await h.slack.wait_until(
            lambda: next(
                (
                    (m.ts, m)
                    for m in h.bot_messages()
                    if h.db.bindings.by_thread_key(f"slack:{h.channel}:{m.ts}")
                ),
                None,
            )
        )
        event = next(
            d for d in h.slack.deliveries if d.payload.get("event", {}).get("ts") == first.ts
        )
        await asyncio.wait_for(event.acked.wait(), 10)
        assert event.attempt == 1 and "answer 200 lost" in event.log
        prompt = await prompt_in(h, thread)
        status, _ = await h.slack.deliver_raw(json.dumps(event.payload), retry_num=2)
        assert status == 200, "a late retry is acknowledged and dropped"
        h.press(prompt, "Allow")
        await h.wait_text("Written over HTTP.", thread=thread)
        assert target.read_text() == "http"
        assert len(h.db.sessions.list()) == 1, "the retried event made one session"
        assert turns_started(h, "over http") == 1
        h.slash("help")
        await h.wait_text("!new")
        assert h.slack.count_429 == 0
    finally:
        await stop_slack_harness(h)


async def test_a_socket_mode_reconnect_mid_stream_loses_and_repeats_nothing(
    real: SlackHarness,
) -> None:
    h = real
    answer = " ".join(f"token{i}" for i in range(500))
    h.model.on("stream through a reconnect", Text(answer, chunk=24, delay=0.03))
    h.model.on("after the reconnect", Text("Answered after the reconnect."))
    thread, _ = await h.new_session(str(h.root / "app"), "stream through a reconnect")
    await h.slack.wait_until(
        lambda: [s for s in h.slack.stream_messages(h.channel) if len(s.stream_chunks) >= 2], 20
    )
    h.slack.lose_acks(1)  # this command's ack is lost: Slack redelivers it on the new socket
    h.say("!cost", thread=thread)
    await h.wait_text("This session", thread=thread)
    await h.slack.refresh()
    h.say("after the reconnect", thread=thread)  # sent while the app reconnects
    await h.wait_text("Answered after the reconnect.", thread=thread, timeout=40)
    assert await h.bridge.outbox.wait_idle(timeout=30), "the stream messages' deletions too"
    assert h.slack.hello_count == 2, "the app reconnected once"
    cost = next(d for d in h.slack.deliveries if "!cost" in json.dumps(d.payload))
    assert cost.attempt == 1 and cost.acked.is_set(), "redelivered after the lost ack"
    assert len([m for m in h.bot_messages(thread) if "This session" in m.visible_text]) == 1
    done = finals(h, thread)
    assert len(done) == 2 and words(answer) in words(done[0].visible_text), "arrived whole"
    streams = h.slack.stream_messages(h.channel)
    # A loaded machine may start a native stream for the short second answer too: each
    # stream message must be part of its own turn's answer, and deleted.
    second = "Answered after the reconnect."
    assert streams and all(s.deleted and (s.text in answer or s.text in second) for s in streams), [(s.ts, s.deleted, s.text[:40], s.stream_state) for s in streams]
    assert any(s.text in answer and len(s.stream_chunks) >= 2 for s in streams)
    assert turns_started(h, "after the reconnect") == 1
    assert turns_started(h, "stream through a reconnect") == 1
    assert len([m for m in h.bot_messages(thread) if "Queued" in m.visible_text]) == 1
    assert h.slack.count_429 == 0


async def test_without_native_streaming_two_sessions_stream_by_edits_without_a_429(
    tmp_path: Path,
) -> None:
    h = await start_slack_harness(tmp_path, streaming=False)
    try:
        texts = {}
        threads = []
        for name in ("one", "two"):
            (h.root / name).mkdir()
            texts[name] = " ".join(f"{name}-{i}" for i in range(200))
            # ~3 s of stream each: two sessions share the channel's ~1 message/s, so a
            # shorter stream can end (on a loaded machine) before its status is edited.
            h.model.on(f"stream {name}", Text(texts[name], chunk=10, delay=0.15))
        for name in ("one", "two"):
            thread, _ = await h.new_session(str(h.root / name), f"stream {name}")
            threads.append((name, thread))
        for name, thread in threads:
            final = await h.wait_text("⏱", thread=thread, timeout=60)
            assert words(texts[name]) in words(final.visible_text)
        assert not h.slack.stream_messages(), "the workspace refused streams"
        assert h.slack.calls_to("chat.startStream")[0].error == "feature_not_enabled"
        for name, thread in threads:
            # (deleted at the end too: it showed nothing the answer does not)
            status = [
                m
                for m in h.slack.messages(h.channel, thread, include_deleted=True)
                if m.edit_count >= 2
            ]
            shown = [v for m in status for v in m.history if f"{name}-1" in mrkdwn_of(v.blocks)]
            assert shown, f"session {name}'s text streamed into its status message"
        assert len(h.slack.calls_to("chat.startStream")) == 1, "refused once, not asked again"
        assert h.slack.count_429 == 0, "the bridge kept within the channel's budget"
    finally:
        await stop_slack_harness(h)


def mrkdwn_of(blocks: list[dict]) -> str:
    return "\n".join(b["text"]["text"] for b in blocks if b.get("type") == "section")
