"""The events an agent session reports, and the decision that answers a permission prompt.

This is the whole vocabulary between ``agent/`` and its consumer (the bridge): frozen,
slotted dataclasses in one closed union, ``AgentEvent``, each carrying the Threadline
``session_id`` it belongs to. Per session, events arrive in the order they happened and
every ``TurnStarted`` is followed by exactly one ``TurnEnded``; ``AgentFailed`` comes just
before the ``TurnEnded`` of a turn that failed (model API error, CLI crash). Nothing here
refers to a chat platform or to the SDK's own message types.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias


@dataclass(frozen=True, slots=True)
class PermissionDecision:
    """The answer to a ``PermissionAsked``; ``updated_input`` replaces the tool's input."""

    allow: bool
    message: str = ""
    updated_input: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """The CLI reported its own session id (store it to resume the session later)."""

    session_id: str
    claude_session_id: str


@dataclass(frozen=True, slots=True)
class TurnStarted:
    session_id: str
    prompt: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of assistant text as it streams in. ``restart``: the model call was
    retried (a stream that broke off), so the text streamed since the last
    ``TextDone`` is void and this piece starts the block over."""

    session_id: str
    text: str
    restart: bool = False


@dataclass(frozen=True, slots=True)
class TextDone:
    """The full text of one finished assistant text block."""

    session_id: str
    text: str


@dataclass(frozen=True, slots=True)
class ToolStarted:
    session_id: str
    tool_use_id: str
    name: str
    input: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolFinished:
    session_id: str
    tool_use_id: str
    name: str
    is_error: bool
    output: str


@dataclass(frozen=True, slots=True, eq=False)
class PermissionAsked:
    """The CLI wants to run a tool: resolve ``future`` to answer.

    Cancelling the future denies. If the turn is interrupted (or the CLI gives up on the
    request) the future is cancelled by the session, so a stale prompt can check
    ``future.done()`` before showing a decision.

    The rest is what the CLI said about the request, as plain data: ``title`` (its own
    prompt sentence), ``decision_reason`` (why it asks, e.g. a hook's reason or a
    protected path), ``blocked_path`` (the path outside the allowed directories that
    triggered it) and ``suggestions`` (the permission updates it proposes, in the
    control protocol's dict form: ``{"type": "addRules", "rules": [{"toolName": …,
    "ruleContent": …}], "behavior": …, "destination": …}``).
    """

    session_id: str
    tool_use_id: str
    name: str
    input: Mapping[str, Any]
    future: asyncio.Future[PermissionDecision]
    title: str = ""
    decision_reason: str = ""
    blocked_path: str = ""
    suggestions: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class TurnEnded:
    """A turn is over. ``cost_usd`` is this turn's cost alone; ``tools`` has one name per
    tool call, in order; ``interrupted`` means it was stopped by ``interrupt()``."""

    session_id: str
    result: str
    cost_usd: float
    usage: Mapping[str, Any]
    duration_ms: int
    tools: tuple[str, ...]
    is_error: bool
    interrupted: bool


@dataclass(frozen=True, slots=True)
class ApiRetrying:
    """A model call failed and Claude Code will try it again (its ``api_retry``
    message): this was retry ``attempt`` of at most ``max_retries``, made after
    ``delay_s``; ``error`` says what failed ("HTTP 529 overloaded_error", "no
    connection to the model API")."""

    session_id: str
    attempt: int
    max_retries: int
    delay_s: float
    error: str


@dataclass(frozen=True, slots=True)
class ModeChanged:
    """Claude Code changed the session's permission mode itself (Claude entered plan
    mode with its EnterPlanMode tool, which never asks); ``mode`` is the new one."""

    session_id: str
    mode: str


@dataclass(frozen=True, slots=True)
class AgentFailed:
    """The turn failed (model API error, CLI died, CLI would not start); the session is
    still usable and, if the CLI died, is resumed on the next prompt. ``login``: Claude
    Code has no credentials, and ``error`` says what to do about it."""

    session_id: str
    error: str
    login: bool = False


AgentEvent: TypeAlias = (
    SessionStarted
    | TurnStarted
    | TextDelta
    | TextDone
    | ToolStarted
    | ToolFinished
    | PermissionAsked
    | ApiRetrying
    | ModeChanged
    | TurnEnded
    | AgentFailed
)

EventSink: TypeAlias = Callable[[AgentEvent], Awaitable[None]]
