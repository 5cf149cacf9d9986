"""Telegram inbound parsing: PTB `Update`s → the bridge's `UserMessage` / `ButtonPress`.

Pure functions, no I/O: this is the only place that looks inside python-telegram-bot
objects on the way in, so no raw PTB object gets past the adapter.  Attachments are
described here as `FileRef`s (which file, how big, what kind); the adapter downloads
them and attaches the bytes.  Anything the bridge should not see — edited messages,
channel posts, service messages (topic created, member joined…), messages from bots —
parses to ``None`` and is logged at debug level by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from telegram import CallbackQuery, Chat, Message, Update, User

from bridge.messages import ButtonPress, Sender, ThreadRef, UserMessage

PLATFORM = "telegram"

# Telegram photos are recompressed (≤ 2560 px), so anything bigger is junk.
MAX_PHOTO_BYTES = 10 * 1024 * 1024
# getFile on the public Bot API serves at most 20 MB.
MAX_FILE_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileRef:
    """An attachment to download: `file_id` for getFile, plus what it will become."""

    kind: Literal["image", "file"]
    file_id: str
    name: str
    mime: str
    size: int | None  # as announced by Telegram; None when unknown
    limit: int

    @property
    def too_big(self) -> bool:
        return self.size is not None and self.size > self.limit


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """A user message whose attachments still have to be downloaded."""

    message: UserMessage
    files: tuple[FileRef, ...] = ()


def sender_of(user: User) -> Sender:
    name = user.first_name or (f"@{user.username}" if user.username else str(user.id))
    return Sender(platform=PLATFORM, user_id=str(user.id), display_name=name)


def thread_of(message: Message) -> ThreadRef:
    """The chat plus, for messages inside a forum topic, the topic id.

    Outside forums `message_thread_id` can also name a reply thread; only
    `is_topic_message` makes it a topic."""
    thread_id = (
        str(message.message_thread_id)
        if message.is_topic_message and message.message_thread_id
        else None
    )
    return ThreadRef(platform=PLATFORM, chat_id=str(message.chat.id), thread_id=thread_id)


def chat_type_of(chat: Chat) -> Literal["private", "group"] | None:
    if chat.type == Chat.PRIVATE:
        return "private"
    if chat.type in (Chat.GROUP, Chat.SUPERGROUP):
        return "group"
    return None  # channels


def reply_to_of(message: Message) -> str | None:
    """The id of the message replied to — except the topic's own root.

    Inside a forum topic every message without an explicit reply carries the
    topic's service message (`forum_topic_created`) as `reply_to_message`."""
    reply = message.reply_to_message
    if reply is None:
        return None
    if message.is_topic_message and (
        reply.message_id == message.message_thread_id or reply.forum_topic_created is not None
    ):
        return None
    return str(reply.message_id)


def files_of(message: Message) -> tuple[FileRef, ...]:
    files: list[FileRef] = []
    if message.photo:
        largest = max(message.photo, key=lambda p: (p.file_size or 0, p.width * p.height))
        files.append(
            FileRef(
                kind="image",
                file_id=largest.file_id,
                name=f"photo_{message.message_id}.jpg",
                mime="image/jpeg",
                size=largest.file_size,
                limit=MAX_PHOTO_BYTES,
            )
        )
    if message.document is not None:
        doc = message.document
        files.append(
            FileRef(
                kind="file",
                file_id=doc.file_id,
                name=doc.file_name or f"file_{message.message_id}",
                mime=doc.mime_type or "application/octet-stream",
                size=doc.file_size,
                limit=MAX_FILE_BYTES,
            )
        )
    return tuple(files)


def parse_message(update: Update) -> ParsedMessage | None:
    """A new message from a person, or ``None`` for everything the bridge ignores."""
    message = update.message  # not edited_message / channel_post: those are ignored
    if message is None:
        return None
    user = message.from_user
    if user is None or user.is_bot:
        return None  # bots, anonymous admins (GroupAnonymousBot), channel forwards
    chat_type = chat_type_of(message.chat)
    if chat_type is None:
        return None
    text = message.text or message.caption or ""
    files = files_of(message)
    if not text and not files:
        return None  # service messages, stickers, voice, polls…
    msg = UserMessage(
        thread=thread_of(message),
        sender=sender_of(user),
        text=text,
        message_id=str(message.message_id),
        reply_to=reply_to_of(message),
        chat_type=chat_type,
    )
    return ParsedMessage(message=msg, files=files)


def parse_callback(query: CallbackQuery) -> ButtonPress | None:
    """A press on one of our inline buttons, or ``None`` when it can't be placed.

    `query.message` is missing for inline-mode messages and is an
    `InaccessibleMessage` (no topic information) for very old ones."""
    message = query.message
    if message is None or query.data is None or query.from_user is None:
        return None
    if not isinstance(message, Message):
        return None
    return ButtonPress(
        thread=thread_of(message),
        sender=sender_of(query.from_user),
        message_id=str(message.message_id),
        data=query.data,
    )
