"""The plan desk: the flow of Claude's plan (ExitPlanMode) over the permission
broker's request rows.

A plan is a pending request like any permission: the broker (`permissions.py`) stores
the row, runs the timeout, and its checks refuse foreign and stale presses.  The desk
posts the plan (`plans.py` renders it), applies presses and typed answers from the
chat or a terminal, and decides: an approval first switches the session's permission
mode — the live CLI, the stored session row, a notice in the thread — and then allows
the call; **Keep planning** waits for the person's feedback (its press restarts the
timeout, since the person now has to write) and denies the call with it.  The first
answer wins: `Plan.deciding` is set before the first await, so a second press in the
meantime is refused as "already decided".  The desk sees the broker only through
`PlanGate` (`gate.py`), the agent host only through `ModeSwitch`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from adapters.messages import Outbound, ThreadRef
from agent.events import PermissionAsked
from agent.host import AgentHost
from bridge import render
from bridge.approvals import plans
from bridge.approvals.gate import Gate
from bridge.approvals.outcome import Outcome, PressResult
from bridge.outbox.outbox import Outbox
from storage.db import Database
from storage.models import PermissionRequestRow

log = logging.getLogger(__name__)

# (session id, mode): switch the live session, if any, to `mode`.
ModeSwitch = Callable[[str, str], Awaitable[None]]


def host_switch(host: AgentHost) -> ModeSwitch:
    """The `ModeSwitch` of the agent host: the live session, if any, changes mode
    (a CLI started later reads the stored mode)."""

    async def switch(session_id: str, mode: str) -> None:
        agent = host.get(session_id)
        if agent is not None:
            await agent.set_mode(mode)

    return switch


class Asked(Protocol):
    """A pending request as the desk sees it."""

    request_id: str
    event: PermissionAsked
    thread: ThreadRef
    plan: plans.Plan | None


class PlanGate(Gate[Asked], Protocol):
    """The broker as the plan desk sees it: also restarting a request's timeout (the
    person pressed Keep planning and now has to write)."""

    def rearm(self, request_id: str) -> None: ...


class PlanDesk:
    def __init__(
        self, gate: PlanGate, db: Database, outbox: Outbox, switch_mode: ModeSwitch | None
    ) -> None:
        self.gate = gate
        self.db = db
        self.outbox = outbox
        self.switch_mode = switch_mode

    def post(self, pending: Asked, plan: plans.Plan) -> Sequence[int]:
        """Post the plan; its message is the request's prompt (outbox row ids)."""
        ids = self.outbox.enqueue(
            pending.thread,
            plans.plan_message(pending.request_id, plan),
            session_id=pending.event.session_id,
            priority=0,
        )
        self.db.permissions.set_prompt(pending.request_id, ids[0])
        return ids

    async def press(
        self, request_id: str, action: str, thread: ThreadRef, by_key: str, by_name: str
    ) -> PressResult:
        """A press on the plan's buttons (``a``, ``e``, ``k``), from the chat or a terminal."""
        row = self.db.permissions.get(request_id) if request_id else None
        if row is None or row.tool_name != plans.TOOL or action not in plans.ACTIONS:
            return self.gate.refuse(thread, by_key, request_id, "unknown plan", "Unknown request.")
        refused = self.gate.check(row, thread, by_key)
        if refused is not None:
            return refused
        pending = self.gate.find(request_id)
        plan = pending.plan if pending is not None else None
        if pending is None or plan is None or plan.deciding:
            return self.gate.refuse(
                thread, by_key, request_id, "already decided", "Already decided."
            )
        if action == "k":
            return self._keep_planning(pending, plan, by_key)
        return await self._approve(pending, plan, action, by_key, by_name)

    def _keep_planning(self, pending: Asked, plan: plans.Plan, by_key: str) -> PressResult:
        if not plan.awaiting_feedback:
            plan.awaiting_feedback = True
            self.gate.rearm(pending.request_id)  # the person has to write now
            self._edit(pending, plans.plan_message(pending.request_id, plan))
            self._audit(pending, by_key, "keep planning: waiting for feedback")
        return PressResult(Outcome.ANSWERED, "Write your feedback as the next message.")

    async def _approve(
        self, pending: Asked, plan: plans.Plan, action: plans.Action, by_key: str, by_name: str
    ) -> PressResult:
        plan.deciding = True
        mode = plans.MODE_AFTER[action]
        session_id = pending.event.session_id
        # The mode first, then the allow: the CLI keeps a mode set while ExitPlanMode
        # waits, so its next Edit already runs under it (allowing first would leave a
        # window in which an edit asks, and the CLI itself goes to `default`).
        if self.switch_mode is not None:
            try:
                await self.switch_mode(session_id, mode)
            except Exception:  # a dead CLI: the next one starts with the stored mode
                log.exception("session %s: switching to %s failed", session_id, mode)
        self.db.sessions.update(session_id, mode=mode)
        by = by_name or by_key
        plan.outcome = plans.decided_line(action, by)
        if not await self.gate.finish(pending.request_id, "allowed", by=by, reason=f"mode {mode}"):
            return self.gate.refuse(
                pending.thread, by_key, pending.request_id, "already decided", "Already decided."
            )
        self._audit(pending, by_key, f"approved: mode {mode}")
        self.outbox.enqueue(
            pending.thread,
            render.notice(f"Permission mode: **{mode}**"),
            session_id=session_id,
            priority=0,
        )
        return PressResult(Outcome.ALLOWED, f"Approved; permission mode {mode}.")

    async def feedback(
        self, pending: Asked, plan: plans.Plan, text: str, by_key: str, by_name: str
    ) -> None:
        """Send the plan back with the person's feedback: Claude keeps planning."""
        plan.deciding = True
        by = by_name or by_key
        plan.outcome = plans.decided_line("k", by, text)
        if await self.gate.finish(
            pending.request_id, "denied", by=by, reason=plans.feedback_message(text)
        ):
            self._audit(pending, by_key, f"sent back: {' '.join(text.split())[:200]}")

    async def text(
        self, thread: ThreadRef, text: str, by_key: str, by_name: str, reply_to: str | None
    ) -> bool:
        """Text answering a plan in `thread`: ``approve`` / ``auto`` / ``keep planning``,
        or — after Keep planning, or as a reply to the plan — the feedback itself."""
        target = self.gate.replied(thread, reply_to)
        for pending in self.gate.waiting():
            plan = pending.plan
            if plan is None or pending.thread != thread or plan.deciding:
                continue
            if target is not None and target != pending.request_id:
                continue
            action = plans.word(text)
            if action is not None:
                result = await self.press(pending.request_id, action, thread, by_key, by_name)
                if action == "k" or not result.decided:
                    self.outbox.enqueue(
                        thread, render.notice(render.md_escape(result.text)), priority=0
                    )
                return True
            if plan.awaiting_feedback or target == pending.request_id:
                row = self.db.permissions.get(pending.request_id)
                refused = self.gate.check(row, thread, by_key) if row is not None else None
                if refused is None:
                    await self.feedback(pending, plan, text, by_key, by_name)
                return True
        return False

    async def answer(
        self, request_id: str, text: str, thread: ThreadRef, by_key: str, by_name: str
    ) -> PressResult:
        """A terminal's answer to the plan `request_id`: a word (`approve`, `auto`,
        `keep planning`) or, after keep planning, the feedback."""
        action = plans.word(text)
        if action is not None:
            return await self.press(request_id, action, thread, by_key, by_name)
        if not text.strip():
            return PressResult(Outcome.ANSWERED, "Type approve, auto, or your feedback.")
        row = self.db.permissions.get(request_id) if request_id else None
        if row is None or row.tool_name != plans.TOOL:
            return self.gate.refuse(thread, by_key, request_id, "unknown plan", "Unknown request.")
        refused = self.gate.check(row, thread, by_key)
        if refused is not None:
            return refused
        pending = self.gate.find(request_id)
        if pending is None or pending.plan is None or pending.plan.deciding:
            return self.gate.refuse(
                thread, by_key, request_id, "already decided", "Already decided."
            )
        await self.feedback(pending, pending.plan, text, by_key, by_name)
        return PressResult(Outcome.DENIED, "Sent back with your feedback; Claude keeps planning.")

    def close(
        self, row: PermissionRequestRow, state: render.Decision, pending: Asked | None
    ) -> None:
        """Edit the plan to its decided form: who answered what, or why it closed."""
        if row.prompt_outbox_id is None:
            return
        binding = self.db.bindings.for_session(row.session_id)
        if binding is None:
            return
        thread = ThreadRef(binding.platform, binding.chat_id, binding.thread_id)
        plan = pending.plan if pending is not None else None
        if plan is None:
            plan = plans.Plan("", "")
            try:
                asked = json.loads(row.input_json)
                plan = plans.parse(asked if isinstance(asked, dict) else {})
            except ValueError:
                pass
        line = plan.outcome
        if not line:
            t = self.gate.timeout_s
            minutes = f"{t / 60:g} min" if t >= 60 else f"{t:g} s"
            line = {
                "timeout": f"⏱ No answer in {minutes} — Claude was told and keeps planning.",
                "expired": f"⏹ Closed unanswered ({render.md_escape(row.reason or 'expired')}).",
            }.get(state, f"Closed: {state}.")
        self.outbox.enqueue_edit(
            thread, row.prompt_outbox_id, plans.decided_message(plan, line), priority=0
        )

    def _edit(self, pending: Asked, msg: Outbound) -> None:
        row = self.db.permissions.get(pending.request_id)
        if row is not None and row.prompt_outbox_id is not None:
            self.outbox.enqueue_edit(pending.thread, row.prompt_outbox_id, msg, priority=0)

    def _audit(self, pending: Asked, by_key: str, detail: str) -> None:
        self.db.audit.log(
            platform=pending.thread.platform,
            user=by_key,
            action="plan",
            detail=f"{detail} ({pending.request_id[:40]})"[:300],
        )


__all__ = ["Asked", "ModeSwitch", "PlanDesk", "PlanGate", "host_switch"]
