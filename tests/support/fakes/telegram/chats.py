"""Chats and forum topics of a `FakeTelegram`: set up by the test, and the Bot API
methods on them (topics, chat actions, getChat, getFile, reactions)."""

from __future__ import annotations

import secrets
import time
from typing import Any

from .errors import bad_request
from .limits import CHAT_ACTIONS, DOWNLOAD_LIMIT, TOPIC_NAME_LIMIT
from .state import TOPIC_COLORS, ChatAction, ChatRecord, FakeMessage, FileRecord, Topic, Version
from .wire import json_param, maybe_int


class ChatsMixin:
    """Chats and topics: the test's set-up and the Bot API methods on them."""

    # ---------------------------------------------------------------- chats & topics
    def add_chat(
        self,
        chat_id: int,
        type: str = "private",  # noqa: A002 - Bot API name
        *,
        is_forum: bool = False,
        title: str | None = None,
        username: str | None = None,
        first_name: str | None = None,
    ) -> dict[str, Any]:
        """Register a chat (private, group, supergroup, channel); returns its Chat object."""
        if type not in ("private", "group", "supergroup", "channel"):
            raise ValueError(type)
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = ChatRecord(id=chat_id, type=type)
            self._chats[chat_id] = chat
        chat.type = type
        chat.is_forum = bool(is_forum)
        if type == "private":
            chat.first_name = first_name or chat.first_name or f"User {chat_id}"
        else:
            chat.title = title or chat.title or f"Chat {chat_id}"
        chat.username = username or chat.username
        return chat.to_api()

    def chat(self, chat_id: int) -> dict[str, Any]:
        return self._chat_or_raise(chat_id).to_api()

    def set_blocked(self, chat_id: int, blocked: bool = True) -> None:
        """The person blocked the bot: sends answer 403 "Forbidden: bot was blocked by the
        user"."""
        self._chat_or_raise(chat_id).blocked = blocked

    def add_topic(self, chat_id: int, name: str, *, icon_color: int = TOPIC_COLORS[0]) -> int:
        """A topic the person created (bypasses the API); returns its message_thread_id."""
        chat = self._chat_or_raise(chat_id)
        topic = self._create_topic(chat, name, icon_color, None, created_by_bot=False)
        self._changed.fire()
        return topic.thread_id

    def topics(self, chat_id: int, *, include_deleted: bool = False) -> dict[int, Topic]:
        chat = self._chat_or_raise(chat_id)
        return {k: t for k, t in chat.topics.items() if include_deleted or not t.deleted}

    def topic(self, chat_id: int, thread_id: int) -> Topic:
        return self._chat_or_raise(chat_id).topics[thread_id]

    # ---------------------------------------------------------------- internals: state
    def _chat_or_raise(self, chat_id: int) -> ChatRecord:
        try:
            return self._chats[chat_id]
        except KeyError:
            raise LookupError(f"unknown chat {chat_id}; add it with fake.add_chat()") from None

    def _next_id(self, chat: ChatRecord) -> int:
        mid = chat.next_id
        chat.next_id += 1
        return mid

    def _store_file(
        self,
        data: bytes,
        folder: str,
        ext: str,
        name: str | None,
        mime: str | None,
        *,
        width: int | None = None,
        height: int | None = None,
    ) -> FileRecord:
        n = next(self._file_ids)
        rec = FileRecord(
            file_id=f"FAKE-{folder[:3]}-{n}-{secrets.token_hex(8)}",
            file_unique_id=f"U{n}{secrets.token_hex(3)}",
            file_path=f"{folder}/file_{n}{ext}",
            data=bytes(data),
            file_name=name,
            mime_type=mime,
            width=width,
            height=height,
        )
        self._files[rec.file_id] = rec
        self._files_by_path[rec.file_path] = rec
        return rec

    def _create_topic(
        self,
        chat: ChatRecord,
        name: str,
        icon_color: int,
        emoji: str | None,
        *,
        created_by_bot: bool,
    ) -> Topic:
        thread_id = self._next_id(chat)
        topic = Topic(
            chat_id=chat.id,
            thread_id=thread_id,
            name=name,
            icon_color=icon_color,
            icon_custom_emoji_id=emoji,
            created_by_bot=created_by_bot,
            name_history=[name],
        )
        chat.topics[thread_id] = topic
        service = FakeMessage(
            chat_id=chat.id,
            message_id=thread_id,
            date=int(time.time()),
            from_bot=created_by_bot,
            kind="forum_topic_created",
            thread_id=thread_id,
            history=[Version(None, None, None, (), None, int(time.time()))],
            _chat=chat,
            _fake=self,
        )
        chat.messages[thread_id] = service
        return topic

    async def _api_createforumtopic(self, p: dict[str, Any], f: Any) -> Any:
        chat = self._chat_for(p)
        forum = (chat.type == "supergroup" and chat.is_forum) or (
            chat.type == "private" and self.has_topics_enabled
        )
        if not forum:
            raise bad_request("the chat is not a forum")
        name = p.get("name") or ""
        if not 1 <= len(name) <= TOPIC_NAME_LIMIT:
            raise bad_request("TOPIC_NAME_INVALID")  # fake's wording
        color = maybe_int(p.get("icon_color")) or TOPIC_COLORS[0]
        if color not in TOPIC_COLORS:
            raise bad_request("TOPIC_COLOR_INVALID")  # fake's wording
        topic = self._create_topic(
            chat, name, color, p.get("icon_custom_emoji_id") or None, created_by_bot=True
        )
        out: dict[str, Any] = {
            "message_thread_id": topic.thread_id,
            "name": topic.name,
            "icon_color": topic.icon_color,
        }
        if topic.icon_custom_emoji_id:
            out["icon_custom_emoji_id"] = topic.icon_custom_emoji_id
        return out

    def _topic_for(self, p: dict[str, Any]) -> Topic:
        chat = self._chat_for(p)
        tid = maybe_int(p.get("message_thread_id"))
        topic = chat.topics.get(tid) if tid else None
        if topic is None or topic.deleted:
            raise bad_request("message thread not found")
        return topic

    async def _api_editforumtopic(self, p: dict[str, Any], f: Any) -> Any:
        topic = self._topic_for(p)
        name = p.get("name")
        emoji = p.get("icon_custom_emoji_id")
        if name is not None and not 1 <= len(name) <= TOPIC_NAME_LIMIT:
            raise bad_request("TOPIC_NAME_INVALID")  # fake's wording
        changed = False
        if name is not None and name != topic.name:
            topic.name = name
            topic.name_history.append(name)
            changed = True
        if emoji is not None and (emoji or None) != topic.icon_custom_emoji_id:
            topic.icon_custom_emoji_id = emoji or None
            changed = True
        if not changed:
            raise bad_request("TOPIC_NOT_MODIFIED")
        return True

    async def _api_closeforumtopic(self, p: dict[str, Any], f: Any) -> Any:
        topic = self._topic_for(p)
        if topic.closed:
            raise bad_request("TOPIC_NOT_MODIFIED")
        topic.closed = True
        return True

    async def _api_reopenforumtopic(self, p: dict[str, Any], f: Any) -> Any:
        topic = self._topic_for(p)
        if not topic.closed:
            raise bad_request("TOPIC_NOT_MODIFIED")
        topic.closed = False
        return True

    async def _api_deleteforumtopic(self, p: dict[str, Any], f: Any) -> Any:
        topic = self._topic_for(p)
        topic.deleted = True
        for m in self._chats[topic.chat_id].messages.values():
            if m.thread_id == topic.thread_id:
                m.deleted = True
        return True

    async def _api_sendchataction(self, p: dict[str, Any], f: Any) -> Any:
        chat = self._chat_for(p)
        thread = self._thread_for(chat, p)
        action = p.get("action") or ""
        if action not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        self._actions.append(ChatAction(chat.id, action, thread, time.time()))
        return True

    async def _api_getchat(self, p: dict[str, Any], f: Any) -> Any:
        chat = self._chat_for(p, sending=False)
        return {
            **chat.to_api(),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    async def _api_getfile(self, p: dict[str, Any], f: Any) -> Any:
        rec = self._files.get(str(p.get("file_id") or ""))
        if rec is None:
            raise bad_request("invalid file_id")
        if len(rec.data) > DOWNLOAD_LIMIT:
            raise bad_request("file is too big")
        out: dict[str, Any] = {
            "file_id": rec.file_id,
            "file_unique_id": rec.file_unique_id,
            "file_path": rec.file_path,
        }
        if rec.announce_size:
            out["file_size"] = len(rec.data)
        return out

    async def _api_setmessagereaction(self, p: dict[str, Any], f: Any) -> Any:
        chat = self._chat_for(p)
        mid = maybe_int(p.get("message_id"))
        if mid is None or mid not in chat.messages or chat.messages[mid].deleted:
            raise bad_request("message to react not found")  # fake's wording
        reaction = json_param(p["reaction"], "reaction") if p.get("reaction") else []
        self.reactions.append({"chat_id": chat.id, "message_id": mid, "reaction": reaction})
        return True
