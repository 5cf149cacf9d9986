"""Matrix inbound parsing: room events → the bridge's `UserMessage`, reactions → keys.

Pure functions over event dicts (nio's `event.source`, already decrypted by nio in an
encrypted room), no I/O: this is the only place that looks inside Matrix events on the
way in, so no raw event gets past the adapter.  A message in an `m.thread` belongs to
the thread rooted at the relation's `event_id` (the session header); a reply outside
threads names the message replied to, which the bridge maps to a session.  What the
bridge should not see parses to ``None``: our own events, edits (`m.replace`),
notices (bots talk in notices; answering them would loop), redacted and state events,
emotes, audio, video, stickers.  Attachments are described as `FileRef`s; the bridge
downloads (and decrypts) them through the adapter after its access check.  Fields are read through `adapters.payload`: an event
with a field missing or of the wrong type parses to ``None`` instead of raising.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters import payload
from adapters.download import FileRef
from adapters.messages import Sender, ThreadRef, UserMessage

PLATFORM = "matrix"
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_FILE_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    message: UserMessage
    files: tuple[FileRef, ...] = ()


@dataclass(frozen=True, slots=True)
class Reaction:
    room_id: str
    target: str  # the event reacted to
    key: str
    sender: str
    event_id: str = ""  # the reaction itself (a redaction of it takes it back)


@dataclass(frozen=True, slots=True)
class Redaction:
    room_id: str
    redacts: str  # the event taken back
    sender: str


def relation(content: dict[str, Any]) -> dict[str, Any]:
    rel = content.get("m.relates_to")
    return rel if isinstance(rel, dict) else {}


def thread_of(room_id: str, content: dict[str, Any]) -> ThreadRef:
    rel = relation(content)
    root = rel.get("event_id")
    if rel.get("rel_type") == "m.thread" and isinstance(root, str) and root:
        return ThreadRef(PLATFORM, room_id, root)
    return ThreadRef(PLATFORM, room_id, None)


def reply_to_of(content: dict[str, Any]) -> str | None:
    """The event a reply answers; not the thread fallback's "reply" to the latest."""
    rel = relation(content)
    if rel.get("rel_type") == "m.thread" and rel.get("is_falling_back", True):
        return None
    reply = rel.get("m.in_reply_to")
    event_id = reply.get("event_id") if isinstance(reply, dict) else None
    return event_id if isinstance(event_id, str) and event_id else None


def strip_reply_fallback(body: str) -> str:
    """Drop the "> <@user> quoted text" lines older clients put before a reply."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> "):
        return body
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    return "\n".join(lines[i:]).lstrip("\n")


def sender_of(user_id: str, display_name: str = "") -> Sender:
    """The sender; display names come from room state, as untrusted as any payload."""
    return payload.clean(Sender(PLATFORM, user_id, display_name or user_id))


def _crypto(raw: object) -> dict[str, Any] | None:
    """An encrypted file's `file` object (spec "Sending encrypted attachments"): only
    the fields decryption reads, as scrubbed strings ("" when missing: the download
    then fails to decrypt and says so)."""
    if not isinstance(raw, dict):
        return None
    key, hashes = payload.mapping(raw.get("key")), payload.mapping(raw.get("hashes"))
    return {
        "url": payload.scrub(payload.text(raw.get("url"))),
        "key": {"k": payload.scrub(payload.text(key.get("k")))},
        "iv": payload.scrub(payload.text(raw.get("iv"))),
        "hashes": {"sha256": payload.scrub(payload.text(hashes.get("sha256")))},
    }


def _file_ref(content: dict[str, Any], msgtype: str, event_id: str) -> FileRef | None:
    raw_info = content.get("info")
    info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
    crypto = _crypto(content.get("file"))
    url = (crypto or content).get("url")
    if not isinstance(url, str) or not url.startswith("mxc://"):
        return None
    image = msgtype == "m.image"
    mime = payload.text(info.get("mimetype")) or (
        "image/jpeg" if image else "application/octet-stream"
    )
    name = (
        payload.text(content.get("filename"))
        or payload.text(content.get("body"))
        or f"file_{event_id[1:9]}"
    )
    size = payload.integer(info.get("size"))
    return FileRef(
        kind="image" if image else "file",
        source=url,
        name=name.replace("/", "_")[:200],
        mime=mime,
        size=size,
        limit=MAX_PHOTO_BYTES if image else MAX_FILE_BYTES,
        crypto=crypto,
    )


def parse_message(
    room_id: str,
    event: dict[str, Any],
    *,
    own_user: str,
    display_name: str = "",
    member_count: int = 2,
) -> ParsedMessage | None:
    """A person's new message, or ``None`` for everything the bridge ignores."""
    content = event.get("content")
    sender, event_id = payload.ident(event.get("sender")), payload.ident(event.get("event_id"))
    if event.get("type") != "m.room.message" or not isinstance(content, dict):
        return None
    if not isinstance(event.get("sender"), str) or not sender or sender == own_user:
        return None
    if not isinstance(event.get("event_id"), str) or not event_id:
        return None
    if relation(content).get("rel_type") == "m.replace" or "redacted_because" in payload.mapping(
        event.get("unsigned")
    ):
        return None
    msgtype = content.get("msgtype")
    raw_body = content.get("body")
    body: str = raw_body if isinstance(raw_body, str) else ""
    files: tuple[FileRef, ...] = ()
    if msgtype in ("m.image", "m.file"):
        ref = _file_ref(content, msgtype, event_id)
        if ref is None:
            return None
        files = (ref,)
        has_caption = bool(content.get("filename")) and content.get("filename") != body
        body = body if has_caption else ""
    elif msgtype != "m.text":
        return None
    text = strip_reply_fallback(body) if reply_to_of(content) else body
    if not text.strip() and not files:
        return None
    msg = UserMessage(
        thread=thread_of(room_id, content),
        sender=sender_of(sender, display_name),
        text=text,
        message_id=event_id,
        reply_to=reply_to_of(content),
        chat_type="private" if member_count <= 2 else "group",
    )
    return payload.clean(ParsedMessage(msg, files))


def parse_reaction(room_id: str, event: dict[str, Any], *, own_user: str) -> Reaction | None:
    """A person's `m.annotation` on some event, or ``None``."""
    content = event.get("content")
    sender = event.get("sender")
    if event.get("type") != "m.reaction" or not isinstance(content, dict):
        return None
    if not isinstance(sender, str) or sender == own_user:
        return None
    rel = relation(content)
    target, key = rel.get("event_id"), rel.get("key")
    if rel.get("rel_type") != "m.annotation" or not isinstance(target, str) or not target:
        return None
    if not isinstance(key, str) or not key:
        return None
    event_id = event.get("event_id")
    own_id = event_id if isinstance(event_id, str) else ""
    return payload.clean(Reaction(room_id, target, key, sender, own_id))


def parse_redaction(room_id: str, event: dict[str, Any], *, own_user: str) -> Redaction | None:
    """A person's `m.room.redaction` (`redacts` is top-level before room version 11,
    in the content since), or ``None``."""
    content = event.get("content")
    sender = event.get("sender")
    if event.get("type") != "m.room.redaction" or not isinstance(sender, str):
        return None
    if sender == own_user:
        return None
    redacts = event.get("redacts")
    if not isinstance(redacts, str) and isinstance(content, dict):
        redacts = content.get("redacts")
    if not isinstance(redacts, str) or not redacts:
        return None
    return payload.clean(Redaction(room_id, redacts, sender))
