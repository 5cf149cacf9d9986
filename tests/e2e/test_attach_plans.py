"""`threadline attach` shows Claude's questions and plans as such, and answers them
through the same desks as the chat: the first answer wins across chat and terminal.

The daemon (the whole bridge, the real python-telegram-bot against the fake Bot API,
the real Claude Code CLI against the fake model, in plan mode) runs in the test; the
terminal is driven through the attach protocol and its events replayed into the real
`TerminalView`."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from bridge.cli.attach_client import AttachConnection, TerminalView
from tests.e2e.test_attach import Terminal
from tests.e2e.test_e2e_questions import DB_Q, FEAT_Q
from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.harness import Harness, start_harness, stop_harness
from tests.support.plan_steps import EXIT_PLAN, tool_results, write_plan

pytestmark = pytest.mark.e2e
PLAN = "# Plan: greet\n\n1. Write `hello.txt`\n2. Say **done**\n"


async def test_terminal_answers_questions_by_number_and_approves_the_plan(tmp_path: Path) -> None:
    h: Harness = await start_harness(tmp_path, agent_extra={"permission_mode": "plan"})
    terminal: Terminal | None = None
    try:
        target = h.root / "app" / "hello.txt"
        h.model.on(
            "ask then plan",
            ToolUse("AskUserQuestion", {"questions": [DB_Q, FEAT_Q]}),
            write_plan(PLAN),
            EXIT_PLAN,
            ToolUse("Write", {"file_path": str(target), "content": "hello\n"}),
            Text("All done."),
        )
        topic, sid = await h.new_session(str(h.root / "app"))
        terminal = Terminal(await AttachConnection.open(h.config.attach_socket()))
        await terminal.conn.send("attach", session=sid)
        await terminal.wait("attached")
        h.say("ask then plan", thread_id=topic)

        # the question, with its numbered options; the terminal answers the first by number
        asked = await terminal.wait("question")
        assert asked["index"] == 0 and [q["question"] for q in asked["questions"]] == [
            DB_Q["question"],
            FEAT_Q["question"],
        ]
        assert [o["label"] for o in asked["questions"][0]["options"]] == [
            "SQLite",
            "PostgreSQL",
            "DuckDB",
        ]
        request = asked["request"]
        await terminal.conn.send("question", request=request, index=0, text="2")
        answered = await terminal.wait("answered", request=request)
        assert answered["result"] == "Answered: PostgreSQL" and answered["index"] == 1
        first = await h.wait_msg(
            lambda m: "Which database" in m.visible_text and "Answered by" in m.visible_text,
            thread_id=topic,
        )
        assert "(terminal)" in first.visible_text and not first.buttons
        # the second is answered in the chat; the terminal's late answer is refused
        second = await h.wait_msg(
            lambda m: "Which features" in m.visible_text and bool(m.buttons), thread_id=topic
        )
        h.press(second, "Auth")
        await h.wait_msg(
            lambda m: m.message_id == second.message_id and "☑ 1." in m.visible_text,
            thread_id=topic,
        )
        h.press(h.tg.message(h.chat_id, second.message_id), "Done")
        decided = await terminal.wait("decided", request=request)
        assert decided["state"] == "allowed" and decided["by"] == "Ada"
        mark = len(terminal.events)
        await terminal.conn.send("question", request=request, index=1, text="3")
        late = await terminal.wait("answered", request=request, since=mark)
        assert late["result"].startswith("Already decided")

        # the plan, as Markdown; the terminal approves it with auto-accept
        plan = await terminal.wait("plan")
        assert "Plan: greet" in plan["plan"] and "hello.txt" in plan["plan"]
        chat_plan = await h.wait_msg(
            lambda m: "Plan: greet" in m.visible_text and bool(m.buttons), thread_id=topic
        )
        await terminal.conn.send("plan", request=plan["request"], text="auto")
        done = await terminal.wait("decided", request=plan["request"])
        assert done["state"] == "allowed" and done["mode"] == "acceptEdits"
        await h.wait_text("All done.", thread_id=topic)
        assert target.read_text() == "hello\n", "written without asking"
        assert any(
            '"Which database should I use?"="PostgreSQL"' in r
            and '"Which features do you want?"="Auth"' in r
            for r in tool_results(h.model.requests)
        )
        assert h.db.sessions.get(sid).mode == "acceptEdits"
        edited = h.tg.message(h.chat_id, chat_plan.message_id)
        assert not edited.buttons and "(terminal)" in edited.visible_text

        # the terminal renders all of it
        console = Console(record=True, width=100, file=io.StringIO())
        view = TerminalView(console)
        for ev in terminal.events:
            view.show(ev)
        shown = console.export_text()
        for needle in (
            "Which database should I use?",
            "2. PostgreSQL — a server",
            "Which features do you want?",
            "Answered: PostgreSQL",
            "Claude's plan",
            "Plan: greet",
            "Plan approved by",
            "permission mode acceptEdits",
        ):
            assert needle in shown, needle
        assert not view.open and not view.questions
    finally:
        if terminal is not None:
            await terminal.close()
        await stop_harness(h)


async def test_terminal_sends_the_plan_back_with_feedback(tmp_path: Path) -> None:
    h: Harness = await start_harness(tmp_path, agent_extra={"permission_mode": "plan"})
    terminal: Terminal | None = None
    try:
        h.model.on("plan only", write_plan(PLAN), EXIT_PLAN, Text("Revising."))
        topic, sid = await h.new_session(str(h.root / "app"))
        terminal = Terminal(await AttachConnection.open(h.config.attach_socket()))
        await terminal.conn.send("attach", session=sid)
        await terminal.wait("attached")
        h.say("plan only", thread_id=topic)
        plan = await terminal.wait("plan")
        # a line typed while the plan is the newest open request answers it
        view = TerminalView(Console(file=io.StringIO()))
        view.show(plan)
        routed = view.route("Use a config file instead")
        assert routed == ("plan", {"request": plan["request"], "text": "Use a config file instead"})
        await terminal.conn.send(routed[0], **routed[1])
        decided = await terminal.wait("decided", request=plan["request"])
        assert decided["state"] == "denied"
        await h.wait_text("Revising.", thread_id=topic)
        assert any("Use a config file instead" in r for r in tool_results(h.model.requests))
        sent_back = await h.wait_msg(
            lambda m: "Plan: greet" in m.visible_text and "Sent back by" in m.visible_text,
            thread_id=topic,
        )
        assert "(terminal)" in sent_back.visible_text
        assert h.db.sessions.get(sid).mode == "plan"
    finally:
        if terminal is not None:
            await terminal.close()
        await stop_harness(h)


def test_typed_lines_answer_the_newest_open_request() -> None:
    view = TerminalView(Console(file=io.StringIO()))
    assert view.route("2") is None, "nothing open: a prompt"
    view.show({"t": "permission", "request": "p1", "line": "Bash: ls", "detail": "ls"})
    assert view.route("allow") is None and view.answer_for("allow") == ("p1", "a", "")
    view.show(
        {"t": "question", "request": "q1", "index": 0, "questions": [DB_Q | {"multi": False}]}
    )
    assert view.route("2") == ("question", {"request": "q1", "index": 0, "text": "2"})
    view.show({"t": "answered", "request": "q1", "result": "x", "index": 0})
    view.show({"t": "decided", "request": "q1", "state": "allowed", "by": "Ada"})
    assert view.route("2") is None, "back to the permission"
