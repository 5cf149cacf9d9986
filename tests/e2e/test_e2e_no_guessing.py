"""End to end on Telegram (real CLI, fake model API): a turn that cannot reach Claude
tells the person what is going on and what to do — without credentials one message
naming the fix, while the API fails a status line showing Claude Code's retries, and
when it gives up one clear error."""

from __future__ import annotations

import logging
import re
import socket
from pathlib import Path

import pytest

from agent.cli import claude_cli_path
from tests.support.fakes.anthropic import Error, Text
from tests.support.fakes.telegram import FakeMessage
from tests.support.harness import OWNER, Harness, start_harness, stop_harness

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def turn_messages(h: Harness, topic: int) -> list[FakeMessage]:
    """The bot's messages in the topic after its header (the turn's own)."""
    return [m for m in h.bot_messages(topic) if m.kind == "text" and "📂" not in m.visible_text]


def status_versions(h: Harness, topic: int) -> list[str]:
    """Every text the turn's status message (the one with the Stop button) showed."""
    return [
        v.visible_text or ""
        for m in h.bot_messages(topic)
        if any("x:" in str(v.reply_markup) for v in m.history)
        for v in m.history
    ]


async def test_no_credentials_says_once_how_to_log_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The real CLI with no key and an empty config directory answers "Not logged in ·
    Please run /login" — a command the chat does not have. The person gets one
    notifying message naming both fixes (the bundled CLI's path and config directory
    in the login command), the daemon logs it once, and the model is never called."""
    h = await start_harness(tmp_path, claude_extra={"ANTHROPIC_API_KEY": ""})
    try:
        caplog.set_level(logging.INFO, logger="agent")
        topic, _ = await h.new_session(str(h.root / "app"), "hello there")
        final = await h.wait_text("⏱", thread_id=topic)
        text = " ".join((final.visible_text or "").split())
        assert "Claude Code is not logged in" in text
        assert "set ANTHROPIC_API_KEY in the daemon's environment (or its service file)" in text
        cli = claude_cli_path("")
        assert f"CLAUDE_CONFIG_DIR={h.env['CLAUDE_CONFIG_DIR']} {cli} auth login" in text
        assert "/login" not in text.replace("auth login", "")
        assert not final.disable_notification
        mine = turn_messages(h, topic)
        assert [m for m in mine if "logged in" in (m.visible_text or "")] == [final]
        assert [m for m in mine if not m.disable_notification] == [final], mine
        assert not any("/login" in v for v in status_versions(h, topic))
        assert h.model.requests == [], "no model call without credentials"
        logged = [r for r in caplog.records if "not logged in" in r.getMessage()]
        assert len(logged) == 1 and "auth login" in logged[0].getMessage()
    finally:
        await stop_harness(h)


async def test_the_status_shows_retries_and_the_answer_arrives_when_the_api_recovers(
    tmp_path: Path,
) -> None:
    h = await start_harness(tmp_path, claude_extra={"CLAUDE_CODE_MAX_RETRIES": "6"})
    try:
        h.model.on("flaky job", Error(529))
        topic, _ = await h.new_session(str(h.root / "app"), "flaky job")
        await h.tg.wait_until(
            lambda: any("Claude Code is retrying" in v for v in status_versions(h, topic)) or None,
            timeout=30,
        )
        h.model.on("flaky job", Text("Recovered answer."))  # the API is back
        final = await h.wait_text("⏱", thread_id=topic)
        assert "Recovered answer." in (final.visible_text or "")
        assert "Error" not in (final.visible_text or "")
        retry = next(v for v in status_versions(h, topic) if "retrying" in v)
        # Edits of the status message coalesce: which attempt shows depends on timing.
        assert re.search(
            r"Claude Code is retrying \(attempt [1-6]/6, next try in \d+ s\): HTTP 529 ", retry
        )
        assert h.model.errors_served >= 1
        assert not any(
            "Claude Code failed" in (m.visible_text or "") for m in h.bot_messages(topic)
        )
    finally:
        await stop_harness(h)


async def test_an_unreachable_api_shows_retries_then_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    h = await start_harness(
        tmp_path, claude_extra={"ANTHROPIC_BASE_URL": dead, "CLAUDE_CODE_MAX_RETRIES": "3"}
    )
    try:
        topic, _ = await h.new_session(str(h.root / "app"), "anyone there")
        final = await h.wait_text("⏱", thread_id=topic)
        text = " ".join((final.visible_text or "").split())
        assert "Claude Code failed: gave up after 3 retries: API Error: Connection refused" in text
        assert "Traceback" not in text
        mine = turn_messages(h, topic)
        assert [m for m in mine if "Claude Code failed" in (m.visible_text or "")] == [final]
        assert [m for m in mine if not m.disable_notification] == [final]
        shown = [v for v in status_versions(h, topic) if "retrying" in v]
        assert shown, status_versions(h, topic)
        assert re.search(
            r"\(attempt [1-3]/3, next try in \d+ s\): no connection to the model API", shown[0]
        )
    finally:
        await stop_harness(h)


async def test_new_without_a_path_offers_the_roots_and_their_repositories(
    tmp_path: Path,
) -> None:
    """With no session yet, `/new` alone used to answer with a made-up example path.
    Now it names the allowed roots and offers the root and the git repositories
    directly in it as buttons; a press opens a session there."""
    h = await start_harness(tmp_path)
    try:
        (h.root / "shop" / ".git").mkdir(parents=True)
        (h.root / "notes").mkdir()  # not a repository: not offered
        h.say("/new")
        picker = await h.wait_msg(lambda m: "which directory" in (m.visible_text or "").lower())
        text = picker.visible_text or ""
        assert "/new PATH [prompt]" in text and str(h.root) in text
        assert picker.button_labels == [f"{h.root}/", "shop"]
        before = set(h.tg.topics(h.chat_id))
        h.press(picker, "shop")
        topic = await h.tg.wait_until(
            lambda: next(iter(set(h.tg.topics(h.chat_id)) - before), None), timeout=30
        )
        binding = await h.tg.wait_until(
            lambda: h.db.bindings.by_thread_key(f"telegram:{h.chat_id}:{topic}"), timeout=30
        )
        row = h.db.sessions.get(binding.session_id)
        assert row is not None and row.cwd == str((h.root / "shop").resolve())
        # A second `/new`: the recent directory comes first, not twice.
        h.say("/new")
        again = await h.wait_msg(
            lambda m: (
                m.message_id != picker.message_id
                and "which directory" in (m.visible_text or "").lower()
            )
        )
        assert again.button_labels == ["shop", f"{h.root}/"]
        # A forged button for a path outside the root is refused.
        for forged in ("nd:0:..", "nd:7:", "nd:x"):
            h.tg.press_button(h.chat_id, again.message_id, forged, OWNER, strict=False)

        def refused() -> list[object]:
            rows = h.db.audit.recent(20)
            return [r for r in rows if r.action == "button" and "stale" in r.detail]

        await h.tg.wait_until(lambda: len(refused()) == 3 or None)
        assert len(h.tg.topics(h.chat_id)) == len(before) + 1
    finally:
        await stop_harness(h)
