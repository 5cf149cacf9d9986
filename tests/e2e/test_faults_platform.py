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
import json
import re
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from sqlmodel import select

from adapters.slack import client as slack_client
from adapters.telegram import client as tg_client
from storage.db import Database
from storage.models import OutboxRow
from tests.support.fakes.anthropic import Text
from tests.support.fakes.fault_proxy import FaultProxy
from tests.support.fakes.slack import FakeMessage as SlackMessage
from tests.support.fakes.telegram import FakeMessage
from tests.support.harness import Harness, start_harness, stop_harness
from tests.support.matrix_harness import start_matrix_harness, stop_matrix_harness
from tests.support.slack_harness import SlackHarness, start_slack_harness, stop_slack_harness
from tests.support.synapse import Synapse

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

CLIENT_TIMEOUT_S = 1.5  # the adapters' request timeout in these tests (a hang outlives it)
OUTAGE_S = 60.0  # the Telegram outage; the other platforms' outages are a few seconds
MATRIX_OUTAGE_S = 4.0


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
    """The status messages (they had a Stop button at some point), deleted ones too:
    a turn's status goes once its answer is in when it showed nothing more."""
    return [
        m
        for m in h.tg.messages(h.chat_id, topic, include_deleted=True)
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
    # A status message only once there is something to show, never sent twice.
    assert len(statuses) <= len(answers), "at most one status message per turn"
    ids = [m.message_id for m in h.tg.messages(h.chat_id, topic, include_deleted=True)]
    if len(statuses) == len(answers):
        order = [x for pair in zip(statuses, finals, strict=True) for x in pair]
        assert [ids.index(m.message_id) for m in order] == sorted(
            ids.index(m.message_id) for m in order
        ), "status, final, status, final … in that order"
    for status in statuses:
        # no Stop button left: gone with the turn (it showed nothing the answer does
        # not), or edited to its last state
        assert status.deleted or (not status.buttons and "Done" in status.visible_text)
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
        answer = answer_of("alpha", 200)
        more = asyncio.Event()  # the model holds the rest of its answer until then
        h.model.on("stream alpha", Text(answer, chunk=12, delay=0.06, gate=more, gate_at=0.85))
        topic, _ = await h.new_session(str(h.root / "app"), "stream alpha")
        # The answer is streaming into the status message: break the API now.
        await tg.wait_until(lambda: tg_status_previews(h, topic) or None, 30)
        # The stream's edits: a 5xx burst, a reset, a hang past the client's timeout and
        # a 429 storm, in that order.
        tg.fail_next("editMessageText", 502, times=2)
        tg.fail_next("editMessageText", reset=True)
        tg.fail_next("editMessageText", 504, delay=CLIENT_TIMEOUT_S + 1.0)
        tg.fail_next("editMessageText", retry_after=1, times=2)
        # The final answer meets them too.
        final = lambda p: "⏱" in str(p.get("text", ""))  # noqa: E731
        tg.fail_next("sendMessage", 500, match=final)
        tg.fail_next("sendMessage", reset=True, match=final)
        tg.fail_next("sendMessage", retry_after=1, match=final)
        await tg.wait_until(lambda: all(f.match for f in tg._faults) or None, 30)
        shown = len(tg_status_previews(h, topic))
        more.set()
        await h.wait_text("⏱", thread_id=topic, timeout=60)
        await h.bridge.outbox.wait_idle(timeout=60)
        assert not tg._faults, "every injected fault was served"
        assert tg.count_429 == 3, "the 429s were answered, and only the injected ones"
        assert_tg_thread(h, topic, [answer])
        previews = tg_status_previews(h, topic)
        assert len(previews) > shown, "the stream went on after the faults"
        assert_prefixes(previews, answer, "the status message")
        assert not failed_rows(h.db) and not pending_rows(h.db)
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
        # Streams for the whole outage and on after it: held at 70 % until the outage
        # is over, then ~20 s more — longer than the outbox's longest retry backoff
        # (15 s), so the stream is seen to go on however the retries fell.
        more = asyncio.Event()
        slow = Text(long_answer, chunk=10, delay=(OUTAGE_S + 8) / chunks, gate=more, gate_at=0.7)
        h.model.on("long story", slow)
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
        more.set()
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


# --- Slack ------------------------------------------------------------------------------


def slack_finals(h: SlackHarness, thread: str) -> list[SlackMessage]:
    return [m for m in h.bot_messages(thread) if "⏱" in m.visible_text]


def assert_slack_thread(h: SlackHarness, thread: str, answers: list[str]) -> None:
    finals = slack_finals(h, thread)
    assert len(finals) == len(answers), [m.visible_text[:60] for m in finals]
    for final, answer in zip(finals, answers, strict=True):
        body = norm(final.visible_text.rsplit("⏱", 1)[0])
        assert body == norm(answer), "the final message is the exact answer"
    msgs = h.slack.messages(h.channel, thread, include_deleted=True)
    statuses = [m for m in msgs if any("x:" in str(v.blocks) for v in m.history)]
    assert len(statuses) == len(answers), "one status message per turn"
    # no Stop button left: gone with the turn (it showed nothing the answer does not)
    # or edited to its last state
    assert all(m.deleted or not m.buttons for m in statuses)
    order = [msgs.index(m) for pair in zip(statuses, finals, strict=True) for m in pair]
    assert order == sorted(order), "status, final, status, final … in that order"
    texts = [m.visible_text for m in msgs if m not in statuses]
    assert len(texts) == len(set(texts)), "no message delivered twice"


def slack_streamed(h: SlackHarness, thread: str) -> str:
    """What the turn's native stream messages showed, joined in order."""
    return " ".join(s.text for s in h.slack.stream_messages(h.channel) if s.thread_ts == thread)


async def test_slack_5xx_hangs_resets_429_storms_and_an_outage_mid_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack_client, "REQUEST_TIMEOUT_S", CLIENT_TIMEOUT_S)
    h = await start_slack_harness(tmp_path, speed=4.0)
    try:
        slack = h.slack
        answer = answer_of("sigma", 200)
        more = asyncio.Event()  # the model holds the rest of its answer until then
        h.model.on(
            "stream through faults", Text(answer, chunk=10, delay=0.05, gate=more, gate_at=0.5)
        )
        thread, _ = await h.new_session(str(h.root / "app"), "stream through faults")
        await slack.wait_until(lambda: len(slack.calls_to("chat.appendStream")) >= 2 or None, 30)
        # The native stream: a 5xx burst, a reset, a hang past the client's timeout, a
        # 429 storm; then the whole Web API is down for a few seconds.
        append = "chat.appendStream"
        slack.fail_next(append, error="internal_error", status=500, times=2)
        slack.fail_next(append, drop=True)
        slack.fail_next(append, status=504, error="timeout", delay=CLIENT_TIMEOUT_S + 1.0)
        slack.fail_next(append, status=429, retry_after=1, times=2)
        # The end of the turn (the stream's and the status's deletes, the final answer)
        # meets them too.
        final = lambda p: "⏱" in str(p.get("text", "")) + str(p.get("blocks", ""))  # noqa: E731
        slack.fail_next("chat.delete", status=503, error="service_unavailable")
        slack.fail_next("chat.delete", drop=True)
        slack.fail_next("chat.postMessage", status=503, error="service_unavailable", match=final)
        slack.fail_next("chat.postMessage", status=429, retry_after=1, match=final)
        await slack.wait_until(lambda: not [f for f in slack._faults if f.method == append], 30)
        slack.set_outage(True)
        await asyncio.sleep(3.0)
        slack.set_outage(False)
        resumed = time.time()
        more.set()
        await h.wait_text("⏱", thread=thread, timeout=60)
        await h.bridge.outbox.wait_idle(timeout=30)
        assert not slack._faults, "every injected fault was served"
        assert slack.count_429 == 3
        appended = [c for c in slack.calls_to(append) if c.at > resumed and not c.error]
        assert appended, "the stream went on after the outage"
        streamed = norm(slack_streamed(h, thread))
        assert norm(answer).startswith(streamed), "the stream showed no gap and no repeat"
        streams = slack.stream_messages(h.channel)
        assert streams and all(s.deleted for s in streams), "the final answer replaced them"
        assert_slack_thread(h, thread, [answer])
        assert not failed_rows(h.db) and not pending_rows(h.db)
    finally:
        await stop_slack_harness(h)


# --- Matrix -----------------------------------------------------------------------------


def room_sends(method: str, path: str) -> bool:
    """The bot's room events (messages, edits, reactions): PUT …/send/{type}/{txn}."""
    return method == "PUT" and "/send/" in path


def mx_preview(body: str) -> str:
    """The streamed text in a status-message version (without its status lines)."""
    keep = [ln for ln in body.splitlines() if not re.search(r"React|Working…|Done", ln)]
    return "\n".join(keep)


async def test_matrix_5xx_429_storm_lost_answers_and_an_outage_behind_a_fault_proxy(
    tmp_path: Path, synapse: Synapse
) -> None:
    proxy = await FaultProxy(synapse.base_url).start()
    h = await start_matrix_harness(tmp_path, synapse, homeserver=proxy.base_url)
    try:
        answer = answer_of("kappa", 150)
        more = asyncio.Event()  # the model holds the rest of its answer until then
        h.model.on(
            "stream through faults", Text(answer, chunk=10, delay=0.04, gate=more, gate_at=0.8)
        )
        h.model.on("still there", Text("Still here after the outage."))
        thread, _ = await h.new_session(str(h.root / "app"), "stream through faults")
        await h.phone.wait(
            lambda: any(len(m.versions) >= 3 for m in h.bot_messages(thread)) or None, 30
        )
        proxy.fail(times=3, status=502, match=room_sends)  # a 5xx burst
        proxy.lose(times=1, match=room_sends)  # it arrives; the answer does not
        proxy.reset(times=1, match=room_sends)
        proxy.rate_limit(times=4, retry_after_ms=700, match=room_sends)  # a 429 storm
        await h.phone.wait(lambda: not proxy.pending() or None, 30)
        await proxy.set_outage(503)
        await asyncio.sleep(MATRIX_OUTAGE_S / 2)
        await proxy.set_outage("refused")
        await asyncio.sleep(MATRIX_OUTAGE_S / 2)
        await proxy.set_outage(None)
        more.set()
        final = await h.wait_text("⏱", thread=thread, timeout=60)
        await h.bridge.outbox.wait_idle(timeout=30)
        assert norm(final.body.rsplit("⏱", 1)[0]) == norm(answer), "the final answer is exact"
        status = next(m for m in h.bot_messages(thread) if len(m.versions) > 1)
        await h.phone.wait(lambda: "Done" in status.body or None)  # edited after the answer
        previews = [mx_preview(v.get("body", "")) for v in status.versions]
        assert assert_prefixes(previews, answer, "the status message") >= 2
        assert "React" not in status.body and "Done" in status.body, "its Stop is gone"
        # Once each, on the wire too: a request whose answer was lost is retried with its
        # transaction id (the homeserver answers with the event it already has) or
        # dropped for newer content — never a second copy of an event.
        assert any(what == "lose" for *_, what in proxy.log)
        raw = [e for e in await h.phone.raw_events(h.room) if e["sender"] == h.bot.user_id]
        sent = [
            json.dumps(h.phone.decrypt(e).source["content"], sort_keys=True)
            for e in raw
            if e["type"] == "m.room.encrypted"
        ]
        assert len(sent) == len(set(sent)), "no event sent twice"
        bodies = [m.body for m in h.bot_messages()]
        assert len(bodies) == len(set(bodies)), "no message sent twice"
        assert len([b for b in bodies if "⏱" in b]) == 1
        assert not failed_rows(h.db) and not pending_rows(h.db)
        # Syncing came back too: the next prompt is heard and answered.
        await h.say("still there?", thread=thread)
        await h.wait_text("Still here after the outage.", thread=thread, timeout=60)
    finally:
        await stop_matrix_harness(h)
        await proxy.stop()
