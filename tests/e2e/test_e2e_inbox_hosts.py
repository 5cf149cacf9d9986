"""Chat → the session's host, end to end: two hosts in one process on one PostgreSQL
(`tests/support/two_hosts.py`): laptop is the Telegram gateway (real PTB against the
fake Bot API), box a second bridge that never connects to Telegram; both run the real
Claude CLI against the fake model.

Everything typed or pressed reaches laptop; what is for box's session goes through the
`inbox` table and runs on box, and everything box says comes back through the outbox.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.fakes.telegram import FakeMessage
from tests.support.harness import OWNER, STRANGER, Harness
from tests.support.two_hosts import TwoHosts, two_hosts

pytestmark = pytest.mark.e2e


def has_buttons(m: FakeMessage, *labels: str) -> bool:
    return all(any(label in b for b in m.button_labels) for label in labels)


async def new_topic(h: Harness, text: str) -> tuple[int, str]:
    """Type `text` (a `new`) in the private chat; the new topic and its session id."""
    before = set(h.tg.topics(OWNER))
    h.say(text)
    topic = await h.tg.wait_until(
        lambda: next(iter(set(h.tg.topics(OWNER)) - before), None), timeout=60
    )
    binding = await h.tg.wait_until(
        lambda: h.db.bindings.by_thread_key(f"telegram:{OWNER}:{topic}"), timeout=30
    )
    return topic, binding.session_id


def inbox_kinds(w: TwoHosts, host: str) -> list[str]:
    return [item.kind for item in w.h.db.inbox.list(host)]


async def test_a_session_on_box_streams_asks_and_stops_from_the_chat(
    tmp_path: Path, postgres_url: str
) -> None:
    async with two_hosts(tmp_path, postgres_url) as w:
        h, box = w.h, w.box
        h.model.on("where do you run", Text("Running on the box. " * 10, chunk=20, delay=0.02))
        topic, sid = await new_topic(h, "/new box:app where do you run")
        final = await h.wait_text("⏱", thread_id=topic, timeout=60)
        assert "Running on the box." in final.visible_text
        row = h.db.sessions.get(sid)
        assert row is not None and row.host == "box"
        assert row.cwd == str((box.root / "app").resolve()), "box resolved PATH in its roots"
        assert box.b.host.get(sid) is not None, "Claude Code runs on box"
        assert w.laptop.b.host.get(sid) is None, "…and not on laptop"
        announced = [m for m in h.bot_messages() if sid in (m.visible_text or "")]
        assert announced, "the start was announced where `new` was typed"
        assert inbox_kinds(w, "box") == ["message", "thread_opened"]
        assert inbox_kinds(w, "laptop") == ["open_thread"], "laptop opened box's thread"

        # a permission prompt from box's session, answered by a press on laptop
        target = box.root / "app" / "made-on-box.txt"
        h.model.on(
            "make a file",
            ToolUse("Write", {"file_path": str(target), "content": "box\n"}),
            Text("File made."),
        )
        h.say("make a file", thread_id=topic)
        prompt = await h.wait_msg(lambda m: has_buttons(m, "Allow", "Deny"), thread_id=topic)
        origin = await h.tg.wait_until(
            lambda: h.db.outbox.origin_of_message("telegram", str(OWNER), str(prompt.message_id))
        )
        assert origin.host == "box", "box posted the prompt"
        h.press(prompt, "Allow")
        await h.wait_text("File made.", thread_id=topic, timeout=60)
        assert target.read_text() == "box\n", "the tool ran on box"
        assert "press" in inbox_kinds(w, "box")

        # `stop` typed in the chat stops box's turn
        h.model.on("count slowly", Text("word " * 400, chunk=5, delay=0.05))
        finals = len([m for m in h.bot_messages(topic) if "⏱" in (m.visible_text or "")])
        h.say("count slowly", thread_id=topic)
        await h.tg.wait_until(
            lambda: (
                any("word" in d.visible_text for d in h.tg.drafts(chat_id=OWNER, thread_id=topic))
                or None
            ),
            timeout=60,
        )
        h.say("/stop", thread_id=topic)
        await h.tg.wait_until(
            lambda: (
                len([m for m in h.bot_messages(topic) if "⏱" in (m.visible_text or "")]) > finals
                or None
            ),
            timeout=15,  # the whole answer would take 20 s
        )
        last = [m for m in h.bot_messages(topic) if "⏱" in (m.visible_text or "")][-1]
        assert (last.visible_text or "").count("word") < 400, "cut, not streamed to its end"
        assert box.b.turns.views.get(sid) is None

        # a stranger is refused on laptop and nothing of theirs reaches box
        items = len(h.db.inbox.list("box"))
        stranger = {"id": STRANGER, "is_bot": False, "first_name": "Mallory"}
        h.tg.user_message(OWNER, stranger, "hello box", message_thread_id=topic)
        await h.tg.wait_until(
            lambda: (
                any(
                    r.action.startswith("refused") and "hello box" in r.detail
                    for r in h.db.audit.recent(20)
                )
                or None
            ),
            timeout=30,
        )
        assert len(h.db.inbox.list("box")) == items
        assert not any("hello box" in str(r) for r in w.model.requests)
        assert h.db.inbox.count(state="failed") == 0
