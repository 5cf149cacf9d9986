"""Permission prompts and modes: ``can_use_tool`` as ``PermissionAsked`` events with futures.

The SDK runs each permission request in its own task, so the callback may wait as long as
the consumer needs (the CLI was seen to wait over five minutes) without blocking the SDK's
reader. The gate publishes a ``PermissionAsked`` carrying a fresh future and waits for it:
a ``PermissionDecision`` allows or denies; a cancelled or failed future denies. When the
CLI withdraws the request (an interrupt makes it cancel the callback) or the session
interrupts or closes, the gate cancels the future so the consumer can retire its prompt.
The gate passes on what the CLI said about each request (``title``, ``decision_reason``,
``blocked_path``, ``suggestions``) as plain data; it never applies a suggestion itself.
``check_mode`` validates the permission modes Claude Code knows (``MODES``);
``OfferedMode`` / ``OFFERED_MODES`` are the ones Threadline offers (its config and the
chat's ``mode`` command and buttons, in button order).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

from claude_agent_sdk import (
    PermissionMode,
    PermissionResult,
    PermissionResultAllow,
    PermissionResultDeny,
    ToolPermissionContext,
)

from agent.events import AgentEvent, PermissionAsked, PermissionDecision

log = logging.getLogger(__name__)

DENIED = "The user denied this tool use."
UNANSWERED = "The permission request was withdrawn before the user answered."

MODES: frozenset[str] = frozenset(get_args(PermissionMode))
# A subset: Claude Code's newer modes (dontAsk, auto) are not offered in the chat.
OfferedMode = Literal["default", "acceptEdits", "plan", "bypassPermissions"]
OFFERED_MODES: Final[tuple[OfferedMode, ...]] = get_args(OfferedMode)


def check_mode(mode: str) -> PermissionMode:
    """``mode`` if Claude Code knows it, else ValueError."""
    if mode not in MODES:
        raise ValueError(f"unknown permission mode {mode!r}; expected one of {sorted(MODES)}")
    return mode  # type: ignore[return-value]  # narrowed by the membership test


class PermissionGate:
    """The ``can_use_tool`` callback of one session; ``emit`` queues an event (no await)."""

    def __init__(self, session_id: str, emit: Callable[[AgentEvent], None]) -> None:
        self._session_id = session_id
        self._emit = emit
        self._pending: set[asyncio.Future[PermissionDecision]] = set()

    @property
    def pending(self) -> int:
        """How many requests wait for an answer."""
        return len(self._pending)

    def cancel_all(self) -> None:
        """Withdraw every open request: each is answered with a denial."""
        for future in list(self._pending):
            future.cancel()

    async def can_use_tool(
        self, name: str, tool_input: dict[str, Any], context: ToolPermissionContext
    ) -> PermissionResult:
        tool_use_id = context.tool_use_id or f"permission-{uuid.uuid4().hex}"
        future: asyncio.Future[PermissionDecision] = asyncio.get_running_loop().create_future()
        self._pending.add(future)
        try:
            self._emit(
                PermissionAsked(
                    self._session_id,
                    tool_use_id,
                    name,
                    MappingProxyType(dict(tool_input)),
                    future,
                    title=context.title or "",
                    decision_reason=context.decision_reason or "",
                    blocked_path=context.blocked_path or "",
                    suggestions=_suggestions(context),
                )
            )
            # wait() rather than awaiting the future: a cancelled future must read as a
            # denial here, while our own cancellation (the CLI withdrew the request)
            # must propagate.
            await asyncio.wait((future,))
        except asyncio.CancelledError:
            future.cancel()
            raise
        finally:
            self._pending.discard(future)
        return _to_result(future, tool_use_id)


def _suggestions(context: ToolPermissionContext) -> tuple[Mapping[str, Any], ...]:
    """The CLI's suggested permission updates as plain, read-only dicts (one that does
    not convert is dropped: the consumer only shows them and never applies them)."""
    out: list[Mapping[str, Any]] = []
    for update in context.suggestions or ():
        try:
            out.append(MappingProxyType(update.to_dict()))
        except (ValueError, AttributeError, TypeError):
            log.debug("ignoring a permission suggestion that does not convert: %r", update)
    return tuple(out)


def _to_result(future: asyncio.Future[PermissionDecision], tool_use_id: str) -> PermissionResult:
    if future.cancelled():
        return PermissionResultDeny(message=UNANSWERED)
    error = future.exception()
    if error is not None:
        log.warning("permission %s failed, denying: %r", tool_use_id, error)
        return PermissionResultDeny(message=UNANSWERED)
    decision = future.result()
    if not isinstance(decision, PermissionDecision):
        log.warning("permission %s answered with %r, denying", tool_use_id, decision)
        return PermissionResultDeny(message=DENIED)
    if decision.allow:
        updated = dict(decision.updated_input) if decision.updated_input is not None else None
        return PermissionResultAllow(updated_input=updated)
    return PermissionResultDeny(message=decision.message or DENIED)
