"""The person's side of a `FakeTelegram` (Python methods, not HTTP): messages, photos,
documents and button presses pushed as updates, and the transcript tests read and wait on."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .entities import utf16_len
from .messages import image_size
from .state import TINY_PNG, CallbackQueryRecord, ChatAction, Draft, FakeMessage, Version
from .updates import scope_key


class PersonMixin:
    """The person typing, sending files and pressing buttons; the transcript."""

    # ---------------------------------------------------------------- the person
    def user_message(
        self,
        chat_id: int,
        from_user: int | Mapping[str, Any],
        text: str,
        message_thread_id: int | None = None,
        reply_to: int | None = None,
        chat_type: str | None = None,
        is_forum: bool | None = None,
        *,
        entities: Iterable[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The person sends `text`; returns the Message dict that was queued as an update.

        Unknown chats are registered (type `chat_type`, default "private"); a text that
        starts with "/" gets a ``bot_command`` entity at offset 0.  `reply_to` is a
        message_id in the same chat; a reply without a thread id lands in the replied
        message's thread, as in Telegram.
        """
        ents = [dict(e) for e in entities or ()]
        m = re.match(r"/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,64})?", text)
        if m and not any(e.get("type") == "bot_command" for e in ents):
            ents.insert(0, {"type": "bot_command", "offset": 0, "length": utf16_len(m.group(0))})
        version = Version(text, text, None, tuple(ents), None, int(time.time()))
        msg = self._person_message(
            chat_id, from_user, "text", version, message_thread_id, reply_to, chat_type, is_forum
        )
        return self._queue_message_update(msg)

    def user_photo(
        self,
        chat_id: int,
        from_user: int | Mapping[str, Any],
        data: bytes = TINY_PNG,
        caption: str | None = None,
        message_thread_id: int | None = None,
        reply_to: int | None = None,
        chat_type: str | None = None,
        is_forum: bool | None = None,
        *,
        width: int | None = None,
        height: int | None = None,
    ) -> dict[str, Any]:
        """The person sends a photo (bytes downloadable via getFile)."""
        w, h = image_size(data) or (800, 600)
        rec = self._store_file(
            data, "photos", ".jpg", None, "image/jpeg", width=width or w, height=height or h
        )
        version = Version(caption, caption, None, (), None, int(time.time()))
        msg = self._person_message(
            chat_id, from_user, "photo", version, message_thread_id, reply_to, chat_type, is_forum
        )
        msg.file = rec
        return self._queue_message_update(msg)

    def user_document(
        self,
        chat_id: int,
        from_user: int | Mapping[str, Any],
        data: bytes,
        file_name: str = "file.txt",
        mime_type: str = "text/plain",
        caption: str | None = None,
        message_thread_id: int | None = None,
        reply_to: int | None = None,
        chat_type: str | None = None,
        is_forum: bool | None = None,
        *,
        announce_size: bool = True,
    ) -> dict[str, Any]:
        """The person sends a file (bytes downloadable via getFile)."""
        ext = "." + file_name.rsplit(".", 1)[1] if "." in file_name else ""
        rec = self._store_file(data, "documents", ext, file_name, mime_type)
        rec.announce_size = announce_size
        version = Version(caption, caption, None, (), None, int(time.time()))
        msg = self._person_message(
            chat_id,
            from_user,
            "document",
            version,
            message_thread_id,
            reply_to,
            chat_type,
            is_forum,
        )
        msg.file = rec
        return self._queue_message_update(msg)

    def press_button(
        self,
        chat_id: int,
        message_id: int,
        callback_data: str,
        from_user: int | Mapping[str, Any],
        *,
        strict: bool = True,
    ) -> str:
        """The person presses an inline button; returns the callback query id.

        With `strict` (default) the message must exist, not be deleted, and currently
        carry a button with this callback_data — else LookupError (the person cannot
        press a button that is not there)."""
        chat = self._chat_or_raise(chat_id)
        msg = chat.messages.get(message_id)
        if strict:
            if msg is None or msg.deleted:
                raise LookupError(f"no message {message_id} in chat {chat_id}")
            datas = [b.get("callback_data") for b in msg.buttons]
            if callback_data not in datas:
                raise LookupError(
                    f"message {message_id} has no button with callback_data {callback_data!r}"
                    f" (buttons: {msg.buttons})"
                )
        user = self._as_user(from_user)
        qid = str(next(self._cq_ids))
        query: dict[str, Any] = {
            "id": qid,
            "from": user,
            "chat_instance": str(abs(hash((self.bot_id, chat_id))) % 10**18),
            "data": callback_data,
        }
        if msg is not None and not msg.deleted:
            query["message"] = msg.to_api()
        self._callbacks[qid] = CallbackQueryRecord(
            id=qid,
            chat_id=chat_id,
            message_id=message_id,
            data=callback_data,
            from_user=user,
            created=self.clock(),
        )
        self.push_update({"callback_query": query})
        return qid

    def push_update(self, update: Mapping[str, Any]) -> dict[str, Any]:
        """Queue a raw update (``update_id`` is added); returns it."""
        upd = {"update_id": next(self._update_ids), **update}
        self._updates.append(upd)
        self._new_update.fire()
        self._changed.fire()
        return upd

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed (getUpdates offset) or delivered (webhook)."""
        return list(self._updates)

    def callback_answer(self, query_id: str) -> dict[str, Any] | None:
        """What the bot answered to a callback query (text, show_alert, url, cache_time),
        or None if it has not answered (yet)."""
        rec = self._callbacks.get(query_id)
        return rec.answer if rec else None

    def callback_query(self, query_id: str) -> CallbackQueryRecord:
        return self._callbacks[query_id]

    # ---------------------------------------------------------------- transcript
    def messages(
        self,
        chat_id: int,
        thread_id: int | None = None,
        *,
        include_user: bool = False,
        include_deleted: bool = False,
    ) -> list[FakeMessage]:
        """The bot's messages in `chat_id` in order (all threads, or only `thread_id`),
        in their current state.  Service messages (topic created) are left out."""
        chat = self._chats.get(chat_id)
        if chat is None:
            return []
        return [
            m
            for m in chat.messages.values()
            if (include_user or m.from_bot)
            and m.kind != "forum_topic_created"
            and (include_deleted or not m.deleted)
            and (thread_id is None or m.thread_id == thread_id)
        ]

    def message(self, chat_id: int, message_id: int) -> FakeMessage:
        return self._chat_or_raise(chat_id).messages[message_id]

    def all_bot_messages(self, *, include_deleted: bool = False) -> list[FakeMessage]:
        return [
            m
            for chat in self._chats.values()
            for m in self.messages(chat.id, include_deleted=include_deleted)
        ]

    def drafts(
        self, chat_id: int | None = None, draft_id: int | None = None, thread_id: int | None = None
    ) -> list[Draft]:
        """Every sendMessageDraft call, in order (filtered)."""
        return [
            d
            for d in self._drafts
            if (chat_id is None or d.chat_id == chat_id)
            and (draft_id is None or d.draft_id == draft_id)
            and (thread_id is None or d.thread_id == thread_id)
        ]

    def chat_actions(self, chat_id: int | None = None) -> list[ChatAction]:
        return [a for a in self._actions if chat_id is None or a.chat_id == chat_id]

    def commands(
        self, scope: Mapping[str, Any] | None = None, language_code: str = ""
    ) -> list[dict[str, Any]]:
        """The command list set with setMyCommands for this scope/language."""
        return list(self._commands.get((scope_key(scope), language_code), []))

    @property
    def webhook(self) -> dict[str, Any] | None:
        """The webhook set with setWebhook (url, secret_token, ...) or None."""
        return dict(self._webhook) if self._webhook else None

    def file_bytes(self, file_id: str) -> bytes:
        return self._files[file_id].data

    def reset_counters(self) -> None:
        self.calls.clear()
        self.count_429 = 0
        self.api_log.clear()

    async def wait_for(
        self,
        predicate: Callable[[FakeMessage], Any] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - the API the brief asks for
        *,
        chat_id: int | None = None,
        thread_id: int | None = None,
    ) -> FakeMessage:
        """Wait until a bot message (current state, not deleted) matches `predicate`;
        returns the first one.  Raises TimeoutError listing what was there."""

        def find() -> FakeMessage | None:
            chats = [chat_id] if chat_id is not None else list(self._chats)
            for cid in chats:
                for m in self.messages(cid, thread_id):
                    if predicate is None or predicate(m):
                        return m
            return None

        try:
            return await self.wait_until(find, timeout)
        except TimeoutError:
            seen = [
                (m.chat_id, m.message_id, m.thread_id, (m.visible_text or "")[:80])
                for m in self.all_bot_messages()
            ][-10:]
            raise TimeoutError(
                f"no bot message matched within {timeout}s; last bot messages: {seen}"
            ) from None

    async def wait_until(
        self,
        check: Callable[[], Any],
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> Any:
        """Wait until `check()` is truthy (re-checked on every change of the fake's state,
        and at least every 50 ms); returns its value, or raises TimeoutError."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s")
            await asyncio.wait([self._changed.future()], timeout=min(remaining, 0.05))

    # ---------------------------------------------------------------- internals: people
    def _as_user(self, u: int | Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(u, int):
            return {"id": u, "is_bot": False, "first_name": f"User {u}"}
        out = dict(u)
        out.setdefault("is_bot", False)
        out.setdefault("first_name", f"User {out['id']}")
        return out

    def _person_message(
        self,
        chat_id: int,
        from_user: int | Mapping[str, Any],
        kind: str,
        version: Version,
        thread_id: int | None,
        reply_to: int | None,
        chat_type: str | None,
        is_forum: bool | None,
    ) -> FakeMessage:
        user = self._as_user(from_user)
        chat = self._chats.get(chat_id)
        if chat is None or chat_type is not None:
            ctype = chat_type or (chat.type if chat else "private")
            forum = is_forum if is_forum is not None else (chat.is_forum if chat else False)
            self.add_chat(
                chat_id,
                ctype,
                is_forum=forum,
                first_name=user.get("first_name") if ctype == "private" else None,
                username=user.get("username") if ctype == "private" else None,
            )
            chat = self._chats[chat_id]
        elif is_forum is not None:
            chat.is_forum = is_forum
        if reply_to is not None:
            target = chat.messages.get(reply_to)
            if target is None or target.deleted:
                raise LookupError(f"no message {reply_to} in chat {chat_id} to reply to")
            if thread_id is None:
                thread_id = target.thread_id
        if thread_id is not None:
            topic = chat.topics.get(thread_id)
            if topic is None or topic.deleted:
                raise LookupError(
                    f"no topic {thread_id} in chat {chat_id}: create it first "
                    "(the bot's createForumTopic or fake.add_topic)"
                )
        msg = FakeMessage(
            chat_id=chat_id,
            message_id=self._next_id(chat),
            date=version.date,
            from_bot=False,
            kind=kind,
            thread_id=thread_id,
            reply_to=reply_to,
            from_user=user,
            history=[version],
            _chat=chat,
            _fake=self,
        )
        chat.messages[msg.message_id] = msg
        return msg

    def _queue_message_update(self, msg: FakeMessage) -> dict[str, Any]:
        api = msg.to_api()
        self.push_update({"message": api})
        return api
