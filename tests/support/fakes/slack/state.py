"""What the fake workspace holds: its ids and scopes, messages and their versions, files,
ephemerals, status calls, the API call log, channels, deliveries on their way to the
app and Socket Mode connections."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from .formatting import block_texts, mrkdwn_plain

TEAM_ID = "T0TEAM0001"
TEAM_DOMAIN = "fake-workspace"
APP_ID = "A0APP00001"
BOT_USER = "U0BOT00001"
BOT_ID = "B0BOT00001"
BOT_NAME = "threadline"
DEFAULT_SCOPES = (
    "chat:write",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "channels:read",
    "groups:read",
    "im:read",
    "commands",
    "files:read",
    "files:write",
    "users:read",
    "assistant:write",
)
_SCOPE_OF = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.delete": "chat:write",
    "chat.postEphemeral": "chat:write",
    "chat.startStream": "chat:write",
    "chat.appendStream": "chat:write",
    "chat.stopStream": "chat:write",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "users.info": "users:read",
    "conversations.info": "channels:read",
    "assistant.threads.setStatus": "assistant:write",
}
Kind = Literal["events_api", "interactive", "slash_commands"]


@dataclass
class Version:
    text: str
    blocks: list[dict[str, Any]]
    at: float


@dataclass
class FakeFile:
    id: str
    name: str
    length: int
    data: bytes = b""
    uploaded: bool = False
    title: str = ""
    channel: str | None = None
    thread_ts: str | None = None
    comment: str = ""


@dataclass
class FakeMessage:
    channel: str
    ts: str
    user: str
    versions: list[Version]
    thread_ts: str | None = None
    bot_id: str | None = None
    subtype: str | None = None
    deleted: bool = False
    stream: bool = False
    stream_state: str = ""  # "streaming" | "stopped"
    stream_started: float = 0.0
    stream_chunks: list[str] = field(default_factory=list)
    files: list[FakeFile] = field(default_factory=list)

    def __repr__(self) -> str:
        kind = "stream" if self.stream else ("bot" if self.bot_id else "user")
        return f"<FakeMessage {kind} {self.channel}/{self.ts} {self.visible_text[:60]!r}>"

    @property
    def text(self) -> str:
        return self.versions[-1].text

    @property
    def blocks(self) -> list[dict[str, Any]]:
        return self.versions[-1].blocks

    @property
    def history(self) -> list[Version]:
        return list(self.versions)

    @property
    def edit_count(self) -> int:
        return len(self.versions) - 1

    @property
    def is_bot(self) -> bool:
        return self.bot_id is not None

    @property
    def mrkdwn(self) -> str:
        return block_texts(self.blocks) if self.blocks else self.text

    @property
    def visible_text(self) -> str:
        if self.stream:
            return self.text
        return mrkdwn_plain(self.mrkdwn)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        return [
            e
            for b in self.blocks
            if b.get("type") == "actions"
            for e in b.get("elements", ())
            if e.get("type") == "button"
        ]

    @property
    def button_labels(self) -> list[str]:
        return [b["text"]["text"] for b in self.buttons]

    def button(self, label: str, *, stale: bool = False) -> dict[str, Any]:
        """The button labelled (or partly labelled) `label`; with `stale`, also one
        an earlier version had (what a client that has not refreshed still shows)."""
        versions = reversed(self.versions) if stale else [self.versions[-1]]
        for v in versions:
            for b in (
                e for blk in v.blocks if blk.get("type") == "actions" for e in blk["elements"]
            ):
                if label == b["text"]["text"] or label in b["text"]["text"]:
                    return dict(b)
        raise KeyError(f"no button {label!r} in {self.button_labels}")

    def to_api(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "message", "ts": self.ts, "text": self.text, "user": self.user}
        if self.blocks:
            d["blocks"] = self.blocks
        if self.bot_id:
            d.update(bot_id=self.bot_id, app_id=APP_ID)
        if self.subtype:
            d["subtype"] = self.subtype
        if self.thread_ts:
            d["thread_ts"] = self.thread_ts
        return d


@dataclass
class Ephemeral:
    channel: str
    user: str
    text: str
    thread_ts: str | None
    at: float


@dataclass
class StatusCall:
    channel: str
    thread_ts: str
    status: str
    at: float


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]
    at: float
    error: str | None = None
    status: int = 200


@dataclass
class Channel:
    id: str
    name: str
    members: set[str]
    is_im: bool = False
    is_private: bool = False
    is_archived: bool = False
    im_user: str = ""

    @property
    def channel_type(self) -> str:
        return "im" if self.is_im else ("group" if self.is_private else "channel")


@dataclass
class Delivery:
    """One event, interaction or slash command on its way to the app."""

    id: str
    kind: Kind
    payload: dict[str, Any]
    attempt: int = 0
    retry_reason: str = ""
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    ack_payload: Any = None
    failed: bool = False
    log: list[str] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    conn: int | None = None
    sent_at: float = 0.0  # monotonic time of the latest attempt
    acked_at: float = 0.0

    @property
    def ack_seconds(self) -> float | None:
        """How long the app took to acknowledge the latest attempt."""
        return self.acked_at - self.sent_at if self.acked.is_set() else None


@dataclass
class Conn:
    id: int
    ws: web.WebSocketResponse
    draining: bool = False
