"""Telegram inbound parsing: PTB `Update`s → the bridge's `UserMessage` / `ButtonPress`.

Pure functions, no I/O: this is the only place that looks inside python-telegram-bot
objects on the way in, so no raw PTB object gets past the adapter.  Attachments are
described here as `FileRef`s (which file, how big, what kind); the adapter wraps
them as lazy `Attachment`s that the bridge downloads after its access check.
Anything the bridge should not see — edited messages, channel posts, service
messages (topic created, member joined…), messages from bots — parses to ``None``
and is logged at debug level by the caller.

python-telegram-bot builds its objects from the JSON without checking types, so a
malformed update can carry ``None`` or a dict where an id belongs: every field used
is read through `adapters.payload`, and an update missing what it needs is ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from telegram import CallbackQuery, Chat, Document, Message, PhotoSize, Update, User

from adapters import payload
from adapters.download import FileRef
from adapters.messages import ButtonPress, Sender, ThreadRef, UserMessage

PLATFORM = "telegram"

# Telegram photos are recompressed (≤ 2560 px), so anything bigger is junk.
MAX_PHOTO_BYTES = 10 * 1024 * 1024
# getFile on the public Bot API serves at most 20 MB.
MAX_FILE_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """A user message whose attachments still have to be downloaded."""

    message: UserMessage
    files: tuple[FileRef, ...] = ()


def sender_of(user: User) -> Sender | None:
    user_id = payload.integer(user.id)
    if user_id is None:
        return None
    username = payload.text(user.username)
    name = payload.text(user.first_name) or (f"@{username}" if username else str(user_id))
    return Sender(platform=PLATFORM, user_id=str(user_id), display_name=name)


def thread_of(message: Message) -> ThreadRef | None:
    """The chat plus, for messages inside a forum topic, the topic id.

    Outside forums `message_thread_id` can also name a reply thread; only
    `is_topic_message` makes it a topic."""
    chat_id = payload.integer(getattr(message.chat, "id", None))
    if chat_id is None:
        return None
    topic = payload.integer(message.message_thread_id)
    thread_id = str(topic) if message.is_topic_message is True and topic else None
    return ThreadRef(platform=PLATFORM, chat_id=str(chat_id), thread_id=thread_id)


def chat_type_of(chat: Chat | None) -> Literal["private", "group"] | None:
    if not isinstance(chat, Chat):
        return None
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
    if not isinstance(reply, Message) or payload.integer(reply.message_id) is None:
        return None
    if message.is_topic_message and (
        reply.message_id == message.message_thread_id or reply.forum_topic_created is not None
    ):
        return None
    return str(reply.message_id)


def _photo_rank(p: PhotoSize) -> tuple[int, int]:
    width, height = payload.integer(p.width) or 0, payload.integer(p.height) or 0
    return payload.integer(p.file_size) or 0, width * height


def files_of(message: Message) -> tuple[FileRef, ...]:
    files: list[FileRef] = []
    photos = [
        p
        for p in (message.photo if isinstance(message.photo, tuple | list) else ())
        if isinstance(p, PhotoSize) and payload.ident(p.file_id)
    ]
    if photos:
        largest = max(photos, key=_photo_rank)
        files.append(
            FileRef(
                kind="image",
                source=payload.text(largest.file_id),
                name=f"photo_{message.message_id}.jpg",
                mime="image/jpeg",
                size=payload.integer(largest.file_size),
                limit=MAX_PHOTO_BYTES,
            )
        )
    doc = message.document
    if isinstance(doc, Document) and payload.ident(doc.file_id):
        files.append(
            FileRef(
                kind="file",
                source=payload.text(doc.file_id),
                name=payload.text(doc.file_name) or f"file_{message.message_id}",
                mime=payload.text(doc.mime_type) or "application/octet-stream",
                size=payload.integer(doc.file_size),
                limit=MAX_FILE_BYTES,
            )
        )
    return tuple(files)


def parse_message(update: Update) -> ParsedMessage | None:
    """A new message from a person, or ``None`` for everything the bridge ignores."""
    message = update.message  # not edited_message / channel_post: those are ignored
    if not isinstance(message, Message) or payload.integer(message.message_id) is None:
        return None
    user = message.from_user
    if not isinstance(user, User) or user.is_bot is not False:
        return None  # bots, anonymous admins (GroupAnonymousBot), channel forwards
    chat_type = chat_type_of(message.chat)
    thread, sender = thread_of(message), sender_of(user)
    if chat_type is None or thread is None or sender is None:
        return None
    text = payload.text(message.text) or payload.text(message.caption)
    files = files_of(message)
    if not text and not files:
        return None  # service messages, stickers, voice, polls…
    msg = UserMessage(
        thread=thread,
        sender=sender,
        text=text,
        message_id=str(message.message_id),
        reply_to=reply_to_of(message),
        chat_type=chat_type,
    )
    return payload.clean(ParsedMessage(message=msg, files=files))


def parse_callback(query: CallbackQuery) -> ButtonPress | None:
    """A press on one of our inline buttons, or ``None`` when it can't be placed.

    `query.message` is missing for inline-mode messages and is an
    `InaccessibleMessage` (no topic information) for very old ones."""
    message, data = query.message, payload.text(query.data)
    if not isinstance(message, Message) or not data or not isinstance(query.from_user, User):
        return None
    thread, sender = thread_of(message), sender_of(query.from_user)
    if thread is None or sender is None or payload.integer(message.message_id) is None:
        return None
    return ButtonPress(thread=thread, sender=sender, message_id=str(message.message_id), data=data)
