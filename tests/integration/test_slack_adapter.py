"""The Slack adapter against the fake Slack: the real slack-bolt and slack_sdk over real
HTTP and WebSocket, so transport, acknowledgements, parsing, error mapping, native
streaming and its fallbacks are all exercised — without the bridge."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from adapters.base import NotModified, PermanentError, RateLimited, ThreadGone, TransientError
from adapters.messages import (
    Button,
    ButtonPress,
    Inbound,
    Markdown,
    Outbound,
    Rendered,
    Sender,
    ThreadRef,
    UserMessage,
    text,
)
from adapters.slack.adapter import SlackAdapter
from adapters.slack.config import SlackConfig
from adapters.slack.render import section
from tests.support.fakes.slack import BOT_USER, TEAM_ID, FakeSlack
from tests.support.slack_harness import free_port

pytestmark = pytest.mark.timeout(60)

ADA = "U0ADA00001"
BOB = "U0BOB00001"
CH = "C0THREADS1"
OTHER = "C0RANDOM01"

Started = Callable[..., Awaitable[tuple[FakeSlack, SlackAdapter, "asyncio.Queue[Inbound]"]]]


@pytest.fixture
async def started() -> AsyncIterator[Started]:
    """`await started(**config)` → a running fake and adapter, and the sink's queue."""
    cleanup: list[Callable[[], Awaitable[None]]] = []

    async def start(
        *, fake: FakeSlack | None = None, **config: Any
    ) -> tuple[FakeSlack, SlackAdapter, asyncio.Queue[Inbound]]:
        if fake is None:
            fake = await FakeSlack(ack_timeout=0.5, retry_delays=(0.0, 0.2)).start()
            cleanup.append(fake.stop)
            fake.add_user(ADA, "Ada")
            fake.add_user(BOB, "Bob")
            fake.add_channel(CH, "threadline", members=[ADA, BOB])
            fake.add_channel(OTHER, "random", members=[ADA])
            fake.add_dm(ADA)
        fake.set_rate_limits(enabled=False)
        values = {
            "enabled": True,
            "bot_token": fake.bot_token,
            "app_token": fake.app_token,
            "signing_secret": fake.signing_secret,
            "base_url": fake.base_url,
            "channel": CH,
            **config,
        }
        adapter = SlackAdapter(SlackConfig(**values), owners_hint=[f"slack:{ADA}", "telegram:1"])
        queue: asyncio.Queue[Inbound] = asyncio.Queue()

        async def sink(event: Inbound) -> None:
            await queue.put(event)

        await adapter.start(sink)
        cleanup.append(adapter.stop)
        return fake, adapter, queue

    yield start
    for fn in reversed(cleanup):
        await fn()


async def next_event(queue: asyncio.Queue[Inbound], timeout: float = 5.0) -> Inbound:
    return await asyncio.wait_for(queue.get(), timeout)


async def test_start_checks_tokens_and_never_repeats_them(started: Started) -> None:
    fake, adapter, _ = await started()
    assert adapter.username == "threadline" and adapter.bot_user_id == BOT_USER
    assert fake.connections == 1
    for bad in ({"bot_token": "xoxb-not-the-right-one"}, {"app_token": "xapp-1-not-right-either"}):
        with pytest.raises(PermanentError) as info:
            await started(fake=fake, **bad)
        assert "not-the-right" not in str(info.value) and "right-either" not in str(info.value)
    with pytest.raises(PermanentError, match="signing_secret"):
        await started(fake=fake, mode="http", signing_secret="", http_port=free_port())


async def test_messages_threads_dms_and_what_is_ignored(started: Started) -> None:
    fake, adapter, queue = await started()
    top = fake.user_message(CH, ADA, "<@U0BOT00001> fix a < b & <https://x.io|this>", raw=True)
    got = await next_event(queue)
    assert isinstance(got, UserMessage)
    assert got.text == "fix a < b & this (https://x.io)" and got.thread == ThreadRef("slack", CH)
    assert got.sender == Sender("slack", ADA, "Ada") and got.chat_type == "group"
    fake.user_message(CH, ADA, "in the thread", thread_ts=top.ts)
    reply = await next_event(queue)
    assert reply.thread == ThreadRef("slack", CH, top.ts)
    fake.bot_message(CH, "from another app")
    fake.user_edit(top, "edited")
    fake.user_join(CH, "U0NEW00001")
    fake.user_message(OTHER, ADA, "!help from a channel that is not ours")
    elsewhere = await next_event(queue)
    assert elsewhere.text == "!help from a channel that is not ours", "bots, edits, joins dropped"
    assert not adapter.accepts_chat(elsewhere.thread, elsewhere.chat_type), "the bridge drops it"
    assert adapter.accepts_chat(ThreadRef("slack", CH), "group")
    dm = fake.add_dm(ADA)
    fake.user_message(dm, ADA, "in a DM")
    got = await next_event(queue)
    assert got.text == "in a DM" and got.chat_type == "private"
    assert adapter.accepts_chat(got.thread, got.chat_type)
    await adapter.send(ThreadRef("slack", CH), adapter.render(text("own message"))[0])
    await asyncio.sleep(0.3)
    assert queue.empty(), "the bot's own messages never come back"


async def test_files_are_downloaded_with_the_bot_token(started: Started) -> None:
    fake, _, queue = await started()
    fake.user_message(
        CH,
        ADA,
        "look",
        files=[("shot.png", "image/png", b"\x89PNG..."), ("a.txt", "text/plain", b"hi")],
    )
    got = await next_event(queue)
    assert isinstance(got, UserMessage)
    assert [(a.kind, a.name, await a.fetch(2**20)) for a in got.attachments] == [
        ("image", "shot.png", b"\x89PNG..."),
        ("file", "a.txt", b"hi"),
    ]


async def test_slash_commands_and_buttons_are_acknowledged_then_forwarded(started: Started) -> None:
    fake, adapter, queue = await started()
    d = fake.slash(OTHER, ADA, "new ~/code/app add a health check")
    got = await next_event(queue)
    await asyncio.wait_for(d.acked.wait(), 3)
    assert isinstance(got, UserMessage) and got.text == "!new ~/code/app add a health check"
    assert got.thread == ThreadRef("slack", OTHER), "a slash command is allowed anywhere"
    fake.slash(CH, ADA, "")
    assert (await next_event(queue)).text == "!help"  # type: ignore[union-attr]
    thread = ThreadRef("slack", CH, fake.user_message(CH, ADA, "parent").ts)
    await next_event(queue)
    ts = await adapter.send(
        thread,
        adapter.render(Outbound((Markdown("ok?"),), ((Button("✅ Allow", "p:r:a", "primary"),),)))[
            0
        ],
    )
    click = fake.click(fake.message(CH, ts), "Allow", user=BOB)
    press = await next_event(queue)
    await asyncio.wait_for(click.acked.wait(), 3)
    assert press == ButtonPress(thread, Sender("slack", BOB, "Bob"), ts, "p:r:a")
    await adapter.answer_press(press, "Already decided by Ada.")  # type: ignore[arg-type]
    [note] = fake.ephemerals(BOB)
    assert note.text == "Already decided by Ada." and note.thread_ts == thread.thread_id


async def test_a_redelivered_event_is_handled_once(started: Started) -> None:
    fake, _, queue = await started()
    fake.lose_acks(1)
    fake.user_message(CH, ADA, "only once")
    assert (await next_event(queue)).text == "only once"  # type: ignore[union-attr]
    await fake.wait_until(lambda: fake.deliveries[0].acked.is_set(), 5)
    assert fake.deliveries[0].attempt == 1
    await asyncio.sleep(0.2)
    assert queue.empty()


async def test_sending_editing_deleting_and_identical_edits(started: Started) -> None:
    fake, adapter, _ = await started()
    thread, header = await adapter.open_thread(
        CH, "app: add a   health check", text("📂 `~/code/app`")
    )
    assert thread == ThreadRef("slack", CH, header)
    head = fake.message(CH, header)
    assert head.blocks[0]["text"]["text"] == "*app: add a health check*"
    assert (
        adapter.thread_link(thread)
        == f"https://fake-workspace.slack.com/archives/{CH}/p{header.replace('.', '')}"
    )
    assert adapter.default_chat(ThreadRef("slack", "D0ADA00001")) == CH
    ts = await adapter.send(thread, adapter.render(text("first"))[0])
    edit = adapter.render_edit(text("second"))
    await adapter.edit(thread, ts, edit)
    calls = len(fake.calls_to("chat.update"))
    with pytest.raises(NotModified):
        await adapter.edit(thread, ts, edit)
    assert len(fake.calls_to("chat.update")) == calls, "an identical edit costs no API call"
    assert fake.message(CH, ts).visible_text == "second"
    await adapter.delete(thread, ts)
    assert fake.message(CH, ts).deleted
    with pytest.raises(PermanentError, match="message_not_found"):
        await adapter.edit(thread, ts, adapter.render_edit(text("third")))
    fid = await adapter.send(
        thread,
        adapter.render(
            Outbound(file=__import__("adapters.messages").messages.FileOut("d.diff", b"+x", "diff"))
        )[0],
    )
    assert fid.startswith("file:")
    with pytest.raises(NotModified):
        await adapter.edit(thread, fid, edit)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"error": "ratelimited", "status": 429, "retry_after": 7}, RateLimited),
        ({"status": 503}, TransientError),
        ({"error": "internal_error"}, TransientError),
        ({"error": "thread_not_found"}, ThreadGone),
        ({"error": "not_in_channel"}, PermanentError),
        ({"error": "invalid_auth"}, PermanentError),
        ({"drop": True, "times": 2}, TransientError),
    ],
)
async def test_errors_map_to_the_outbox_vocabulary(
    started: Started, fault: dict[str, Any], expected: type[Exception]
) -> None:
    fake, adapter, _ = await started()
    thread = ThreadRef("slack", CH, fake.user_message(CH, ADA, "parent").ts)
    fake.fail_next("chat.postMessage", **fault)
    with pytest.raises(expected) as info:
        await adapter.send(thread, adapter.render(text("x"))[0])
    if expected is RateLimited:
        assert info.value.retry_after == 7  # type: ignore[attr-defined]
    assert fake.bot_token not in str(info.value)


async def test_refused_blocks_fall_back_to_text(started: Started) -> None:
    fake, adapter, _ = await started()
    fake.fail_next("chat.postMessage", error="invalid_blocks", match=lambda p: "blocks" in p)
    ts = await adapter.send(ThreadRef("slack", CH), adapter.render(text("**still** delivered"))[0])
    msg = fake.message(CH, ts)
    assert not msg.blocks and msg.text == "*still* delivered"
    with pytest.raises(PermanentError):
        await adapter.send(ThreadRef("slack", "C0MISSING"), adapter.render(text("x"))[0])


def status_payload(adapter: SlackAdapter, body: str, running: bool = True) -> Rendered:
    buttons = ((Button("⏹ Stop", "x:s1", "danger"),),) if running else ()
    role = "status" if running else "done"
    return adapter.render(Outbound((Markdown(body),), buttons, role=role))[0]


async def test_native_stream_appends_suffixes_and_gives_way_to_the_final(started: Started) -> None:
    fake, adapter, _ = await started()
    thread = ThreadRef("slack", CH, fake.user_message(CH, ADA, "!new").ts)
    assert adapter.supports_draft(thread) and not adapter.supports_draft(ThreadRef("slack", CH))
    status = await adapter.send(thread, status_payload(adapter, "⏳ _Working…_"))
    await fake.wait_until(lambda: fake.statuses or None, 5)  # set beside the deliveries
    assert fake.statuses[-1].status == "is thinking…"
    for preview in (
        "Hello world, this is",
        "Hello world, this is a streamed answer",
        "Hello world, this is a streamed answer about **Slack** ok",
    ):
        await adapter.draft(thread, 99, adapter.render_edit(Outbound((Markdown(preview),))))
    [stream] = fake.stream_messages(CH)
    assert stream.stream_chunks == [
        "Hello world, this ",
        "is a streamed ",  # "answer" waits: the next word might continue it
        "answer about **Slack** ",
    ]
    start = fake.calls_to("chat.startStream")[0].params
    assert start["recipient_user_id"] == ADA and start["recipient_team_id"] == TEAM_ID
    await adapter.edit(thread, status, adapter.render_edit(Outbound((Markdown("✅ Done"),))))
    assert stream.stream_state == "stopped" and stream.deleted
    assert fake.statuses[-1].status == ""


async def test_the_first_preview_streams_before_the_status_message_is_posted(
    started: Started,
) -> None:
    """The status message waits for the channel's post budget; the first text does not
    wait for it (it used to be dropped, and the next preview came ~1.2 s later)."""
    fake, adapter, _ = await started()
    thread = ThreadRef("slack", CH, fake.user_message(CH, ADA, "go").ts)
    await adapter.draft(thread, 7, adapter.render_edit(Outbound((Markdown("first words here"),))))
    [stream] = fake.stream_messages(CH)
    assert stream.stream_chunks == ["first words "]
    assert [c.method for c in fake.calls if c.method.startswith("chat.")] == ["chat.startStream"]
    status = await adapter.send(thread, status_payload(adapter, "⏳ _Working…_"))
    await adapter.draft(
        thread, 7, adapter.render_edit(Outbound((Markdown("first words here and more"),)))
    )
    assert stream.stream_chunks == ["first words ", "here and "]
    await adapter.edit(thread, status, status_payload(adapter, "✅ Done", running=False))
    assert stream.stream_state == "stopped" and stream.deleted
    # A preview of the finished turn (one already under way at its end) starts nothing.
    await adapter.draft(
        thread, 7, adapter.render_edit(Outbound((Markdown("first words here and more x y"),)))
    )
    assert len(fake.calls_to("chat.startStream")) == 1 and len(fake.stream_messages(CH)) == 1


async def test_the_status_message_does_not_wait_for_the_assistant_status(
    started: Started,
) -> None:
    """Setting "is thinking…" is one more round trip; the turn's first text, often next
    in the channel's queue, does not wait behind it."""
    fake, adapter, _ = await started()
    fake.fail_next("assistant.threads.setStatus", delay=10.0)  # a hung request
    thread = ThreadRef("slack", CH, fake.user_message(CH, ADA, "go").ts)
    await asyncio.wait_for(adapter.send(thread, status_payload(adapter, "⏳ _Working…_")), 3)
    await asyncio.wait_for(
        adapter.draft(thread, 4, adapter.render_edit(Outbound((Markdown("first words"),)))), 3
    )
    assert fake.calls_to("chat.startStream") and not fake.statuses


async def test_a_preview_over_the_workspace_tier_is_skipped_not_a_pause(started: Started) -> None:
    """Over chat.appendStream's workspace tier a preview is skipped (the next carries its
    text) instead of answering RateLimited, which would pause the channel's messages."""
    fake, adapter, _ = await started()
    thread = ThreadRef("slack", CH, fake.user_message(CH, ADA, "go").ts)
    await adapter.send(thread, status_payload(adapter, "⏳ _Working…_"))
    await adapter.draft(thread, 3, adapter.render_edit(Outbound((Markdown("one two three"),))))
    while adapter.guard.wait("chat.appendStream") == 0:  # other threads spent the tier
        adapter.guard.take("chat.appendStream")
    await adapter.draft(thread, 3, adapter.render_edit(Outbound((Markdown("one two three four"),))))
    assert not fake.calls_to("chat.appendStream"), "skipped, without a call"
    await asyncio.sleep(adapter.guard.wait("chat.appendStream"))
    await adapter.draft(
        thread, 3, adapter.render_edit(Outbound((Markdown("one two three four five six"),)))
    )
    [stream] = fake.stream_messages(CH)
    assert stream.stream_chunks == ["one two ", "three four five "], "nothing lost"


async def test_a_stream_rolls_over_when_slack_ends_it(started: Started) -> None:
    fake, adapter, _ = await started()
    thread = ThreadRef("slack", CH, fake.user_message(CH, ADA, "go").ts)
    await adapter.send(thread, status_payload(adapter, "⏳ _Working…_"))
    await adapter.draft(thread, 5, adapter.render_edit(Outbound((Markdown("one two three"),))))
    fake.stream_lifetime = 0.0
    await adapter.draft(
        thread, 5, adapter.render_edit(Outbound((Markdown("one two three four five"),)))
    )
    first, second = fake.stream_messages(CH)
    assert first.text == "one two " and second.text == "three four "


async def test_without_streaming_previews_go_into_the_status_message(started: Started) -> None:
    fake, adapter, _ = await started()
    fake.streaming = False
    fake.scopes.remove("assistant:write")
    thread = ThreadRef("slack", CH, fake.user_message(CH, ADA, "go").ts)
    await adapter.draft(
        thread, 5, adapter.render_edit(Outbound((Markdown("early words before the status"),)))
    )
    status = await adapter.send(thread, status_payload(adapter, "⏳ _Working…_"))
    assert adapter.supports_draft(thread), "this turn keeps its previews, in the status"
    await adapter.draft(thread, 5, adapter.render_edit(Outbound((Markdown("the answer so far"),))))
    shown = fake.message(CH, status)
    assert "the answer so far" in shown.visible_text and "Working" not in shown.visible_text
    assert shown.buttons and shown.blocks[-1]["type"] == "actions"
    await adapter.edit(thread, status, status_payload(adapter, "▸ Read a.py"))
    assert "the answer so far" in fake.message(CH, status).visible_text
    await adapter.edit(thread, status, status_payload(adapter, "✅ Done", running=False))
    assert not adapter.supports_draft(thread), "later turns stream by the bridge's edits"
    assert len(fake.calls_to("chat.startStream")) == 1
    assert len(fake.calls_to("assistant.threads.setStatus")) == 1, "asked once, then not again"


async def test_updates_stay_within_the_workspace_tier(started: Started) -> None:
    fake, adapter, _ = await started()
    fake.set_rate_limits(enabled=True, window_s=2.0)  # chat.update: 50 per 2 s
    adapter.guard.scale(30.0)  # and our guard likewise: 21/s, burst 6 → 48 in any 2 s
    ts = await adapter.send(ThreadRef("slack", CH), adapter.render(text("v0"))[0])
    limited = 0
    for i in range(56):
        try:
            await adapter.edit(ThreadRef("slack", CH), ts, adapter.render_edit(text(f"v{i + 1}")))
        except RateLimited as e:
            limited += 1
            await asyncio.sleep(e.retry_after)
    assert fake.count_429 == 0 and fake.message(CH, ts).edit_count == 56 - limited


async def test_http_mode_checks_signatures_and_drops_retries(started: Started) -> None:
    fake, adapter, queue = await started(mode="http", http_port=free_port())
    fake.set_request_url(f"http://127.0.0.1:{adapter.http_port}/slack/events")
    body = json.dumps({"type": "event_callback", "event_id": "Ev1", "event": {"type": "message"}})
    assert (await fake.deliver_raw(body, signature="v0=" + "1" * 64))[0] == 401
    assert (await fake.deliver_raw(body, timestamp="1000000000"))[0] == 401
    msg = fake.user_message(CH, ADA, "over http")
    assert (await next_event(queue)).text == "over http"  # type: ignore[union-attr]
    await asyncio.wait_for(fake.deliveries[0].acked.wait(), 3)
    retry = json.dumps(fake.deliveries[0].payload)
    assert (await fake.deliver_raw(retry, retry_num=1))[0] == 200
    await asyncio.sleep(0.3)
    assert queue.empty() and msg.ts
    fake.slash(CH, ADA, "sessions")
    assert (await next_event(queue)).text == "!sessions"  # type: ignore[union-attr]
    assert section("x")["type"] == "section"


async def test_doctor_names_missing_scopes_and_channel_problems(started: Started) -> None:
    import io

    from rich.console import Console

    from bridge.cli.doctor import check_platform
    from bridge.config import Config

    fake, _, _ = await started()

    def run(**slack: Any) -> tuple[int, str]:
        values = {
            "enabled": True,
            "bot_token": fake.bot_token,
            "app_token": fake.app_token,
            "base_url": fake.base_url,
            "channel": CH,
            **slack,
        }
        cfg = Config.model_validate({"access": {"owners": [f"slack:{ADA}"]}, "slack": values})
        buf = io.StringIO()
        console = Console(file=buf, width=200, color_system=None)
        failures = asyncio.run(check_platform(cfg, "slack", console))
        return failures, buf.getvalue()

    failures, report = await asyncio.to_thread(run)
    assert failures == 0, report
    assert "every scope" in report and "Socket Mode" in report and "#threadline" in report
    fake.scopes.remove("files:write")
    fake.scopes.remove("users:read")
    fake.add_channel("C0NOTIN", "elsewhere", bot_member=False)
    failures, report = await asyncio.to_thread(run, channel="C0NOTIN", app_token="xapp-1-bad")
    assert failures == 3, report
    assert "lacks scopes files:write, users:read" in report
    assert "refused the app token" in report and "not in #elsewhere" in report
    failures, report = await asyncio.to_thread(run, bot_token="xoxb-bad")
    assert failures == 1 and "invalid_auth" in report and "xoxb-bad" not in report
