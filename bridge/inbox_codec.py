"""What travels in an inbox item (`bridge/inbox.py`), as JSON: chat events and requests.

A chat event is the seam's own vocabulary (`adapters/messages.py`): a `UserMessage`
or a `ButtonPress` as the gateway's adapter handed it over, already placed in its
thread, plus the bot's username (the receiving host never connects to the chat, and
`/cmd@bot` is parsed against it).  Attachments were fetched on the gateway (only for
owners, within the size cap) and travel as bytes (base64); one the gateway could not
fetch travels as what went wrong, so the receiving host says so exactly as if its own
download had failed.

Decoding trusts nothing: whatever is in the table (a bug, another version, anyone who
can write the database) is checked field by field and size by size, and anything
else is a `CodecError` — the worker logs it and marks the item failed.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Final, Literal

from adapters.messages import (
    Attachment,
    AttachmentTooLarge,
    AttachmentUnavailable,
    ButtonPress,
    Inbound,
    Sender,
    ThreadRef,
    UserMessage,
)

MAX_PAYLOAD: Final = 256 * 2**20  # characters of one item's JSON (base64 files included)
MAX_TEXT: Final = 1_000_000
MAX_FIELD: Final = 4096
MAX_ATTACHMENTS: Final = 20
MAX_DATA: Final = 64  # characters of button data (Telegram's limit, with room)


class CodecError(ValueError):
    """The payload is not a well-formed item of its kind."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """An attachment as the gateway fetched it: its bytes, or why it has none."""

    kind: Literal["image", "file"]
    name: str
    mime: str
    data: bytes | None = None
    too_large: tuple[int, int | None] | None = None  # (limit, size) when over the cap

    def attachment(self) -> Attachment:
        """An `Attachment` whose `fetch` gives these bytes (or the gateway's failure)."""
        data, too_large, name = self.data, self.too_large, self.name

        async def fetch(limit: int) -> bytes:
            if too_large is not None:
                raise AttachmentTooLarge(name, too_large[0], too_large[1])
            if data is None:
                raise AttachmentUnavailable(f"{name} could not be downloaded on the gateway")
            if len(data) > limit:
                raise AttachmentTooLarge(name, limit, len(data))
            return data

        size = len(self.data) if self.data is not None else None
        return Attachment(self.kind, self.name, self.mime, size, fetch)


@dataclass(frozen=True, slots=True)
class Event:
    """A chat event for this host, and the bot's username on the gateway."""

    event: Inbound
    bot: str


def _thread(t: ThreadRef) -> dict[str, Any]:
    return {"platform": t.platform, "chat_id": t.chat_id, "thread_id": t.thread_id}


def _sender(s: Sender) -> dict[str, Any]:
    return {"platform": s.platform, "user_id": s.user_id, "name": s.display_name}


def encode_message(msg: UserMessage, files: list[Fetched], bot: str) -> dict[str, Any]:
    return {
        "thread": _thread(msg.thread),
        "sender": _sender(msg.sender),
        "text": msg.text,
        "message_id": msg.message_id,
        "reply_to": msg.reply_to,
        "chat_type": msg.chat_type,
        "files": [
            {
                "kind": f.kind,
                "name": f.name,
                "mime": f.mime,
                "data": base64.b64encode(f.data).decode() if f.data is not None else None,
                "too_large": list(f.too_large) if f.too_large is not None else None,
            }
            for f in files
        ],
        "bot": bot,
    }


def encode_press(press: ButtonPress, bot: str) -> dict[str, Any]:
    return {
        "thread": _thread(press.thread),
        "sender": _sender(press.sender),
        "message_id": press.message_id,
        "data": press.data,
        "bot": bot,
    }


# --- decoding (untrusted) ------------------------------------------------------------


def loads(raw: str) -> dict[str, Any]:
    """The item's JSON object; `CodecError` for anything else."""
    if len(raw) > MAX_PAYLOAD:
        raise CodecError(f"payload of {len(raw)} characters is over the limit")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise CodecError(f"not JSON: {type(e).__name__}") from None
    if not isinstance(value, dict):
        raise CodecError("not a JSON object")
    return value


def text(obj: dict[str, Any], key: str, *, limit: int = MAX_FIELD, empty: bool = True) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or len(value) > limit or (not empty and not value):
        raise CodecError(f"{key}: not a string of at most {limit} characters")
    return value


def optional_text(obj: dict[str, Any], key: str) -> str | None:
    return None if obj.get(key) is None else text(obj, key)


def _obj(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise CodecError(f"{key}: not an object")
    return value


def thread_of(obj: dict[str, Any], key: str = "thread") -> ThreadRef:
    t = _obj(obj, key)
    return ThreadRef(
        text(t, "platform", limit=32, empty=False),
        text(t, "chat_id", empty=False),
        optional_text(t, "thread_id"),
    )


def _sender_of(obj: dict[str, Any]) -> Sender:
    s = _obj(obj, "sender")
    return Sender(text(s, "platform", limit=32, empty=False), text(s, "user_id"), text(s, "name"))


def _file_of(f: object) -> Fetched:
    if not isinstance(f, dict):
        raise CodecError("files: not an object")
    kind = f.get("kind")
    if kind not in ("image", "file"):
        raise CodecError("files: unknown kind")
    data: bytes | None = None
    if f.get("data") is not None:
        try:
            data = base64.b64decode(text(f, "data", limit=MAX_PAYLOAD), validate=True)
        except (binascii.Error, ValueError):
            raise CodecError("files: data is not base64") from None
    too_large: tuple[int, int | None] | None = None
    raw = f.get("too_large")
    if raw is not None:
        ok = isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], int)
        if not ok or not (raw[1] is None or isinstance(raw[1], int)):
            raise CodecError("files: too_large is not [limit, size]")
        too_large = (raw[0], raw[1])
    return Fetched(kind, text(f, "name"), text(f, "mime"), data, too_large)


def decode_event(kind: str, raw: str) -> Event:
    """A "message" or "press" item → the event and the bot's username."""
    obj = loads(raw)
    thread, sender, bot = thread_of(obj), _sender_of(obj), text(obj, "bot", limit=256)
    if kind == "press":
        data = text(obj, "data", limit=MAX_DATA)
        return Event(ButtonPress(thread, sender, text(obj, "message_id", empty=False), data), bot)
    if kind != "message":
        raise CodecError(f"not a chat event: {kind[:32]!r}")
    files = obj.get("files", [])
    if not isinstance(files, list) or len(files) > MAX_ATTACHMENTS:
        raise CodecError("files: not a list of at most 20")
    chat_type = obj.get("chat_type")
    if chat_type not in ("private", "group"):
        raise CodecError("chat_type: not private or group")
    msg = UserMessage(
        thread,
        sender,
        text(obj, "text", limit=MAX_TEXT),
        text(obj, "message_id"),
        optional_text(obj, "reply_to"),
        chat_type,
        tuple(_file_of(f).attachment() for f in files),
    )
    return Event(msg, bot)


__all__ = [
    "CodecError",
    "Event",
    "Fetched",
    "decode_event",
    "encode_message",
    "encode_press",
    "loads",
    "optional_text",
    "text",
    "thread_of",
]
