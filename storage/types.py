"""The closed sets and id types of the stored rows.

States and kinds are `Literal` aliases rather than enums: the database stores these
very strings and callers pass them as plain literals, so the type checker catches a
misspelt state without any conversion at the edges.

Ids are `NewType`s where they are minted: a session's and a permission request's
random id on their row (wrapped once, where the row is made), an outbox row id
returned by `OutboxRepo.add`, a turn id by `TurnRepo.start`.  Parameters take the
plain base type (a `NewType` is a subtype, so minted ids pass unchanged), because ids
also arrive from button data, command arguments and other rows' columns, and a cast
at each of those would say nothing new.
"""

from __future__ import annotations

from typing import Literal, NewType, TypedDict

SessionId = NewType("SessionId", str)  # sessions.id, 6 hex digits
RequestId = NewType("RequestId", str)  # permission_requests.id, random, in button data
OutboxId = NewType("OutboxId", int)  # outbox.id
TurnId = NewType("TurnId", int)  # turns.id

# opening: its thread is being made; active: idle and usable; running: a turn is in
# progress; interrupted: the daemon stopped during a turn; ended: /end.
SessionState = Literal["opening", "active", "running", "interrupted", "ended"]
OPEN_SESSION_STATES: tuple[SessionState, ...] = ("opening", "active", "running")

TurnState = Literal["running", "done", "error", "interrupted"]

# A row is written pending and moves once to one of the others.
OutboxState = Literal["pending", "sent", "superseded", "failed"]
# send: a new message; edit/delete: the message of the target row; draft: a native
# stream preview (an ephemeral message, not in the history); close: close the row's
# thread (a session ended: Telegram closes the forum topic).
OutboxOp = Literal["send", "edit", "draft", "delete", "close"]

PermissionState = Literal[
    "pending", "allowed", "allowed_session", "allowed_project", "denied", "timeout", "expired"
]
# topic: a thread of its own (a Telegram forum topic, a Slack or Matrix thread);
# reply: a reply chain under a header message (`ThreadRef.thread_id` "reply:<id>").
BindingKind = Literal["topic", "reply"]

# chat: the Trust button; claude: Claude Code's own trust dialog was accepted there;
# revoked: `untrust` of a folder that had no record (kept so Claude Code's record
# is not honoured).
TrustSource = Literal["chat", "claude", "revoked"]
TrustRequestState = Literal["pending", "trusted", "declined", "stale"]
PairingState = Literal["pending", "used"]


class PairingPayload(TypedDict):
    """What the daemon's key signs for a pairing code (`pairing_codes.payload`, JSON)."""

    v: int
    id: str  # sha256(code), hex: the row's key
    platform: str  # "" = any platform
    expires: int  # Unix time
    nonce: str
