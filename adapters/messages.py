"""Platform-neutral messages that cross the bridge ↔ adapter seam.

Inbound: what an adapter hands the bridge after parsing a platform payload
(`UserMessage`, `ButtonPress`) — no raw platform object gets past an adapter's
`inbound.py`.  Outbound: what the bridge asks an adapter to show (`Outbound`, built
from `Block`s and `Button`s), which the adapter's `render.py` turns into the
platform's format.  Everything here is a frozen, slotted dataclass.  The outbox stores
what the adapter rendered (`Rendered.payload`, one row per platform message), not the
`Outbound`: a message is rendered once, when it is enqueued.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

ThreadKind = Literal["chat", "thread", "reply"]
Role = Literal["notice", "status", "done", "stream", "final", "prompt"]
_REPLY = "reply:"  # the stored form of a reply chain's thread id


@dataclass(frozen=True, slots=True)
class ThreadRef:
    """Where a session lives: a chat plus the platform's thread inside it.

    Its `kind` says what the thread is: ``"chat"`` (no thread: the control chat, a
    DM), ``"thread"`` (the platform's own: a Telegram forum topic, a Slack thread, a
    Matrix thread) or ``"reply"`` (a chain of replies to a header message, where the
    platform has no threads or refused one); `root` is the topic id, thread ts, root
    event id or header message id.  `thread_id` is the stored form (``None``, the root,
    or ``"reply:<root>"`` — thread keys and database rows use it), so build reply
    chains with `reply_chain` and read them through `kind` and `root`.
    """

    platform: str
    chat_id: str
    thread_id: str | None = None

    @classmethod
    def reply_chain(cls, platform: str, chat_id: str, root: str) -> ThreadRef:
        """The thread of the messages replying to `root` (a header message id)."""
        return cls(platform, chat_id, f"{_REPLY}{root}")

    @property
    def kind(self) -> ThreadKind:
        if not self.thread_id:
            return "chat"
        return "reply" if self.thread_id.startswith(_REPLY) else "thread"

    @property
    def root(self) -> str | None:
        """The message the thread hangs on (see the class); None for a chat."""
        return self.thread_id.removeprefix(_REPLY) if self.thread_id else None

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.chat_id}:{self.thread_id or ''}"


@dataclass(frozen=True, slots=True)
class Sender:
    platform: str
    user_id: str
    display_name: str = ""

    @property
    def key(self) -> str:
        """The form used in config `[access] owners`, e.g. ``telegram:123``."""
        return f"{self.platform}:{self.user_id}"


class AttachmentTooLarge(Exception):
    """The file is over the size cap: announced so by the platform (nothing fetched) or
    found so while streaming it (the download was stopped, nothing kept)."""

    def __init__(self, name: str, limit: int, size: int | None = None) -> None:
        super().__init__(f"{name} is over the {limit} byte limit")
        self.name, self.limit, self.size = name, limit, size


class AttachmentUnavailable(Exception):
    """The file could not be fetched (gone, refused, not the platform's URL, network)."""


Fetch = Callable[[int], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file someone sent, not yet downloaded.

    Only the bridge knows who may send files, so adapters never download: they hand
    over this description with a `fetch(limit)` that streams the bytes and stops
    (`AttachmentTooLarge`) past `limit`, or fails with `AttachmentUnavailable`.  The
    bridge calls it after the sender passed the access check (`bridge/files.py`)."""

    kind: Literal["image", "file"]
    name: str
    mime: str
    size: int | None  # as announced by the platform; None when unknown
    fetch: Fetch = field(repr=False, compare=False)

    @classmethod
    def of(cls, kind: Literal["image", "file"], name: str, mime: str, data: bytes) -> Attachment:
        """An attachment whose bytes are already here (tests, local sources)."""

        async def fetch(limit: int) -> bytes:
            if len(data) > limit:
                raise AttachmentTooLarge(name, limit, len(data))
            return data

        return cls(kind, name, mime, len(data), fetch)


@dataclass(frozen=True, slots=True)
class UserMessage:
    thread: ThreadRef
    sender: Sender
    text: str
    message_id: str
    reply_to: str | None = None
    chat_type: Literal["private", "group"] = "private"
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class ButtonPress:
    """A press on one of our buttons; the adapter has already acknowledged it."""

    thread: ThreadRef
    sender: Sender
    message_id: str
    data: str


Inbound = UserMessage | ButtonPress


# --- outbound -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Markdown:
    """Markdown text (Claude's own, or ours); adapters convert it to their format."""

    text: str
    kind: Literal["markdown"] = "markdown"


@dataclass(frozen=True, slots=True)
class Code:
    """A preformatted block: code, a command, a unified diff (language "diff")."""

    text: str
    language: str = ""
    kind: Literal["code"] = "code"


@dataclass(frozen=True, slots=True)
class Folded:
    """Secondary detail shown collapsed (tool output): Telegram expandable
    blockquote, Matrix <details>, Slack context block."""

    summary: str
    body: str
    kind: Literal["folded"] = "folded"


Block = Markdown | Code | Folded


@dataclass(frozen=True, slots=True)
class Button:
    label: str
    data: str  # opaque, <= 64 bytes (Telegram callback_data limit)
    style: Literal["default", "primary", "danger"] = "default"


@dataclass(frozen=True, slots=True)
class FileOut:
    """A file to attach (a long diff, a long tool output, a `get` result)."""

    name: str
    data: bytes
    caption: str = ""


@dataclass(frozen=True, slots=True)
class Outbound:
    """What the bridge asks an adapter to show.  `role` says what the message is for,
    so an adapter can treat it specially without looking into its content:
    ``"status"`` a running turn's live status (it carries the Stop button; the turn
    runs until an edit of it has another role), ``"done"`` a finished turn's status
    (its last edit), ``"stream"`` a native-stream preview of the answer, ``"final"``
    the turn's answer, ``"prompt"`` a permission prompt, ``"notice"`` anything else."""

    blocks: tuple[Block, ...] = ()
    buttons: tuple[tuple[Button, ...], ...] = ()  # rows of buttons
    notify: bool = False  # False: sent silently (stream updates, tool lines)
    file: FileOut | None = None
    mention: bool = False  # Slack/Matrix: mention the owner (permission, long turn end)
    role: Role = "notice"

    @property
    def plain(self) -> str:
        """The text content, for logs and search; no formatting."""
        parts: list[str] = []
        for b in self.blocks:
            parts.append(b.text if not isinstance(b, Folded) else f"{b.summary}\n{b.body}")
        return "\n\n".join(parts)


def text(
    markdown: str, *, notify: bool = False, buttons: tuple[tuple[Button, ...], ...] = ()
) -> Outbound:
    """The common case: one markdown block."""
    return Outbound(blocks=(Markdown(markdown),), notify=notify, buttons=buttons)


ATTEMPT_KEY = "txn"


@dataclass(frozen=True, slots=True)
class Rendered:
    """One platform message, ready to send: what an adapter's `render()` returns and
    the outbox stores (one row per platform message, so a split message is never
    re-sent in part after a restart).  `payload` is adapter-defined and JSON-able.
    An entry under `ATTEMPT_KEY` names the attempt (a transaction id reused on retries,
    so the platform applies it once), not the content: the outbox ignores it when it
    asks whether an edit would change anything."""

    payload: dict[str, Any] = field(default_factory=dict)

    def content_digest(self) -> str:
        """The same for two payloads that show the same thing."""
        content = {k: v for k, v in self.payload.items() if k != ATTEMPT_KEY}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

@dataclass(frozen=True, slots=True)
class ChatCommand:
    """A chat command as a platform shows it in its command menu or help: the bridge
    hands the list to each adapter (`ChatAdapter.set_commands`), so an adapter needs
    nothing of the bridge's command registry."""

    name: str  # lower-case letters, digits and "_"
    usage: str  # the arguments, e.g. "[PATH] [PROMPT]"; "" for none
    description: str
