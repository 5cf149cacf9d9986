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
`FileRef`s; the adapter downloads them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from adapters.slack import limits
from bridge.messages import ButtonPress, Sender, ThreadRef, UserMessage

PLATFORM = "slack"
SLASH_COMMAND = "/threadline"
# Subtypes that are still a person writing; every other subtype is a service event.
PERSON_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "me_message"})
_ANGLE = re.compile(r"<([^<>]*)>")


@dataclass(frozen=True, slots=True)
class FileRef:
    kind: Literal["image", "file"]
    name: str
    mime: str
    size: int
    url: str

    @property
    def limit(self) -> int:
        return limits.MAX_IMAGE_BYTES if self.kind == "image" else limits.MAX_FILE_BYTES


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
    for f in event.get("files") or ():
        if not isinstance(f, Mapping):
            continue
        url = f.get("url_private_download") or f.get("url_private")
        if not url:
            continue
        mime = str(f.get("mimetype") or "application/octet-stream")
        kind: Literal["image", "file"] = "image" if mime.startswith("image/") else "file"
        name = str(f.get("name") or f.get("id") or "file")
        out.append(FileRef(kind, name, mime, int(f.get("size") or 0), str(url)))
    return tuple(out)


def parse_message_event(
    event: Mapping[str, Any], *, bot_user_id: str = "", names: Mapping[str, str] | None = None
) -> ParsedMessage | None:
    """A `message` event from a person, or None for everything the bridge ignores."""
    if event.get("type") != "message" or event.get("hidden"):
        return None
    if event.get("subtype") not in PERSON_SUBTYPES or event.get("bot_id"):
        return None
    user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    if not user or not channel or not ts or user == bot_user_id:
        return None
    text = decode_text(str(event.get("text") or ""), bot_user_id)
    files = files_of(event)
    if not text.strip() and not files:
        return None
    thread_ts = event.get("thread_ts")
    msg = UserMessage(
        thread=thread_of(str(channel), str(thread_ts) if thread_ts else None, str(ts)),
        sender=Sender(PLATFORM, str(user), (names or {}).get(str(user), "")),
        text=text,
        message_id=str(ts),
        chat_type=chat_type_of(event.get("channel_type"), str(channel)),
    )
    return ParsedMessage(msg, files)


def parse_block_actions(body: Mapping[str, Any], display_name: str = "") -> ButtonPress | None:
    """A press on one of our buttons (the first action of a `block_actions` payload)."""
    if body.get("type") != "block_actions":
        return None
    actions = body.get("actions") or ()
    user = body.get("user") or {}
    container = body.get("container") or {}
    message = body.get("message") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    ts = container.get("message_ts") or message.get("ts")
    if not actions or not user.get("id") or not channel or not ts:
        return None
    value = actions[0].get("value")
    if not isinstance(value, str) or not value:
        return None
    thread_ts = container.get("thread_ts") or message.get("thread_ts")
    name = display_name or str(user.get("name") or user.get("username") or user["id"])
    return ButtonPress(
        thread=thread_of(str(channel), str(thread_ts) if thread_ts else None, str(ts)),
        sender=Sender(PLATFORM, str(user["id"]), name),
        message_id=str(ts),
        data=value,
    )


def parse_slash_command(body: Mapping[str, Any], display_name: str = "") -> UserMessage | None:
    """``/threadline CMD args`` → the message ``!CMD args`` (``!help`` when empty)."""
    if body.get("command") != SLASH_COMMAND:
        return None
    user, channel = body.get("user_id"), body.get("channel_id")
    if not user or not channel:
        return None
    text = decode_text(str(body.get("text") or "")).strip() or "help"
    return UserMessage(
        thread=ThreadRef(PLATFORM, str(channel), None),
        sender=Sender(PLATFORM, str(user), display_name or str(body.get("user_name") or user)),
        text="!" + text.lstrip("!/"),
        message_id=f"cmd:{body.get('trigger_id') or ''}",
        chat_type=chat_type_of(None, str(channel)),
    )


def dedupe_key(body: Mapping[str, Any]) -> str | None:
    """What makes a delivery unique: the event id, or an interaction's trigger id."""
    for key in ("event_id", "trigger_id"):
        value = body.get(key)
        if value:
            return f"{key}:{value}"
    return None
