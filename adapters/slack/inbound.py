"""Slack inbound parsing: Events API / interactivity / slash command payloads → the
bridge's `UserMessage` / `ButtonPress`.

Pure functions, no I/O: this is the only place that looks inside Slack's payload
dicts on the way in.  A message in a thread belongs to ``ThreadRef("slack",
channel, thread_ts)``, a top-level one to the channel itself; a slash command
``/threadline CMD args`` becomes the text ``!CMD args`` in the channel it was typed
in (Slack does not say which thread).  Slack's text encoding is undone (``&lt;``,
``<url|label>``, ``<@U…>`` mentions, a leading mention of the bot itself).
Anything the bridge should not see — edits, deletions, joins, messages from bots
(ours included), hidden events — parses to ``None``.  Attachments are described as
`FileRef`s; the bridge downloads them (after its access check).  Every field is read through
`adapters.payload`: a payload with a field missing or of the wrong type parses to
``None`` instead of raising.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from adapters import payload
from adapters.download import FileRef
from adapters.messages import ButtonPress, Sender, ThreadRef, UserMessage
from adapters.slack import limits

PLATFORM = "slack"
SLASH_COMMAND = "/threadline"
# Subtypes that are still a person writing; every other subtype is a service event.
PERSON_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "me_message"})
_ANGLE = re.compile(r"<([^<>]*)>")


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    message: UserMessage
    files: tuple[FileRef, ...] = ()


def decode_text(text: str, bot_user_id: str = "") -> str:
    """Slack-encoded text → what the person typed."""
    stripped = text.lstrip()
    if bot_user_id and stripped.startswith(f"<@{bot_user_id}"):
        end = stripped.find(">")
        text = stripped[end + 1 :].lstrip() if end != -1 else stripped

    def angle(m: re.Match[str]) -> str:
        target, _, label = m.group(1).partition("|")
        if target.startswith("@"):
            return f"@{label or target[1:]}"
        if target.startswith("#"):
            return f"#{label or target[1:]}"
        if target.startswith("!"):
            return f"@{label.lstrip('@') or target[1:].split('^')[0]}"
        if target.startswith("mailto:"):
            return label or target[7:]
        return target if not label or label == target else f"{label} ({target})"

    text = _ANGLE.sub(angle, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def thread_of(channel: str, thread_ts: str | None, ts: str | None) -> ThreadRef:
    in_thread = bool(thread_ts) and thread_ts != ts
    return ThreadRef(PLATFORM, channel, thread_ts if in_thread else None)


def chat_type_of(channel_type: str | None, channel: str) -> Literal["private", "group"]:
    if channel_type == "im" or (channel_type is None and channel.startswith("D")):
        return "private"
    return "group"


def files_of(event: Mapping[str, Any]) -> tuple[FileRef, ...]:
    out: list[FileRef] = []
    files = event.get("files")
    for f in files if isinstance(files, list) else ():
        if not isinstance(f, Mapping):
            continue
        url = payload.text(f.get("url_private_download")) or payload.text(f.get("url_private"))
        if not url.startswith(("https://", "http://")):
            continue
        mime = payload.text(f.get("mimetype")) or "application/octet-stream"
        kind: Literal["image", "file"] = "image" if mime.startswith("image/") else "file"
        name = payload.text(f.get("name")) or payload.ident(f.get("id")) or "file"
        size = max(payload.integer(f.get("size")) or 0, 0) or None  # 0: not announced
        limit = limits.MAX_IMAGE_BYTES if kind == "image" else limits.MAX_FILE_BYTES
        out.append(FileRef(kind, url, name, mime, size, limit))
    return tuple(out)


def parse_message_event(
    event: Mapping[str, Any], *, bot_user_id: str = "", names: Mapping[str, str] | None = None
) -> ParsedMessage | None:
    """A `message` event from a person, or None for everything the bridge ignores."""
    if event.get("type") != "message" or event.get("hidden"):
        return None
    subtype = event.get("subtype")
    if not isinstance(subtype, str | None) or subtype not in PERSON_SUBTYPES:
        return None
    if event.get("bot_id"):
        return None
    user, channel = payload.ident(event.get("user")), payload.ident(event.get("channel"))
    ts = payload.ident(event.get("ts"))
    if not user or not channel or not ts or user == bot_user_id:
        return None
    text = decode_text(payload.text(event.get("text")), bot_user_id)
    files = files_of(event)
    if not text.strip() and not files:
        return None
    channel_type = payload.text(event.get("channel_type")) or None
    msg = UserMessage(
        thread=thread_of(channel, payload.ident(event.get("thread_ts")), ts),
        sender=Sender(PLATFORM, user, (names or {}).get(user, "")),
        text=text,
        message_id=ts,
        chat_type=chat_type_of(channel_type, channel),
    )
    return payload.clean(ParsedMessage(msg, files))


def parse_block_actions(body: Mapping[str, Any], display_name: str = "") -> ButtonPress | None:
    """A press on one of our buttons (the first action of a `block_actions` payload)."""
    if body.get("type") != "block_actions":
        return None
    actions = body.get("actions")
    user = payload.mapping(body.get("user"))
    container = payload.mapping(body.get("container"))
    message = payload.mapping(body.get("message"))
    channel = payload.ident(container.get("channel_id")) or payload.ident(
        payload.mapping(body.get("channel")).get("id")
    )
    ts = payload.ident(container.get("message_ts")) or payload.ident(message.get("ts"))
    user_id = payload.ident(user.get("id"))
    if not isinstance(actions, list) or not actions or not user_id or not channel or not ts:
        return None
    value = payload.text(payload.mapping(actions[0]).get("value"))
    if not value:
        return None
    thread_ts = payload.ident(container.get("thread_ts")) or payload.ident(message.get("thread_ts"))
    name = display_name or payload.text(user.get("name")) or payload.text(user.get("username"))
    return payload.clean(
        ButtonPress(
            thread=thread_of(channel, thread_ts, ts),
            sender=Sender(PLATFORM, user_id, name or user_id),
            message_id=ts,
            data=value,
        )
    )


def parse_slash_command(body: Mapping[str, Any], display_name: str = "") -> UserMessage | None:
    """``/threadline CMD args`` → the message ``!CMD args`` (``!help`` when empty)."""
    if body.get("command") != SLASH_COMMAND:
        return None
    user, channel = payload.ident(body.get("user_id")), payload.ident(body.get("channel_id"))
    if not user or not channel:
        return None
    text = decode_text(payload.text(body.get("text"))).strip() or "help"
    return payload.clean(
        UserMessage(
            thread=ThreadRef(PLATFORM, channel, None),
            sender=Sender(
                PLATFORM, user, display_name or payload.text(body.get("user_name")) or user
            ),
            text="!" + text.lstrip("!/"),
            message_id=f"cmd:{payload.ident(body.get('trigger_id')) or ''}",
            chat_type=chat_type_of(None, channel),
        )
    )


def dedupe_key(body: Mapping[str, Any]) -> str | None:
    """What makes a delivery unique: the event id, or an interaction's trigger id."""
    for key in ("event_id", "trigger_id"):
        value = payload.ident(body.get(key))
        if value:
            return f"{key}:{value}"
    return None
