"""What the fake holds: chats, messages and their versions, files, drafts, chat
actions, topics, callback queries, webhook deliveries, the API call log, and the
change signal waiters sleep on."""

from __future__ import annotations

import asyncio
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

TOPIC_COLORS = (7322096, 16766590, 13338331, 9367192, 16749490, 16478047)
# A 1x1 PNG, the default picture a person sends.
TINY_PNG = (
    b"\x89PNG\r\n\x1a\n"
    + struct.pack(">I", 13)
    + b"IHDR"
    + struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    + struct.pack(">I", zlib.crc32(b"IHDR" + struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)))
    + struct.pack(">I", len(zlib.compress(b"\x00\xff\x00\x00")))
    + b"IDAT"
    + zlib.compress(b"\x00\xff\x00\x00")
    + struct.pack(">I", zlib.crc32(b"IDAT" + zlib.compress(b"\x00\xff\x00\x00")))
    + struct.pack(">I", 0)
    + b"IEND"
    + struct.pack(">I", zlib.crc32(b"IEND"))
)


@dataclass
class Version:
    """One state of a message: text (raw, as sent), visible text, markup."""

    text: str | None
    visible_text: str | None
    parse_mode: str | None
    entities: tuple[dict[str, Any], ...]
    reply_markup: dict[str, Any] | None
    date: int


@dataclass
class FileRecord:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    file_name: str | None = None
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None
    announce_size: bool = True  # False: no file_size in the message (Telegram may omit it)


@dataclass(repr=False)
class FakeMessage:
    """A message in a chat, from the bot or from the person.

    `text` / `visible_text` / `parse_mode` / `entities` / `reply_markup` are the CURRENT
    state (for photos and documents, the caption); `history` holds every version, oldest
    first (``history[-1]`` is the current one).
    """

    chat_id: int
    message_id: int
    date: int
    from_bot: bool
    kind: str  # "text" | "photo" | "document" | "forum_topic_created"
    thread_id: int | None = None
    reply_to: int | None = None
    disable_notification: bool = False
    from_user: dict[str, Any] | None = None
    history: list[Version] = field(default_factory=list)
    edit_date: int | None = None
    deleted: bool = False
    file: FileRecord | None = None
    link_preview_options: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)  # raw parameters of the send
    _chat: Any = field(default=None, repr=False)
    _fake: Any = field(default=None, repr=False)

    def __repr__(self) -> str:
        who = "bot" if self.from_bot else f"user {self.from_user and self.from_user.get('id')}"
        extra = f" thread={self.thread_id}" if self.thread_id is not None else ""
        extra += f" reply_to={self.reply_to}" if self.reply_to is not None else ""
        extra += f" edits={self.edit_count}" if self.edit_count else ""
        extra += " DELETED" if self.deleted else ""
        extra += f" buttons={self.button_labels}" if self.buttons else ""
        return (
            f"<FakeMessage {self.chat_id}/{self.message_id} {who} {self.kind}{extra}: "
            f"{(self.visible_text or '')[:120]!r}>"
        )

    # current state ---------------------------------------------------------------
    @property
    def current(self) -> Version:
        return self.history[-1]

    @property
    def text(self) -> str | None:
        return self.current.text

    @property
    def visible_text(self) -> str | None:
        return self.current.visible_text

    @property
    def caption(self) -> str | None:
        return self.current.text if self.kind in ("photo", "document") else None

    @property
    def parse_mode(self) -> str | None:
        return self.current.parse_mode

    @property
    def entities(self) -> tuple[dict[str, Any], ...]:
        return self.current.entities

    @property
    def reply_markup(self) -> dict[str, Any] | None:
        return self.current.reply_markup

    @property
    def edit_count(self) -> int:
        return len(self.history) - 1

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """All inline buttons of the current markup, row by row, flattened."""
        markup = self.reply_markup or {}
        return [b for row in markup.get("inline_keyboard", []) for b in row]

    @property
    def button_labels(self) -> list[str]:
        return [b.get("text", "") for b in self.buttons]

    def callback_data(self, label: str) -> str:
        """callback_data of the (first) button whose text is `label`, or contains it."""
        for b in self.buttons:
            if b.get("text") == label and "callback_data" in b:
                return b["callback_data"]
        for b in self.buttons:
            if label in b.get("text", "") and "callback_data" in b:
                return b["callback_data"]
        raise LookupError(f"no button {label!r} in {self.button_labels}")

    def to_api(self, *, with_reply: bool = True) -> dict[str, Any]:
        """The Bot API Message object."""
        v = self.current
        msg: dict[str, Any] = {
            "message_id": self.message_id,
            "from": self._fake.bot_user() if self.from_bot else self.from_user,
            "chat": self._chat.to_api(),
            "date": self.date,
        }
        if self.thread_id is not None:
            msg["message_thread_id"] = self.thread_id
            if self._chat.type != "private" or self._fake.has_topics_enabled:
                msg["is_topic_message"] = True
        if self.kind == "text":
            msg["text"] = v.visible_text or ""
            if v.entities:
                msg["entities"] = list(v.entities)
        elif self.kind in ("photo", "document"):
            f = self.file
            assert f is not None
            if self.kind == "photo":
                msg["photo"] = [
                    {
                        "file_id": f.file_id,
                        "file_unique_id": f.file_unique_id,
                        "width": f.width or 1,
                        "height": f.height or 1,
                        "file_size": len(f.data),
                    }
                ]
            else:
                doc: dict[str, Any] = {
                    "file_id": f.file_id,
                    "file_unique_id": f.file_unique_id,
                }
                if f.announce_size:
                    doc["file_size"] = len(f.data)
                if f.file_name:
                    doc["file_name"] = f.file_name
                if f.mime_type:
                    doc["mime_type"] = f.mime_type
                msg["document"] = doc
            if v.visible_text:
                msg["caption"] = v.visible_text
                if v.entities:
                    msg["caption_entities"] = list(v.entities)
        elif self.kind == "forum_topic_created":
            topic = self._chat.topics.get(self.message_id)
            msg["forum_topic_created"] = {
                "name": topic.name if topic else "",
                "icon_color": topic.icon_color if topic else TOPIC_COLORS[0],
            }
        if v.reply_markup and "inline_keyboard" in v.reply_markup:
            msg["reply_markup"] = v.reply_markup
        if self.edit_date is not None:
            msg["edit_date"] = self.edit_date
        if with_reply and self.reply_to is not None:
            target = self._chat.messages.get(self.reply_to)
            if target is not None:
                msg["reply_to_message"] = target.to_api(with_reply=False)
        return msg


@dataclass
class Draft:
    """One sendMessageDraft call."""

    chat_id: int
    draft_id: int
    thread_id: int | None
    text: str | None
    visible_text: str
    parse_mode: str | None
    entities: tuple[dict[str, Any], ...]
    at: float  # time.time()


@dataclass
class ChatAction:
    chat_id: int
    action: str
    thread_id: int | None
    at: float


@dataclass
class Topic:
    chat_id: int
    thread_id: int
    name: str
    icon_color: int = TOPIC_COLORS[0]
    icon_custom_emoji_id: str | None = None
    closed: bool = False
    deleted: bool = False
    created_by_bot: bool = True
    name_history: list[str] = field(default_factory=list)


@dataclass
class CallbackQueryRecord:
    id: str
    chat_id: int
    message_id: int
    data: str
    from_user: dict[str, Any]
    created: float  # fake.clock()
    answer: dict[str, Any] | None = None  # text, show_alert, url, cache_time


@dataclass
class WebhookDelivery:
    update_id: int
    url: str
    status: int | None  # None: the connection failed
    error: str | None
    headers: dict[str, str]
    at: float


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]
    files: dict[str, int]  # field name -> size
    status: int = 200
    description: str | None = None
    at: float = 0.0


class _Signal:
    """A broadcast "something changed" for any number of waiters."""

    def __init__(self) -> None:
        self._fut: asyncio.Future[None] | None = None

    def fire(self) -> None:
        if self._fut is not None and not self._fut.done():
            self._fut.set_result(None)
        self._fut = None

    def future(self) -> asyncio.Future[None]:
        if self._fut is None or self._fut.done():
            self._fut = asyncio.get_running_loop().create_future()
        return self._fut


@dataclass
class ChatRecord:
    id: int
    type: str
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    is_forum: bool = False
    blocked: bool = False
    next_id: int = 1
    messages: dict[int, FakeMessage] = field(default_factory=dict)
    topics: dict[int, Topic] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.title:
            out["title"] = self.title
        if self.username:
            out["username"] = self.username
        if self.first_name:
            out["first_name"] = self.first_name
        if self.is_forum:
            out["is_forum"] = True
        return out
