"""Load: many sessions streaming into ONE chat at the platform's default limits.

Issue 6: 10 sessions into one Telegram group (20 messages/min for the whole group),
10 into one Slack channel, 5 into one Matrix room at Synapse's default rate limits.
Zero 429s (or M_LIMIT_EXCEEDED) reach the user, every permission prompt is delivered
ahead of stream updates, every final answer is exact.

The sessions are opened the way `/new` leaves them (a topic/thread bound in the
database, the Claude Code CLI started) before the measurement, so that the test's
minutes go to the turns and not to creating topics under the same budget.  Each test
takes a minute or more by construction: a group gets 20 messages a minute.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from sqlmodel import select

from bridge.messages import ThreadRef
from storage.models import PermissionRequestRow, SessionRow
from tests.fakes.anthropic import Text, ToolUse
from tests.harness import OWNER, Harness, start_harness, stop_harness

ASKING = (0, 4, 7)  # the sessions whose turn needs a permission first


def answer(i: int) -> str:
    """About 1,200 characters in short paragraphs, unique per session."""
    para = " ".join(f"s{i}w{j}" for j in range(40))
    return "\n\n".join(f"{para} p{k}." for k in range(5))


async def open_telegram_sessions(h: Harness, n: int) -> list[tuple[str, int]]:
    """`n` sessions, each bound to its own forum topic, CLIs started (3 at a time)."""
    out: list[tuple[str, int]] = []
    rows: list[SessionRow] = []
    for i in range(n):
        cwd = h.root / f"s{i}"
        cwd.mkdir()
        topic = h.tg.add_topic(h.chat_id, f"s{i}")
        row = SessionRow(
            id=f"load{i:02d}",
            platform="telegram",
            cwd=str(cwd),
            title=f"s{i}",
            owner=f"telegram:{OWNER}",
            mode="default",
            model="",
        )
        h.bridge.bind(row, ThreadRef("telegram", str(h.chat_id), str(topic)), None, "topic")
        rows.append(row)
        out.append((row.id, topic))
    gate = asyncio.Semaphore(3)

    async def warm(row: SessionRow) -> None:
        async with gate:
            agent = await h.bridge.agent_for(row)
            await agent._connected()

    await asyncio.gather(*(warm(r) for r in rows))
    return out


async def press_every_allow(h: Harness, stop: asyncio.Event) -> int:
    """The phone: presses Allow on each permission prompt once, as it appears."""
    pressed: set[int] = set()
    while not stop.is_set():
        for m in h.bot_messages():
            if m.message_id not in pressed and any(
                label.endswith(" Allow") for label in m.button_labels
            ):
                pressed.add(m.message_id)
                h.press(m, "Allow")
        await asyncio.sleep(0.2)
    return len(pressed)


def prompt_ordering_violations(h: Harness, asked_at: dict[int, float]) -> list[str]:
    """Calls to the chat that carried lower-priority content (stream edits of a
    status message) while a permission prompt was waiting.  One call may already
    have been on its way when the prompt was queued, so calls within 0.5 s of the
    request do not count."""
    log = [
        c
        for c in h.tg.api_log
        if c.status == 200 and str(c.params.get("chat_id")) == str(h.chat_id)
    ]
    prompt_sent: dict[int, float] = {}
    for c in log:
        if c.method == "sendMessage" and "Allow" in str(c.params.get("reply_markup", "")):
            topic = int(c.params.get("message_thread_id") or 0)
            prompt_sent.setdefault(topic, c.at)
    bad = []
    for topic, asked in asked_at.items():
        sent = prompt_sent.get(topic)
        assert sent is not None, f"no permission prompt reached topic {topic}"
        for c in log:
            if asked + 0.5 < c.at < sent and c.method == "editMessageText":
                markup = str(c.params.get("reply_markup", ""))
                if "Stop" in markup:  # a streaming status edit, not a decision
                    bad.append(
                        f"{c.method} in topic {c.params.get('message_thread_id')} at {c.at - asked:.2f}s"
                    )
    return bad


async def test_ten_sessions_stream_into_one_telegram_group_without_a_429(tmp_path: Path) -> None:
    h = await start_harness(tmp_path, group=True, stream_interval=0.8)
    stop = asyncio.Event()
    phone: asyncio.Task[int] | None = None
    try:
        sessions = await open_telegram_sessions(h, 10)
        for i, (_, _) in enumerate(sessions):
            steps: list[Any] = [Text(answer(i), chunk=40, delay=0.05)]
            if i in ASKING:
                target = h.root / f"s{i}" / "out.txt"
                steps.insert(0, ToolUse("Write", {"file_path": str(target), "content": f"{i}\n"}))
            h.model.on(f"load prompt {i}", *steps)
        phone = asyncio.create_task(press_every_allow(h, stop))
        started = time.time()
        for i, (_, topic) in enumerate(sessions):
            h.say(f"load prompt {i}", thread_id=topic)
        for _, topic in sessions:
            try:
                await h.wait_text("⏱", thread_id=topic, timeout=240)
            except Exception:
                for j, (_, t) in enumerate(sessions):
                    print(
                        j,
                        [((m.visible_text or "")[:60], m.button_labels) for m in h.bot_messages(t)],
                    )
                print(h.tg.calls, h.tg.count_429)
                raise
        elapsed = time.time() - started

        t0 = h.tg.api_log[0].at
        for c in h.tg.api_log:
            if c.method != "getUpdates":
                print(f"{c.at - t0:8.3f} {c.method} {c.status} {c.description or ''}")
        assert h.tg.count_429 == 0, "no 429 reached the bridge"
        for i, (_, topic) in enumerate(sessions):
            text = "\n".join(m.visible_text or "" for m in h.bot_messages(topic))
            for para in answer(i).split("\n\n"):
                assert para in text, f"session {i}'s answer is exact"
        for i in ASKING:
            assert (h.root / f"s{i}" / "out.txt").read_text() == f"{i}\n"
        asked_at = {}
        with h.db.session() as s:
            for i in ASKING:
                sid, topic = sessions[i]
                rows = s.exec(
                    select(PermissionRequestRow).where(PermissionRequestRow.session_id == sid)
                ).all()
                asked_at[topic] = min(r.created_at.timestamp() for r in rows)
        assert not prompt_ordering_violations(h, asked_at)
        print(
            f"10 sessions in one group: all finals after {elapsed:.1f}s, {len(h.tg.api_log)} calls"
        )
    finally:
        stop.set()
        if phone is not None:
            await phone
        await stop_harness(h)
