"""Buttons in reply-chain sessions (Telegram without topic mode, a new bot's default).

There the platform knows no thread: a press arrives for the bare chat while the
session, its prompts and its status messages live in ``reply:<header>``.  The bridge
places a press in the thread of the message it was pressed on (as the outbox recorded
it), so every button works — Allow, Allow for session, Deny, Stop, the mode picker,
the recent-directory and import pickers — each pressed here through the real
python-telegram-bot against the fake Bot API and the real Claude Code CLI against the
fake model.  A press on another session's message, or on a message that is not ours,
still decides nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.models import AuditRow
from tests.e2e.test_import import claude_p, session_ids
from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.fakes.telegram import FakeMessage
from tests.support.harness import OWNER, Harness, start_harness, stop_harness

pytestmark = pytest.mark.e2e
ADA = {"id": OWNER, "is_bot": False, "first_name": "Ada"}


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path, topics=False)
    yield harness
    await stop_harness(harness)


def has_buttons(m: FakeMessage, *labels: str) -> bool:
    return all(any(label in b for b in m.button_labels) for label in labels)


async def new_chain(h: Harness, path: Path, prompt: str = "") -> tuple[int, str]:
    """`/new PATH PROMPT` in the chat; returns (header message id, session id)."""
    known = {row.id for row in h.db.sessions.list()}
    h.say(f"/new {path} {prompt}".strip())

    def opened() -> tuple[int, str] | None:
        for row in h.db.sessions.list():
            binding = h.db.bindings.for_session(row.id)
            tid = binding.thread_id if binding else None
            if row.id not in known and tid and tid.startswith("reply:"):
                return int(tid[6:]), row.id
        return None

    found: tuple[int, str] = await h.tg.wait_until(opened, timeout=30)
    return found


async def in_chain(h: Harness, header: int, pred: object, timeout: float = 30.0) -> FakeMessage:
    """A bot message in the reply chain rooted at `header` matching `pred`."""
    check = pred if callable(pred) else (lambda m: True)
    return await h.wait_msg(lambda m: m.reply_to == header and check(m), timeout=timeout)


def _refused_press(row: AuditRow) -> bool:
    return row.action in ("button", "permission") and not row.allowed


def text_has(needle: str):  # noqa: ANN201
    return lambda m: needle in (m.visible_text or "")


async def test_permission_buttons_allow_allow_for_session_and_deny(h: Harness) -> None:
    app = h.root / "app"
    marker = f"touch {app}/marker"
    h.model.on(
        "write hello",
        ToolUse("Write", {"file_path": str(app / "hello.txt"), "content": "hi"}),
        Text("Wrote hello."),
    )
    h.model.on("mark once", ToolUse("Bash", {"command": marker}), Text("Marked once."))
    h.model.on("mark twice", ToolUse("Bash", {"command": marker}), Text("Marked twice."))
    h.model.on(
        "write secret",
        ToolUse("Write", {"file_path": str(app / "secret.txt"), "content": "x"}),
        Text("Left it alone."),
    )
    header, _ = await new_chain(h, app, "write hello")
    prompt = await in_chain(h, header, lambda m: has_buttons(m, "Allow", "Deny"))
    query = h.press(prompt, "Allow")
    done = await in_chain(h, header, text_has("Wrote hello."))
    assert (app / "hello.txt").read_text() == "hi"
    assert "Allowed by Ada" in h.tg.message(h.chat_id, prompt.message_id).visible_text
    assert "does not belong" not in str(h.tg.callback_answer(query))

    h.say("mark once", reply_to=done.message_id)
    prompt = await in_chain(h, header, lambda m: has_buttons(m, "Allow for session"))
    h.press(prompt, "Allow for session")
    done = await in_chain(h, header, text_has("Marked once."))
    h.say("mark twice", reply_to=done.message_id)
    done = await in_chain(h, header, text_has("Marked twice."))
    asked = [m for m in h.bot_messages() if "marker" in (m.visible_text or "") and m.history]
    assert len([m for m in asked if any(v.reply_markup for v in m.history)]) == 1, (
        "the second identical command ran on the session rule, without a prompt"
    )

    h.say("write secret", reply_to=header)  # a reply to the header continues the chain too
    prompt = await in_chain(
        h, header, lambda m: has_buttons(m, "Deny") and "secret" in (m.visible_text or "")
    )
    h.press(prompt, "Deny")
    await in_chain(h, header, text_has("Left it alone."))
    assert not (app / "secret.txt").exists()
    assert "Denied by Ada" in h.tg.message(h.chat_id, prompt.message_id).visible_text
    refused = [r.detail for r in h.db.audit.recent() if _refused_press(r)]
    assert not refused, f"no press was refused: {refused}"


async def test_stop_button_interrupts_a_reply_chain_turn(h: Harness) -> None:
    gate = asyncio.Event()
    h.model.on("count slowly", Text("word " * 200, chunk=10, delay=0.01, gate=gate, gate_at=0.3))
    h.model.on("are you there", Text("Still here."))
    header, sid = await new_chain(h, h.root / "app", "count slowly")
    status = await in_chain(h, header, lambda m: has_buttons(m, "Stop"))
    h.press(status, "⏹ Stop")
    final = await in_chain(h, header, text_has("⏱"))
    assert final.reply_to == header
    await h.tg.wait_until(lambda: not h.tg.message(h.chat_id, status.message_id).buttons or None)
    turns = h.db.turns.running()
    assert not turns, "the turn is over"
    gate.set()
    h.say("are you there", reply_to=final.message_id)
    await in_chain(h, header, text_has("Still here."))
    assert h.db.sessions.get(sid).state != "ended"


async def test_mode_picker_is_posted_in_the_chain_and_its_buttons_work(h: Harness) -> None:
    app = h.root / "app"
    header, sid = await new_chain(h, app)
    ready = await in_chain(h, header, text_has("Ready"))
    h.say("/mode", reply_to=ready.message_id)
    picker = await in_chain(h, header, lambda m: has_buttons(m, "Accept edits"))
    h.press(picker, "Accept edits")
    await in_chain(h, header, text_has("Permission mode: acceptEdits"))
    row = h.db.sessions.get(sid)
    assert row is not None and row.mode == "acceptEdits"
    h.model.on(
        "auto edit",
        ToolUse("Write", {"file_path": str(app / "auto.txt"), "content": "auto"}),
        Text("Auto-edited."),
    )
    h.say("auto edit", reply_to=picker.message_id)
    await in_chain(h, header, text_has("Auto-edited."))
    assert (app / "auto.txt").read_text() == "auto", "the CLI really switched modes"


async def test_recent_directory_and_import_buttons_open_sessions(h: Harness) -> None:
    app, other = h.root / "app", h.root / "other"
    other.mkdir()
    first, first_sid = await new_chain(h, app)
    await in_chain(h, first, text_has("Ready"))
    # `/new` without a path in the chat: a picker of recent directories
    h.say("/new")
    picker = await h.wait_msg(lambda m: has_buttons(m, "app"))
    h.press(picker, "app")
    second, second_sid = await h.tg.wait_until(
        lambda: next(
            (
                (int(b.thread_id[6:]), r.id)
                for r in h.db.sessions.list()
                if r.id != first_sid
                and (b := h.db.bindings.for_session(r.id)) is not None
                and b.thread_id
            ),
            None,
        ),
        timeout=30,
    )
    await in_chain(h, second, text_has("Ready"))
    assert h.db.sessions.get(second_sid).cwd == str(app)

    # `/import`: a button per Claude Code session on disk
    h.model.on("remember the word heron", Text("Heron noted."))
    await claude_p(h, other, "remember the word heron")
    heron = session_ids(h)["remember the word heron"]
    h.say("/import")
    listing = await h.wait_msg(lambda m: any(heron in b["callback_data"] for b in m.buttons))
    label = next(b["text"] for b in listing.buttons if heron in b["callback_data"])
    h.press(listing, label)
    recap = await h.wait_text("Imported Claude Code session")
    assert "remember the word heron" in recap.visible_text
    row = h.db.sessions.by_claude_id(heron)
    assert row is not None and row.cwd == str(other)


async def test_a_press_elsewhere_cannot_decide_this_sessions_request(h: Harness) -> None:
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
    a, _ = await new_chain(h, app, "alpha writes")
    pa = await in_chain(h, a, lambda m: has_buttons(m, "Allow"))
    b, _ = await new_chain(h, h.root / "other", "beta writes")
    pb = await in_chain(h, b, lambda m: has_buttons(m, "Allow"))
    allow_a = pa.callback_data("Allow")
    # A's Allow pressed on B's prompt (a crafted callback), on B's header, on the
    # person's own message: none is a message of A's chain
    own = h.say("hello")["message_id"]
    for target in (pb.message_id, b, own):
        h.tg.press_button(h.chat_id, target, allow_a, ADA, strict=False)
    await h.tg.wait_until(
        lambda: len([r for r in h.db.audit.recent() if _refused_press(r)]) >= 3 or None,
        timeout=10,
    )
    assert not (app / "a.txt").exists()
    assert h.tg.message(h.chat_id, pa.message_id).buttons, "A's request is still pending"
    # the real press on A's own prompt works, and B's is untouched
    h.press(pa, "Allow")
    await in_chain(h, a, text_has("alpha finished"))
    assert (app / "a.txt").read_text() == "a"
    assert h.tg.message(h.chat_id, pb.message_id).buttons
    h.press(pb, "Deny")
    await in_chain(h, b, text_has("beta finished"))
    assert not (h.root / "other" / "b.txt").exists()
