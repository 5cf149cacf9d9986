"""The Telegram `ChatAdapter`: python-telegram-bot 22 wired to the bridge's seam.

Owns the PTB `Application`; its updates go through `adapters.telegram.receiver` (long
polling by default, a webhook in webhook mode) to the bridge's sink.  Here: the
outgoing side — rendered outbox rows delivered with sendMessage / sendDocument /
editMessageText / sendMessageDraft — and threads.  Sessions live in forum topics
where the chat allows them and in reply chains where it does not (or where Telegram
refuses topics at runtime: a failed `createForumTopic` or an unusable new topic makes
the chat use reply chains for an hour, `TOPIC_RETRY_S`).  Every PTB error is translated into the outbox's vocabulary
(`RateLimited`, `TransientError`, `PermanentError`, `NotModified`, `ThreadGone`) by
`adapters.telegram.errors`; the bot token never appears in our messages or logs.
"""

from __future__ import annotations

import base64
import html
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import replace
from typing import Any

from telegram import (
    InlineKeyboardMarkup,
    InputFile,
    LinkPreviewOptions,
    ReplyParameters,
)
from telegram.error import TelegramError
from telegram.ext import Application

from adapters.base import (
    ChatAdapter,
    InboundSink,
    NotModified,
    PermanentError,
    ThreadGone,
)
from adapters.messages import ChatCommand, Outbound, Rendered, ThreadRef
from adapters.telegram import client, limits
from adapters.telegram import render as tg_render
from adapters.telegram.config import TelegramConfig
from adapters.telegram.errors import TelegramErrors
from adapters.telegram.receiver import Receiver

log = logging.getLogger(__name__)

TOPIC_RETRY_S = 3600.0  # after createForumTopic failed in a chat, use reply chains this long
FIND_SENT_IDS = 10  # message ids after our newest known one checked for a lost send


def _markup(payload: dict[str, Any]) -> InlineKeyboardMarkup | None:
    raw = payload.get("reply_markup")
    return InlineKeyboardMarkup.de_json(raw, None) if raw else None


class TelegramAdapter(ChatAdapter):
    platform = "telegram"

    def __init__(self, config: TelegramConfig, *, owners_hint: Sequence[str] = ()) -> None:
        self.config = config
        self.owners_hint = tuple(o for o in owners_hint if o.startswith("telegram:"))
        self.capabilities = replace(limits.CAPABILITIES, native_stream=config.use_drafts)
        self.username = ""
        self.has_topics_enabled = False
        self.errors = TelegramErrors(config.token)
        self._app: Application[Any, Any, Any, Any, Any, Any] | None = None
        self.receiver = Receiver(config, self.errors, lambda: self.app.bot)
        self._no_topics: dict[str, float] = {}  # chat → monotonic time topics failed
        self._no_drafts: set[str] = set()  # chats where sendMessageDraft was refused
        self._forum: dict[str, bool] = {}  # supergroup → is_forum
        self._half_open: dict[tuple[str, str], ThreadRef] = {}  # topic made, header not yet sent
        self._commands: tuple[ChatCommand, ...] = ()

    def add_owner(self, user_id: str) -> None:
        key = f"telegram:{user_id}"
        if key not in self.owners_hint:
            self.owners_hint = (*self.owners_hint, key)

    def remove_owner(self, user_id: str) -> None:
        key = f"telegram:{user_id}"
        self.owners_hint = tuple(o for o in self.owners_hint if o != key)

    def set_commands(self, commands: Sequence[ChatCommand]) -> None:
        self._commands = tuple(commands)

    def set_receive_gate(self, gate: Callable[[], bool]) -> None:
        """Take updates only while `gate()` (this host is the gateway): see
        `adapters.telegram.client.TolerantBot`.  Takes effect at the next `start`."""
        self.receiver.gate = gate

    # --- lifecycle --------------------------------------------------------------------

    @property
    def app(self) -> Application[Any, Any, Any, Any, Any, Any]:
        if self._app is None:
            raise RuntimeError("TelegramAdapter is not started")
        return self._app

    async def start(self, sink: InboundSink) -> None:
        self.receiver.sink = sink
        self._app = app = client.build_application(self.config)
        self.receiver.register(app)
        try:
            await self.errors.call(app.initialize)  # getMe
            me = app.bot.bot
            self.username = me.username or ""
            self.has_topics_enabled = bool(me.has_topics_enabled)
            if self._commands:  # without a list (nothing but the adapter) the menu stays
                try:
                    await app.bot.set_my_commands(client.menu(self._commands))
                except TelegramError as e:
                    log.warning("setMyCommands failed: %s", self.errors.redact(str(e)))
            await app.start()
            await self.errors.call(lambda: self.receiver.start_updates(app))
        except BaseException:
            await self._shutdown()
            raise
        log.info(
            "Telegram bot @%s up (%s, topics %s)%s",
            self.username,
            self.config.mode,
            "on" if self.has_topics_enabled else "off",
            "" if self.owners_hint else "; no Telegram owner configured yet: use `threadline pair`",
        )

    async def stop(self) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        app, self._app = self._app, None
        if app is None:
            return
        try:
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()
            await app.shutdown()
        except Exception as e:  # stopping must not fail the daemon's shutdown
            log.warning("stopping Telegram cleanly failed: %s", self.errors.redact(repr(e)))

    # --- threads ----------------------------------------------------------------------

    async def _topics_usable(self, chat_id: str) -> bool:
        failed_at = self._no_topics.get(chat_id)
        if failed_at is not None and time.monotonic() - failed_at < TOPIC_RETRY_S:
            return False
        if not self.is_group(chat_id):
            return self.has_topics_enabled
        if chat_id not in self._forum:
            try:
                chat = await self.errors.call(lambda: self.app.bot.get_chat(int(chat_id)))
                self._forum[chat_id] = bool(chat.is_forum)
            except PermanentError:
                self._forum[chat_id] = False
        return self._forum[chat_id]

    async def open_thread(
        self,
        chat_id: str,
        title: str,
        header: Outbound,
        *,
        prefer_topic: bool = True,
        on_created: Callable[[ThreadRef], None] | None = None,
    ) -> tuple[ThreadRef, str | None]:
        parts = self.render(header)
        name = " ".join(title.split())[: limits.MAX_TOPIC_NAME] or "session"
        if prefer_topic and await self._topics_usable(chat_id):
            key = (chat_id, name)
            thread = self._half_open.pop(key, None)
            try:
                if thread is None:
                    topic = await self.errors.call(
                        lambda: self.app.bot.create_forum_topic(int(chat_id), name)
                    )
                    thread = ThreadRef(self.platform, chat_id, str(topic.message_thread_id))
                self._half_open[key] = thread  # a retry after a 429 reuses the topic
                if on_created is not None:
                    on_created(thread)
                header_id = await self._send_all(thread, parts)
                del self._half_open[key]
                return thread, header_id
            except (PermanentError, ThreadGone) as e:
                self._half_open.pop(key, None)
                self._no_topics[chat_id] = time.monotonic()
                log.warning("topics unusable in chat %s (%s); using reply chains", chat_id, e)
                if thread is not None:  # created but unusable: don't leave an empty topic
                    await self._delete_topic(thread)
        # Reply chain: the header (titled) is the root every session message replies to.
        first, rest = parts[0], parts[1:]
        if "text" in first.payload:
            titled = f"<b>{html.escape(name, quote=False)}</b>\n{first.payload['text']}"
            if limits.utf16_len(tg_render.visible_text(titled)) <= limits.MAX_TEXT:
                first = Rendered({**first.payload, "text": titled})
        header_id = await self.send(ThreadRef(self.platform, chat_id), first)
        thread = ThreadRef.reply_chain(self.platform, chat_id, header_id)
        await self._send_all(thread, rest)
        return thread, header_id

    async def _delete_topic(self, thread: ThreadRef) -> None:
        try:
            await self.app.bot.delete_forum_topic(int(thread.chat_id), int(thread.thread_id or 0))
        except TelegramError as e:
            log.debug("deleting unusable topic %s failed: %s", thread.key, e)

    async def _send_all(self, thread: ThreadRef, parts: Sequence[Rendered]) -> str | None:
        first: str | None = None
        for part in parts:
            mid = await self.send(thread, part)
            first = first or mid
        return first

    async def close_thread(self, thread: ThreadRef) -> None:
        if thread.kind != "thread":
            return
        try:
            await self.errors.call(
                lambda: self.app.bot.close_forum_topic(
                    int(thread.chat_id), int(thread.thread_id or 0)
                )
            )
        except Exception as e:  # already closed, deleted, no rights: nothing to undo
            log.info("closing topic %s failed: %s", thread.key, e)

    def thread_link(self, thread: ThreadRef) -> str | None:
        if not thread.chat_id.startswith("-100") or not thread.root:
            return None  # private chats and basic groups have no public message links
        return f"https://t.me/c/{thread.chat_id[4:]}/{thread.root}"

    def default_chat(self, origin: ThreadRef) -> str:
        return str(self.config.chat_id) if self.config.chat_id else origin.chat_id

    def is_group(self, chat_id: str) -> bool:
        return chat_id.startswith("-")

    def supports_draft(self, thread: ThreadRef) -> bool:
        return (
            self.config.use_drafts
            and not self.is_group(thread.chat_id)
            and thread.chat_id not in self._no_drafts
        )

    # --- outgoing ---------------------------------------------------------------------

    def render(self, msg: Outbound) -> list[Rendered]:
        return tg_render.render(msg)

    def render_edit(self, msg: Outbound) -> Rendered:
        return tg_render.render_edit(msg)

    def _where(self, thread: ThreadRef) -> dict[str, Any]:
        kw: dict[str, Any] = {"chat_id": int(thread.chat_id)}
        if thread.kind == "reply":
            kw["reply_parameters"] = ReplyParameters(
                message_id=int(thread.root or 0), allow_sending_without_reply=True
            )
        elif thread.kind == "thread":
            kw["message_thread_id"] = int(thread.root or 0)
        return kw

    async def send(self, thread: ThreadRef, msg: Rendered) -> str:
        try:
            return await self._send(thread, msg.payload)
        except ThreadGone as e:
            # We close a session's topic on /end; /resume then posts into it again.
            if "topic_closed" not in str(e).lower() or not await self._reopen(thread):
                raise
            return await self._send(thread, msg.payload)

    async def _send(self, thread: ThreadRef, p: dict[str, Any]) -> str:
        bot = self.app.bot
        kw = {**self._where(thread), "disable_notification": bool(p.get("disable_notification"))}
        if (markup := _markup(p)) is not None:
            kw["reply_markup"] = markup
        if "document" in p:
            doc = p["document"]
            data = base64.b64decode(doc["data_b64"])
            kw["document"] = InputFile(data, filename=doc.get("name") or "file")
            kw.update(caption=doc.get("caption") or None, parse_mode=p.get("parse_mode"))
            sent = await self.errors.call_html(bot.send_document, kw, "caption")
        else:
            kw.update(
                text=p["text"],
                parse_mode=p.get("parse_mode", "HTML"),
                link_preview_options=LinkPreviewOptions(is_disabled=not p.get("link_preview")),
            )
            sent = await self.errors.call_html(bot.send_message, kw, "text")
        return str(sent.message_id)

    async def _reopen(self, thread: ThreadRef) -> bool:
        try:
            await self.errors.call(
                lambda: self.app.bot.reopen_forum_topic(
                    int(thread.chat_id), int(thread.thread_id or 0)
                )
            )
        except (PermanentError, ThreadGone):
            return False
        log.info("reopened topic %s to post into it", thread.key)
        return True

    async def edit(self, thread: ThreadRef, message_id: str, msg: Rendered) -> None:
        p = msg.payload
        # An absent markup is an empty one: buttons disappear once a prompt is decided.
        kw: dict[str, Any] = {
            "chat_id": int(thread.chat_id),
            "message_id": int(message_id),
            "reply_markup": _markup(p) or InlineKeyboardMarkup(()),
            "parse_mode": p.get("parse_mode", "HTML"),
        }
        if "document" in p:
            kw["caption"] = p["document"].get("caption") or ""
            await self.errors.call_html(self.app.bot.edit_message_caption, kw, "caption")
            return
        kw["text"] = p["text"]
        kw["link_preview_options"] = LinkPreviewOptions(is_disabled=not p.get("link_preview"))
        await self.errors.call_html(self.app.bot.edit_message_text, kw, "text")

    async def draft(self, thread: ThreadRef, draft_id: int, msg: Rendered) -> None:
        p = msg.payload
        kw: dict[str, Any] = {
            "chat_id": int(thread.chat_id),
            "draft_id": draft_id or 1,  # 0 is refused by Telegram
            "text": p.get("text") or "…",
            "parse_mode": p.get("parse_mode", "HTML"),
        }
        if thread.kind == "thread":
            kw["message_thread_id"] = int(thread.root or 0)
        try:
            await self.errors.call_html(self.app.bot.send_message_draft, kw, "text")
        except PermanentError:
            # e.g. TEXTDRAFT_PEER_INVALID or "only for bots with topic mode": stream by
            # editing in this chat from the next turn on.
            self._no_drafts.add(thread.chat_id)
            raise

    async def delete(self, thread: ThreadRef, message_id: str) -> None:
        try:
            await self.errors.call(
                lambda: self.app.bot.delete_message(int(thread.chat_id), int(message_id))
            )
        except PermanentError as e:
            log.info("deleting %s/%s failed: %s", thread.chat_id, message_id, e)

    async def find_sent(
        self,
        thread: ThreadRef,
        msg: Rendered,
        *,
        after: str | None,
        ours: Collection[str],
        pace: Callable[[], Awaitable[None]],
    ) -> str | None:
        """The Bot API has no idempotent send and no history for bots, but message ids
        in a chat grow: the lost message, if it arrived, is one of the few ids after our
        newest known one.  Each candidate (not a known message of ours) is edited to
        exactly the content we meant to send: "message is not modified" means it is our
        message with that content; anything else ("not found", "can't be edited": a
        person's message, a topic event) means it is not.  Documents are not checked."""
        if after is None:
            # No outbox message of ours before the attempt (the chat's first, e.g. the
            # notice right after a new topic's header): start from our oldest known
            # message (thread headers) instead.
            known = [int(m) for m in ours if m.isdigit()]
            after = str(min(known) - 1) if known else None
        if "text" not in msg.payload or after is None or not after.isdigit():
            return None
        for mid in map(str, range(int(after) + 1, int(after) + 1 + FIND_SENT_IDS)):
            if mid in ours:
                continue
            await pace()
            try:
                await self.edit(thread, mid, msg)
            except NotModified:
                return mid
            except PermanentError:
                continue
            # It was a message of ours we had no record of; it now shows this one.
            log.warning("message %s/%s took an unrecorded send's text", thread.chat_id, mid)
            return mid
        return None
