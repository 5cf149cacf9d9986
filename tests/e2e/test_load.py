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
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from adapters.matrix.limits import RateLimit
from adapters.messages import ThreadRef
from bridge import render
from bridge.app import Bridge
from storage.db import Database
from storage.models import OutboxRow, PermissionRequestRow, SessionRow
from storage.outbox_pick import DeliveryClass
from tests.support.fakes.anthropic import FakeAnthropic, Text, ToolUse
from tests.support.harness import OWNER, Harness, start_harness, stop_harness
from tests.support.matrix_harness import start_matrix_harness, stop_matrix_harness
from tests.support.slack_harness import OWNER as SLACK_OWNER
from tests.support.slack_harness import SlackHarness, start_slack_harness, stop_slack_harness
from tests.support.synapse import Synapse

ASKING = (0, 4, 7)  # the sessions whose turn needs a permission first


def answer(i: int) -> str:
    """About 1,200 characters in short paragraphs, unique per session."""
    para = " ".join(f"s{i}w{j}" for j in range(40))
    return "\n\n".join(f"{para} p{k}." for k in range(5))


def script_model(model: FakeAnthropic, root: Path, n: int) -> None:
    """Session i answers `answer(i)`; the sessions in ASKING first Write a file."""
    for i in range(n):
        steps: list[Any] = [Text(answer(i), chunk=40, delay=0.05)]
        if i in ASKING:
            target = root / f"s{i}" / "out.txt"
            steps.insert(0, ToolUse("Write", {"file_path": str(target), "content": f"{i}\n"}))
        model.on(f"load prompt {i}", *steps)


def permission_times(db: Database, session_ids: list[str]) -> dict[str, float]:
    """When each session's first permission request was made (epoch seconds)."""
    with db.session() as s:
        rows = s.exec(
            select(PermissionRequestRow).where(
                col(PermissionRequestRow.session_id).in_(session_ids)
            )
        ).all()
    out: dict[str, float] = {}
    for r in rows:
        out[r.session_id] = min(
            out.get(r.session_id, r.created_at.timestamp()), r.created_at.timestamp()
        )
    return out


async def start_clis(bridge: Bridge, rows: list[SessionRow]) -> None:
    """Start the sessions' Claude Code CLIs before the measurement, 3 at a time."""
    gate = asyncio.Semaphore(3)

    async def warm(row: SessionRow) -> None:
        async with gate:
            agent = await bridge.agent_for(row)
            await agent._connected()

    await asyncio.gather(*(warm(r) for r in rows))


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
    await start_clis(h.bridge, rows)
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
        script_model(h.model, h.root, 10)
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

        assert h.tg.count_429 == 0, "no 429 reached the bridge"
        for i, (_, topic) in enumerate(sessions):
            text = "\n".join(m.visible_text or "" for m in h.bot_messages(topic))
            for para in answer(i).split("\n\n"):
                assert para in text, f"session {i}'s answer is exact"
        for i in ASKING:
            assert (h.root / f"s{i}" / "out.txt").read_text() == f"{i}\n"
        asked = permission_times(h.db, [sid for sid, _ in sessions])
        asked_at = {topic: asked[sid] for sid, topic in sessions if sid in asked}
        assert len(asked_at) == len(ASKING)
        assert not prompt_ordering_violations(h, asked_at)
        assert not stream_updates_ahead_of_prompts(h.db)
        print(
            f"10 sessions in one group: all finals after {elapsed:.1f}s, {len(h.tg.api_log)} calls"
        )
    finally:
        stop.set()
        if phone is not None:
            await phone
        await stop_harness(h)


# --- Slack: ten sessions in one channel ----------------------------------------------


async def open_slack_sessions(h: SlackHarness, n: int) -> list[tuple[str, str]]:
    """`n` sessions, each bound to its own thread (under a header message posted by
    the person, as if `/new` had opened it), CLIs started (3 at a time)."""
    out: list[tuple[str, str]] = []
    rows: list[SessionRow] = []
    for i in range(n):
        cwd = h.root / f"s{i}"
        cwd.mkdir()
        header = h.slack.user_message(h.channel, SLACK_OWNER, f"session s{i}")
        row = SessionRow(
            id=f"slk{i:02d}",
            platform="slack",
            cwd=str(cwd),
            title=f"s{i}",
            owner=f"slack:{SLACK_OWNER}",
            mode="default",
            model="",
        )
        h.bridge.bind(row, ThreadRef("slack", h.channel, header.ts), None, "thread")
        rows.append(row)
        out.append((row.id, header.ts))
    await start_clis(h.bridge, rows)
    return out


async def test_ten_sessions_stream_into_one_slack_channel_without_a_429(tmp_path: Path) -> None:
    h = await start_slack_harness(tmp_path, stream_interval=0.8)
    stop = asyncio.Event()

    threads: list[str] = []

    async def phone() -> None:
        pressed: set[str] = set()
        while not stop.is_set():
            for m in (m for t in threads for m in h.bot_messages(t)):
                if m.ts not in pressed and any(b.endswith(" Allow") for b in m.button_labels):
                    pressed.add(m.ts)
                    h.press(m, "Allow")
            await asyncio.sleep(0.2)

    presser = asyncio.create_task(phone())
    try:
        sessions = await open_slack_sessions(h, 10)
        threads.extend(t for _, t in sessions)
        script_model(h.model, h.root, 10)
        started = time.time()
        for i, (_, thread) in enumerate(sessions):
            h.say(f"load prompt {i}", thread=thread)
        for _, thread in sessions:
            await h.wait_text("⏱", thread=thread, timeout=240)
        elapsed = time.time() - started

        assert h.slack.count_429 == 0, "no 429 reached the bridge"
        for i, (_, thread) in enumerate(sessions):
            shown = " ".join(" ".join(m.visible_text.split()) for m in h.bot_messages(thread))
            for para in answer(i).split("\n\n"):
                assert " ".join(para.split()) in shown, f"session {i}'s answer is exact"
        for i in ASKING:
            assert (h.root / f"s{i}" / "out.txt").read_text() == f"{i}\n"
        asked = permission_times(h.db, [sid for sid, _ in sessions])
        calls = [
            c for c in h.slack.calls if c.status == 200 and c.params.get("channel") == h.channel
        ]
        sent: dict[str, float] = {}
        for c in calls:
            if c.method == "chat.postMessage" and "Allow for session" in str(c.params):
                sent.setdefault(str(c.params.get("thread_ts")), c.at)
        for sid, thread in sessions:
            if sid not in asked:
                continue
            assert thread in sent, f"the permission prompt of {sid} was posted"
            late = [
                c.method
                for c in calls
                if asked[sid] + 0.5 < c.at < sent[thread]
                and c.method == "chat.update"
                and "Stop" in str(c.params)
            ]
            assert not late, f"stream updates went ahead of {sid}'s permission prompt: {late}"
        assert not stream_updates_ahead_of_prompts(h.db)
        print(
            f"10 sessions in one Slack channel: all finals after {elapsed:.1f}s, {len(calls)} calls"
        )
    finally:
        stop.set()
        await presser
        await stop_slack_harness(h)


def stream_updates_ahead_of_prompts(db: Database) -> list[str]:
    """From the outbox's own record: stream updates (class STREAM) that spent the
    message budget a permission prompt was waiting for — sent in its chat from 0.5 s
    after it was queued (a call may already have been on its way) until it was sent.
    Native stream appends (op "draft") have a budget of their own and cannot delay
    a prompt, so they do not count."""
    with db.session() as s:
        prompts = [
            s.get(OutboxRow, r.prompt_outbox_id)
            for r in s.exec(select(PermissionRequestRow))
            if r.prompt_outbox_id is not None
        ]
        bad = []
        for p in prompts:
            assert p is not None and p.sent_at is not None, "every prompt was delivered"
            queued = p.created_at + timedelta(seconds=0.5)
            ahead = s.exec(
                select(OutboxRow).where(
                    OutboxRow.chat_key == p.chat_key,
                    OutboxRow.priority == int(DeliveryClass.STREAM),
                    OutboxRow.op != "draft",
                    OutboxRow.state == "sent",
                    col(OutboxRow.sent_at) > queued,
                    col(OutboxRow.sent_at) < p.sent_at,
                )
            ).all()
            bad += [f"row {r.id} ({r.op}) ahead of prompt row {p.id}" for r in ahead]
    return bad


# --- Matrix: five sessions in one room at Synapse's default limits -------------------


async def test_five_sessions_stream_into_one_matrix_room_at_default_limits(
    tmp_path: Path, synapse_default_limits: Synapse
) -> None:
    server = synapse_default_limits
    h = await start_matrix_harness(tmp_path, server, rate=RateLimit())
    server.unlimit(h.phone.user_id)  # only the bot lives with the defaults
    stop = asyncio.Event()

    async def phone() -> None:
        reacted: set[str] = set()
        while not stop.is_set():
            for m in h.bot_messages():
                if m.event_id not in reacted and "🔐 Allow" in m.body:
                    reacted.add(m.event_id)
                    await h.react(m, "✅")
            await asyncio.sleep(0.2)

    presser = asyncio.create_task(phone())
    try:
        sessions: list[tuple[str, str]] = []
        rows = []
        for i in range(5):
            cwd = h.root / f"s{i}"
            cwd.mkdir()
            root_event = await h.say(f"session s{i}")
            row = SessionRow(
                id=f"mx{i:02d}",
                platform="matrix",
                cwd=str(cwd),
                title=f"s{i}",
                owner=f"matrix:{h.phone.user_id}",
                mode="default",
                model="",
            )
            h.bridge.bind(row, ThreadRef("matrix", h.room, root_event), None, "thread")
            rows.append(row)
            sessions.append((row.id, root_event))
        await start_clis(h.bridge, rows)
        script_model(h.model, h.root, 5)
        started = time.time()
        for i, (_, root_event) in enumerate(sessions):
            await h.say(f"load prompt {i}", thread=root_event)
        for _, root_event in sessions:
            try:
                await h.wait_text("⏱", thread=root_event, timeout=200)
            except TimeoutError:
                for m in h.phone.in_room(h.room):
                    print(m.sender[:8], m.thread and m.thread[-6:], repr(m.body[:70]))
                raise
        elapsed = time.time() - started

        for i, (_, root_event) in enumerate(sessions):
            shown = "\n".join(m.body for m in h.bot_messages(root_event))
            for para in answer(i).split("\n\n"):
                assert para in shown, f"session {i}'s answer is exact"
        for i in ASKING:
            if i < 5:
                assert (h.root / f"s{i}" / "out.txt").read_text() == f"{i}\n"
        assert not server.responses(h.bot.user_id, 429), "the bot paced itself: no 429 at all"
        texts = " ".join(v.get("body", "") for m in h.bot_messages() for v in m.versions)
        assert "LIMIT" not in texts and "went wrong" not in texts
        assert not stream_updates_ahead_of_prompts(h.db)
        print(f"5 sessions in one Matrix room: all finals after {elapsed:.1f}s")
    finally:
        stop.set()
        await presser
        await stop_matrix_harness(h)


async def test_a_status_message_a_busy_chat_never_sent_is_dropped_with_its_done_edit(
    tmp_path: Path,
) -> None:
    """A turn that ends before its chat's budget ever reached its status message:
    nobody saw that message, so it is withdrawn rather than sent late and edited to
    "Done" — the answer is the one message the turn costs."""
    h = await start_harness(tmp_path, group=True)
    try:
        [(sid, topic)] = await open_telegram_sessions(h, 1)
        h.model.on("quick one", Text("Quick answer."))
        thread = ThreadRef("telegram", str(h.chat_id), None)
        # Fifteen notices queued ahead of the turn: at 1 message/s the chat is busy
        # for 12 s or more, far longer than the (pre-started) CLI takes to answer.
        for i in range(15):
            h.bridge.reply(thread, render.notice(f"busy {i}"))
        h.say("quick one", thread_id=topic)
        final = await h.wait_text("Quick answer.", thread_id=topic, timeout=90)
        assert "⏱" in (final.visible_text or "")
        assert [m.visible_text for m in h.bot_messages(topic)] == [final.visible_text]
        with h.db.session() as s:
            rows = s.exec(select(OutboxRow).where(OutboxRow.session_id == sid)).all()
        assert [r.state for r in rows if r.op == "send"].count("superseded") == 1
        assert h.tg.count_429 == 0
    finally:
        await stop_harness(h)
