"""Claude's clarifying questions (the `AskUserQuestion` tool) as buttons.

The CLI asks `can_use_tool` for AskUserQuestion like for any tool; the input holds
1–4 ``questions``, each ``{"question", "header", "multiSelect", "options": [{"label",
"description"}]}``.  The host answers by allowing the call with the input plus
``"answers": {question text: chosen label}`` (several labels of a multi-select joined
with ", "; a free answer is its text) — the CLI then hands Claude a tool_result
naming each answer.  The broker (`permissions.py`) keeps the request row, the thread,
stale, foreign and forged checks and the timeout; this module holds what is special:
parsing the input, one message per question (asked in order: each message stays
small and within every platform's button limits, Matrix numbers its reactions 1️⃣ 2️⃣ …
per message, and an answered question is edited to show the answer and who gave it),
toggling multi-select options, **Other…** taking the next text reply (or any reply to
the question) as the free answer, option numbers typed as text (``2``, ``1, 3``), and the answers once the last question is answered.
Button data is ``q:<request>:<question index>:<option index | o | d>`` (≤ 64 bytes).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from adapters.messages import Button, Markdown, Outbound
from bridge.render import md_escape as md

log = logging.getLogger(__name__)

TOOL: Final = "AskUserQuestion"
MAX_QUESTIONS: Final = 4
MAX_OPTIONS: Final = 9  # numbered 1–9 (Matrix keycaps, text answers)
LABEL_CHARS: Final = 60  # a button's label (Slack allows 75, Telegram shows ~30 on a phone)
TEXT_CHARS: Final = 500  # a question's or description's shown text


@dataclass(frozen=True, slots=True)
class Option:
    label: str
    description: str


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    header: str
    multi: bool
    options: tuple[Option, ...]


@dataclass(slots=True)
class Form:
    """One AskUserQuestion call being answered: where it is, and what was chosen."""

    questions: tuple[Question, ...]
    index: int = 0
    selected: set[int] = field(default_factory=set)  # multi-select toggles, current question
    awaiting_other: bool = False
    answers: dict[str, str] = field(default_factory=dict)
    message_ids: list[int] = field(default_factory=list)  # outbox row of each question

    @property
    def current(self) -> Question:
        return self.questions[self.index]

    @property
    def done(self) -> bool:
        return self.index >= len(self.questions)


def parse(tool_input: Mapping[str, Any]) -> Form | None:
    """The questions of an AskUserQuestion input, or None when it is not one we can
    show as buttons (the broker then shows an ordinary permission prompt)."""
    raw = tool_input.get("questions")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_QUESTIONS:
        return None
    out: list[Question] = []
    for q in raw:
        if not isinstance(q, dict) or not isinstance(q.get("question"), str):
            return None
        opts = q.get("options")
        if not isinstance(opts, list) or not 1 <= len(opts) <= MAX_OPTIONS:
            return None
        options = []
        for o in opts:
            if not isinstance(o, dict) or not isinstance(o.get("label"), str) or not o["label"]:
                return None
            options.append(Option(o["label"], str(o.get("description") or "")))
        out.append(
            Question(
                q["question"],
                str(q.get("header") or ""),
                q.get("multiSelect") is True,
                tuple(options),
            )
        )
    if len({q.text for q in out}) != len(out):  # answers are keyed by question text
        return None
    return Form(tuple(out))


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _head(form: Form, index: int) -> str:
    q = form.questions[index]
    count = f" · {index + 1}/{len(form.questions)}" if len(form.questions) > 1 else ""
    header = (
        f"**{md(_cut(q.header, 60))}**{count}\n"
        if q.header
        else (f"Question{count.replace(' · ', ' ')}\n" if count else "")
    )
    return f"❓ {header}{md(_cut(q.text, TEXT_CHARS))}"


def _option_lines(q: Question, selected: set[int] | None) -> str:
    lines = []
    for i, o in enumerate(q.options):
        box = ("☑ " if i in selected else "☐ ") if selected is not None else ""
        desc = f" — {md(_cut(o.description, TEXT_CHARS))}" if o.description else ""
        lines.append(f"{box}{i + 1}. **{md(_cut(o.label, LABEL_CHARS))}**{desc}")
    return "\n".join(lines)


def data(request_id: str, index: int, action: str) -> str:
    out = f"q:{request_id}:{index}:{action}"
    if len(out.encode()) > 64:
        raise ValueError(f"request id too long for button data: {request_id!r}")
    return out


def question_message(request_id: str, form: Form) -> Outbound:
    """The current question with one button per option, Other… and (multi) Done."""
    q, i = form.current, form.index
    selected = form.selected if q.multi else None
    if form.awaiting_other:
        how = "✏️ _Write your answer as the next message in this thread (or reply to this one)._"
    elif q.multi:
        how = "_Tap options to select them, then **Done** — or **Other…** to write your own._"
    else:
        how = "_Tap an option, or **Other…** to write your own answer._"
    body = f"{_head(form, i)}\n\n{_option_lines(q, selected)}\n\n{how}"
    rows: list[tuple[Button, ...]] = [
        (Button(f"{n + 1}. {_cut(o.label, LABEL_CHARS)}", data(request_id, i, str(n))),)
        for n, o in enumerate(q.options)
    ]
    last = [Button("✏️ Other…", data(request_id, i, "o"))]
    if q.multi:
        last.append(Button("✅ Done", data(request_id, i, "d"), "primary"))
    rows.append(tuple(last))
    return Outbound((Markdown(body),), tuple(rows), notify=True, mention=True, role="prompt")


def answered_message(form: Form, index: int, answer: str, by: str) -> Outbound:
    """A question once answered: the question, its options, and who chose what."""
    q = form.questions[index]
    who = f" by {md(by)}" if by else ""
    body = (
        f"{_head(form, index)}\n\n{_option_lines(q, None)}\n\n"
        f"✅ Answered{who}: **{md(_cut(answer, TEXT_CHARS))}**"
    )
    return Outbound((Markdown(body),))


def closed_message(form: Form | None, tool_input: Mapping[str, Any], line: str) -> Outbound:
    """The open question of a request that ended unanswered (timeout, stop, restart)."""
    if form is None or form.done:
        form = parse(tool_input)
    if form is None:
        return Outbound((Markdown(f"❓ Claude's question\n\n{line}"),))
    q = form.current
    return Outbound((Markdown(f"{_head(form, form.index)}\n\n{_option_lines(q, None)}\n\n{line}"),))


def choose(form: Form, action: str) -> tuple[str, str | None]:
    """Apply a press to the current question: ("toggled" | "other" | "answered" |
    "invalid", the answer when one was given)."""
    q = form.current
    if action.isdigit() and int(action) < len(q.options):
        n = int(action)
        if q.multi:
            form.selected ^= {n}
            form.awaiting_other = False
            return "toggled", None
        return "answered", q.options[n].label
    if action == "o":
        form.awaiting_other = True
        return "other", None
    if action == "d" and q.multi:
        if not form.selected:
            return "invalid", None
        return "answered", ", ".join(q.options[n].label for n in sorted(form.selected))
    return "invalid", None


def numbered(form: Form, text: str) -> str | None:
    """A text answer naming options by number — ``2``, or ``1, 3`` for a multi-select
    (Matrix has no buttons, and typing is quicker than reacting) — or None when the text
    is not only option numbers."""
    q = form.current
    picks = text.replace(",", " ").split()
    if not picks or not all(p.isdigit() and 1 <= int(p) <= len(q.options) for p in picks):
        return None
    chosen = sorted({int(p) - 1 for p in picks})
    if len(chosen) > 1 and not q.multi:
        return None
    return ", ".join(q.options[n].label for n in chosen)


def record(form: Form, answer: str) -> None:
    """Store the current question's answer and move to the next one."""
    form.answers[form.current.text] = answer
    form.index += 1
    form.selected = set()
    form.awaiting_other = False


def updated_input(tool_input: Mapping[str, Any], form: Form) -> dict[str, Any]:
    """What the CLI expects back: the input as asked, plus the answers."""
    return {**dict(tool_input), "answers": dict(form.answers)}


__all__ = [
    "TOOL",
    "Form",
    "Option",
    "Question",
    "answered_message",
    "choose",
    "closed_message",
    "data",
    "numbered",
    "parse",
    "question_message",
    "record",
    "updated_input",
]
