"""The question desk: the flow of Claude's clarifying questions (AskUserQuestion) over
the permission broker's request rows.

A question is a pending request like any permission: the broker (`permissions.py`)
stores the row, runs the timeout, and its checks refuse foreign and stale presses.
The desk posts one message per question, in order (`questions.py` renders them),
applies presses (an option, Other…, a multi-select toggle, Done) and text answers
(option numbers; after Other…, or as a reply to the question, the text itself),
edits each answered question to show the answer and who gave it, and once the last
is answered has the broker allow the call with the input plus ``answers`` — what the
CLI expects.  An unanswered question's message says why it closed.  The desk sees
the broker only through `Gate` (`gate.py`), so neither module imports the other's internals.
"""

from __future__ import annotations

import json
from typing import Protocol

from adapters.messages import ThreadRef
from agent.events import PermissionAsked
from bridge import render
from bridge.approvals import questions
from bridge.approvals.gate import Gate
from bridge.approvals.outcome import Outcome, PressResult
from bridge.outbox.outbox import Outbox
from storage.db import Database
from storage.models import PermissionRequestRow


class Asked(Protocol):
    """A pending request as the desk sees it."""

    request_id: str
    event: PermissionAsked
    thread: ThreadRef
    prompt_ids: tuple[int, ...]
    form: questions.Form | None


class QuestionDesk:
    def __init__(self, gate: Gate[Asked], db: Database, outbox: Outbox) -> None:
        self.gate = gate
        self.db = db
        self.outbox = outbox

    def post(self, pending: Asked, form: questions.Form) -> None:
        """Post the form's current question; its message is the request's prompt."""
        ids = self.outbox.enqueue(
            pending.thread,
            questions.question_message(pending.request_id, form),
            session_id=pending.event.session_id,
            priority=0,
        )
        form.message_ids.append(ids[0])
        pending.prompt_ids = (*pending.prompt_ids, *ids)
        self.db.permissions.set_prompt(pending.request_id, ids[0])

    async def press(
        self, request_id: str, rest: str, thread: ThreadRef, by_key: str, by_name: str
    ) -> PressResult:
        """A press on a question's button, ``<question index>:<option | o | d>``."""
        row = self.db.permissions.get(request_id) if request_id else None
        pending = self.gate.find(request_id)
        index, _, action = rest.partition(":")
        if row is None or row.tool_name != questions.TOOL:
            return self.gate.refuse(
                thread, by_key, request_id, "unknown question", "Unknown request."
            )
        refused = self.gate.check(row, thread, by_key)
        if refused is not None:
            return refused
        form = pending.form if pending is not None else None
        if pending is None or form is None or index != str(form.index):
            return self.gate.refuse(
                thread, by_key, request_id, "not the open question", "That question is closed."
            )
        outcome, answer = questions.choose(form, action)
        if outcome == "invalid":
            return PressResult(Outcome.ANSWERED, "Select at least one option first.")
        if answer is None:  # toggled, or Other… pressed: show the new state
            self.outbox.enqueue_edit(
                thread,
                form.message_ids[-1],
                questions.question_message(request_id, form),
                priority=0,
            )
            return PressResult(Outcome.ANSWERED, "Write your answer." if outcome == "other" else "")
        await self._answer(pending, form, answer, by_key, by_name)
        return PressResult(Outcome.ANSWERED, f"Answered: {answer[:150]}")

    async def _answer(
        self, pending: Asked, form: questions.Form, answer: str, by_key: str, by_name: str
    ) -> None:
        """Record the current question's answer: ask the next, or give Claude them all."""
        index = form.index
        questions.record(form, answer)
        by = by_name or by_key
        self.db.audit.log(
            platform=pending.thread.platform,
            user=by_key,
            action="question",
            detail=f"answered {pending.request_id[:40]} #{index + 1}: {answer[:200]}",
        )
        self.outbox.enqueue_edit(
            pending.thread,
            form.message_ids[index],
            questions.answered_message(form, index, answer, by),
            priority=0,
        )
        if not form.done:
            self.post(pending, form)
            return
        summary = "; ".join(f"{q[:80]} → {a[:80]}" for q, a in form.answers.items())
        await self.gate.finish(
            pending.request_id,
            "allowed",
            by=by,
            reason=summary[:500],
            updated=questions.updated_input(pending.event.input, form),
        )

    async def text(
        self, thread: ThreadRef, text: str, by_key: str, by_name: str, reply_to: str | None
    ) -> bool:
        """Text answering an open question in `thread`: option numbers, or a free answer
        after **Other…** or as a reply to the question."""
        target = self.gate.replied(thread, reply_to)
        for pending in self.gate.waiting():
            form = pending.form
            if form is None or pending.thread != thread or form.done:
                continue
            picked = None if form.awaiting_other else questions.numbered(form, text)
            if picked is not None or form.awaiting_other or pending.request_id == target:
                answer = picked if picked is not None else text.strip()[:2000]
                await self._answer(pending, form, answer, by_key, by_name)
                return True
        return False

    async def answer_typed(
        self, request_id: str, index: int, text: str, thread: ThreadRef, by_key: str, by_name: str
    ) -> tuple[PressResult, int | None]:
        """A terminal's answer to question `index` of `request_id`: option numbers or a
        free answer.  Also returns the question open afterwards (None: none), so a
        terminal that missed an answer given in the chat catches up."""
        row = self.db.permissions.get(request_id) if request_id else None
        if row is None or row.tool_name != questions.TOOL:
            refused = self.gate.refuse(
                thread, by_key, request_id, "unknown question", "Unknown request."
            )
            return refused, None
        refused_press = self.gate.check(row, thread, by_key)
        pending = self.gate.find(request_id)
        form = pending.form if pending is not None else None
        if refused_press is not None or pending is None or form is None or form.done:
            return refused_press or self.gate.refuse(
                thread, by_key, request_id, "not the open question", "That question is closed."
            ), None
        if index != form.index:
            refused = self.gate.refuse(
                thread,
                by_key,
                request_id,
                "not the open question",
                f"That question was answered already; question {form.index + 1} is open.",
            )
            return refused, form.index
        if not text:
            return PressResult(Outcome.ANSWERED, "Type an option number or your answer."), index
        picked = questions.numbered(form, text)
        answer = picked if picked is not None else text[:2000]
        await self._answer(pending, form, answer, by_key, by_name)
        return PressResult(Outcome.ANSWERED, f"Answered: {answer[:150]}"), (
            None if form.done else form.index
        )

    def close(
        self, row: PermissionRequestRow, state: render.Decision, pending: Asked | None
    ) -> None:
        """An unanswered question's message says why it closed (answered ones say whom)."""
        if state == "allowed" or row.prompt_outbox_id is None:
            return  # the last answer already edited it
        binding = self.db.bindings.for_session(row.session_id)
        if binding is None:
            return
        thread = ThreadRef(binding.platform, binding.chat_id, binding.thread_id)
        try:
            asked = json.loads(row.input_json)
        except ValueError:
            asked = {}
        minutes = (
            f"{self.gate.timeout_s / 60:g} min"
            if self.gate.timeout_s >= 60
            else f"{self.gate.timeout_s:g} s"
        )
        line = {
            "timeout": f"⏱ No answer in {minutes} — Claude was told.",
            "expired": f"⏹ Closed unanswered ({render.md_escape(row.reason or 'expired')}).",
        }.get(state, f"Closed: {state}.")
        form = pending.form if pending is not None else None
        closed = questions.closed_message(form, asked if isinstance(asked, dict) else {}, line)
        self.outbox.enqueue_edit(thread, row.prompt_outbox_id, closed, priority=0)


__all__ = ["Asked", "QuestionDesk"]
