"""Platform API faults injected under a real streamed turn (issue 6, Reliability 1).

Each test runs the whole daemon — bridge, durable outbox, the real adapter library,
the real Claude Code CLI — against a local fake (Telegram, Slack) or a real Synapse
behind a fault proxy (Matrix), and breaks the chat API while the answer streams:
5xx bursts, requests that hang past the client's timeout, connection resets, 429
storms with ``retry_after``, and an outage of the whole API. Afterwards every message
is delivered once, in order per thread, and every streamed preview is a prefix of the
model's answer (no gaps, no repeats) while the final message carries it exactly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from sqlmodel import select

from adapters.telegram import client as tg_client
from storage.db import Database
from storage.models import OutboxRow
from tests.fakes.anthropic import Text
from tests.fakes.telegram import FakeMessage
from tests.harness import Harness, start_harness, stop_harness

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

CLIENT_TIMEOUT_S = 1.5  # the adapters' request timeout in these tests (a hang outlives it)
OUTAGE_S = 60.0  # the Telegram outage; the other platforms' outages are a few seconds


def answer_of(name: str, words: int = 120) -> str:
    """A plain-text answer (no formatting, so a preview is literally its prefix)."""
    return " ".join(f"{name}{i}" for i in range(words))


def norm(text: str) -> str:
    return " ".join(text.split())


def assert_prefixes(previews: Iterable[str], answer: str, what: str) -> int:
    """Every streamed preview shows the start of the answer: nothing skipped, nothing
    repeated. Returns how many previews showed text."""
    shown = 0
    for text in previews:
        text = norm(text.replace("…", ""))
        if not text:
            continue
        shown += 1
        assert norm(answer).startswith(text), f"{what} showed {text[:80]!r}… not a prefix"
    return shown


def failed_rows(db: Database) -> list[OutboxRow]:
    """Rows that were given up: drafts may be (a preview only), nothing else may."""
    with db.session() as s:
        rows = s.exec(select(OutboxRow).where(OutboxRow.state == "failed"))
        return [r for r in rows if r.op != "draft"]


def pending_rows(db: Database) -> list[OutboxRow]:
    with db.session() as s:
        return list(s.exec(select(OutboxRow).where(OutboxRow.state == "pending")))


# --- Telegram -------------------------------------------------------------------------------


def tg_finals(h: Harness, topic: int) -> list[FakeMessage]:
    return [m for m in h.bot_messages(topic) if "⏱" in (m.visible_text or "")]


def tg_status(h: Harness, topic: int) -> list[FakeMessage]:
    """The status messages (they had a Stop button at some point)."""
    return [
        m
        for m in h.bot_messages(topic)
        if any("x:" in str(v.reply_markup or "") for v in m.history)
    ]


def tg_status_previews(h: Harness, topic: int) -> list[str]:
    """The streamed text each status-message version showed (the lines after the tools)."""
    out = []
    for m in tg_status(h, topic):
        for v in m.history:
            text = v.visible_text or ""
            if "Working…" in text or "Done" in text:
                continue
            out.append(text)
    return out


def assert_tg_thread(h: Harness, topic: int, answers: list[str]) -> None:
    """Per turn one status message and one final message, in order, each final exact."""
    finals = tg_finals(h, topic)
    assert len(finals) == len(answers), [m.visible_text[:60] for m in finals]
    for final, answer in zip(finals, answers, strict=True):
        assert final.visible_text.startswith(answer), "the final message is the exact answer"
        body = final.visible_text.rsplit("\n", 1)[0].strip()
        assert body == answer, "nothing before or after the answer"
    statuses = tg_status(h, topic)
    assert len(statuses) == len(answers), "one status message per turn, none sent twice"
    ids = [m.message_id for m in h.bot_messages(topic)]
    order = [x for pair in zip(statuses, finals, strict=True) for x in pair]
    assert [ids.index(m.message_id) for m in order] == sorted(
        ids.index(m.message_id) for m in order
    ), "status, final, status, final … in that order"
    for status in statuses:
        assert not status.buttons, "the status message lost its Stop button"
        assert "Done" in status.visible_text
    status_ids = {m.message_id for m in statuses}
    texts = [m.visible_text for m in h.bot_messages(topic) if m.message_id not in status_ids]
    assert len(texts) == len(set(texts)), "no message delivered twice"


async def test_telegram_5xx_hangs_resets_and_429_storms_lose_and_repeat_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tg_client, "REQUEST_TIMEOUT_S", CLIENT_TIMEOUT_S)
    h = await start_harness(tmp_path, telegram_extra="use_drafts = false")
    try:
        tg = h.tg
        answers = {name: answer_of(name) for name in ("alpha", "beta")}
        for name, answer in answers.items():
            (h.root / name).mkdir()
            h.model.on(f"stream {name}", Text(answer, chunk=12, delay=0.1))
        sessions = {}
        for name in answers:
            sessions[name] = await h.new_session(str(h.root / name), f"stream {name}")
        # Both answers are streaming into their status messages: break the API now.
        for topic, _ in sessions.values():
            await h.tg.wait_until(lambda t=topic: tg_status_previews(h, t) or None, 30)
        # The stream's edits: a 5xx burst, a reset, a hang past the client's timeout and
        # a 429 storm, in that order.
        tg.fail_next("editMessageText", 502, times=2)
        tg.fail_next("editMessageText", reset=True)
        tg.fail_next("editMessageText", 504, delay=CLIENT_TIMEOUT_S + 1.0)
        tg.fail_next("editMessageText", retry_after=1, times=3)
        # The final answers go through the same gauntlet.
        final = lambda p: "⏱" in str(p.get("text", ""))  # noqa: E731
        tg.fail_next("sendMessage", 500, match=final)
        tg.fail_next("sendMessage", reset=True, match=final)
        tg.fail_next("sendMessage", 504, delay=CLIENT_TIMEOUT_S + 1.0, match=final)
        tg.fail_next("sendMessage", retry_after=1, times=2, match=final)
        for topic, _ in sessions.values():
            await h.wait_text("⏱", thread_id=topic, timeout=60)
        await h.bridge.outbox.wait_idle(timeout=60)
        assert not tg._faults, "every injected fault was served"
        assert tg.count_429 == 5, "the 429s were answered, and only the injected ones"
        for name, (topic, _) in sessions.items():
            assert_tg_thread(h, topic, [answers[name]])
            assert assert_prefixes(tg_status_previews(h, topic), answers[name], name) >= 1
        assert not failed_rows(h.db) and not pending_rows(h.db)
        # The session goes on: the next turn streams and ends as usual.
        topic, _ = sessions["alpha"]
        follow = answer_of("again", 20)
        h.model.on("once more", Text(follow, chunk=10, delay=0.02))
        h.say("once more", thread_id=topic)
        await h.tg.wait_until(lambda: len(tg_finals(h, topic)) >= 2 or None, 40)
        await h.bridge.outbox.wait_idle(timeout=30)
        assert_tg_thread(h, topic, [answers["alpha"], follow])
    finally:
        await stop_harness(h)


async def test_telegram_outage_delivers_everything_after_and_the_stream_resumes_exactly(
    tmp_path: Path,
) -> None:
    """The Bot API is gone for `OUTAGE_S` (first answering 502, then refusing
    connections) while one answer streams as native drafts and a second session's
    whole turn happens: afterwards the drafts pick up at the exact text, and every
    message arrives once, in order."""
    h = await start_harness(tmp_path)
    try:
        tg = h.tg
        long_answer = answer_of("omega", 300)  # < PREVIEW_CHARS: every draft is a prefix
        chunks = len(long_answer) // 10
        h.model.on("long story", Text(long_answer, chunk=10, delay=(OUTAGE_S + 10) / chunks))
        short = answer_of("short", 30)
        h.model.on("short story", Text(short, chunk=10, delay=0.05))
        (h.root / "other").mkdir()
        other_topic, other_sid = await h.new_session(str(h.root / "other"))
        await h.wait_text("Ready", thread_id=other_topic)
        long_topic, _ = await h.new_session(str(h.root / "app"), "long story")
        await tg.wait_until(lambda: tg.drafts(thread_id=long_topic) or None, 30)
        h.say("short story", thread_id=other_topic)
        await tg.wait_until(lambda: h.model_saw("short story") or None, 30)
        await tg.set_outage(502)
        await asyncio.sleep(OUTAGE_S / 2)
        await tg.set_outage("refused")
        row = h.db.sessions.get(other_sid)
        assert row is not None and row.state != "running", "the other turn ended in the outage"
        assert not tg_finals(h, other_topic), "…and nothing of it reached the chat yet"
        await asyncio.sleep(OUTAGE_S / 2)
        ended = time.time()
        await tg.set_outage(None)
        await h.wait_text("⏱", thread_id=other_topic, timeout=40)
        await h.wait_text("⏱", thread_id=long_topic, timeout=60)
        await h.bridge.outbox.wait_idle(timeout=30)
        assert_tg_thread(h, other_topic, [short])
        assert_tg_thread(h, long_topic, [long_answer])
        drafts = [d.visible_text for d in tg.drafts(thread_id=long_topic)]
        assert assert_prefixes(drafts, long_answer, "a draft") >= 2
        after = [d for d in tg.drafts(thread_id=long_topic) if d.at > ended]
        assert after, "the stream resumed after the outage"
        assert not failed_rows(h.db) and not pending_rows(h.db)
    finally:
        await stop_harness(h)
