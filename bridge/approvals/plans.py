"""Claude's plan (the `ExitPlanMode` tool) as a message with three buttons.

In plan mode Claude writes its plan to a plan file and calls ExitPlanMode; the CLI
(2.1.337, seen in its `can_use_tool` requests) asks for it with the input
``{"plan": <the plan file's text>, "planFilePath": <its path>}`` — the file's text
replaces whatever `plan` the model put in the call, and with no plan file the input is
``{}``.  Allowing the call makes the CLI leave plan mode for ``default`` (it reports
``permissionMode: default``); denying it keeps plan mode, and the deny message is the
tool_result Claude reads (``is_error``).  So the three answers are:

- **Approve**: the session is switched to ``default``, then the call allowed;
- **Approve & auto-accept edits**: the session is switched to ``acceptEdits``, then the
  call allowed — switched first, since the CLI keeps a mode set while the call waits
  and its next Edit/Write then runs without asking;
- **Keep planning**: the next text (or a reply to the plan) is the feedback, and the
  call is denied with it, so Claude stays in plan mode and revises.

This module renders the plan (its Markdown shown up to `PLAN_CHARS`; a longer plan
shows its start and is attached whole as ``plan.md``), the decided and closed forms,
and reads the typed answers Matrix relies on.  Button data is ``l:<request>:<a|e|k>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from adapters.messages import Block, Button, FileOut, Markdown, Outbound
from bridge.render import md_escape as md

TOOL: Final = "ExitPlanMode"
PLAN_CHARS: Final = 3000  # fits one message on every platform (Telegram: 4096)
FEEDBACK_CHARS: Final = 4000
Action = Literal["a", "e", "k"]
ACTIONS: Final[tuple[Action, ...]] = ("a", "e", "k")
# The permission mode the session is in after each approval (what the CLI does for a
# plain approval, what "auto-accept" switches to).
MODE_AFTER: Final[dict[str, str]] = {"a": "default", "e": "acceptEdits"}
# Typed answers (Matrix has no buttons; a terminal types too).
WORDS: Final[dict[str, Action]] = {
    "approve": "a",
    "approved": "a",
    "auto": "e",
    "approve auto": "e",
    "accept edits": "e",
    "keep planning": "k",
    "keep": "k",
}
FEEDBACK_PREFIX: Final = (
    "The user did not approve the plan yet. Stay in plan mode, revise the plan with "
    "this feedback, and call ExitPlanMode again when it is ready. Their feedback:\n\n"
)


@dataclass(slots=True)
class Plan:
    """One ExitPlanMode call being answered."""

    text: str
    path: str
    awaiting_feedback: bool = False  # Keep planning was pressed: the next text is feedback
    deciding: bool = False  # an answer is being applied: later presses are refused
    outcome: str = ""  # the decided line (Markdown), once the desk decided


def parse(tool_input: Mapping[str, Any]) -> Plan:
    """The plan of an ExitPlanMode input (empty text when the CLI sent none)."""
    text = tool_input.get("plan")
    path = tool_input.get("planFilePath")
    return Plan(text if isinstance(text, str) else "", path if isinstance(path, str) else "")


def data(request_id: str, action: str) -> str:
    out = f"l:{request_id}:{action}"
    if len(out.encode()) > 64:
        raise ValueError(f"request id too long for button data: {request_id!r}")
    return out


def word(text: str) -> Action | None:
    """The answer a typed word names (``approve``, ``auto``, ``keep planning``), or None."""
    return WORDS.get(" ".join(text.lower().replace("&", " ").split()).rstrip(".!"))


def _body(plan: Plan, *, attach: bool) -> tuple[list[Block], FileOut | None]:
    text = plan.text.strip()
    if not text:
        return [Markdown("_(Claude sent no plan text.)_")], None
    if len(text) <= PLAN_CHARS:
        return [Markdown(text)], None
    cut = text[:PLAN_CHARS]
    cut = cut[: cut.rfind("\n")] if "\n" in cut[PLAN_CHARS // 2 :] else cut
    more = len(text) - len(cut)
    note = (
        f"⚠️ **{more} more characters** — the whole plan is attached as `plan.md`."
        if attach
        else f"_… {more} more characters (attached above as `plan.md`)_"
    )
    file = FileOut("plan.md", plan.text.encode("utf-8", "replace")) if attach else None
    return [Markdown(_close_fence(cut)), Markdown(note)], file


def _close_fence(text: str) -> str:
    """A code fence the cut left open is closed, so the note below is not code."""
    fences = sum(1 for line in text.split("\n") if line.lstrip().startswith("```"))
    return f"{text}\n```" if fences % 2 else text


HEADER: Final = "📋 **Claude's plan** — approve it to start"


def plan_message(request_id: str, plan: Plan) -> Outbound:
    """The plan with Approve / Approve & auto-accept edits / Keep planning."""
    body, file = _body(plan, attach=True)
    if plan.awaiting_feedback:
        how = (
            "✏️ _Write your feedback as the next message in this thread (or reply to this "
            "one): Claude keeps planning with it._"
        )
    else:
        how = (
            "_**Approve** starts in default mode (edits ask); **auto-accept** applies "
            "edits without asking; **Keep planning** sends your feedback._"
        )
    buttons = (
        (Button("✅ Approve", data(request_id, "a"), "primary"),),
        (Button("⏩ Approve & auto-accept edits", data(request_id, "e")),),
        (Button("✏️ Keep planning", data(request_id, "k")),),
    )
    return Outbound(
        (Markdown(HEADER), *body, Markdown(how)),
        buttons,
        notify=True,
        file=file,
        mention=True,
        role="prompt",
    )


def decided_line(action: Action, by: str, feedback: str = "") -> str:
    """What the plan says once answered, and by whom (Markdown)."""
    who = f" by {md(by)}" if by else ""
    if action == "a":
        return f"✅ Approved{who} — permission mode **default** (edits ask)"
    if action == "e":
        return f"⏩ Approved{who} — permission mode **acceptEdits** (edits run without asking)"
    shown = " ".join(feedback.split())
    shown = shown if len(shown) <= 500 else shown[:499] + "…"
    return f"✏️ Sent back{who} — Claude keeps planning. Feedback: {md(shown)}"


def decided_message(plan: Plan, line: str) -> Outbound:
    """The plan once answered or closed: no buttons, the plan, the line saying why."""
    body, _ = _body(plan, attach=False)
    return Outbound((Markdown("📋 **Claude's plan**"), *body, Markdown(line)))


def feedback_message(feedback: str) -> str:
    """The deny message Claude reads as the ExitPlanMode tool_result."""
    return FEEDBACK_PREFIX + feedback.strip()[:FEEDBACK_CHARS]


def terminal_text(plan: Plan) -> str:
    """The plan for `threadline attach` (the terminal shows it as Markdown)."""
    return plan.text.strip() or "(Claude sent no plan text.)"


__all__ = [
    "ACTIONS",
    "MODE_AFTER",
    "PLAN_CHARS",
    "TOOL",
    "Action",
    "Plan",
    "data",
    "decided_line",
    "decided_message",
    "feedback_message",
    "parse",
    "plan_message",
    "terminal_text",
    "word",
]
