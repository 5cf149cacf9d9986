"""The database tables (sqlmodel).

One table per concern: sessions and their thread bindings, the durable outbox,
permission requests and "allow for session" rules, per-turn costs, scheduled
prompts, pairing codes and paired owners, the audit log, and the schema version.
Only `storage/` imports sqlmodel; the rest of the code uses these classes through
`storage.db.Database`.  The closed sets of states and kinds are `storage/types.py`'s
`Literal`s (stored as the same strings, `VARCHAR`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Index
from sqlmodel import AutoString, Field, SQLModel

from storage.types import (
    BindingKind,
    InboxState,
    OutboxOp,
    OutboxState,
    PairingState,
    PermissionState,
    RequestId,
    SessionId,
    SessionState,
    TrustRequestState,
    TrustSource,
    TurnState,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class SessionRow(SQLModel, table=True):
    __tablename__ = "sessions"

    id: SessionId = Field(primary_key=True, max_length=16, sa_type=AutoString(16))
    platform: str = Field(index=True)
    cwd: str
    title: str = ""
    claude_session_id: str | None = Field(default=None, index=True)
    state: SessionState = Field(default="active", index=True, sa_type=AutoString)
    model: str = ""
    mode: str = "default"
    owner: str = ""  # Sender.key of who started it
    created_at: datetime = Field(default_factory=utcnow)
    last_activity: datetime = Field(default_factory=utcnow)
    cost_usd: float = 0.0
    turns: int = 0
    # The host (`[daemon] host`) that runs it; NULL for rows from before hosts, until
    # the next daemon start claims them for its host (migration 10, `HostRepo.start`).
    host: str | None = Field(default=None, max_length=32, sa_type=AutoString(32))


class ThreadBinding(SQLModel, table=True):
    """Which chat thread shows which session (one thread per session)."""

    __tablename__ = "thread_bindings"

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(index=True, foreign_key="sessions.id")
    platform: str
    chat_id: str
    thread_id: str | None = None
    header_message_id: str | None = None
    kind: BindingKind = Field(default="topic", sa_type=AutoString)
    thread_key: str = Field(unique=True)  # ThreadRef.key


class OutboxRow(SQLModel, table=True):
    """One outgoing platform operation; written before it is attempted."""

    __tablename__ = "outbox"
    # The outbox's pick query filters pending rows by chat (ordered by class, id)
    # and looks for earlier pending rows in the same thread; without these it would
    # scan the chat's whole sent history on every delivery.
    __table_args__ = (
        Index("ix_outbox_pick", "chat_key", "state", "priority", "id"),
        Index("ix_outbox_thread_order", "thread_key", "state", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    chat_key: str = Field(index=True)  # platform:chat_id — the rate-budget unit
    thread_key: str = Field(index=True)  # ThreadRef.key — the ordering unit
    platform: str
    chat_id: str
    thread_id: str | None = None
    session_id: str | None = Field(default=None, index=True)
    op: OutboxOp = Field(default="send", sa_type=AutoString)
    # The delivery class (storage/outbox_pick.DeliveryClass, migration 9): 0 prompt,
    # 1 final, 2 notice, 3 stream update; lower goes first.
    priority: int = 3
    target_id: int | None = None  # for edit/delete: the outbox row of the message
    stream_key: str | None = Field(default=None, index=True)  # coalescing key for updates
    payload: str = ""  # Rendered.payload as JSON (possibly encrypted)
    state: OutboxState = Field(default="pending", index=True, sa_type=AutoString)
    platform_message_id: str | None = Field(default=None, index=True)
    attempts: int = 0
    not_before: datetime = Field(default_factory=utcnow)
    last_error: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    # Set before each platform call (migration 4): a pending row with it may already
    # have reached the platform.
    attempted_at: datetime | None = None
    # Migration 13 (several hosts on one database): the host that wrote the row (a
    # button press on its message is that host's to handle), and the claim of the
    # delivery under way ("host:nonce", set when the gateway picks the row): the
    # producers' coalesce, supersede and withdraw leave a claimed row alone.
    host: str | None = Field(default=None, max_length=64, sa_type=AutoString(64))
    claim: str | None = Field(default=None, max_length=80, sa_type=AutoString(80))


class PermissionRequestRow(SQLModel, table=True):
    __tablename__ = "permission_requests"

    id: RequestId = Field(primary_key=True, max_length=24, sa_type=AutoString(24))  # in button data
    session_id: str = Field(index=True)
    tool_use_id: str
    tool_name: str
    input_json: str = "{}"
    thread_key: str = ""
    prompt_outbox_id: int | None = None
    state: PermissionState = Field(default="pending", index=True, sa_type=AutoString)
    decided_by: str = ""
    reason: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None


class SessionRule(SQLModel, table=True):
    """'Allow for session': a rule in Claude Code's language, `tool_name(pattern)`
    (`Bash(git status:*)`, `Edit(//home/me/app/**)`), matched by `bridge/approvals/rules.py`."""

    __tablename__ = "session_rules"

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(index=True)
    tool_name: str
    pattern: str = ""  # the rule content; empty matches nothing
    created_by: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class ProjectRule(SQLModel, table=True):
    """'Allow always (project)': a rule Threadline wrote into `<project_dir>/.claude/
    settings.local.json` (`permissions.allow`), `tool_name(pattern)`.  Honoured by the
    broker only while the line is still in the file (`bridge/approvals/project_rules.py`).
    Added by migration 9."""

    __tablename__ = "project_rules"

    id: int | None = Field(default=None, primary_key=True)
    project_dir: str = Field(index=True)  # resolved
    tool_name: str
    pattern: str = ""
    created_by: str = ""
    session_id: str = ""  # the session whose prompt made it
    created_at: datetime = Field(default_factory=utcnow)


class TurnRow(SQLModel, table=True):
    __tablename__ = "turns"

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(index=True)
    prompt: str = ""
    started_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    duration_ms: int = 0
    tools: str = ""
    state: TurnState = Field(default="running", sa_type=AutoString)
    # The outbox row of the turn's status message (Stop button), so a restart can
    # mark it interrupted.  Added by migration 2.
    status_outbox_id: int | None = None


class ScheduleRow(SQLModel, table=True):
    """A prompt run in a session on a cron schedule (`schedule CRON PROMPT`).  The
    row is the whole schedule, stored as data: the scheduler rebuilds its in-memory
    job from `cron` and `next_run_at` (the next run not yet made) on every start."""

    __tablename__ = "schedules"

    id: str = Field(primary_key=True, max_length=16)
    session_id: str = Field(index=True)
    cron: str
    prompt: str = ""
    timezone: str = ""
    created_by: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    last_run_at: datetime | None = None
    runs: int = 0
    next_run_at: datetime | None = None
    # The latest occurrence a host claimed to run (UTC): a run happens only
    # after an UPDATE moved it forward, so no occurrence runs twice (migration 14).
    claimed_run_at: datetime | None = None


class AuditRow(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    platform: str = ""
    user: str = ""  # Sender.key
    action: str = ""  # message | button | new | permission | pair | refused ...
    detail: str = ""
    allowed: bool = True


class PairingCodeRow(SQLModel, table=True):
    """A one-time pairing code from `threadline pair`.  Keyed by the SHA-256 of the
    code (the code itself is never stored); `payload` is what the daemon's Ed25519
    key signed (code hash, platform, expiry, nonce) and `signature` the signature, so
    a row altered or written by anyone without the key is refused.  Added by
    migration 3."""

    __tablename__ = "pairing_codes"

    id: str = Field(primary_key=True, max_length=64)  # sha256(code), hex
    payload: str
    signature: str  # hex
    platform: str = ""  # informational copy of the signed one; "" = any platform
    state: PairingState = Field(default="pending", index=True, sa_type=AutoString)
    used_by: str = ""  # Sender.key of who redeemed it
    created_at: datetime = Field(default_factory=utcnow)
    used_at: datetime | None = None


class PairedOwner(SQLModel, table=True):
    """Someone who became an owner by pairing (`platform:user_id`), on top of the
    config's `[access] owners`.  Added by migration 3."""

    __tablename__ = "paired_owners"

    key: str = Field(primary_key=True)  # Sender.key
    platform: str
    code_id: str = ""
    paired_at: datetime = Field(default_factory=utcnow)
    # Ed25519 signature by the daemon's key over key, platform and code (bridge/access/owners.py);
    # a row without a valid one makes no owner.  Added by migration 6.
    signature: str = ""


class TrustedFolder(SQLModel, table=True):
    """A folder whose own Claude Code settings (hooks, MCP servers, env, ...) the owner
    let run, as they were when trusted (`fingerprint`, see `agent/trust.py`).  `source`:
    "chat" (the Trust button) or "claude" (Claude Code's own trust dialog was accepted
    there).  `untrust` sets `revoked_at` rather than deleting, so Claude Code's record
    is not honoured again after a revocation.  Added by migration 7."""

    __tablename__ = "trusted_folders"

    path: str = Field(primary_key=True)  # resolved
    fingerprint: str = ""
    trusted_by: str = ""  # Sender.key, or "claude"
    trusted_at: datetime = Field(default_factory=utcnow)
    source: TrustSource = Field(default="chat", sa_type=AutoString)
    revoked_at: datetime | None = None
    revoked_by: str = ""


class TrustRequestRow(SQLModel, table=True):
    """A Trust this folder / Not now prompt: the buttons carry its random id, and it
    holds the fingerprint of exactly what the prompt showed.  Added by migration 7."""

    __tablename__ = "trust_requests"

    id: str = Field(primary_key=True, max_length=32)
    session_id: str = Field(index=True)
    path: str
    fingerprint: str
    thread_key: str
    state: TrustRequestState = Field(default="pending", index=True, sa_type=AutoString)
    decided_by: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None
    prompt_outbox_id: int | None = None


class HostRow(SQLModel, table=True):
    """A machine running the daemon on this database (`[daemon] host`), with its
    heartbeat (`bridge/hosts.py`).  Times are timezone-aware on PostgreSQL and UTC
    without a zone on SQLite; `storage/host_repo.py` hands them out in UTC.  Added by
    migration 10."""

    __tablename__ = "hosts"

    name: str = Field(primary_key=True, max_length=32, sa_type=AutoString(32))
    roots: str = "[]"  # its [agent] allowed_roots, as a JSON list
    pid: int = 0
    version: str = ""
    started_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    last_heartbeat: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    # Set by a clean shutdown, cleared by the next start.
    stopped_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # When a live host told this one's session threads it is offline (compare-and-set:
    # one host posts it), and which sessions were told; cleared when it is back.
    # Added by migration 14.
    offline_noted_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    offline_told: str = "[]"  # session ids, as a JSON list


class GatewayLeaseRow(SQLModel, table=True):
    """Which host is the gateway of a chat account (`storage/gateway_repo.py`): it
    alone connects to the platform and delivers the outbox, under `epoch`, until
    `expires_at` (renewed every few seconds).  `epoch` grows on every change of
    holder: the fencing token.  Added by migration 12."""

    __tablename__ = "gateway_leases"

    account: str = Field(primary_key=True, max_length=200, sa_type=AutoString(200))
    holder: str = Field(max_length=32, sa_type=AutoString(32))
    epoch: int = 1
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))


class InboxRow(SQLModel, table=True):
    """Work for one host handed over by another through the database
    (`storage/inbox_repo.py`, `bridge/inbox.py`): a chat event the gateway received for
    a session on `host`, or a request to the gateway to open a session's thread.
    `payload` is JSON sealed with the database cipher, emptied once the item is done.
    Added by migration 15."""

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_claim", "host", "state", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    host: str = Field(max_length=32, sa_type=AutoString(32))  # the host it is for
    sender: str = Field(default="", max_length=32, sa_type=AutoString(32))  # who wrote it
    kind: str = Field(max_length=32, sa_type=AutoString(32))
    payload: str = ""
    state: InboxState = Field(default="pending", sa_type=AutoString)
    attempts: int = 0
    error: str = ""
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    claimed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    done_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class SasVerificationRow(SQLModel, table=True):
    """An emoji (SAS) verification of the bot that waits for its person
    (`storage/sas_repo.py`, `bridge/verify_desk.py`, `threadline verify`): the daemon
    records it with its emoji; the CLI (or a message on another platform) writes the
    decision, which the daemon reads and acts on.  `state`: pending, confirmed,
    verified, cancelled, timed_out.  `decision`: "", "confirm" or "cancel" - the
    first one written wins.  Added by migration 16."""

    __tablename__ = "sas_verifications"

    id: int | None = Field(default=None, primary_key=True)
    transaction_id: str = Field(max_length=255, sa_type=AutoString(255), unique=True)
    platform: str = Field(max_length=32, sa_type=AutoString(32))
    user_id: str = Field(max_length=255, sa_type=AutoString(255))
    device_id: str = Field(max_length=255, sa_type=AutoString(255))
    emoji: str = ""  # JSON: [[emoji, name], ...]
    state: str = Field(default="pending", max_length=16, sa_type=AutoString(16))
    decision: str = Field(default="", max_length=16, sa_type=AutoString(16))
    decided_by: str = Field(default="", max_length=64, sa_type=AutoString(64))
    cancel_code: str = Field(default="", max_length=64, sa_type=AutoString(64))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class SchemaVersion(SQLModel, table=True):
    __tablename__ = "schema_version"

    id: int = Field(default=1, primary_key=True)
    version: int = 0
