"""The Telegram adapter against the fake Bot API server: the real python-telegram-bot
over real HTTP, so transport, parsing, error mapping and fallbacks are all exercised."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import pytest
from telegram import Update
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TimedOut

from adapters.base import (
    NotModified,
    PermanentError,
    RateLimited,
    ThreadGone,
    TransientError,
)
from adapters.messages import (
    Button,
    ButtonPress,
    ChatCommand,
    Code,
    FileOut,
    Inbound,
    Outbound,
    Rendered,
    ThreadRef,
    UserMessage,
    text,
)
from adapters.telegram import inbound, limits
from adapters.telegram.adapter import TelegramAdapter
from adapters.telegram.config import TelegramConfig
from adapters.telegram.errors import TelegramErrors
from tests.support.fakes.telegram import TINY_PNG, FakeTelegram

pytestmark = [
    pytest.mark.timeout(60),
    # PTB itself reads RetryAfter.retry_after when building the error from a 429.
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning"),
]

OWNER = 42
GROUP = -1001234567890

Started = Callable[..., Awaitable[tuple[FakeTelegram, TelegramAdapter, "asyncio.Queue[Inbound]"]]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def started() -> AsyncIterator[Started]:
    """`await started(**fake_kwargs, config=...)` → a running fake and adapter."""
    cleanup: list[Callable[[], Awaitable[None]]] = []

    async def start(
        *,
        use_drafts: bool = True,
        config: dict[str, Any] | None = None,
        commands: Sequence[ChatCommand] = (),
        **fake_kw: Any,
    ) -> tuple[FakeTelegram, TelegramAdapter, asyncio.Queue[Inbound]]:
        fake = await FakeTelegram(**fake_kw).start()
        cleanup.append(fake.stop)
        fake.set_rate_limits(enabled=False)
        fake.add_chat(OWNER, "private", first_name="Ada")
        fake.add_chat(GROUP, "supergroup", is_forum=True, title="Work")
        cfg = TelegramConfig(
            enabled=True,
            token=fake.token,
            base_url=fake.base_url,
            use_drafts=use_drafts,
            **(config or {}),
        )
        adapter = TelegramAdapter(cfg, owners_hint=[f"telegram:{OWNER}"])
        queue: asyncio.Queue[Inbound] = asyncio.Queue()
        adapter.set_commands(commands)
        await adapter.start(queue.put)
        cleanup.append(adapter.stop)
        return fake, adapter, queue

    yield start
    for fn in reversed(cleanup):
        await fn()


async def _next(queue: asyncio.Queue[Inbound]) -> Inbound:
    return await asyncio.wait_for(queue.get(), 10)


def _payload(html: str, **extra: Any) -> Rendered:
    return Rendered(
        {
            "text": html,
            "parse_mode": "HTML",
            "disable_notification": True,
            "link_preview": False,
            **extra,
        }
    )


# --- start -----------------------------------------------------------------------------


async def test_start_reads_identity_and_sets_menu(started: Started) -> None:
    from bridge.commands.dispatch import menu
    from bridge.commands.registry import REGISTRY

    fake, adapter, _ = await started(has_topics_enabled=True, commands=menu())
    assert adapter.username == fake.bot_username
    assert adapter.has_topics_enabled
    names = [c["command"] for c in fake.commands()]
    assert names == [
        "new",
        "end",
        "resume",
        "sessions",
        "handoff",
        "stop",
        "mode",
        "model",
        "diff",
        "cost",
        "import",
        "get",
        "schedule",
        "schedules",
        "unschedule",
        "hosts",
        "help",
    ]
    assert set(names) <= REGISTRY.names(), "the menu offers only commands that work"
    assert all(0 < len(c["description"]) <= 256 for c in fake.commands())
    described = {c["command"]: c["description"] for c in fake.commands()}
    assert (
        described["new"]
        == "[HOST:][PATH] [PROMPT] — start a session in PATH (on HOST), optionally with a first prompt"
    )
    assert described["stop"] == "interrupt the running turn (the session stays usable)"
    assert limits.MAX_TEXT == 4096 and adapter.capabilities.native_stream


async def test_no_command_list_leaves_the_menu_alone(started: Started) -> None:
    fake, _, _ = await started()
    assert fake.commands() == []  # setMyCommands not called: nothing to offer


async def test_bad_token_is_a_clear_permanent_error() -> None:
    async with FakeTelegram() as fake:
        adapter = TelegramAdapter(TelegramConfig(token="999:wrong-token", base_url=fake.base_url))
        with pytest.raises(PermanentError, match="bot token") as info:
            await adapter.start(lambda _: asyncio.sleep(0))
        assert "wrong-token" not in str(info.value)


# --- inbound ---------------------------------------------------------------------------


async def test_inbound_plain_topic_and_reply_chain(started: Started) -> None:
    fake, adapter, queue = await started(has_topics_enabled=True)

    fake.user_message(OWNER, {"id": OWNER, "first_name": "Ada"}, "/new ~/code/x fix it")
    msg = await _next(queue)
    assert isinstance(msg, UserMessage)
    assert msg.thread == ThreadRef("telegram", str(OWNER), None)
    assert (msg.sender.user_id, msg.sender.display_name, msg.chat_type) == (
        str(OWNER),
        "Ada",
        "private",
    )
    assert msg.text == "/new ~/code/x fix it" and msg.reply_to is None

    topic = fake.add_topic(GROUP, "session")
    fake.user_message(GROUP, OWNER, "in a topic", message_thread_id=topic)
    msg = await _next(queue)
    assert isinstance(msg, UserMessage)
    assert msg.thread == ThreadRef("telegram", str(GROUP), str(topic))
    assert msg.chat_type == "group" and msg.reply_to is None

    header = await adapter.send(ThreadRef("telegram", str(OWNER)), _payload("<b>header</b>"))
    fake.user_message(OWNER, OWNER, "a reply", reply_to=int(header))
    msg = await _next(queue)
    assert isinstance(msg, UserMessage)
    assert msg.thread.thread_id is None and msg.reply_to == header


async def test_bots_and_service_updates_are_ignored(started: Started) -> None:
    fake, _, queue = await started()
    fake.user_message(OWNER, {"id": 7, "is_bot": True, "first_name": "Other bot"}, "hi")
    fake.push_update(
        {
            "edited_message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": OWNER, "type": "private"},
                "text": "x",
            }
        }
    )
    fake.push_update(
        {"message": {"message_id": 2, "date": 0, "chat": {"id": OWNER, "type": "private"}}}
    )
    fake.push_update({"message": {"bogus": True}})  # malformed: dropped, never raised
    fake.user_message(OWNER, OWNER, "still alive")
    msg = await _next(queue)
    assert isinstance(msg, UserMessage) and msg.text == "still alive"
    assert queue.empty()


def test_topic_root_is_not_a_reply() -> None:
    chat = {"id": GROUP, "type": "supergroup", "is_forum": True, "title": "Work"}
    root = {
        "message_id": 5,
        "date": 1,
        "chat": chat,
        "message_thread_id": 5,
        "forum_topic_created": {"name": "t", "icon_color": 7322096},
    }
    user = {"id": OWNER, "is_bot": False, "first_name": "Ada", "username": "ada"}
    raw = {
        "message_id": 9,
        "date": 1,
        "chat": chat,
        "from": user,
        "text": "hi",
        "message_thread_id": 5,
        "is_topic_message": True,
        "reply_to_message": root,
    }
    parsed = inbound.parse_message(Update.de_json({"update_id": 1, "message": raw}, None))
    assert parsed is not None
    assert parsed.message.thread == ThreadRef("telegram", str(GROUP), "5")
    assert parsed.message.reply_to is None and parsed.message.chat_type == "group"
    raw["reply_to_message"] = {**root, "forum_topic_created": None, "message_id": 7, "text": "x"}
    parsed = inbound.parse_message(Update.de_json({"update_id": 2, "message": raw}, None))
    assert parsed is not None and parsed.message.reply_to == "7"
    channel = {**raw, "chat": {"id": -100777, "type": "channel", "title": "News"}}
    assert inbound.parse_message(Update.de_json({"update_id": 3, "message": channel}, None)) is None


async def test_photo_and_document_become_attachments(started: Started) -> None:
    fake, _, queue = await started()
    fake.user_photo(OWNER, OWNER, TINY_PNG, caption="what is this?")
    msg = await _next(queue)
    assert isinstance(msg, UserMessage) and msg.text == "what is this?"
    (att,) = msg.attachments
    assert (att.kind, att.mime) == ("image", "image/jpeg")
    assert await att.fetch(2**20) == TINY_PNG

    fake.user_document(OWNER, OWNER, b"col\n1\n", file_name="data.csv", mime_type="text/csv")
    msg = await _next(queue)
    assert isinstance(msg, UserMessage)
    (att,) = msg.attachments
    assert (att.kind, att.name, att.mime) == ("file", "data.csv", "text/csv")
    assert await att.fetch(2**20) == b"col\n1\n"


async def test_button_press_is_answered_once_then_forwarded(started: Started) -> None:
    fake, adapter, queue = await started()
    buttons = ((Button("Allow", "perm:abc:allow"), Button("Deny", "perm:abc:deny", "danger")),)
    (rendered,) = adapter.render(text("Run `ls`?", buttons=buttons))
    mid = await adapter.send(ThreadRef("telegram", str(OWNER)), rendered)

    qid = fake.press_button(OWNER, int(mid), "perm:abc:allow", from_user=OWNER)
    press = await _next(queue)
    assert press == ButtonPress(press.thread, press.sender, mid, "perm:abc:allow")
    assert press.thread == ThreadRef("telegram", str(OWNER)) and press.sender.user_id == str(OWNER)
    assert fake.callback_answer(qid) is not None
    assert fake.calls["answerCallbackQuery"] == 1

    # A stranger pressing junk data is answered too; the bridge decides what it means.
    qid = fake.press_button(OWNER, int(mid), "junk", from_user=666, strict=False)
    press = await _next(queue)
    assert isinstance(press, ButtonPress) and press.sender.user_id == "666"
    assert fake.callback_answer(qid) is not None


def test_render_never_produces_callback_data_over_64_bytes() -> None:
    adapter = TelegramAdapter(TelegramConfig(token="1:x"))
    long_data = "é" * 40  # 80 bytes
    msg = text("choose", buttons=((Button("ok", "ok"), Button("too long", long_data)),))
    for r in adapter.render(msg) + [adapter.render_edit(msg)]:
        rows = (r.payload.get("reply_markup") or {}).get("inline_keyboard", [])
        for row in rows:
            for b in row:
                assert 1 <= len(b["callback_data"].encode()) <= 64


# --- threads ---------------------------------------------------------------------------


async def test_open_thread_creates_a_topic(started: Started) -> None:
    fake, adapter, _ = await started(has_topics_enabled=True)
    thread, header_id = await adapter.open_thread(str(OWNER), "x: fix the tests", text("📂 header"))
    assert thread.thread_id and not thread.thread_id.startswith("reply:")
    topic = fake.topic(OWNER, int(thread.thread_id))
    assert topic.name == "x: fix the tests"
    (header,) = fake.messages(OWNER, int(thread.thread_id))
    assert str(header.message_id) == header_id and "header" in (header.visible_text or "")
    assert adapter.thread_link(thread) is None  # private chat

    await adapter.close_thread(thread)
    assert fake.topic(OWNER, int(thread.thread_id)).closed
    await adapter.close_thread(thread)  # twice: TOPIC_NOT_MODIFIED is swallowed
    # /resume posts into the closed topic again: it is reopened, not abandoned.
    fake.reject_closed_topics = True
    await adapter.send(thread, _payload("back"))
    assert not fake.topic(OWNER, int(thread.thread_id)).closed


async def test_group_topic_link(started: Started) -> None:
    fake, adapter, _ = await started()
    thread, _ = await adapter.open_thread(str(GROUP), "repo", text("header"))
    assert thread.thread_id and thread.thread_id.isdigit()
    assert adapter.thread_link(thread) == f"https://t.me/c/1234567890/{thread.thread_id}"
    assert adapter.is_group(str(GROUP)) and not adapter.is_group(str(OWNER))
    assert adapter.default_chat(ThreadRef("telegram", str(OWNER))) == str(OWNER)


async def test_open_thread_falls_back_to_reply_chain(started: Started) -> None:
    fake, adapter, _ = await started(has_topics_enabled=True)
    fake.fail_next("createForumTopic", error_description="Bad Request: BOT_FORUM_CREATE_FORBIDDEN")
    thread, header_id = await adapter.open_thread(str(OWNER), "x: <task>", text("header"))
    assert thread == ThreadRef("telegram", str(OWNER), f"reply:{header_id}")
    header = fake.message(OWNER, int(header_id or 0))
    assert header.thread_id is None and (header.visible_text or "").startswith("x: <task>\n")

    mid = await adapter.send(thread, _payload("in the chain"))
    assert fake.message(OWNER, int(mid)).reply_to == int(header_id or 0)

    # The chat is remembered: the next session goes straight to a reply chain.
    calls = fake.calls["createForumTopic"]
    thread2, _ = await adapter.open_thread(str(OWNER), "y", text("header 2"))
    assert thread2.thread_id and thread2.thread_id.startswith("reply:")
    assert fake.calls["createForumTopic"] == calls
    assert not fake.topics(OWNER)


async def test_topic_created_but_unusable_falls_back(started: Started) -> None:
    fake, adapter, _ = await started(has_topics_enabled=True)
    fake.fail_next(
        "sendMessage",
        error_description="Bad Request: message thread not found",
        match=lambda p: bool(p.get("message_thread_id")),
    )
    thread, _ = await adapter.open_thread(str(OWNER), "t", text("header"))
    assert thread.thread_id and thread.thread_id.startswith("reply:")
    assert not fake.topics(OWNER)  # the unusable topic was removed again


async def test_reply_chains_without_topic_mode_or_when_asked(started: Started) -> None:
    fake, adapter, _ = await started()  # the bot has no topic mode
    thread, header_id = await adapter.open_thread(str(OWNER), "t", text("header"))
    assert thread.thread_id == f"reply:{header_id}"
    thread, header_id = await adapter.open_thread(
        str(GROUP), "t", text("header"), prefer_topic=False
    )
    assert thread.thread_id == f"reply:{header_id}" and not fake.topics(GROUP)
    assert adapter.thread_link(thread) == f"https://t.me/c/1234567890/{header_id}"
    assert fake.calls["createForumTopic"] == 0


async def test_open_thread_rate_limited_then_retried_reuses_topic(started: Started) -> None:
    fake, adapter, _ = await started(has_topics_enabled=True)
    fake.fail_next("sendMessage", retry_after=2)
    with pytest.raises(RateLimited):
        await adapter.open_thread(str(OWNER), "t", text("header"))
    thread, _ = await adapter.open_thread(str(OWNER), "t", text("header"))
    assert len(fake.topics(OWNER)) == 1 and thread.thread_id in {str(t) for t in fake.topics(OWNER)}


# --- outgoing and error mapping ---------------------------------------------------------


async def test_send_into_missing_topic_raises_thread_gone(started: Started) -> None:
    fake, adapter, _ = await started(has_topics_enabled=True)
    thread, _ = await adapter.open_thread(str(OWNER), "t", text("header"))
    fake.fail_next("sendMessage", error_description="Bad Request: message thread not found")
    with pytest.raises(ThreadGone):
        await adapter.send(thread, _payload("hello"))


async def test_429_becomes_rate_limited(started: Started) -> None:
    fake, adapter, _ = await started()
    fake.fail_next("sendMessage", retry_after=7)
    with pytest.raises(RateLimited) as info:
        await adapter.send(ThreadRef("telegram", str(OWNER)), _payload("hi"))
    assert info.value.retry_after == 7.0


async def test_real_flood_limit_becomes_rate_limited(started: Started) -> None:
    fake, adapter, _ = await started()
    fake.set_rate_limits(enabled=True)
    thread = ThreadRef("telegram", str(OWNER))
    with pytest.raises(RateLimited) as info:
        for i in range(10):
            await adapter.send(thread, _payload(f"m{i}"))
    assert info.value.retry_after >= 1


async def test_edit_not_modified_and_button_removal(started: Started) -> None:
    fake, adapter, _ = await started()
    thread = ThreadRef("telegram", str(OWNER))
    (with_buttons,) = adapter.render(text("Allow?", buttons=((Button("Allow", "a"),),)))
    mid = await adapter.send(thread, with_buttons)
    with pytest.raises(NotModified):
        await adapter.edit(thread, mid, with_buttons)
    await adapter.edit(thread, mid, adapter.render_edit(text("Allowed by Ada")))
    msg = fake.message(OWNER, int(mid))
    assert msg.visible_text == "Allowed by Ada" and not msg.buttons
    with pytest.raises(PermanentError):
        await adapter.edit(thread, "99999", with_buttons)


async def test_unparseable_html_is_resent_as_plain_text(
    started: Started, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="adapters")
    fake, adapter, _ = await started()
    thread = ThreadRef("telegram", str(OWNER))
    mid = await adapter.send(thread, _payload("<b>bold &amp; <i>broken</b>"))
    msg = fake.message(OWNER, int(mid))
    assert msg.parse_mode is None and msg.visible_text == "bold & broken"
    assert "plain text" in caplog.text
    await adapter.edit(thread, mid, _payload("<u>also broken &amp; edited"))
    assert fake.message(OWNER, int(mid)).visible_text == "also broken & edited"
    assert fake.token not in caplog.text


async def test_document_payload(started: Started) -> None:
    fake, adapter, _ = await started()
    outbound = Outbound(
        blocks=(Code("x", "diff"),), file=FileOut("big.diff", b"+a\n-b\n", "the <diff>")
    )
    parts = adapter.render(outbound)
    ids = [await adapter.send(ThreadRef("telegram", str(OWNER)), p) for p in parts]
    doc = fake.message(OWNER, int(ids[-1]))
    assert doc.kind == "document" and doc.file is not None and doc.file.data == b"+a\n-b\n"
    assert doc.file.file_name == "big.diff" and doc.visible_text == "the <diff>"


async def test_drafts_in_private_chats_only(started: Started) -> None:
    fake, adapter, _ = await started()
    private = ThreadRef("telegram", str(OWNER))
    assert adapter.supports_draft(private) and not adapter.supports_draft(
        ThreadRef("telegram", str(GROUP), "5")
    )
    await adapter.draft(private, 17, adapter.render_edit(text("**streaming** so far")))
    (d,) = fake.drafts(OWNER)
    assert (d.draft_id, d.visible_text, d.parse_mode) == (17, "streaming so far", "HTML")

    # A refused draft switches the chat to edit-based streaming.
    fake.fail_next("sendMessageDraft", error_description="Bad Request: TEXTDRAFT_PEER_INVALID")
    with pytest.raises(PermanentError):
        await adapter.draft(private, 18, _payload("x"))
    assert not adapter.supports_draft(private)


async def test_drafts_off_by_config(started: Started) -> None:
    _, adapter, _ = await started(use_drafts=False)
    assert not adapter.capabilities.native_stream
    assert not adapter.supports_draft(ThreadRef("telegram", str(OWNER)))


def test_error_mapping_and_token_redaction() -> None:
    token = "123:SECRET"
    errors = TelegramErrors(token)
    assert isinstance(errors.translate(TimedOut()), TransientError)
    assert isinstance(errors.translate(NetworkError(f"boom at /bot{token}/x")), TransientError)
    assert token not in str(errors.translate(NetworkError(f"boom at /bot{token}/x")))
    assert isinstance(errors.translate(BadRequest("Message is not modified: x")), NotModified)
    assert isinstance(errors.translate(BadRequest("TOPIC_CLOSED")), ThreadGone)
    assert isinstance(errors.translate(BadRequest("Message to edit not found")), PermanentError)
    assert isinstance(errors.translate(Forbidden("bot was blocked by the user")), PermanentError)
    assert isinstance(errors.translate(InvalidToken("Unauthorized")), PermanentError)
    limited = errors.translate(RetryAfter(3))
    assert isinstance(limited, RateLimited) and limited.retry_after == 3.0


async def test_server_errors_are_transient(started: Started) -> None:
    fake, adapter, _ = await started()
    fake.fail_next("sendMessage", 502)
    with pytest.raises(TransientError):
        await adapter.send(ThreadRef("telegram", str(OWNER)), _payload("hi"))


# --- webhook ---------------------------------------------------------------------------


async def test_webhook_checks_the_secret_token(started: Started) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/tg/hook"
    fake, _, queue = await started(
        config={
            "mode": "webhook",
            "webhook_url": url,
            "webhook_port": port,
            "webhook_secret": "s3cret-token",
        }
    )
    assert fake.webhook is not None and fake.webhook["secret_token"] == "s3cret-token"
    fake.user_message(OWNER, OWNER, "via webhook")
    msg = await _next(queue)
    assert isinstance(msg, UserMessage) and msg.text == "via webhook"

    forged = {
        "update_id": 1,
        "message": {
            "message_id": 9,
            "date": 0,
            "chat": {"id": OWNER, "type": "private"},
            "from": {"id": 666, "is_bot": False, "first_name": "Eve"},
            "text": "forged",
        },
    }
    async with aiohttp.ClientSession() as http:
        for headers in ({"X-Telegram-Bot-Api-Secret-Token": "wrong"}, {}):
            async with http.post(url, json=forged, headers=headers) as resp:
                assert resp.status == 403
    await asyncio.sleep(0.1)
    assert queue.empty()
