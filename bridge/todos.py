"""Claude Code's task list as one checklist message per turn, edited in place.

What the bundled CLI (2.1.337) does, seen against the fake model: the task list is
kept with tools that never ask permission (no `can_use_tool` call; the SDK reports
them as ordinary tool calls, so they reach us as `ToolStarted` / `ToolFinished`).
By default they are `TaskCreate` (`{subject, description, activeForm?}`; its result
says "Task #N created successfully: …"), `TaskUpdate` (`{taskId, status?, subject?,
activeForm?, …}`, status `deleted` removes the task; the result says "Updated task
#N …", or why not — "Task #7 not found" — without being an error) and the readers `TaskList`
("#1 [in_progress] Write code" per line) and `TaskGet`; with
`CLAUDE_CODE_ENABLE_TASKS=false` it is `TodoWrite` instead (`{todos: [{content,
status, activeForm}]}`, the whole list every call).  Either set is offered only to
some models (the claude-4 family and older) unless `CLAUDE_CODE_ENABLE_TODO_TOOLS=1`
is set: with the CLI's own default model the task list does not exist.

`TaskBook` rebuilds the list from those calls the way the CLI's own reconstruction
does (a created task gets its id from the result; an update of a task we never saw
shows its id).  `checklist` renders it (☐ pending, ◐ in progress with its active
form, ☑ completed; capped, escaped).  `TodoView`, owned by the turn's `TurnView`,
posts the checklist when the first task-list call of the turn arrives, edits it
through the outbox's coalescing stream path (priority 1, so updates cost no more
calls than the chat's budget allows), and at the end of the turn writes the last
list at priority 0, so it is never left stale.  After a restart the edit still
pending is delivered as it is (recovery drops only the status message's stream).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from adapters.messages import Markdown, Outbound, ThreadRef
from agent.events import ToolFinished, ToolStarted
from bridge.outbox.outbox import Outbox
from bridge.render import md_escape

log = logging.getLogger(__name__)

TODO_WRITE: Final = "TodoWrite"
TASK_CREATE: Final = "TaskCreate"
TASK_UPDATE: Final = "TaskUpdate"
TASK_LIST: Final = "TaskList"
TASK_TOOLS: Final = frozenset({TODO_WRITE, TASK_CREATE, TASK_UPDATE, TASK_LIST, "TaskGet"})

MAX_ITEMS: Final = 20  # items shown; the rest is counted
ITEM_CHARS: Final = 120  # one item's text, before escaping
MAX_CHARS: Final = 2500  # the whole checklist's Markdown: one message on every platform

_ICON: Final = {"pending": "☐", "in_progress": "◐", "completed": "☑"}
_CREATED = re.compile(r"Task #(\S+) created successfully")
_LISTED = re.compile(r"#(\S+) \[(\w+)\] (.*)")


@dataclass(frozen=True, slots=True)
class Todo:
    content: str
    status: str = "pending"
    active_form: str = ""


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def _one_line(text: str, limit: int = ITEM_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def parse_todos(value: Any) -> list[Todo] | None:
    """`TodoWrite`'s `todos` as a list, or None if it is not a list.  Entries that are
    not objects are skipped; missing fields are empty."""
    if not isinstance(value, list):
        return None
    out: list[Todo] = []
    for entry in value:
        if isinstance(entry, Mapping):
            out.append(
                Todo(
                    _text(entry.get("content")),
                    _text(entry.get("status")),
                    _text(entry.get("activeForm")),
                )
            )
    return out


class TaskBook:
    """The task list as the CLI holds it, rebuilt from its tool calls."""

    def __init__(self) -> None:
        self._items: dict[str, Todo] = {}
        self._undo: dict[str, dict[str, Todo]] = {}  # tool_use_id → the list before it

    @property
    def items(self) -> list[Todo]:
        return list(self._items.values())

    def started(self, tool_use_id: str, name: str, input: Mapping[str, Any]) -> bool:
        """Apply a call as it starts; True if the list changed."""
        before = dict(self._items)
        if name == TODO_WRITE:
            todos = parse_todos(input.get("todos"))
            if todos is None:
                log.info("TodoWrite without a todos list ignored")
                return False
            self._items = {f"w{i}": t for i, t in enumerate(todos)}
        elif name == TASK_CREATE:
            subject = _text(input.get("subject"))
            active = _text(input.get("activeForm")) or subject
            self._items[f"tool:{tool_use_id}"] = Todo(subject, "pending", active)
        elif name == TASK_UPDATE:
            task_id = _text(input.get("taskId"))
            if not task_id:
                return False
            status = input.get("status")
            if status == "deleted":
                self._items.pop(task_id, None)
            else:
                old = self._items.get(task_id)
                renamed = input.get("subject")
                content = _text(renamed) if renamed is not None else (old.content if old else "")
                self._items[task_id] = Todo(
                    content or f"#{task_id}",
                    _text(status) if status is not None else (old.status if old else "pending"),
                    _text(input.get("activeForm"))
                    or (old.active_form if old else "")
                    or _text(renamed),
                )
        else:
            return False
        self._undo[tool_use_id] = before
        return self._items != before

    def finished(self, tool_use_id: str, name: str, output: str, is_error: bool) -> bool:
        """Apply a call's result; True if the list changed."""
        latest = next(reversed(self._undo), None)
        before = self._undo.pop(tool_use_id, None)
        if name == TASK_UPDATE and not output.lstrip().startswith("Updated task #"):
            is_error = True  # "Task #7 not found" comes back as an ordinary result
        if is_error:
            # The CLI refused the call (bad input, unknown task, tool not offered): the
            # list is as it was before it — unless a later call changed it since, when
            # only what this call added goes.
            if before is None:
                return False
            if latest == tool_use_id:
                changed = self._items != before
                self._items = before
                return changed
            return self._items.pop(f"tool:{tool_use_id}", None) is not None
        if name == TASK_CREATE:
            match = _CREATED.search(output)
            key = f"tool:{tool_use_id}"
            if match is None or key not in self._items:
                return False
            self._items = {(match.group(1) if k == key else k): v for k, v in self._items.items()}
            return False  # same list, now under the CLI's id
        if name == TASK_LIST:
            before_list = dict(self._items)
            for line in output.splitlines():
                found = _LISTED.fullmatch(line.strip())
                if found is None:
                    continue
                task_id, status, subject = found.groups()
                old = self._items.get(task_id)
                self._items[task_id] = Todo(subject, status, old.active_form if old else "")
            return self._items != before_list
        return False


def _line(todo: Todo) -> str:
    icon = _ICON.get(todo.status, "☐")
    text = md_escape(_one_line(todo.content) or "(untitled)")
    if todo.status == "in_progress":
        return f"{icon} **{md_escape(_one_line(todo.active_form or todo.content) or '…')}**"
    if todo.status == "completed":
        return f"{icon} ~~{text}~~"
    return f"{icon} {text}"


def checklist(todos: Sequence[Todo], *, interrupted: bool = False) -> Outbound:
    """The checklist message: a count, then one line per task (capped: a window that
    keeps the task in progress in view, and "… N more")."""
    done = sum(1 for t in todos if t.status == "completed")
    header = f"📋 **Tasks** · {done}/{len(todos)} done" + (" · ⏹ stopped" if interrupted else "")
    lines = [_line(t) for t in todos]
    active = next((i for i, t in enumerate(todos) if t.status == "in_progress"), 0)
    start = max(0, min(active - 2, len(lines) - MAX_ITEMS))
    shown: list[str] = []
    size = len(header)
    for line in lines[start : start + MAX_ITEMS]:
        if size + len(line) + 1 > MAX_CHARS:
            break
        shown.append(line)
        size += len(line) + 1
    body = [header]
    if start:
        body.append(f"_… {start} earlier_")
    body += shown
    if start + len(shown) < len(lines):
        body.append(f"_… {len(lines) - start - len(shown)} more_")
    if not todos:
        body.append("_(no tasks)_")
    return Outbound((Markdown("\n".join(body)),), notify=False)


class TodoView:
    """One turn's checklist message (see the module docstring)."""

    def __init__(
        self, *, session_id: str, thread: ThreadRef, outbox: Outbox, stream_key: str
    ) -> None:
        self.session_id = session_id
        self.thread = thread
        self.outbox = outbox
        self.stream_key = f"{stream_key}:todos"
        self.book = TaskBook()
        self.row_id: int | None = None
        self._ids: dict[str, str] = {}  # tool_use_id → name, for the calls of ours
        self._last: Outbound | None = None

    def on_tool(self, ev: ToolStarted) -> bool:
        """A tool call started; True if it is a task-list call (shown here, not as a
        tool line)."""
        if ev.name not in TASK_TOOLS:
            return False
        self._ids[ev.tool_use_id] = ev.name
        inp: Mapping[str, Any] = ev.input if isinstance(ev.input, Mapping) else {}
        changed = self.book.started(ev.tool_use_id, ev.name, inp)
        if changed:
            self._show()
        return True

    def on_tool_done(self, ev: ToolFinished) -> bool:
        """A tool call finished; True if it was a task-list call (its output is the
        CLI's note to the model, not worth showing)."""
        name = self._ids.pop(ev.tool_use_id, None)
        if name is None:
            return False
        if self.book.finished(ev.tool_use_id, name, ev.output, ev.is_error):
            self._show()
        return True

    def end(self, *, interrupted: bool) -> None:
        """The last list, exact, at priority 0 (a stream update may be coalesced away,
        this never is)."""
        if self.row_id is None:
            return
        msg = checklist(self.book.items, interrupted=interrupted)
        self.outbox.supersede(self.stream_key)
        try:
            if self.outbox.withdraw(self.row_id):
                # Never sent (a busy chat): the final list is sent instead of send + edit.
                self.row_id = self._send(msg)
            else:
                self.outbox.enqueue_edit(self.thread, self.row_id, msg, priority=0)
        except ValueError as e:  # the thread moved to another chat: the answer matters more
            log.info("session %s: task list not finished: %s", self.session_id, e)
        self._last = msg

    def _show(self) -> None:
        items = self.book.items
        if self.row_id is None and not items:
            return
        msg = checklist(items)
        if msg == self._last:
            return
        self._last = msg
        if self.row_id is None:
            self.row_id = self._send(msg)
            return
        try:
            self.outbox.enqueue_edit(
                self.thread, self.row_id, msg, priority=1, stream_key=self.stream_key
            )
        except ValueError as e:  # the thread moved to another chat
            log.info("session %s: task list not updated: %s", self.session_id, e)

    def _send(self, msg: Outbound) -> int:
        return self.outbox.enqueue(self.thread, msg, session_id=self.session_id, priority=0)[0]
