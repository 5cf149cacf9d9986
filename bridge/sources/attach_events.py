"""What the attach server sends a terminal about a session: agent events and permission
requests as JSON objects (the event types are listed in `bridge/sources/attach.py`).

Long things are cut so one event stays a reasonable line: a tool's output to its last
`OUTPUT_CHARS`, a permission request's detail (the diff, the command, or the input as
JSON) to its first `DETAIL_CHARS`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from agent.events import (
    AgentEvent,
    AgentFailed,
    TextDelta,
    TextDone,
    ToolFinished,
    ToolStarted,
    TurnEnded,
    TurnStarted,
)
from bridge import render
from bridge.approvals import plans, questions
from bridge.diffs import file_diff
from storage.models import SessionRow

DETAIL_CHARS: Final = 6000
OUTPUT_CHARS: Final = 2000


def permission_detail(name: str, tool_input: Mapping[str, Any], cwd: str) -> str:
    """What the terminal shows for a permission request: the diff, the command, or
    the input as JSON."""
    if name in ("Edit", "MultiEdit", "Write"):
        text = file_diff(name, tool_input, cwd).text
    elif name == "Bash":
        text = str(tool_input.get("command", ""))
    else:
        text = json.dumps(dict(tool_input), ensure_ascii=False, indent=1, default=str)
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS] + "\n…"


def agent_payload(ev: AgentEvent, cwd_of: Callable[[str], str]) -> dict[str, Any] | None:
    """The event for terminals, or None for one they are not shown; `cwd_of` gives a
    session's directory (asked only for a tool line)."""
    if isinstance(ev, TurnStarted):
        return {"t": "turn", "prompt": ev.prompt}
    if isinstance(ev, TextDelta):
        out: dict[str, Any] = {"t": "delta", "text": ev.text}
        if ev.restart:  # a retried model call: what streamed so far is void
            out["restart"] = True
        return out
    if isinstance(ev, TextDone):
        return {"t": "text", "text": ev.text}
    if isinstance(ev, ToolStarted):
        line = render.tool_line(ev.name, ev.input, cwd=cwd_of(ev.session_id))
        return {"t": "tool", "id": ev.tool_use_id, "name": ev.name, "line": line}
    if isinstance(ev, ToolFinished):
        output = ev.output if len(ev.output) <= OUTPUT_CHARS else "…" + ev.output[-OUTPUT_CHARS:]
        return {"t": "tool_done", "id": ev.tool_use_id, "error": ev.is_error, "output": output}
    if isinstance(ev, TurnEnded):
        return {
            "t": "end",
            "result": ev.result,
            "cost": ev.cost_usd,
            "duration_ms": ev.duration_ms,
            "tools": list(ev.tools),
            "interrupted": ev.interrupted,
            "error": ev.is_error,
        }
    if isinstance(ev, AgentFailed):
        return {"t": "failed", "error": ev.error[:2000]}
    return None


def permission_payload(
    request_id: str, name: str, tool_input: Mapping[str, Any], session: SessionRow | None
) -> dict[str, Any]:
    cwd = session.cwd if session else ""
    return {
        "t": "permission",
        "request": request_id,
        "tool": name,
        "line": render.tool_line(name, tool_input, cwd=cwd),
        "detail": permission_detail(name, tool_input, cwd),
        "language": "diff"
        if name in ("Edit", "MultiEdit", "Write")
        else ("bash" if name == "Bash" else "json"),
    }


def request_payload(
    request_id: str,
    name: str,
    tool_input: Mapping[str, Any],
    session: SessionRow | None,
    *,
    index: int = 0,
) -> dict[str, Any]:
    """A pending request for terminals: Claude's question (`question`: every question
    with its numbered options, and which one is open), Claude's plan (`plan`: its
    Markdown), else a permission request (`permission`)."""
    if name == questions.TOOL and (form := questions.parse(tool_input)) is not None:
        return {
            "t": "question",
            "request": request_id,
            "index": index,
            "questions": [
                {
                    "question": q.text,
                    "header": q.header,
                    "multi": q.multi,
                    "options": [
                        {"label": o.label, "description": o.description} for o in q.options
                    ],
                }
                for q in form.questions
            ],
        }
    if name == plans.TOOL:
        plan = plans.parse(tool_input)
        return {"t": "plan", "request": request_id, "plan": plans.terminal_text(plan)}
    return permission_payload(request_id, name, tool_input, session)


__all__ = ["agent_payload", "permission_detail", "permission_payload", "request_payload"]
