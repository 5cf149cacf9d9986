"""The `ChatAdapter` seam: what every chat platform package implements.

The bridge never touches a platform library; it talks to an adapter through this
small interface.  Outgoing traffic is split in two steps so the outbox can be
durable: `render()` turns a platform-neutral `Outbound` into one or more `Rendered`
platform messages (stored as outbox rows), then `send()` / `edit()` / `draft()`
deliver one row each.  Incoming traffic goes the other way: the adapter parses
platform payloads into `UserMessage` / `ButtonPress` and hands them to the sink,
after acknowledging the platform itself (Telegram `answerCallbackQuery`, Slack
`ack()`).

Errors: adapters translate platform failures into the exceptions below, which the
outbox understands (retry later, honour `retry_after`, give up, or fall back).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass

from adapters.messages import ButtonPress, ChatCommand, Inbound, Outbound, Rendered, ThreadRef

InboundSink = Callable[[Inbound], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the outbox needs to know about delivering on a platform."""

    native_stream: bool = False  # a draft/stream API (Telegram sendMessageDraft)
    # The native stream hangs on the turn's status message (Slack: it starts once the
    # status is posted and stops when the status is edited to "done" or deleted).
    stream_needs_status: bool = False
    # A deleted message vanishes (Telegram, Slack); False where clients keep a
    # placeholder for it (Matrix: "Message deleted"), so a finished turn's status
    # message is edited to its last state there rather than deleted.
    delete_vanishes: bool = True
    # Rate budget for one chat: `per_chat_rate` messages per second with a burst of
    # `per_chat_burst`; groups additionally `group_per_minute` messages per minute.
    per_chat_rate: float = 1.0
    per_chat_burst: int = 3
    group_per_minute: int = 0  # 0: no separate group budget
    global_rate: float = 30.0
    draft_rate: float = 4.0  # native stream updates per second per chat


class AdapterError(Exception):
    """Base class for delivery failures an adapter reports to the outbox."""


class RateLimited(AdapterError):
    def __init__(self, retry_after: float, message: str = "rate limited") -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientError(AdapterError):
    """5xx, timeout, connection reset: retry with backoff.

    `answered`: the platform answered (a 5xx), so the call did not take effect; False
    when the outcome is unknown (a timeout, a reset connection: it may have arrived)."""

    def __init__(self, message: str = "", *, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


class PermanentError(AdapterError):
    """The platform refused this message for good (bad request): do not retry as is."""


class NotModified(AdapterError):
    """An edit with identical content: treat as delivered."""


class ThreadGone(AdapterError):
    """The thread (forum topic) is not usable: the bridge falls back to reply chains."""


class ChatAdapter(ABC):
    """One chat platform.  Optional features are documented no-ops."""

    platform: str
    capabilities: Capabilities

    @abstractmethod
    async def start(self, sink: InboundSink) -> None:
        """Connect and start delivering inbound events to `sink`."""

    @abstractmethod
    async def stop(self) -> None:
        """Disconnect; pending inbound handling is cancelled."""

    username: str = ""  # the bot's own name, for `/cmd@username` parsing

    def set_commands(self, commands: Sequence[ChatCommand]) -> None:  # noqa: B027 - optional
        """The commands to offer in the platform's own command menu (Telegram's "/"
        list), in menu order; called before `start`.  A no-op by default: elsewhere the
        bridge's `help` reply is the list."""

    @abstractmethod
    async def open_thread(
        self,
        chat_id: str,
        title: str,
        header: Outbound,
        *,
        prefer_topic: bool = True,
        on_created: Callable[[ThreadRef], None] | None = None,
    ) -> tuple[ThreadRef, str | None]:
        """Create a thread for a new session and post its header message.

        Returns the thread and the header's platform message id.  With
        `prefer_topic=False` (or when the platform refuses topics) the thread is a
        reply chain rooted at the header (`ThreadRef.reply_chain`, kind ``"reply"``).
        `on_created` is called as soon as a thread exists that the header is not yet
        in (a Telegram topic), so that the caller can record it before the header's
        call — a daemon killed in between then knows the topic.  Raises the errors
        below like `send()` does."""

    def add_owner(self, user_id: str) -> None:  # noqa: B027 - optional
        """Someone became an owner by pairing (at start, for owners paired earlier, or
        just now).  `user_id` is the platform's own id, without ``platform:``.  For
        adapters that treat owners specially (Slack mentions and stream recipients,
        Matrix device trust, verification and invites); a no-op by default."""

    def remove_owner(self, user_id: str) -> None:  # noqa: B027 - optional
        """A paired owner was revoked (`threadline unpair`): undo `add_owner`."""

    def open_invites(self, check: Callable[[str], bool]) -> None:  # noqa: B027 - optional
        """Where a stranger cannot reach the bot at all (a Matrix bot declines their
        invites), `check(user_id)` says whether to let them in anyway because a
        pairing code is open.  A no-op by default: on Telegram and Slack anyone can
        already write to the bot."""

    def accepts_chat(self, thread: ThreadRef, chat_type: str) -> bool:
        """Whether messages from this chat are for us at all (Slack: only the configured
        channel and DMs).  The bridge drops the others with an audit-log row."""
        return True

    def thread_link(self, thread: ThreadRef) -> str | None:
        """A URL that opens the thread, where the platform has one."""
        return None

    def default_chat(self, origin: ThreadRef) -> str:
        """The chat new sessions open in when started from `origin`."""
        return origin.chat_id

    async def close_thread(self, thread: ThreadRef) -> None:  # noqa: B027 - optional
        """Close the thread (Telegram: close the forum topic).  No-op where unsupported."""

    @abstractmethod
    def render(self, msg: Outbound) -> list[Rendered]:
        """Outbound → one or more platform messages, each within the platform's limits."""

    @abstractmethod
    def render_edit(self, msg: Outbound) -> Rendered:
        """Outbound → exactly one platform message (truncated if needed), for edits."""

    @abstractmethod
    async def send(self, thread: ThreadRef, msg: Rendered) -> str:
        """Send one rendered message; return its platform message id."""

    @abstractmethod
    async def edit(self, thread: ThreadRef, message_id: str, msg: Rendered) -> None:
        """Replace the content (and buttons) of a message we sent."""

    async def draft(self, thread: ThreadRef, draft_id: int, msg: Rendered) -> None:
        """Native streaming preview (Telegram sendMessageDraft).  Only called when
        `capabilities.native_stream` and `supports_draft(thread)`."""
        raise NotImplementedError

    def supports_draft(self, thread: ThreadRef) -> bool:
        """Whether `draft()` may be used in this thread (e.g. private chats only)."""
        return False

    def is_group(self, chat_id: str) -> bool:
        """Whether the chat is a group (shared, stricter rate budget)."""
        return False

    async def answer_press(self, press: ButtonPress, text: str) -> None:  # noqa: B027
        """Tell only the presser how their press went ("Already decided by Ada"), where
        the platform can (Slack ephemeral message).  No-op by default: Telegram has
        already answered the callback query before forwarding."""

    async def delete(self, thread: ThreadRef, message_id: str) -> None:  # noqa: B027
        """Delete a message we sent.  No-op where unsupported."""

    async def find_sent(
        self,
        thread: ThreadRef,
        msg: Rendered,
        *,
        after: str | None,
        ours: Collection[str],
        pace: Callable[[], Awaitable[None]],
    ) -> str | None:
        """A send that may have reached the platform before the daemon died (or before
        a timeout): the id of the delivered message, or None if it was not delivered
        or the platform cannot tell (the outbox then sends it again).  `after` is our
        newest message in the chat before the attempt, `ours` all our message ids
        there; `pace` is awaited before each platform call the search makes (the
        chat's rate budget).  None by default."""
        return None
