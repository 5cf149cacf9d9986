"""`kill -9` in the middle of a streamed answer, then `threadline run` again.

The daemon runs as a real process (`python -m bridge.cli.main run`), with the real
python-telegram-bot against the fake Bot API and the real Claude Code CLI against the
fake model, both of which live in the test and outlast the daemon.  One session is
streaming a long answer and another is waiting on a permission prompt when the daemon
is killed.  After the restart the chat transcript must show every message exactly
once, the interrupted turn says so, the permission prompt is expired (its buttons do
nothing, the tool never ran), the Claude Code processes the dead daemon left behind are
gone, and the next message resumes the session with its context."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from storage.db import Database
from storage.models import OutboxRow
from tests.support.fakes.anthropic import FakeAnthropic, Text, ToolUse
from tests.support.fakes.claude_env import claude_env
from tests.support.fakes.telegram import FakeMessage, FakeTelegram
from tests.support.harness import OWNER, OWNER_NAME, config_text

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
USER = {"id": OWNER, "is_bot": False, "first_name": OWNER_NAME}


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError):
                pass
    return out


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


class Daemon:
    def __init__(self, cfg: Path, env: dict[str, str]) -> None:
        self.cfg, self.env = cfg, env
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, tg: FakeTelegram) -> None:
        polls = tg.calls["getUpdates"]
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "run", "--config", str(self.cfg),
            cwd=ROOT, env=self.env,
        )  # fmt: skip
        await tg.wait_until(lambda: tg.calls["getUpdates"] > polls or None, timeout=60)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout=30)


def snapshot(tg: FakeTelegram) -> dict[int, tuple[int | None, str]]:
    return {m.message_id: (m.thread_id, m.visible_text or "") for m in tg.messages(OWNER)}


def has_allow(m: FakeMessage) -> bool:
    return any("Allow" in b for b in m.button_labels)


async def test_sigkill_mid_stream_then_restart(tmp_path: Path) -> None:
    model = FakeAnthropic()
    await model.start()
    daemon: Daemon | None = None
    try:
        async with FakeTelegram(has_topics_enabled=True) as tg:
            tg.add_chat(OWNER, "private", first_name=OWNER_NAME)
            root = tmp_path / "code"
            (root / "app").mkdir(parents=True)
            (root / "other").mkdir()
            secret = root / "other" / "secret.txt"
            db_url = f"sqlite:///{tmp_path}/threadline.db"
            cfg = tmp_path / "config.toml"
            cfg.write_text(
                config_text(tg=tg, root=root, db_url=db_url, chat_id=OWNER)
                + f'[daemon]\nlog_file = "{tmp_path}/daemon.log"\n'
            )
            env = {**os.environ, **claude_env(tmp_path / "home", model.base_url)}
            model.on("remember the word kiwi", Text("I will remember kiwi."))
            model.on("count slowly", Text("word " * 800, chunk=5, delay=0.05))
            model.on(
                "write the secret",
                ToolUse("Write", {"file_path": str(secret), "content": "x"}),
                Text("Secret written."),
            )
            model.on("which word", Text("The word was kiwi."))

            daemon = Daemon(cfg, env)
            await daemon.start(tg)
            # session A: some context, then a long streamed answer
            tg.user_message(OWNER, USER, f"/new {root / 'app'} remember the word kiwi")
            kiwi = await tg.wait_for(
                lambda m: "I will remember kiwi." in (m.visible_text or ""), timeout=60
            )
            topic_a = kiwi.thread_id
            # session B: waiting on a permission prompt
            tg.user_message(OWNER, USER, f"/new {root / 'other'} write the secret")
            prompt = await tg.wait_for(has_allow, timeout=60)
            topic_b = prompt.thread_id
            allow = prompt.callback_data("Allow")
            tg.user_message(OWNER, USER, "count slowly", message_thread_id=topic_a)
            status = await tg.wait_for(
                lambda m: m.thread_id == topic_a and "Stop" in " ".join(m.button_labels),
                timeout=30,
            )
            await tg.wait_until(
                lambda: (
                    any(
                        "word word word" in (d.visible_text or "")
                        for d in tg.drafts(thread_id=topic_a)
                    )
                    or None
                ),
                timeout=30,
            )
            clis = [p for p in children(daemon.pid) if running(p)]
            assert len(clis) == 2, "one Claude Code process per session"

            before = snapshot(tg)
            await daemon.kill9()
            await asyncio.sleep(0.5)
            assert any(running(p) for p in clis), "the streaming CLI outlived its daemon"

            await daemon.start(tg)
            notice_a = await tg.wait_for(
                lambda m: m.thread_id == topic_a and "Interrupted:" in (m.visible_text or ""),
                timeout=30,
            )
            assert "resumes with its full context" in notice_a.visible_text
            notice_b = await tg.wait_for(
                lambda m: m.thread_id == topic_b and "Interrupted:" in (m.visible_text or ""),
                timeout=30,
            )
            assert "Write request was not answered and did not run" in notice_b.visible_text
            await tg.wait_until(
                lambda: (
                    "Expired" in (tg.message(OWNER, prompt.message_id).visible_text or "") or None
                ),
                timeout=30,
            )
            assert not tg.message(OWNER, prompt.message_id).buttons, "expired: no buttons"
            await tg.wait_until(
                lambda: (
                    "Interrupted" in (tg.message(OWNER, status.message_id).visible_text or "")
                    or None
                ),
                timeout=30,
            )
            assert not tg.message(OWNER, status.message_id).buttons, "no Stop button any more"
            await tg.wait_until(lambda: not any(running(p) for p in clis) or None, timeout=15)

            # an old button press approves nothing
            query = tg.press_button(OWNER, prompt.message_id, allow, USER, strict=False)
            await tg.wait_until(lambda: tg.callback_answer(query))
            # every session is still listed
            tg.user_message(OWNER, USER, "/sessions")
            listing = await tg.wait_for(
                lambda m: "Sessions (2)" in (m.visible_text or ""), timeout=30
            )
            assert "interrupted" in listing.visible_text

            # the next message resumes session A with its context
            n = len(model.requests)
            tg.user_message(OWNER, USER, "which word", message_thread_id=topic_a)
            await tg.wait_for(lambda m: "The word was kiwi." in (m.visible_text or ""), timeout=60)
            later = model.requests[n:]
            assert any("remember the word kiwi" in str(r.get("messages")) for r in later)
            assert not secret.exists(), "the pending Write was never approved"

            assert await daemon.stop() == 0
            daemon = None
            after = snapshot(tg)
            _assert_exactly_once(tg, db_url, before, after)
    finally:
        if daemon is not None and daemon.proc is not None and daemon.proc.returncode is None:
            await daemon.kill9()
        await model.stop()


def _assert_exactly_once(
    tg: FakeTelegram,
    db_url: str,
    before: dict[int, tuple[int | None, str]],
    after: dict[int, tuple[int | None, str]],
) -> None:
    """Nothing sent before the kill was lost or sent again, and every message the
    outbox holds reached the chat exactly once."""
    assert set(before) <= set(after), "no message disappeared"
    assert all(after[i][0] == before[i][0] for i in before), "no message moved"
    db = Database(db_url)
    try:
        with db.session() as s:
            rows = list(s.exec(select(OutboxRow).where(OutboxRow.op == "send")))
    finally:
        db.close()
    assert all(r.state == "sent" for r in rows), Counter(r.state for r in rows)
    ids = Counter(r.platform_message_id for r in rows)
    assert all(n == 1 for n in ids.values()), "one chat message per outbox row"
    headers = 2  # each session's first message, posted when its topic opened
    bot_messages = tg.messages(OWNER)
    assert len(bot_messages) == len(rows) + headers
    assert {int(i) for i in ids if i} <= {m.message_id for m in bot_messages}
    texts: Counter[Any] = Counter(
        (m.thread_id, m.visible_text)
        for m in bot_messages
        if "Interrupted:" in (m.visible_text or "")
    )
    assert all(n == 1 for n in texts.values()), "one interrupted notice per thread"


def test_a_database_from_the_previous_release_is_upgraded(tmp_path: Path) -> None:
    """Migrations 2 and on (schedules, the turn's status message, the outbox's
    attempted_at, ...) on a version-1 database."""
    from sqlalchemy import inspect, text

    from storage.db import MIGRATIONS

    url = f"sqlite:///{tmp_path}/old.db"
    db = Database(url)
    db.migrate()
    with db.engine.begin() as conn:  # back to what release 1 created
        conn.execute(text("ALTER TABLE turns DROP COLUMN status_outbox_id"))
        conn.execute(text("DROP TABLE schedules"))
        conn.execute(text("ALTER TABLE outbox DROP COLUMN attempted_at"))
        conn.execute(text("UPDATE schema_version SET version = 1"))
    db.close()
    db = Database(url)
    try:
        assert db.migrate() == len(MIGRATIONS)
        tables = inspect(db.engine).get_table_names()
        columns = {c["name"] for c in inspect(db.engine).get_columns("turns")}
        assert "schedules" in tables and "status_outbox_id" in columns
        assert "attempted_at" in {c["name"] for c in inspect(db.engine).get_columns("outbox")}
        assert db.migrate() == len(MIGRATIONS), "idempotent"
    finally:
        db.close()
