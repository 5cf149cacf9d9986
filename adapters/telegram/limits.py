"""Telegram's sizes and rates, in one place.

Sizes come from the Bot API reference (https://core.telegram.org/bots/api):
`sendMessage.text` is "1-4096 characters after entities parsing", a media `caption`
"0-1024 characters after entities parsing", `InlineKeyboardButton.callback_data`
"1-64 bytes", bots upload files up to 50 MB.  Telegram counts message length in
UTF-16 code units (its clients and TDLib do), so we count that way too: an emoji
outside the BMP costs two.

Rates are not published as exact numbers; these are the ones in Telegram's bot FAQ
("How can I message all of my bot's subscribers at once?", core.telegram.org/bots/faq):
avoid more than one message per second in a single chat (short bursts are tolerated,
we allow 3), no more than 20 messages per minute in one group, about 30 messages per
second overall.  Edits count against the same budgets.  Over the limit Telegram answers
429 with `retry_after`, which the outbox honours.
"""

from __future__ import annotations

from typing import Final

from adapters.base import Capabilities

MAX_TEXT: Final = 4096  # visible UTF-16 code units per message
MAX_CAPTION: Final = 1024  # visible UTF-16 code units per document caption
MAX_CALLBACK_DATA: Final = 64  # bytes (UTF-8) of InlineKeyboardButton.callback_data
MAX_UPLOAD_BYTES: Final = 50 * 1024 * 1024
MAX_TOPIC_NAME: Final = 128  # createForumTopic name: 1-128 characters
MAX_COMMAND_DESCRIPTION: Final = 256  # setMyCommands BotCommand.description

PER_CHAT_RATE: Final = 1.0  # messages per second in one chat
PER_CHAT_BURST: Final = 3
GROUP_PER_MINUTE: Final = 20  # messages per minute in one group or supergroup
GLOBAL_RATE: Final = 30.0  # messages per second across all chats
DRAFT_RATE: Final = 4.0  # sendMessageDraft updates per second per chat (our choice, unpublished)

CAPABILITIES: Final = Capabilities(
    native_stream=True,
    per_chat_rate=PER_CHAT_RATE,
    per_chat_burst=PER_CHAT_BURST,
    group_per_minute=GROUP_PER_MINUTE,
    global_rate=GLOBAL_RATE,
    draft_rate=DRAFT_RATE,
)


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2
