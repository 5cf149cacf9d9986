"""The permission broker: turns the agent's `PermissionAsked` into a prompt with
buttons, and a button press (or a timeout) back into the agent's decision.

A request is a database row first (random id, used in the button data), so a press
can be checked against it: the request must exist, still be pending, belong to the
thread the press came from.  The first answer wins: the pending → decided
transition is a single conditional UPDATE.  "Allow for session" stores a rule (the
tool; for Bash the command prefix) that later requests in the session match without
asking.  Unanswered requests are denied after `timeout_s`, and the thread says so.
On start, requests left pending by a previous run are marked expired and their
prompts edited: their buttons no longer act and nothing is approved silently.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

from agent.events import PermissionAsked, PermissionDecision
from bridge import render
from bridge.messages import ThreadRef
from bridge.outbox import Outbox
from bridge.tasks import TaskGroup
from storage.db import Database
from storage.models import PermissionRequestRow, SessionRule

log = logging.getLogger(__name__)

Choice = Literal["a", "s", "d"]
_CHOICE_STATE = {"a": "allowed", "s": "allowed_session", "d": "denied"}
_SHELL_META = (";", "&&", "||", "|", "`", "$(", ">", "<", "\n", "&")


def bash_prefix(command: str) -> str:
    """The prefix an "Allow for session" rule stores for a Bash command: the program
    and, if it looks like one, its subcommand (`npm test`, `git status`, `pytest`)."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    if not words:
        return ""
    if (
        len(words) > 1
        and words[1].replace("-", "").replace("_", "").isalnum()
        and not words[1].startswith("-")
    ):
        return f"{words[0]} {words[1]}"
    return words[0]


def rule_matches(rule: SessionRule, tool: str, tool_input: Mapping[str, object]) -> bool:
    if rule.tool_name != tool:
        return False
    if tool != "Bash" or not rule.pattern:
        return True
    command = str(tool_input.get("command", "")).strip()
    # A chained or redirected command could smuggle anything past the prefix.
    if any(meta in command for meta in _SHELL_META):
        return False
    return command == rule.pattern or command.startswith(rule.pattern + " ")


@dataclass(slots=True)
class _Pending:
    request_id: str
    event: PermissionAsked
    thread: ThreadRef
    cwd: str
    timer: asyncio.Task[None] | None = None


class PermissionBroker:
    def __init__(self, db: Database, outbox: Outbox, tasks: TaskGroup, *, timeout_s: float) -> None:
        self.db = db
        self.outbox = outbox
        self.tasks = tasks
        self.timeout_s = timeout_s
        self._pending: dict[str, _Pending] = {}

    async def ask(self, event: PermissionAsked, thread: ThreadRef, cwd: str) -> None:
        """Resolve at once by a session rule, or post a prompt and wait for a press."""
        for rule in self.db.permissions.rules(event.session_id):
            if rule_matches(rule, event.name, event.input):
                log.info("session %s: %s allowed by session rule", event.session_id, event.name)
                self._resolve(event, PermissionDecision(allow=True))
                return
        request_id = secrets.token_urlsafe(12)
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
        pending = _Pending(request_id, event, thread, cwd)
        self._pending[request_id] = pending
        prompt = render.permission_prompt(request_id, event.name, event.input, cwd)
        ids = self.outbox.enqueue(thread, prompt, session_id=event.session_id, priority=0)
        self.db.permissions.set_prompt(request_id, ids[0])
        pending.timer = self.tasks.spawn(
            self._expire_later(request_id), name=f"permission-timeout-{request_id}"
        )
        if event.future.done():  # the turn was interrupted meanwhile
            await self._finish(request_id, "expired", by="", reason="turn ended")

    async def press(
        self,
        request_id: str,
        choice: str,
        thread: ThreadRef,
        by_key: str,
        by_name: str,
        *,
        reason: str = "",
    ) -> str:
        """Apply a button press (or a text answer); returns a short answer for the
        presser.  A deny `reason` is passed to Claude and shown on the prompt."""
        row = self.db.permissions.get(request_id) if request_id else None
        if row is None or choice not in _CHOICE_STATE:
            return self._refused(thread, by_key, request_id, "unknown request", "Unknown request.")
        if row.thread_key != thread.key:
            return self._refused(
                thread,
                by_key,
                request_id,
                "from another thread",
                "That button does not belong here.",
            )
        if row.state != "pending":
            who = f" by {row.decided_by}" if row.decided_by else ""
            return self._refused(
                thread, by_key, request_id, f"already {row.state}", f"Already decided{who}."
            )
        state = _CHOICE_STATE[choice]
        if not await self._finish(request_id, state, by=by_name or by_key, reason=reason[:500]):
            return self._refused(thread, by_key, request_id, "already decided", "Already decided.")
        self.db.audit.log(
            platform=thread.platform,
            user=by_key,
            action="permission",
            detail=f"{row.tool_name} {state}",
        )
        if state == "allowed_session":
            command = (
                json.loads(row.input_json).get("command", "") if row.tool_name == "Bash" else ""
            )
            self.db.permissions.add_rule(
                SessionRule(
                    session_id=row.session_id,
                    tool_name=row.tool_name,
                    pattern=bash_prefix(str(command)),
                    created_by=by_key,
                )
            )
        return {
            "allowed": "Allowed.",
            "allowed_session": "Allowed for this session.",
            "denied": "Denied.",
        }[state]

    def _refused(
        self, thread: ThreadRef, by_key: str, request_id: str, why: str, answer: str
    ) -> str:
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
        return answer

    async def answer_text(self, thread: ThreadRef, text: str, by_key: str, by_name: str) -> bool:
        """A text answer (`allow`, `always`, `deny [reason]`) to the newest pending prompt
        in `thread`; False if there is none or the text is not an answer."""
        word, _, reason = text.strip().partition(" ")
        choice = {"allow": "a", "yes": "a", "always": "s", "deny": "d", "no": "d"}.get(word.lower())
        candidates = [p for p in self._pending.values() if p.thread == thread]
        if choice is None or not candidates:
            return False
        await self.press(
            candidates[-1].request_id,
            choice,
            thread,
            by_key,
            by_name,
            reason=reason.strip() if choice == "d" else "",
        )
        return True

    async def cancel_session(self, session_id: str, reason: str) -> None:
        """Deny everything pending for a session (stop, end)."""
        for request_id, pending in list(self._pending.items()):
            if pending.event.session_id == session_id:
                await self._finish(request_id, "expired", by="", reason=reason)

    def expire_stale(self) -> list[PermissionRequestRow]:
        """On start: requests left pending by a previous run can no longer be answered."""
        stale = self.db.permissions.pending()
        for row in stale:
            if self.db.permissions.decide(row.id, "expired", by="", reason="daemon restarted"):
                self._edit_prompt(row, "expired", by="")
        return stale

    async def _expire_later(self, request_id: str) -> None:
        await asyncio.sleep(self.timeout_s)
        pending = self._pending.get(request_id)
        if pending is None:
            return
        if await self._finish(request_id, "timeout", by=""):
            minutes = self.timeout_s / 60
            shown = f"{minutes:g} min" if self.timeout_s >= 60 else f"{self.timeout_s:g} s"
            self.outbox.enqueue(
                pending.thread,
                render.notice(
                    f"⏱ No answer to the {pending.event.name} request within {shown}: denied.",
                    notify=True,
                ),
                session_id=pending.event.session_id,
                priority=0,
            )

    async def _finish(self, request_id: str, state: str, *, by: str, reason: str = "") -> bool:
        if not self.db.permissions.decide(request_id, state, by=by, reason=reason):
            return False
        pending = self._pending.pop(request_id, None)
        row = self.db.permissions.get(request_id)
        if row is not None:
            self._edit_prompt(row, state, by=by)
        if pending is not None:
            if pending.timer is not None and pending.timer is not asyncio.current_task():
                pending.timer.cancel()
            allow = state in ("allowed", "allowed_session")
            message = "" if allow else (reason or f"The user did not allow this ({state}).")
            self._resolve(pending.event, PermissionDecision(allow=allow, message=message))
        return True

    def _edit_prompt(self, row: PermissionRequestRow, state: str, *, by: str) -> None:
        if row.prompt_outbox_id is None:
            return
        binding = self.db.bindings.for_session(row.session_id)
        session = self.db.sessions.get(row.session_id)
        if binding is None or session is None:
            return
        thread = ThreadRef(binding.platform, binding.chat_id, binding.thread_id)
        decided = render.permission_decided(
            row.tool_name,
            json.loads(row.input_json),
            session.cwd,
            cast(render.Decision, state),
            by,
            row.reason,
            timeout_s=self.timeout_s,
        )
        self.outbox.enqueue_edit(thread, row.prompt_outbox_id, decided, priority=0)

    @staticmethod
    def _resolve(event: PermissionAsked, decision: PermissionDecision) -> None:
        if not event.future.done():
            event.future.set_result(decision)
