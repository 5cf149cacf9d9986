"""End to end on Telegram: the real python-telegram-bot against the fake Bot API, the
real Claude Code CLI against the fake Anthropic API, and the whole bridge between.

Each test plays the person (messages, button presses) and checks what a person would
see in the chat and what really happened on disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.harness import OWNER, STRANGER, Harness, start_harness, stop_harness

pytestmark = pytest.mark.e2e


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path)
    yield harness
    await stop_harness(harness)


def has_buttons(m: object, *labels: str) -> bool:
    got = getattr(m, "button_labels", [])
    return all(any(label in b for b in got) for label in labels)


async def prompt_in(h: Harness, topic: int, timeout: float = 30.0):  # noqa: ANN201
    return await h.wait_msg(
        lambda m: has_buttons(m, "Allow", "Deny"), timeout=timeout, thread_id=topic
    )


async def test_new_session_streams_into_a_topic_and_ends_with_a_footer(h: Harness) -> None:
    answer = "\n\n".join(
        f"Paragraph {i}: the test failed because add() subtracted." for i in range(12)
    )
    h.model.on("fix the failing test", Text(answer, chunk=25, delay=0.03))
    topic, sid = await h.new_session(str(h.root / "app"), "fix the failing test")
    assert h.tg.topic(h.chat_id, topic).name.startswith("app: fix the failing test")
    final = await h.wait_text("⏱", thread_id=topic)
    assert answer in final.visible_text, "the final message carries the exact answer"
    assert final.disable_notification is False, "the final answer notifies"
    assert "$" in final.visible_text.splitlines()[-1]
    drafts = h.tg.drafts(chat_id=h.chat_id, thread_id=topic)
    assert drafts, "the answer streamed as native drafts in the private chat"
    assert all(d.visible_text.strip() and d.visible_text.strip()[:30] in answer for d in drafts)
    # A quick plain answer needs no status message (the drafts showed the text): the
    # topic holds its header and the answer, and only the answer notifies.  (A longer
    # turn's status and its Stop button: tests/e2e/test_e2e_one_message.py.)
    assert await h.bridge.outbox.wait_idle(timeout=15)
    assert not any(m.buttons for m in h.bot_messages(topic)), "no Stop button left after"
    assert [m for m in h.bot_messages(topic) if not m.disable_notification] == [final]
    row = h.db.sessions.get(sid)
    assert row is not None and row.cost_usd > 0 and row.claude_session_id
    assert h.tg.count_429 == 0


def _buttons(version: object) -> list[dict]:
    markup = getattr(version, "reply_markup", None) or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]


async def test_write_allowed_changes_the_file_and_prompt_shows_the_decision(h: Harness) -> None:
    target = h.root / "app" / "hello.py"
    target.write_text("print('hello')\n")
    h.model.on(
        "greet the world",
        ToolUse("Write", {"file_path": str(target), "content": "print('hello, world')\n"}),
        Text("Updated hello.py."),
    )
    topic, _ = await h.new_session(str(h.root / "app"), "greet the world")
    prompt = await prompt_in(h, topic)
    assert "hello.py" in prompt.visible_text
    assert (
        "-print('hello')" in prompt.visible_text and "+print('hello, world')" in prompt.visible_text
    )
    assert "@@" in prompt.visible_text
    assert prompt.disable_notification is False
    assert all(len(b["callback_data"].encode()) <= 64 for b in prompt.buttons)
    query = h.press(prompt, "Allow")
    await h.wait_text("Updated hello.py.", thread_id=topic)
    assert target.read_text() == "print('hello, world')\n"
    edited = h.tg.message(h.chat_id, prompt.message_id)
    assert not edited.buttons and "Allowed by Ada" in edited.visible_text
    assert h.tg.callback_answer(query) is not None, "every button press is answered"


async def test_write_denied_leaves_the_file_alone(h: Harness) -> None:
    target = h.root / "app" / "secret.txt"
    h.model.on(
        "make a secret",
        ToolUse("Write", {"file_path": str(target), "content": "x"}),
        Text("Fine, I won't."),
    )
    topic, _ = await h.new_session(str(h.root / "app"), "make a secret")
    prompt = await prompt_in(h, topic)
    h.press(prompt, "Deny")
    await h.wait_text("Fine, I won't.", thread_id=topic)
    assert not target.exists()
    assert "Denied by Ada" in h.tg.message(h.chat_id, prompt.message_id).visible_text
    # a second press on the decided prompt changes nothing
    assert not h.tg.message(h.chat_id, prompt.message_id).buttons


async def test_audit_shows_a_denied_permission_as_denied(h: Harness, tmp_path: Path) -> None:
    """The Deny press was accepted, but what it decided was a denial: the audit row and
    `threadline audit` (run as a process on the daemon's database) say `denied`."""
    from tests.e2e.test_cli import threadline

    target = h.root / "app" / "nope.txt"
    h.model.on(
        "write nope",
        ToolUse("Write", {"file_path": str(target), "content": "x"}),
        Text("Not written."),
    )
    topic, _ = await h.new_session(str(h.root / "app"), "write nope")
    h.press(await prompt_in(h, topic), "Deny")
    await h.wait_text("Not written.", thread_id=topic)
    rows = [r for r in h.db.audit.recent() if r.action == "permission"]
    assert [r.detail for r in rows] == ["denied: Write"] and rows[0].allowed
    cfg = h.write_config(tmp_path / "audit.toml")
    code, out = await threadline("audit", "--config", str(cfg))
    line = next((x for x in out.splitlines() if "permission" in x), "")
    assert code == 0 and "denied" in line and "allowed" not in line, out


async def test_allow_for_session_lets_matching_requests_pass(h: Harness) -> None:
    app = h.root / "app"
    h.model.on("first file", ToolUse("Bash", {"command": f"touch {app}/one"}), Text("one done"))
    h.model.on("second file", ToolUse("Bash", {"command": f"touch {app}/one"}), Text("two done"))
    h.model.on(
        "third file",
        ToolUse("Bash", {"command": f"rm -f {app}/one && touch {app}/three"}),
        Text("three done"),
    )
    topic, _ = await h.new_session(str(app), "first file")
    prompt = await prompt_in(h, topic)
    assert f"touch {app}/one" in prompt.visible_text, "a Bash prompt shows the command"
    h.press(prompt, "Allow for session")
    await h.wait_text("one done", thread_id=topic)
    h.say("second file", thread_id=topic)
    await h.wait_text("two done", thread_id=topic)
    prompts = [
        m
        for m in h.bot_messages(topic)
        if "Allowed for this session" in (m.visible_text or "")
        or m.buttons
        and "Allow" in m.button_labels
    ]
    assert len(prompts) == 1, "the same command again matched the session rule, unasked"
    # a chained command does not ride on the rule
    h.say("third file", thread_id=topic)
    third = await h.wait_msg(
        lambda m: has_buttons(m, "Allow") and "three" in (m.visible_text or ""), thread_id=topic
    )
    h.press(third, "Deny")
    await h.wait_text("three done", thread_id=topic)
    assert (app / "one").exists() and not (app / "three").exists()


async def test_unanswered_permission_is_denied_after_the_timeout(tmp_path: Path) -> None:
    h = await start_harness(tmp_path, agent_extra={"permission_timeout_s": 2})
    try:
        target = h.root / "app" / "late.txt"
        h.model.on(
            "write late",
            ToolUse("Write", {"file_path": str(target), "content": "x"}),
            Text("Gave up on it."),
        )
        topic, _ = await h.new_session(str(h.root / "app"), "write late")
        prompt = await prompt_in(h, topic)
        notice = await h.wait_text("No answer", thread_id=topic, timeout=20)
        assert "denied" in notice.visible_text
        await h.wait_text("Gave up on it.", thread_id=topic)
        assert not target.exists()
        assert not h.tg.message(h.chat_id, prompt.message_id).buttons
    finally:
        await stop_harness(h)


async def test_stop_button_and_command_interrupt_and_the_session_stays_usable(h: Harness) -> None:
    slow = Text("word " * 400, chunk=5, delay=0.05)
    h.model.on("count slowly", slow)
    h.model.on("count again", slow)
    h.model.on("are you there", Text("Still here."))
    topic, sid = await h.new_session(str(h.root / "app"), "count slowly")
    status = await h.wait_msg(lambda m: has_buttons(m, "Stop"), thread_id=topic)
    await h.tg.wait_until(
        lambda: h.tg.drafts(chat_id=h.chat_id, thread_id=topic) or None, timeout=20
    )
    h.press(status, "⏹ Stop")
    final = await h.wait_text("⏱", thread_id=topic, timeout=20)
    assert "word word" not in final.visible_text or len(final.visible_text) < 2000
    await h.tg.wait_until(lambda: not h.tg.message(h.chat_id, status.message_id).buttons or None)
    # /stop as a command
    h.say("count again", thread_id=topic)
    second = await h.wait_msg(
        lambda m: has_buttons(m, "Stop") and m.message_id != status.message_id, thread_id=topic
    )
    await asyncio.sleep(0.5)
    h.say("/stop", thread_id=topic)
    await h.tg.wait_until(
        lambda: (
            len([m for m in h.bot_messages(topic) if "⏱" in (m.visible_text or "")]) >= 2 or None
        ),
        timeout=20,
    )
    # The whole answer streams in 20 s, this wait's timeout: a second answer alone does not
    # prove /stop.  A stop shows as "Stopped" on the status and a cut answer.
    await h.tg.wait_until(
        lambda: "Stopped" in (h.tg.message(h.chat_id, second.message_id).visible_text or "") or None
    )
    second_final = [m for m in h.bot_messages(topic) if "⏱" in (m.visible_text or "")][-1]
    assert (second_final.visible_text or "").count("word") < 400, "cut, not streamed to its end"
    h.say("are you there", thread_id=topic)
    await h.wait_text("Still here.", thread_id=topic)
    turns = h.db.turns.cost_since(datetime(1970, 1, 1, tzinfo=UTC), sid)
    assert turns[0] > 0


async def test_text_while_running_is_queued_and_runs_next(h: Harness) -> None:
    h.model.on("long job", Text("working " * 200, chunk=10, delay=0.03))
    h.model.on("follow up", Text("Follow-up answered."))
    topic, _ = await h.new_session(str(h.root / "app"), "long job")
    # running: its answer is streaming (the Stop button comes only after a few seconds)
    await h.tg.wait_until(
        lambda: h.tg.drafts(chat_id=h.chat_id, thread_id=topic) or None, timeout=20
    )
    h.say("follow up", thread_id=topic)
    await h.wait_text("Queued", thread_id=topic)
    final = await h.wait_text("Follow-up answered.", thread_id=topic, timeout=40)
    finals = [m for m in h.bot_messages(topic) if "⏱" in (m.visible_text or "")]
    assert finals[-1].message_id == final.message_id and len(finals) == 2


async def test_mode_model_sessions_help_end(h: Harness) -> None:
    app = h.root / "app"
    topic, sid = await h.new_session(str(app))
    await h.wait_text("Ready", thread_id=topic)
    h.say("/mode", thread_id=topic)
    picker = await h.wait_msg(lambda m: has_buttons(m, "Accept edits"), thread_id=topic)
    assert "Bypass" not in " ".join(picker.button_labels)
    h.say("/mode bypassPermissions", thread_id=topic)
    await h.wait_text("bypassPermissions is disabled", thread_id=topic)
    h.press(picker, "Accept edits")
    await h.wait_text("Permission mode: acceptEdits", thread_id=topic)
    # in acceptEdits, an edit runs without asking
    h.model.on(
        "auto edit",
        ToolUse("Write", {"file_path": str(app / "auto.txt"), "content": "auto"}),
        Text("Auto-edited."),
    )
    h.say("auto edit", thread_id=topic)
    await h.wait_text("Auto-edited.", thread_id=topic)
    assert (app / "auto.txt").read_text() == "auto"
    assert not [m for m in h.bot_messages(topic) if has_buttons(m, "Allow")]
    h.say("/model", thread_id=topic)
    names = await h.wait_text("/model NAME", thread_id=topic)
    for alias in ("sonnet", "opus", "haiku", "full model id"):
        assert alias in names.visible_text, names.visible_text
    h.say("/model claude-test-model", thread_id=topic)
    await h.wait_text("Model: claude-test-model", thread_id=topic)
    h.say("which model", thread_id=topic)
    await h.tg.wait_until(
        lambda: any(r.get("model") == "claude-test-model" for r in h.model.requests) or None,
        timeout=30,
    )
    h.say("/sessions")
    listing = await h.wait_text(sid)
    assert "app" in listing.visible_text
    h.say("/help")
    help_msg = await h.wait_text("/new")
    for cmd in ("/stop", "/mode", "/model", "/end", "/sessions"):
        assert cmd in help_msg.visible_text
    # allow_bypass is off: neither help nor the "/" menu offers bypassPermissions
    assert "bypass" not in help_msg.visible_text.lower()
    assert not [c for c in h.tg.commands() if "bypass" in c["description"].lower()]
    assert "this session (in its thread), today, this month" in help_msg.visible_text
    h.say("/frobnicate")
    await h.wait_text("Unknown command")
    h.say("/end", thread_id=topic)
    await h.wait_text("ended", thread_id=topic)
    await h.tg.wait_until(lambda: h.tg.topic(h.chat_id, topic).closed or None)
    assert h.db.sessions.get(sid).state == "ended"
    assert [c["command"] for c in h.tg.commands()][:1] == ["new"]
    h.say("/model opus", thread_id=topic)
    await h.wait_text("the model was not changed", thread_id=topic)
    assert h.db.sessions.get(sid).model == "claude-test-model"


async def test_two_sessions_run_at_the_same_time(h: Harness) -> None:
    h.model.on("alpha job", Text("alpha " * 60, chunk=6, delay=0.05))
    h.model.on("beta job", Text("beta " * 60, chunk=6, delay=0.05))
    t1, s1 = await h.new_session(str(h.root / "app"), "alpha job")
    (h.root / "other").mkdir()
    t2, s2 = await h.new_session(str(h.root / "other"), "beta job")
    await h.wait_text("⏱", thread_id=t1, timeout=40)
    await h.wait_text("⏱", thread_id=t2, timeout=40)
    rows = {r.session_id: r for r in _turns(h)}
    a, b = rows[s1], rows[s2]
    assert a.started_at < b.ended_at and b.started_at < a.ended_at, (
        "the two turns overlapped in time"
    )
    assert (
        "alpha" in h.bot_messages(t1)[-1].visible_text
        and "beta" in h.bot_messages(t2)[-1].visible_text
    )


def _turns(h: Harness) -> list:
    from sqlmodel import select

    from storage.models import TurnRow

    with h.db.session() as s:
        return list(s.exec(select(TurnRow)))


async def test_strangers_get_one_refusal_and_nothing_reaches_claude(h: Harness) -> None:
    target = h.root / "app" / "x.txt"
    h.model.on(
        "owner asks",
        ToolUse("Write", {"file_path": str(target), "content": "x"}),
        Text("Owner done."),
    )
    topic, _ = await h.new_session(str(h.root / "app"), "owner asks")
    prompt = await prompt_in(h, topic)
    # a stranger in their own chat with the bot
    stranger = {"id": STRANGER, "is_bot": False, "first_name": "Mallory"}
    h.tg.user_message(STRANGER, stranger, f"/new {h.root / 'app'} steal the keys")
    h.tg.user_message(STRANGER, stranger, "please run rm -rf")
    refusal = await h.tg.wait_for(
        lambda m: "only works for its owners" in m.visible_text, chat_id=STRANGER
    )
    assert refusal.visible_text == (
        "Sorry — this bot only works for its owners. To become one, ask the owner to run "
        "threadline pair, then send /pair CODE with the code it prints."
    ), "the refusal says how to become an owner, and nothing else"
    # the stranger presses the owner's Allow button (forged into the owner chat)
    query = h.tg.press_button(h.chat_id, prompt.message_id, prompt.callback_data("Allow"), stranger)
    await h.tg.wait_until(lambda: h.tg.callback_answer(query))
    await asyncio.sleep(1.0)
    assert not target.exists(), "a stranger's press does not approve anything"
    assert h.tg.message(h.chat_id, prompt.message_id).buttons, "the prompt is still waiting"
    h.press(prompt, "Deny")
    await h.wait_text("Owner done.", thread_id=topic)
    assert len(h.tg.messages(STRANGER)) == 1, "one refusal, not one per message"
    assert not h.model_saw("steal the keys") and not h.model_saw("rm -rf")
    refused = [r for r in h.db.audit.recent() if not r.allowed]
    assert len(refused) >= 3 and all(r.user == f"telegram:{STRANGER}" for r in refused)


async def test_paths_outside_the_roots_are_refused(h: Harness, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (h.root / "link").symlink_to(outside)
    cases = (
        ("/etc", "outside"),
        (f"{h.root}/../outside", "`..`"),
        (str(h.root / "link"), "outside"),
        (str(outside), "outside"),
    )
    for n, (path, why) in enumerate(cases, start=1):
        h.say(f"/new {path} hi")
        await h.tg.wait_until(
            lambda n=n: (
                len([m for m in h.bot_messages() if "🚫" in (m.visible_text or "")]) >= n or None
            )
        )
        refusal = [m for m in h.bot_messages() if "🚫" in (m.visible_text or "")][-1]
        assert why.strip("`") in refusal.visible_text
    assert not h.tg.topics(h.chat_id)
    assert not h.model.requests
    assert len([r for r in h.db.audit.recent() if r.action == "new" and not r.allowed]) == 4


async def test_a_10000_character_answer_is_split_on_boundaries(h: Harness) -> None:
    paras = [
        f"Section {i}. " + ("Lorem <ipsum> & dolor sit amet, consectetur. " * 6) for i in range(30)
    ]
    code = "```python\n" + "\n".join(f"print({i})  # a < b && c > d" for i in range(80)) + "\n```"
    answer = "\n\n".join(paras[:15] + [code] + paras[15:])
    assert len(answer) > 10_000
    h.model.on("write an essay", Text(answer, chunk=400))
    topic, _ = await h.new_session(str(h.root / "app"), "write an essay")
    await h.wait_text("⏱", thread_id=topic, timeout=40)
    finals = [
        m
        for m in h.bot_messages(topic)
        if m.disable_notification is False or "Section" in (m.visible_text or "")
    ]
    parts = [m for m in finals if "Section" in m.visible_text or "print(" in m.visible_text]
    assert len(parts) >= 3
    assert all(len(m.visible_text.encode("utf-16-le")) // 2 <= 4096 for m in parts)
    joined = "".join(m.visible_text for m in parts)
    for i in range(30):
        assert f"Section {i}." in joined
    assert joined.count("Lorem <ipsum> & dolor") == 30 * 6, "escaped text arrives intact"
    assert joined.count("# a < b && c > d") == 80
    code_parts = [m for m in parts if "print(" in m.visible_text]
    assert all(any(e["type"] == "pre" for e in m.entities) for m in code_parts), (
        "a split code block stays a code block"
    )


async def test_group_streaming_with_three_sessions_causes_no_429(tmp_path: Path) -> None:
    h = await start_harness(tmp_path, group=True)
    try:
        texts = {}
        topics = []
        for name in ("one", "two", "three"):
            (h.root / name).mkdir()
            texts[name] = " ".join(f"{name}-{i}" for i in range(300))
            # ~7 s of streaming each: long enough for the group's budget to show some.
            h.model.on(f"stream {name}", Text(texts[name], chunk=8, delay=0.03))
        for name in ("one", "two", "three"):
            topic, _ = await h.new_session(str(h.root / name), f"stream {name}", timeout=60)
            topics.append((name, topic))
        for name, topic in topics:
            final = await h.wait_text("⏱", thread_id=topic, timeout=120)
            assert texts[name] in final.visible_text
        assert h.tg.count_429 == 0, "the bridge kept within the group's budget"
        assert not h.tg.drafts(), "no drafts in groups: edits in place"
        streamed = [
            name
            for name, t in topics
            for m in h.bot_messages(t)
            if m.kind == "text"
            and "⏱" not in (m.visible_text or "")
            and any(f"{name}-1" in (v.visible_text or "") for v in m.history)
        ]
        assert streamed, "text streamed into a status message while a turn ran"
    finally:
        await stop_harness(h)


async def test_without_topics_sessions_are_reply_chains(tmp_path: Path) -> None:
    h = await start_harness(tmp_path, topics=False)
    try:
        h.model.on("chain one", Text("First answer."))
        h.model.on("chain two", Text("Second answer."))
        h.say(f"/new {h.root / 'app'} chain one")
        header = await h.wait_text("session")
        final = await h.wait_text("First answer.")
        assert final.reply_to == header.message_id
        h.say("chain two", reply_to=final.message_id)
        second = await h.wait_text("Second answer.")
        assert second.reply_to == header.message_id
        assert h.model_saw("First answer."), "the reply continued the same Claude session"
        assert not h.tg.topics(h.chat_id)
    finally:
        await stop_harness(h)


async def test_topic_errors_fall_back_to_reply_chains(tmp_path: Path) -> None:
    h = await start_harness(tmp_path)
    try:
        h.tg.fail_next(
            "createForumTopic", error_description="Bad Request: BOT_FORUM_CREATE_FORBIDDEN"
        )
        h.model.on("fallback please", Text("Answered without a topic."))
        h.say(f"/new {h.root / 'app'} fallback please")
        final = await h.wait_text("Answered without a topic.")
        assert final.thread_id is None and final.reply_to is not None
    finally:
        await stop_harness(h)


async def test_thread_not_found_moves_the_session_to_a_reply_chain(h: Harness) -> None:
    h.model.on("first turn", Text("Topic answer."))
    h.model.on("second turn", Text("Rescued answer."))
    topic, sid = await h.new_session(str(h.root / "app"), "first turn")
    await h.wait_text("Topic answer.", thread_id=topic)
    h.tg.fail_next(
        "sendMessage",
        error_description="Bad Request: message thread not found",
        times=None,
        match=lambda p: bool(p.get("message_thread_id")),
    )
    h.tg.fail_next(
        "sendMessageDraft",
        error_description="Bad Request: message thread not found",
        times=None,
        match=lambda p: bool(p.get("message_thread_id")),
    )
    h.say("second turn", thread_id=topic)
    rescued = await h.wait_text("Rescued answer.", timeout=40)
    assert rescued.thread_id is None and rescued.reply_to is not None
    binding = h.db.bindings.for_session(sid)
    assert binding is not None and binding.kind == "reply"


async def test_restart_resumes_the_session_and_sends_nothing_twice(tmp_path: Path) -> None:
    h = await start_harness(tmp_path)
    h.model.on("remember the number 42", Text("I will remember 42."))
    h.model.on("what number", Text("It was 42."))
    topic, sid = await h.new_session(str(h.root / "app"), "remember the number 42")
    await h.wait_text("I will remember 42.", thread_id=topic)
    await h.bridge.outbox.wait_idle(timeout=10)
    before = [(m.message_id, m.visible_text) for m in h.bot_messages(topic)]
    await stop_harness(h, keep_fakes=True)
    h2 = await start_harness(tmp_path, tg=h.tg, model=h.model)
    try:
        await asyncio.sleep(1.0)
        assert [(m.message_id, m.visible_text) for m in h2.bot_messages(topic)][
            : len(before)
        ] == before
        assert len(h2.bot_messages(topic)) == len(before), "nothing re-sent after the restart"
        n_requests = len(h.model.requests)
        h2.say("what number", thread_id=topic)
        await h2.wait_text("It was 42.", thread_id=topic)
        later = h.model.requests[n_requests:]
        assert any("remember the number 42" in str(r.get("messages")) for r in later), (
            "resumed with its context"
        )
        assert h2.db.sessions.get(sid).claude_session_id
    finally:
        await stop_harness(h2)


async def test_forged_and_replayed_button_data_is_refused(h: Harness) -> None:
    app = h.root / "app"
    (h.root / "other").mkdir()
    h.model.on(
        "alpha writes",
        ToolUse("Write", {"file_path": str(app / "a.txt"), "content": "a"}),
        Text("alpha finished"),
    )
    h.model.on(
        "beta writes",
        ToolUse("Write", {"file_path": str(h.root / "other" / "b.txt"), "content": "b"}),
        Text("beta finished"),
    )
    t1, _ = await h.new_session(str(app), "alpha writes")
    t2, _ = await h.new_session(str(h.root / "other"), "beta writes")
    p1 = await prompt_in(h, t1)
    p2 = await prompt_in(h, t2)
    owner = {"id": OWNER, "is_bot": False, "first_name": "Ada"}
    # session A's Allow pressed on session B's message (a crafted callback), and made-up data
    h.tg.press_button(h.chat_id, p2.message_id, p1.callback_data("Allow"), owner, strict=False)
    h.tg.press_button(h.chat_id, p2.message_id, "p:notarealrequest:a", owner, strict=False)
    h.tg.press_button(h.chat_id, p2.message_id, "x" * 64, owner, strict=False)
    await asyncio.sleep(1.5)
    assert not (app / "a.txt").exists() and not (h.root / "other" / "b.txt").exists()
    assert (
        h.tg.message(h.chat_id, p1.message_id).buttons
        and h.tg.message(h.chat_id, p2.message_id).buttons
    )
    # first answer wins: Allow and Deny pressed back to back
    allow, deny = p1.callback_data("Allow"), p1.callback_data("Deny")
    q1 = h.tg.press_button(h.chat_id, p1.message_id, allow, owner)
    q2 = h.tg.press_button(h.chat_id, p1.message_id, deny, owner, strict=False)
    await h.wait_text("alpha finished", thread_id=t1)
    assert (app / "a.txt").read_text() == "a"
    assert "Allowed by Ada" in h.tg.message(h.chat_id, p1.message_id).visible_text
    assert h.tg.callback_answer(q1) is not None and h.tg.callback_answer(q2) is not None
    # replaying the decided prompt's data does nothing
    h.tg.press_button(h.chat_id, p1.message_id, deny, owner, strict=False)
    h.press(p2, "Deny")
    await h.wait_text("beta finished", thread_id=t2)
    assert "Allowed by Ada" in h.tg.message(h.chat_id, p1.message_id).visible_text
    assert not (h.root / "other" / "b.txt").exists()


async def test_a_long_diff_arrives_as_a_file(h: Harness) -> None:
    target = h.root / "app" / "big.py"
    content = "".join(f"value_{i} = {i} * 2  # generated line\n" for i in range(400))
    h.model.on(
        "write a big file",
        ToolUse("Write", {"file_path": str(target), "content": content}),
        Text("Big file written."),
    )
    topic, _ = await h.new_session(str(h.root / "app"), "write a big file")
    prompt = await prompt_in(h, topic)
    doc = await h.wait_msg(lambda m: m.kind == "document", thread_id=topic)
    assert doc.file is not None and (doc.file.file_name or "").endswith(".diff")
    assert b"+value_399 = 399 * 2" in doc.file.data
    assert len(prompt.visible_text) <= 4096
    h.press(prompt, "Allow")
    await h.wait_text("Big file written.", thread_id=topic)
    assert target.read_text() == content


@pytest.mark.slow  # 65 s
async def test_an_approval_after_more_than_60_seconds_still_counts(h: Harness) -> None:
    target = h.root / "app" / "patient.txt"
    h.model.on(
        "be patient",
        ToolUse("Write", {"file_path": str(target), "content": "waited"}),
        Text("Written after the wait."),
    )
    topic, _ = await h.new_session(str(h.root / "app"), "be patient")
    prompt = await prompt_in(h, topic)
    await asyncio.sleep(65)
    h.press(prompt, "Allow")
    await h.wait_text("Written after the wait.", thread_id=topic, timeout=30)
    assert target.read_text() == "waited"


__all__ = ["OWNER"]


async def test_tool_output_is_shown_folded_while_the_turn_runs(h: Harness) -> None:
    h.model.on(
        "show output",
        ToolUse("Bash", {"command": "echo folded-output-marker"}),
        Text("All done after the echo, taking a moment to say so.", chunk=4, delay=0.4),
    )
    topic, _ = await h.new_session(str(h.root / "app"), "show output")
    prompt_or_final = await h.wait_msg(
        lambda m: has_buttons(m, "Allow") or "⏱" in (m.visible_text or ""), thread_id=topic
    )
    if has_buttons(prompt_or_final, "Allow"):
        h.press(prompt_or_final, "Allow")
    await h.wait_text("⏱", thread_id=topic)
    assert await h.bridge.outbox.wait_idle(timeout=15)  # the status is tidied after the answer
    status = next(
        m
        for m in h.bot_messages(topic)
        if any("Bash: echo" in (v.visible_text or "") for v in m.history)
    )
    folded = [
        v
        for v in status.history
        if any(e["type"] == "expandable_blockquote" for e in v.entities or [])
        and "folded-output-marker" in v.visible_text
    ]
    assert folded, "the Bash output appeared folded in the status message"
    final_entities = status.entities or []
    assert not any(e["type"] == "expandable_blockquote" for e in final_entities), (
        "the finished status is compact again"
    )


async def test_a_text_reply_answers_the_prompt_and_the_deny_reason_reaches_claude(
    h: Harness,
) -> None:
    target = h.root / "app" / "notes.txt"
    h.model.on(
        "take notes",
        ToolUse("Write", {"file_path": str(target), "content": "x"}),
        Text("Understood."),
    )
    topic, _ = await h.new_session(str(h.root / "app"), "take notes")
    prompt = await prompt_in(h, topic)
    h.say("deny write them to /tmp instead", thread_id=topic)
    await h.wait_text("Understood.", thread_id=topic)
    assert not target.exists()
    assert h.model_saw("write them to /tmp instead"), (
        "the reason went back to Claude with the denial"
    )
    edited = h.tg.message(h.chat_id, prompt.message_id)
    assert not edited.buttons and "Denied by Ada" in edited.visible_text
    assert "write them to /tmp instead" in edited.visible_text


async def test_a_bash_prompt_shows_the_command_once(h: Harness) -> None:
    """The real CLI's Bash permission request, as the phone shows it: the command in one
    code block, not again in the header (nor in a note)."""
    h.model.on(
        "run the marker",
        ToolUse("Bash", {"command": "echo marker-7731 > out.txt", "description": "Write it"}),
        Text("Ran."),
    )
    topic, _ = await h.new_session(str(h.root / "app"), "run the marker")
    prompt = await prompt_in(h, topic)
    text = prompt.visible_text
    assert text.count("marker-7731") == 1, text
    assert "Bash" in text and "Write it" in text
    h.press(prompt, "Deny")
    await h.wait_text("Ran.", thread_id=topic)
    decided = h.tg.message(h.chat_id, prompt.message_id).visible_text
    assert decided.count("marker-7731") == 1 and "Denied by Ada" in decided, decided


async def test_a_decision_the_daemon_died_before_showing_is_shown_after_a_restart(
    tmp_path: Path,
) -> None:
    """The decision and the prompt's edit are two transactions: a daemon killed between
    them left the prompt with live buttons.  After a restart the prompt shows who
    decided what, and nothing else is re-sent."""
    h = await start_harness(tmp_path)
    target = h.root / "app" / "x.txt"
    h.model.on(
        "write x", ToolUse("Write", {"file_path": str(target), "content": "x\n"}), Text("ok")
    )
    topic, _sid = await h.new_session(str(h.root / "app"), "write x")
    prompt = await prompt_in(h, topic)
    [pending] = h.db.permissions.pending()
    # What the broker's `finish` does first — and then the process is gone.
    assert h.db.permissions.decide(pending.id, "allowed", by="Ada")
    await stop_harness(h, keep_fakes=True)
    assert has_buttons(h.tg.message(h.chat_id, prompt.message_id), "Allow")
    h2 = await start_harness(tmp_path, tg=h.tg, model=h.model)
    try:
        shown = await h2.wait_msg(
            lambda m: m.message_id == prompt.message_id and "Allowed by Ada" in m.visible_text,
            thread_id=topic,
        )
        assert not shown.buttons
    finally:
        await stop_harness(h2)
