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

from adapters.messages import ThreadRef
from bridge.commands.opening import open_session
from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.fakes.telegram import FakeMessage
from tests.support.harness import OWNER, OWNER_NAME, STRANGER, Harness
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


async def test_box_decides_its_paths_and_pickers_and_a_prompt_waits_while_it_is_down(
    tmp_path: Path, postgres_url: str
) -> None:
    async with two_hosts(tmp_path, postgres_url) as w:
        h, box = w.h, w.box
        (box.root / "app" / ".git").mkdir()  # offered by box's picker as "app"

        # box resolves PATH under its own roots, and refuses what is outside them
        h.say("/new box:../../etc look around")
        refusal = await h.wait_text("🚫", timeout=30)
        assert "not allowed" in refusal.visible_text and not h.db.sessions.list()
        said = await h.tg.wait_until(
            lambda: h.db.outbox.origin_of_message("telegram", str(OWNER), str(refusal.message_id))
        )
        assert said.host == "box", "box decided, not the gateway"
        assert any(
            r.action == "new" and not r.allowed and "etc" in r.detail for r in h.db.audit.recent(20)
        )
        # a HOST: that names no host is answered with the hosts there are
        h.say("/new bxo:~/code")
        unknown = await h.wait_text("No host is named", timeout=30)
        assert "the hosts are box, laptop" in unknown.visible_text

        # `new` without a path, two hosts online: which host first, then box's own picker
        h.say("/new")
        hosts = await h.wait_msg(lambda m: has_buttons(m, "box", "laptop (this host)"))
        h.press(hosts, "box")
        picker = await h.wait_msg(
            lambda m: "which directory" in (m.visible_text or "") and has_buttons(m, "app"),
            timeout=30,
        )
        assert str(box.root) in picker.visible_text, "box's roots, not laptop's"
        origin = await h.tg.wait_until(
            lambda: h.db.outbox.origin_of_message("telegram", str(OWNER), str(picker.message_id))
        )
        assert origin.host == "box"
        before = set(h.tg.topics(OWNER))
        h.press(picker, "app")  # goes to box, which posted the picker
        topic = await h.tg.wait_until(
            lambda: next(iter(set(h.tg.topics(OWNER)) - before), None), timeout=60
        )
        await h.wait_text("Ready.", thread_id=topic, timeout=60)
        binding = h.db.bindings.by_thread_key(f"telegram:{OWNER}:{topic}")
        assert binding is not None
        sid = binding.session_id
        row = h.db.sessions.get(sid)
        assert row is not None and row.host == "box" and row.cwd == str(box.root / "app")

        # box goes down: a prompt for its session waits, and the thread is told why
        await w.stop_box()
        h.model.on("are you back", Text("Back on the box."))
        h.say("are you back", thread_id=topic)
        await h.wait_text("📥 box is offline; this waits until it is back.", thread_id=topic)
        assert h.db.inbox.count(host="box", state="pending") == 1
        assert not h.model_saw("are you back")
        h.say("/sessions")
        await h.wait_text("on box (host offline)")
        await w.start_box()
        await h.wait_text("Back on the box.", thread_id=topic, timeout=60)
        assert h.db.inbox.count(host="box", state="pending") == 0
        assert box.b.host.get(sid) is not None and w.laptop.b.host.get(sid) is None

        # a file for box's session: fetched on laptop (box has no chat connection),
        # carried in the inbox item, saved in box's session directory
        h.model.on("read the notes", Text("Notes read on the box."))
        ada = {"id": OWNER, "is_bot": False, "first_name": OWNER_NAME}
        h.tg.user_document(
            OWNER, ada, b"notes\n", file_name="notes.txt", caption="read the notes",
            message_thread_id=topic,
        )  # fmt: skip
        await h.wait_text("Notes read on the box.", thread_id=topic, timeout=60)
        saved = box.root / "app" / ".threadline" / "inbox" / "notes.txt"
        assert saved.read_bytes() == b"notes\n" and h.model_saw("notes.txt")
        assert h.tg.calls["getFile"] == 1, "fetched once, by the gateway"

        # `resume ID` typed in the main chat is for box: box answers it
        h.say(f"/resume {sid}")
        reopened = await h.wait_text(f"Session {sid} is open again", thread_id=topic)
        said = await h.tg.wait_until(
            lambda: h.db.outbox.origin_of_message("telegram", str(OWNER), str(reopened.message_id))
        )
        assert said.host == "box"

        # what import and attach use on box: a session opened there, its thread by laptop
        opened = await open_session(
            box.b,
            ThreadRef("telegram", str(OWNER)),
            f"telegram:{OWNER}",
            box.root / "app",
            title="imported",
            claude_session_id="c0ffee",
        )
        assert opened is not None
        imported, thread = opened
        assert imported.host == "box" and imported.state == "active"
        assert thread.thread_id is not None and int(thread.thread_id) in h.tg.topics(OWNER)
        assert h.db.sessions.get(imported.id).claude_session_id == "c0ffee"  # type: ignore[union-attr]
