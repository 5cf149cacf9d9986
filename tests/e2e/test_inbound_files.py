"""Strangers cannot stall the owner's chat through attachments (issue 10, M5).

Adapters hand the bridge attachments unfetched; the bridge downloads them only after
the sender passed the access check, streamed and capped at `[agent] max_file_mb`.  A
press is never queued behind a download.  Against the fake Bot API (its log shows
every getFile and file GET, and it can hold a download open), the fake Slack (its log
shows every file fetched with the bot token), the real python-telegram-bot and
slack-bolt, and the real Claude Code CLI.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.download import read_capped
from adapters.messages import Attachment, AttachmentTooLarge
from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.harness import OWNER, STRANGER, Harness, start_harness, stop_harness
from tests.support.slack_harness import OWNER as SLACK_OWNER
from tests.support.slack_harness import STRANGER as SLACK_STRANGER
from tests.support.slack_harness import SlackHarness, start_slack_harness, stop_slack_harness

ADA = {"id": OWNER, "is_bot": False, "first_name": "Ada"}
MALLORY = {"id": STRANGER, "is_bot": False, "first_name": "Mallory"}


# --- units ---------------------------------------------------------------------------


async def test_a_download_stops_at_the_cap_however_long_the_stream() -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 1
            yield b"x" * 1000

    with pytest.raises(AttachmentTooLarge):
        await read_capped(endless(), name="huge.bin", limit=10_000)
    assert sent == 11, "read one chunk past the cap, then stopped"

    small = Attachment.of("file", "a.txt", "text/plain", b"hi")
    assert await small.fetch(2) == b"hi"
    with pytest.raises(AttachmentTooLarge):
        await small.fetch(1)


# --- Telegram ---------------------------------------------------------------------------


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path, agent_extra={"max_file_mb": 0.01})  # 10.2 KB
    yield harness
    await stop_harness(harness)


@pytest.mark.e2e
async def test_a_strangers_files_are_never_fetched(h: Harness) -> None:
    h.tg.user_document(STRANGER, MALLORY, b"x" * 5000, file_name="bait.txt", caption="hi")
    h.tg.user_photo(STRANGER, MALLORY)
    # the one thing a stranger may send (a pairing code), with a file attached
    h.tg.user_document(STRANGER, MALLORY, b"y" * 100, file_name="code.txt", caption="/start 1")
    await h.tg.wait_for(lambda m: "only works for its owners" in m.visible_text, chat_id=STRANGER)

    def stranger_rows() -> int:
        return len([r for r in h.db.audit.recent() if r.user == f"telegram:{STRANGER}"])

    await h.tg.wait_until(lambda: stranger_rows() >= 3 or None)  # 2 refusals + the pairing
    assert h.tg.calls["getFile"] == 0 and h.tg.file_downloads == [], (
        "nothing a stranger sent was fetched"
    )


@pytest.mark.e2e
async def test_an_owners_oversized_file_is_told_and_nothing_is_kept(h: Harness) -> None:
    app = h.root / "app"
    inbox = app / ".threadline" / "inbox"
    h.model.on("what is in it", Text("Nothing arrived."))
    h.model.on("read the small one", Text("Small one read."))
    topic, _ = await h.new_session(str(app))
    await h.wait_text("Ready", thread_id=topic)

    # announced as too big: refused without even asking Telegram for it
    h.tg.user_document(OWNER, ADA, b"x" * 50_000, file_name="big.bin", message_thread_id=topic)
    told = await h.wait_text("Not attached", thread_id=topic)
    assert "big.bin" in told.visible_text and "over the 10.2 KB limit" in told.visible_text
    assert h.tg.calls["getFile"] == 0

    # size not announced: fetched, stopped at the cap, nothing kept; the text still goes
    h.tg.user_document(
        OWNER,
        ADA,
        b"z" * 50_000,
        file_name="sneaky.bin",
        caption="what is in it",
        message_thread_id=topic,
        announce_size=False,
    )
    await h.wait_text("Nothing arrived.", thread_id=topic)
    assert h.tg.file_downloads, "this one had to be fetched to learn its size"
    assert any("sneaky.bin" in (m.visible_text or "") for m in h.bot_messages(topic))
    assert h.model_saw("sneaky.bin was sent but not attached"), "Claude is told too"
    assert not inbox.exists() or not list(inbox.iterdir())

    # the daemon keeps working: a file within the cap is saved as before
    h.tg.user_document(
        OWNER,
        ADA,
        b"fine\n",
        file_name="small.txt",
        caption="read the small one",
        message_thread_id=topic,
    )
    await h.wait_text("Small one read.", thread_id=topic)
    assert [p.name for p in inbox.iterdir()] == ["small.txt"]


@pytest.mark.e2e
async def test_a_press_is_answered_while_a_download_is_held_open(h: Harness) -> None:
    app = h.root / "app"
    h.model.on(
        "write it",
        ToolUse("Write", {"file_path": str(app / "out.txt"), "content": "done"}),
        Text("Written."),
    )
    h.model.on("and read this", Text("Read the notes."))
    topic, _ = await h.new_session(str(app), "write it")
    prompt = await h.wait_msg(lambda m: "Allow" in " ".join(m.button_labels), thread_id=topic)

    h.tg.hold_files = asyncio.Event()
    h.tg.user_document(
        OWNER,
        ADA,
        b"notes\n",
        file_name="notes.txt",
        caption="and read this",
        message_thread_id=topic,
    )
    await h.tg.wait_until(lambda: h.tg.file_downloads or None, timeout=20)
    # the same thread's download hangs; Allow still acts at once
    h.press(prompt, "Allow")
    await h.wait_text("Written.", thread_id=topic, timeout=30)
    assert (app / "out.txt").read_text() == "done"
    assert "Allowed by Ada" in h.tg.message(h.chat_id, prompt.message_id).visible_text
    assert not h.tg.hold_files.is_set(), "all of it happened while the download was held"

    h.tg.hold_files.set()
    await h.wait_text("Read the notes.", thread_id=topic)
    assert (app / ".threadline" / "inbox" / "notes.txt").read_bytes() == b"notes\n"


# --- Slack ---------------------------------------------------------------------------


@pytest.fixture()
async def s(tmp_path: Path) -> AsyncIterator[SlackHarness]:
    harness = await start_slack_harness(tmp_path, speed=10)
    yield harness
    await stop_slack_harness(harness)


@pytest.mark.e2e
async def test_slack_fetches_files_of_owners_only(s: SlackHarness) -> None:
    app = s.root / "app"
    s.model.on("summarise the attached file", Text("A short note."))
    s.slack.user_message(
        s.channel, SLACK_STRANGER, "take this", files=[("bait.txt", "text/plain", b"x" * 100)]
    )
    await s.wait_text("only works for its owners")
    assert s.slack.downloads == [], "nothing a stranger shared was fetched"

    thread, _ = await s.new_session(str(app))
    await s.wait_text("Ready", thread=thread)
    s.slack.user_message(
        s.channel,
        SLACK_OWNER,
        "summarise the attached file",
        thread_ts=thread,
        files=[("notes.txt", "text/plain", b"meet at noon\n")],
    )
    await s.wait_text("A short note.", thread=thread)
    assert len(s.slack.downloads) == 1
    assert (app / ".threadline" / "inbox" / "notes.txt").read_bytes() == b"meet at noon\n"
