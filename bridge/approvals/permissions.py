"""The permission broker: turns the agent's `PermissionAsked` into a prompt with
buttons, and a button press (or a timeout) back into the agent's decision.

A request is a database row first (random id, used in the button data), so a press
can be checked against it: the request must exist, still be pending, belong to the
thread the press came from.  The first answer wins: the pending → decided
transition is a single conditional UPDATE.  "Allow for session" — offered only when
`bridge/approvals/rules.py` can make a rule that cannot widen — stores that rule, in Claude
Code's rule language, and later requests of the session that match it strictly run
without asking; the decided prompt says which rule.  "Allow always (project)" writes a
rule into the folder's `.claude/settings.local.json` (`project_rules.py` says which and
when).  Text answers (`allow`, `always`, `always project`, `deny [reason]`) decide the
prompt they reply to, or the only one pending.  Unanswered requests are denied after
`timeout_s`, and the thread says so.
On start, requests left pending by a previous run are marked expired and their
prompts edited: their buttons no longer act and nothing is approved silently.
Claude's questions (AskUserQuestion) and plans (ExitPlanMode) are requests too, shown
and answered by their desks (`question_desk.py`, `plan_desk.py`); never by a rule.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from adapters.messages import ThreadRef
from adapters.tasks import TaskGroup
from agent.events import PermissionAsked, PermissionDecision
from bridge import render
from bridge.approvals import plans, project_rules, questions, rules
from bridge.approvals.outcome import Outcome as Outcome
from bridge.approvals.outcome import PressResult as PressResult
from bridge.approvals.permission_notes import decided_prompt, offer_line, project_line, prompt_notes
from bridge.approvals.plan_desk import ModeSwitch, PlanDesk
from bridge.approvals.question_desk import QuestionDesk
from bridge.outbox.outbox import Outbox
from bridge.render import md_escape as md
from storage.db import Database
from storage.models import PermissionRequestRow, SessionRule, utcnow
from storage.types import RequestId

log = logging.getLogger(__name__)

_CHOICE_STATE: dict[str, render.Decision] = {
    "a": "allowed",
    "s": "allowed_session",
    "p": "allowed_project",
    "d": "denied",
}
# Text answers (Matrix relies on them).  Conversational words (yes, no, ok) are not
# approvals: they go to Claude as a prompt.
_TEXT_CHOICE = {"allow": "a", "always": "s", "deny": "d", "always project": "p"}


_DECIDED: dict[str, PressResult] = {
    "allowed": PressResult(Outcome.ALLOWED, "Allowed."),
    "allowed_session": PressResult(Outcome.ALLOWED_SESSION, "Allowed for this session."),
    "allowed_project": PressResult(Outcome.ALLOWED, "Allowed always in this project."),
    "denied": PressResult(Outcome.DENIED, "Denied."),
}


def stored_rule(row: SessionRule) -> rules.Rule:
    return rules.Rule(row.tool_name, row.pattern)


# How far back a start looks for decisions a killed daemon never showed on their prompts.
UNSHOWN_HORIZON = timedelta(days=1)


@dataclass(slots=True)
class _Pending:
    request_id: str
    event: PermissionAsked
    thread: ThreadRef
    cwd: str
    offer: rules.Rule | None  # what "Allow for session" stores; None: no such button
    prompt_ids: tuple[int, ...] = ()
    timer: asyncio.Task[None] | None = None
    form: questions.Form | None = None  # an AskUserQuestion shown as buttons
    plan: plans.Plan | None = None  # an ExitPlanMode shown as a plan to approve
    project: rules.Rule | None = None  # what "Allow always (project)" writes; None: no button


class PermissionBroker:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        tasks: TaskGroup,
        *,
        timeout_s: float,
        switch_mode: ModeSwitch | None = None,
        cli_env: Callable[[], Mapping[str, str]] = lambda: os.environ,
    ) -> None:
        self.db = db
        self.cli_env = cli_env  # where the CLI's user config lives (folder trust skips it)
        self.outbox = outbox
        self.tasks = tasks
        self.timeout_s = timeout_s
        self._pending: dict[str, _Pending] = {}
        self.questions = QuestionDesk(self, db, outbox)
        self.plans = PlanDesk(self, db, outbox, switch_mode)

    async def ask(self, event: PermissionAsked, thread: ThreadRef, cwd: str) -> None:
        """Resolve at once by a session rule, or post a prompt and wait for a press."""
        req = rules.Request(event.name, event.input, cwd, event.blocked_path, event.decision_reason)
        # A question is never answered by a rule: allowing it without answers is no answer.
        form = questions.parse(event.input) if event.name == questions.TOOL else None
        # Nor is a plan: approving it is the person's call (and switches the mode).
        plan = plans.parse(event.input) if event.name == plans.TOOL else None
        if form is None and plan is None and self._allowed_by_rule(event, req):
            self._resolve(event, PermissionDecision(allow=True))
            return
        request_id = RequestId(secrets.token_urlsafe(12))
        self.db.permissions.add(
            PermissionRequestRow(
                id=request_id,
                session_id=event.session_id,
                tool_use_id=event.tool_use_id,
                tool_name=event.name,
                input_json=json.dumps(dict(event.input), default=str)[:100_000],
                thread_key=thread.key,
            )
        )
        offer = None if form or plan else rules.rule_for(req)
        project = None if form or plan else project_rules.offer(req, event.suggestions)
        pending = _Pending(
            request_id, event, thread, cwd, offer, form=form, plan=plan, project=project
        )
        self._pending[request_id] = pending
        if form is not None:
            self.questions.post(pending, form)
        elif plan is not None:
            pending.prompt_ids = tuple(self.plans.post(pending, plan))
        else:
            prompt = render.permission_prompt(
                request_id,
                event.name,
                event.input,
                cwd,
                session_rule=offer_line(offer),
                project_rule=project_line(project, cwd),
                notes=prompt_notes(event, cwd),
            )
            ids = self.outbox.enqueue(thread, prompt, session_id=event.session_id, priority=0)
            pending.prompt_ids = tuple(ids)
            self.db.permissions.set_prompt(request_id, ids[0])
        pending.timer = self.tasks.spawn(
            self._expire_later(request_id), name=f"permission-timeout-{request_id}"
        )
        if event.future.done():  # the turn was interrupted meanwhile
            await self.finish(request_id, "expired", by="", reason="turn ended")

    def _allowed_by_rule(self, event: PermissionAsked, req: rules.Request) -> bool:
        """Does a session rule, or a project rule Threadline wrote, allow `req`?"""
        matched = next(
            (
                stored_rule(row)
                for row in self.db.permissions.rules(event.session_id)
                if rules.matches(stored_rule(row), req)
            ),
            None,
        )
        kind = "rule"
        if matched is None:
            matched, kind = project_rules.honoured(self.db, req), "project rule"
        if matched is None:
            return False
        log.info(
            "session %s: %s allowed by %s %s", event.session_id, event.name, kind, matched.text
        )
        return True

    async def press(
        self,
        request_id: str,
        choice: str,
        thread: ThreadRef,
        by_key: str,
        by_name: str,
        *,
        reason: str = "",
    ) -> PressResult:
        """Apply a button press (or a text answer): what it did, and a short answer for
        the presser.  A deny `reason` is passed to Claude and shown on the prompt."""
        row = self.db.permissions.get(request_id) if request_id else None
        if row is None or choice not in _CHOICE_STATE:
            return self.refuse(thread, by_key, request_id, "unknown request", "Unknown request.")
        refused = self.check(row, thread, by_key)
        if refused is not None:
            return refused
        state = _CHOICE_STATE[choice]
        pending = self._pending.get(request_id)
        if pending is not None and pending.form is not None:
            return self.refuse(
                thread, by_key, request_id, "a question, not a permission", "Use the options."
            )
        if row.tool_name == plans.TOOL:
            return self.refuse(
                thread, by_key, request_id, "a plan, not a permission", "Use the plan's buttons."
            )
        offer = pending.offer if pending is not None else None
        if state == "allowed_session" and offer is None:
            return self.refuse(
                thread,
                by_key,
                request_id,
                "no session rule offered",
                "This request cannot be allowed for the session.",
            )
        project = pending.project if pending is not None else None
        if state == "allowed_project":
            if project is None or pending is None:
                return self.refuse(
                    thread,
                    by_key,
                    request_id,
                    "no project rule offered",
                    "This request cannot be allowed always.",
                )
            written, line = project_rules.try_write(
                self.db,
                pending.cwd,
                project,
                by=by_key,
                session_id=pending.event.session_id,
                env=self.cli_env(),
            )
            if line:
                notice = render.notice(line)
                self.outbox.enqueue(thread, notice, session_id=row.session_id, priority=0)
            if not written:
                why = f"project rule not written: {line[:200]}"
                return self.refuse(thread, by_key, request_id, why, "Nothing was written.")
        # An allowed-for-session (or project) prompt keeps the rule it stored.
        note = offer.text if state == "allowed_session" and offer else reason[:500]
        note = project.text if state == "allowed_project" and project else note
        if not await self.finish(request_id, state, by=by_name or by_key, reason=note):
            return self.refuse(thread, by_key, request_id, "already decided", "Already decided.")
        self.db.audit.log(
            platform=thread.platform,
            user=by_key,
            action="permission",
            # The decision leads the detail: `allowed` on the row only says the press
            # was accepted, so `threadline audit` reads who decided what from here.
            detail=f"{state}: {row.tool_name}"
            + (f" {offer.text[:300]}" if offer and state == "allowed_session" else "")
            + (f" {project.text[:300]}" if project and state == "allowed_project" else ""),
        )
        if state == "allowed_session" and offer is not None:
            self.db.permissions.add_rule(
                SessionRule(
                    session_id=row.session_id,
                    tool_name=offer.tool,
                    pattern=offer.content,
                    created_by=by_key,
                )
            )
        return _DECIDED[state]

    def check(
        self, row: PermissionRequestRow, thread: ThreadRef, by_key: str
    ) -> PressResult | None:
        """The refusal of a press on `row` from `thread` — foreign or stale — or None."""
        if row.thread_key != thread.key:
            return self.refuse(
                thread, by_key, row.id, "from another thread", "That button does not belong here."
            )
        if row.state != "pending":
            who = f" by {row.decided_by}" if row.decided_by else ""
            return self.refuse(
                thread, by_key, row.id, f"already {row.state}", f"Already decided{who}."
            )
        return None

    async def answer_question(
        self, request_id: str, rest: str, thread: ThreadRef, by_key: str, by_name: str
    ) -> PressResult:
        """A press on one of Claude's questions (``q:<request>:<rest>``)."""
        return await self.questions.press(request_id, rest, thread, by_key, by_name)

    async def answer_plan(
        self, request_id: str, action: str, thread: ThreadRef, by_key: str, by_name: str
    ) -> PressResult:
        """A press on Claude's plan (``l:<request>:<a|e|k>``)."""
        return await self.plans.press(request_id, action, thread, by_key, by_name)

    def rearm(self, request_id: str) -> None:
        """Restart the timeout of a pending request (the person was asked to write)."""
        pending = self._pending.get(request_id)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        pending.timer = self.tasks.spawn(
            self._expire_later(request_id), name=f"permission-timeout-{request_id}"
        )

    def find(self, request_id: str) -> _Pending | None:
        """The pending request `request_id`, if this run is waiting for it."""
        return self._pending.get(request_id)

    def waiting(self) -> list[_Pending]:
        """Every request this run is waiting for."""
        return list(self._pending.values())

    def refuse(
        self, thread: ThreadRef, by_key: str, request_id: str, why: str, answer: str
    ) -> PressResult:
        """A press that decides nothing (forged, replayed, stale, foreign): logged and
        audited, and `answer` is what the presser is told."""
        log.warning("refused permission press %r from %s: %s", request_id[:40], by_key, why)
        self.db.audit.log(
            platform=thread.platform,
            user=by_key,
            action="permission",
            detail=f"refused {request_id[:40]}: {why}",
            allowed=False,
        )
        return PressResult(Outcome.REFUSED, answer)

    async def answer_text(
        self, thread: ThreadRef, text: str, by_key: str, by_name: str, *, reply_to: str | None
    ) -> bool:
        """A text answer — `allow`, `always`, `always project`, `deny [reason]` — to a pending prompt in
        `thread`: the prompt it replies to, else the only one pending.  With several
        pending and no reply to one of them, nothing is decided and the thread is told
        to reply to the prompt meant.  False if the text is not an answer (it is then a
        prompt for Claude)."""
        if text.strip() and await self.questions.text(thread, text, by_key, by_name, reply_to):
            return True
        if text.strip() and await self.plans.text(thread, text, by_key, by_name, reply_to):
            return True
        word, _, rest = text.strip().partition(" ")
        if " ".join(text.lower().split()).rstrip(".!") == "always project":
            word, rest = "always project", ""
        choice = _TEXT_CHOICE.get(word.lower().rstrip(".!"))
        if choice is None or (choice != "d" and rest.strip()):
            return False  # "allow me to explain…" is a prompt, not an answer
        candidates = [
            p for p in self._pending.values() if p.thread == thread and not p.form and not p.plan
        ]
        target = self.replied(thread, reply_to)
        if target is None and not candidates:
            return False
        if target is None and len(candidates) > 1:
            self.outbox.enqueue(
                thread,
                render.notice(
                    f"{len(candidates)} requests are waiting: use the buttons of the one "
                    f"you mean, or reply to it with `{md(word.lower())}`."
                ),
                priority=0,
            )
            return True
        request_id = target or candidates[0].request_id
        result = await self.press(
            request_id,
            choice,
            thread,
            by_key,
            by_name,
            reason=rest.strip() if choice == "d" else "",
        )
        if not result.decided:
            self.outbox.enqueue(thread, render.notice(md(result.text)), priority=0)
        return True

    def replied(self, thread: ThreadRef, reply_to: str | None) -> str | None:
        """The request whose prompt `reply_to` (a platform message id) is, if any."""
        if not reply_to:
            return None
        row_id = self.db.outbox.row_of_message(thread.platform, thread.chat_id, reply_to)
        if row_id is None:
            return None
        for pending in self._pending.values():
            if row_id in pending.prompt_ids:
                return pending.request_id
        found = self.db.permissions.by_prompt(row_id)
        return found.id if found is not None else None

    async def cancel_session(self, session_id: str, reason: str) -> None:
        """Deny everything pending for a session (stop, end)."""
        for request_id, pending in list(self._pending.items()):
            if pending.event.session_id == session_id:
                await self.finish(request_id, "expired", by="", reason=reason)

    def expire_stale(
        self, mine: Callable[[str], bool] = lambda session_id: True
    ) -> list[PermissionRequestRow]:
        """On start: requests left pending by a previous run can no longer be answered;
        and a prompt whose decision the previous run recorded but died before showing
        (two transactions) is edited now, so its buttons do not linger.  Only the
        requests of sessions `mine` accepts (this host's: another host's are live)."""
        stale = [row for row in self.db.permissions.pending() if mine(row.session_id)]
        for row in stale:
            if self.db.permissions.decide(row.id, "expired", by="", reason="daemon restarted"):
                self._edit_prompt(row, "expired", by="")
        since = utcnow() - UNSHOWN_HORIZON
        for row in self.db.permissions.decided_unshown(since):
            if row.state == "pending" or not mine(row.session_id):  # pending: narrows the type
                continue
            log.info("showing the decision on request %s's prompt (%s)", row.id, row.state)
            self._edit_prompt(row, row.state, by=row.decided_by)
        return stale

    async def _expire_later(self, request_id: str) -> None:
        await asyncio.sleep(self.timeout_s)
        pending = self._pending.get(request_id)
        if pending is None:
            return
        if await self.finish(request_id, "timeout", by=""):
            minutes = self.timeout_s / 60
            shown = f"{minutes:g} min" if self.timeout_s >= 60 else f"{self.timeout_s:g} s"
            what = (
                "Claude's question"
                if pending.form
                else ("Claude's plan" if pending.plan else f"the {pending.event.name} request")
            )
            self.outbox.enqueue(
                pending.thread,
                render.notice(
                    f"⏱ No answer to {what} within {shown}: denied.",
                    notify=True,
                ),
                session_id=pending.event.session_id,
                priority=0,
            )

    async def finish(
        self,
        request_id: str,
        state: render.Decision,
        *,
        by: str,
        reason: str = "",
        updated: dict[str, object] | None = None,
    ) -> bool:
        if not self.db.permissions.decide(request_id, state, by=by, reason=reason):
            return False
        pending = self._pending.pop(request_id, None)
        row = self.db.permissions.get(request_id)
        if row is not None:
            self._edit_prompt(row, state, by=by, pending=pending)
        if pending is not None:
            if pending.timer is not None and pending.timer is not asyncio.current_task():
                pending.timer.cancel()
            allow = state in ("allowed", "allowed_session", "allowed_project")
            message = "" if allow else (reason or f"The user did not allow this ({state}).")
            self._resolve(
                pending.event,
                PermissionDecision(allow=allow, message=message, updated_input=updated),
            )
        return True

    def _edit_prompt(
        self,
        row: PermissionRequestRow,
        state: render.Decision,
        *,
        by: str,
        pending: _Pending | None = None,
    ) -> None:
        if row.prompt_outbox_id is None:
            return
        if row.tool_name == questions.TOOL:
            self.questions.close(row, state, pending)
            return
        if row.tool_name == plans.TOOL:
            self.plans.close(row, state, pending)
            return
        binding = self.db.bindings.for_session(row.session_id)
        session = self.db.sessions.get(row.session_id)
        if binding is None or session is None:
            return
        thread = ThreadRef(binding.platform, binding.chat_id, binding.thread_id)
        decided = decided_prompt(row, session.cwd, state, by, timeout_s=self.timeout_s)
        self.outbox.enqueue_edit(thread, row.prompt_outbox_id, decided, priority=0)

    @staticmethod
    def _resolve(event: PermissionAsked, decision: PermissionDecision) -> None:
        if not event.future.done():
            event.future.set_result(decision)
