"""Claude Code sessions behind a small async interface, with no knowledge of chat apps.

``AgentHost`` starts, resumes and ends ``AgentSession``s; each wraps one Claude Code CLI
process (through ``claude-agent-sdk``), takes prompts, interrupts, model and permission
mode changes, and reports what happens as ``AgentEvent``s to one sink. Permission
requests arrive as ``PermissionAsked`` events carrying a future the consumer resolves with
a ``PermissionDecision``. A CLI never reads its folder's own settings; a trusted
folder's are passed to it as the snapshot the owner saw (``agent/trust.py``). Nothing in this package imports a chat platform, the bridge or
the storage layer.
"""

from agent.events import (
    AgentEvent,
    AgentFailed,
    ApiRetrying,
    EventSink,
    ModeChanged,
    PermissionAsked,
    PermissionDecision,
    SessionStarted,
    TextDelta,
    TextDone,
    ToolFinished,
    ToolStarted,
    TurnEnded,
    TurnStarted,
)
from agent.host import AgentHost
from agent.permissions import MODES
from agent.session import AgentSession

__all__ = [
    "MODES",
    "AgentEvent",
    "AgentFailed",
    "AgentHost",
    "AgentSession",
    "ApiRetrying",
    "EventSink",
    "ModeChanged",
    "PermissionAsked",
    "PermissionDecision",
    "SessionStarted",
    "TextDelta",
    "TextDone",
    "ToolFinished",
    "ToolStarted",
    "TurnEnded",
    "TurnStarted",
]
