"""The task-list checklist (bridge/todos.py): what the list looks like, that hostile
input (not a list, huge lists, long or Markdown-laden text, unknown statuses) never
raises and always renders as one message on every platform with the text shown
literally, how TaskCreate/TaskUpdate/TaskList rebuild the list as the CLI does, and
that the view sends one message, edits it, and ends with the exact last list —
against the real outbox and a fake platform."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.matrix.render import render as matrix_render
from adapters.messages import Markdown, Outbound, ThreadRef
from adapters.slack.render import render as slack_render
from adapters.telegram.render import render as telegram_render
from adapters.telegram.render import visible_text
from agent.events import ToolFinished, ToolStarted
from bridge import render
from bridge.outbox.outbox import Outbox
from bridge.todos import MAX_ITEMS, TaskBook, Todo, TodoView, checklist, parse_todos
from storage.db import Database
from tests.integration.test_outbox import FakePlatform
from tests.support.fakes.slack import check_blocks, mrkdwn_plain

SID = "s1"
THREAD = ThreadRef("fake", "c1", "t1")


def md(msg: Outbound) -> str:
    [block] = msg.blocks
    assert isinstance(block, Markdown)
    return block.text


def write(book: TaskBook, todos: Any, tool_id: str = "t1") -> bool:
    return book.started(tool_id, "TodoWrite", {"todos": todos})


def test_checklist_marks_each_status_and_counts_done() -> None:
    todos = [
        Todo("Write the parser", "completed", "Writing the parser"),
        Todo("Test the parser", "in_progress", "Testing the parser"),
        Todo("Ship it", "pending", "Shipping"),
    ]
    assert md(checklist(todos)) == (
        "📋 **Tasks** · 1/3 done\n☑ ~~Write the parser~~\n◐ **Testing the parser**\n☐ Ship it"
    )
    assert md(checklist(todos, interrupted=True)).startswith("📋 **Tasks** · 1/3 done · ⏹ stopped")
    assert checklist(todos).notify is False


def test_text_is_escaped_flattened_and_capped() -> None:
    [line] = md(checklist([Todo("a *b* _c_ [d](e) `f`\n# g <h> ~~i~~", "pending")])).split("\n")[1:]
    assert line == r"☐ a \*b\* \_c\_ \[d\](e) \`f\` \# g \<h\> \~\~i\~\~"
    long = md(checklist([Todo("x" * 5000, "pending")]))
    assert len(long) < 200 and long.endswith("…")
    assert md(checklist([Todo("", "completed"), Todo("  ", "in_progress")])).split("\n")[1:] == [
        "☑ ~~(untitled)~~",
        "◐ **…**",
    ]


def test_a_huge_list_keeps_the_running_task_in_view_and_counts_the_rest() -> None:
    todos = [Todo(f"task {i}", "completed" if i < 300 else "pending") for i in range(500)]
    todos[300] = Todo("task 300", "in_progress", "Doing task 300")
    lines = md(checklist(todos)).split("\n")
    assert lines[0] == "📋 **Tasks** · 300/500 done"
    assert lines[1] == "_… 298 earlier_"
    assert "◐ **Doing task 300**" in lines
    assert lines[-1] == f"_… {500 - 298 - MAX_ITEMS} more_"
    assert len(lines) == MAX_ITEMS + 3


def test_unknown_status_and_bad_entries_do_not_raise() -> None:
    book = TaskBook()
    assert write(book, "not a list") is False
    assert write(book, None) is False
    assert write(book, [1, "x", None, {"content": 5, "status": "weird"}, {}]) is True
    assert md(checklist(book.items)) == "📋 **Tasks** · 0/2 done\n☐ 5\n☐ (untitled)"
    assert parse_todos({"content": "x"}) is None


def test_task_tools_rebuild_the_list_as_the_cli_does() -> None:
    book = TaskBook()
    book.started("a", "TaskCreate", {"subject": "Parse", "activeForm": "Parsing"})
    book.started("b", "TaskCreate", {"subject": "Test"})
    assert [t.content for t in book.items] == ["Parse", "Test"]
    book.finished("a", "TaskCreate", "Task #1 created successfully: Parse", False)
    book.finished("b", "TaskCreate", "Task #2 created successfully: Test", False)
    book.started("c", "TaskUpdate", {"taskId": "1", "status": "in_progress"})
    book.finished("c", "TaskUpdate", "Updated task #1 status", False)
    assert book.items[0] == Todo("Parse", "in_progress", "Parsing")
    # an update the CLI refuses (its result is not an error, just says why) is undone
    book.started("d", "TaskUpdate", {"taskId": "9", "status": "completed"})
    assert book.finished("d", "TaskUpdate", "Task #9 not found", False) is True
    assert len(book.items) == 2
    book.started("e", "TaskUpdate", {"taskId": "2", "status": "deleted"})
    book.finished("e", "TaskUpdate", "Updated task #2 deleted", False)
    assert [t.content for t in book.items] == ["Parse"]
    # a task from an earlier turn shows by its id until TaskList names it
    book.started("f", "TaskUpdate", {"taskId": "3", "status": "completed"})
    book.finished("f", "TaskUpdate", "Updated task #3 status", False)
    assert book.items[-1] == Todo("#3", "completed", "")
    book.started("g", "TaskList", {})
    book.finished("g", "TaskList", "#1 [in_progress] Parse\n#3 [completed] Old work", False)
    assert book.items[-1] == Todo("Old work", "completed", "")
    # a create the CLI refused goes
    book.started("h", "TaskCreate", {"subject": "Nope"})
    book.finished("h", "TaskCreate", "<tool_use_error>InputValidationError</tool_use_error>", True)
    assert [t.content for t in book.items] == ["Parse", "Old work"]


def test_a_refused_todo_write_leaves_the_list_as_it_was() -> None:
    book = TaskBook()
    write(book, [{"content": "A", "status": "pending"}], "w1")
    book.finished("w1", "TodoWrite", "Todos have been modified successfully.", False)
    write(book, [{"content": "B", "status": "pending"}], "w2")
    book.finished("w2", "TodoWrite", "<tool_use_error>disabled</tool_use_error>", True)
    assert [t.content for t in book.items] == ["A"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=40,
)
_item = st.fixed_dictionaries(
    {},
    optional={
        "content": st.text(max_size=600) | _json,
        "status": st.sampled_from(["pending", "in_progress", "completed", "deleted", ""])
        | st.text(max_size=20),
        "activeForm": st.text(max_size=600) | _json,
    },
)


def _one_per_platform(msg: Outbound) -> None:
    [tg] = telegram_render(msg)
    assert tg.payload["text"]
    [sl] = slack_render(msg)
    errors, _ = check_blocks(sl.payload["blocks"])
    assert not errors, errors
    [mx] = matrix_render(msg)
    assert mx.payload["content"]["body"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(todos=st.lists(_item, max_size=60) | _json, interrupted=st.booleans())
def test_hostile_todo_writes_render_as_one_message_everywhere(
    todos: Any, interrupted: bool
) -> None:
    book = TaskBook()
    write(book, todos)
    book.finished("t1", "TodoWrite", "ok", False)
    _one_per_platform(checklist(book.items, interrupted=interrupted))


_plain = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\u200b"),
    min_size=1,
    max_size=100,
).filter(lambda s: s.strip())


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "br":
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return "".join(parser.parts).replace("\n\n", "\n")


@settings(max_examples=150, deadline=None)
@given(content=_plain, status=st.sampled_from(["pending", "completed", "in_progress"]))
def test_any_text_is_shown_literally(content: str, status: str) -> None:
    flat = " ".join(content.split())
    icon = {"pending": "☐", "completed": "☑", "in_progress": "◐"}[status]
    msg = checklist([Todo(content, status, content)])
    [tg] = telegram_render(msg)
    assert visible_text(tg.payload["text"]).split("\n")[1] == f"{icon} {flat}"
    [mx] = matrix_render(msg)
    assert (
        html_text(mx.payload["content"]["formatted_body"]).strip().split("\n")[1]
        == f"{icon} {flat}"
    )
    [sl] = slack_render(msg)
    shown = mrkdwn_plain("\n".join(b["text"]["text"] for b in sl.payload["blocks"]))
    marks = str.maketrans("", "", "*_~")  # mrkdwn keeps its marks in the plain text
    assert shown.split("\n")[1].translate(marks) == f"{icon} {flat}".translate(marks)


@pytest.fixture
def db(tmp_path: Path) -> Any:
    database = Database(f"sqlite:///{tmp_path}/t.db")
    database.migrate()
    yield database
    database.close()


def _todo_write(n: int, statuses: list[str]) -> ToolStarted:
    todos = [
        {"content": f"T{i}", "status": s, "activeForm": f"Doing T{i}"}
        for i, s in enumerate(statuses)
    ]
    return ToolStarted(SID, f"w{n}", "TodoWrite", {"todos": todos})


def _done(n: int) -> ToolFinished:
    return ToolFinished(SID, f"w{n}", "TodoWrite", False, "Todos have been modified successfully.")


async def test_view_sends_once_edits_in_place_and_ends_exact(db: Database) -> None:
    fake = FakePlatform()
    outbox = Outbox(db, {"fake": fake}, retry_initial=0.01)
    await outbox.start()
    try:
        view = TodoView(session_id=SID, thread=THREAD, outbox=outbox, stream_key="s1:1")
        assert view.on_tool(ToolStarted(SID, "x", "Bash", {"command": "ls"})) is False
        assert view.on_tool(_todo_write(1, ["pending", "pending"])) is True
        assert view.on_tool_done(_done(1)) is True
        assert await outbox.wait_idle(timeout=5)
        for n, statuses in enumerate((["in_progress", "pending"], ["completed", "in_progress"]), 2):
            view.on_tool(_todo_write(n, statuses))
            view.on_tool_done(_done(n))
        view.end(interrupted=False)
        assert await outbox.wait_idle(timeout=5)
    finally:
        await outbox.stop()
    sends = [c for c in fake.calls if c.op == "send"]
    assert len(sends) == 1 and sends[0].text.startswith("📋 **Tasks** · 0/2 done")
    assert [c.op for c in fake.calls if c.op != "send"], "edited in place"
    final = checklist([Todo("T0", "completed", "Doing T0"), Todo("T1", "in_progress", "Doing T1")])
    assert fake.messages[("c1", sends[0].message_id)] == final.plain


async def test_view_never_sent_in_a_busy_chat_sends_the_final_list_instead(db: Database) -> None:
    fake = FakePlatform()
    outbox = Outbox(db, {"fake": fake}, retry_initial=0.01)  # not started: nothing goes out
    view = TodoView(session_id=SID, thread=THREAD, outbox=outbox, stream_key="s1:1")
    view.on_tool(_todo_write(1, ["pending"]))
    view.on_tool(_todo_write(2, ["in_progress"]))
    view.on_tool(_todo_write(3, ["completed"]))
    view.end(interrupted=True)
    await outbox.start()
    try:
        assert await outbox.wait_idle(timeout=5)
    finally:
        await outbox.stop()
    assert [c.op for c in fake.calls] == ["send"]
    final = checklist([Todo("T0", "completed", "Doing T0")], interrupted=True)
    assert fake.calls[0].text == final.plain == "📋 **Tasks** · 1/1 done · ⏹ stopped\n☑ ~~T0~~"


async def test_no_checklist_without_tasks(db: Database) -> None:
    fake = FakePlatform()
    outbox = Outbox(db, {"fake": fake})
    view = TodoView(session_id=SID, thread=THREAD, outbox=outbox, stream_key="s1:1")
    view.on_tool(_todo_write(1, []))
    view.on_tool(ToolStarted(SID, "l", "TaskList", {}))
    view.on_tool_done(ToolFinished(SID, "l", "TaskList", False, "No tasks found"))
    view.end(interrupted=False)
    assert view.row_id is None and db.outbox.count(state="pending") == 0


def test_task_tool_lines_where_tool_lines_are_shown() -> None:
    """The terminal attach and the importer still show task calls as one line each (a
    chat thread shows the checklist instead)."""
    assert render.tool_line("TaskCreate", {"subject": "Parse", "description": "x"}) == (
        "TaskCreate: Parse"
    )
    assert render.tool_line("TaskUpdate", {"taskId": "3", "status": "completed"}) == (
        "TaskUpdate #3 → completed"
    )
    assert render.tool_line("TaskUpdate", {"taskId": "3"}) == "TaskUpdate #3"


async def test_a_thread_moved_to_another_chat_never_breaks_the_turn_end(db: Database) -> None:
    fake = FakePlatform()
    outbox = Outbox(db, {"fake": fake}, retry_initial=0.01)
    await outbox.start()
    try:
        view = TodoView(session_id=SID, thread=THREAD, outbox=outbox, stream_key="s1:1")
        view.on_tool(_todo_write(1, ["pending"]))
        assert await outbox.wait_idle(timeout=5)
        view.thread = ThreadRef("fake", "elsewhere", None)  # edits must stay in their chat
        view.on_tool(_todo_write(2, ["in_progress"]))
        view.end(interrupted=False)  # logged, not raised: the answer still goes out
    finally:
        await outbox.stop()
    assert [c.op for c in fake.calls] == ["send"]
