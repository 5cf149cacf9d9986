"""The durable outbox and the rate budget, against a fake platform.

`FakePlatform` behaves like a chat API rather than a mock: it assigns message ids,
keeps message contents, refuses edits of unknown messages and identical edits,
enforces its own strict per-chat token bucket (an independent implementation, not
`bridge.outbox.ratelimit`) and answers `RateLimited(retry_after)` when a caller exceeds it,
keeps refusing until a retry_after has passed, can be told to fail the next calls,
and records every call with a timestamp.  Rates are fast so the suite stays quick;
assertions compare behaviour (order, counts, zero 429s, gaps), not wall time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import (
    Capabilities,
    ChatAdapter,
    InboundSink,
    NotModified,
    PermanentError,
    RateLimited,
    ThreadGone,
    TransientError,
)
from adapters.messages import Outbound, Rendered, ThreadRef, text
from bridge.outbox.outbox import DeliveryFailed, Outbox
from bridge.outbox.ratelimit import RateBudget
from storage.crypto import BodyCipher
from storage.db import Database

P = "fake"


@dataclass(frozen=True, slots=True)
class Call:
    at: float
    op: str
    chat_id: str
    thread_id: str | None
    message_id: str
    text: str


class FakePlatform(ChatAdapter):
    platform = P

    def __init__(
        self,
        *,
        rate: float = 200.0,
        burst: int = 5,
        draft_rate: float = 200.0,
        native_stream: bool = False,
        max_text: int = 4000,
    ) -> None:
        self.max_text = max_text
        self.capabilities = Capabilities(
            per_chat_rate=rate,
            per_chat_burst=burst,
            global_rate=10_000.0,
            draft_rate=draft_rate,
            native_stream=native_stream,
        )
        self.clock = time.time  # the outbox's default clock
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], str] = {}
        self.drafts: dict[tuple[str, int], str] = {}
        self.rate_limited = 0  # 429s answered (forced ones included)
        self.gone: set[str] = set()  # thread ids that answer ThreadGone
        self._failures: deque[tuple[str | None, Exception]] = deque()
        self._tat: dict[tuple[str, str], float] = {}
        self._paused: dict[str, float] = {}
        self._next_id = 100

    # --- test controls ----------------------------------------------------------

    def fail_next(self, exc: Exception, op: str | None = None, times: int = 1) -> None:
        self._failures.extend([(op, exc)] * times)

    def sent_texts(self, thread_id: str | None = None) -> list[str]:
        return [
            c.text
            for c in self.calls
            if c.op == "send" and (thread_id is None or c.thread_id == thread_id)
        ]

    # --- the "server" -------------------------------------------------------------

    def _admit(self, op: str, chat_id: str, thread: ThreadRef) -> None:
        """Runs synchronously at call entry, like a server counting the request."""
        now = self.clock()
        if now < self._paused.get(chat_id, 0.0):
            self.rate_limited += 1
            raise RateLimited(self._paused[chat_id] - now)
        kind = "draft" if op == "draft" else "message"
        rate = self.capabilities.draft_rate if kind == "draft" else self.capabilities.per_chat_rate
        burst = 1 if kind == "draft" else self.capabilities.per_chat_burst
        interval = 1.0 / rate
        tat = self._tat.get((chat_id, kind), now)
        if tat - (burst - 1) * interval > now:  # strict: no tolerance at all
            self.rate_limited += 1
            raise RateLimited(tat - (burst - 1) * interval - now)
        if self._failures and self._failures[0][0] in (None, op):
            _, exc = self._failures.popleft()
            if isinstance(exc, RateLimited):
                self.rate_limited += 1
                self._paused[chat_id] = now + exc.retry_after
            raise exc
        self._tat[(chat_id, kind)] = max(tat, now) + interval
        if thread.thread_id in self.gone and op == "send":
            raise ThreadGone("Bad Request: message thread not found")

    async def send(self, thread: ThreadRef, msg: Rendered) -> str:
        self._admit("send", thread.chat_id, thread)
        await asyncio.sleep(0)
        self._next_id += 1
        mid = str(self._next_id)
        self.messages[(thread.chat_id, mid)] = msg.payload["text"]
        self.calls.append(
            Call(self.clock(), "send", thread.chat_id, thread.thread_id, mid, msg.payload["text"])
        )
        return mid

    async def edit(self, thread: ThreadRef, message_id: str, msg: Rendered) -> None:
        self._admit("edit", thread.chat_id, thread)
        key = (thread.chat_id, message_id)
        if key not in self.messages:
            raise PermanentError("Bad Request: message to edit not found")
        if self.messages[key] == msg.payload["text"]:
            raise NotModified("Bad Request: message is not modified")
        self.messages[key] = msg.payload["text"]
        self.calls.append(
            Call(
                self.clock(),
                "edit",
                thread.chat_id,
                thread.thread_id,
                message_id,
                msg.payload["text"],
            )
        )

    async def draft(self, thread: ThreadRef, draft_id: int, msg: Rendered) -> None:
        self._admit("draft", thread.chat_id, thread)
        self.drafts[(thread.chat_id, draft_id)] = msg.payload["text"]
        self.calls.append(
            Call(
                self.clock(),
                "draft",
                thread.chat_id,
                thread.thread_id,
                str(draft_id),
                msg.payload["text"],
            )
        )

    async def delete(self, thread: ThreadRef, message_id: str) -> None:
        self._admit("delete", thread.chat_id, thread)
        self.messages.pop((thread.chat_id, message_id), None)
        self.calls.append(
            Call(self.clock(), "delete", thread.chat_id, thread.thread_id, message_id, "")
        )

    def render(self, msg: Outbound) -> list[Rendered]:
        body, n = msg.plain, self.max_text
        return [Rendered({"text": body[i : i + n]}) for i in range(0, max(len(body), 1), n)]

    def render_edit(self, msg: Outbound) -> Rendered:
        return Rendered({"text": msg.plain[: self.max_text]})

    def supports_draft(self, thread: ThreadRef) -> bool:
        return self.capabilities.native_stream

    async def start(self, sink: InboundSink) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def open_thread(
        self, chat_id: str, title: str, header: Outbound, *, prefer_topic: bool = True
    ) -> tuple[ThreadRef, str | None]:
        return ThreadRef(P, chat_id, f"topic-{title}"), None


# --- fixtures ---------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every outbox test runs on both databases Threadline supports."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path}/t.db"


@pytest.fixture
def db(db_url: str) -> Any:
    database = Database(db_url)
    database.migrate()
    yield database
    database.close()


@pytest.fixture
async def make_outbox(db: Database) -> Any:
    made: list[Outbox] = []

    def make(adapter: FakePlatform, database: Database | None = None, **kw: Any) -> Outbox:
        kw.setdefault("retry_initial", 0.01)
        kw.setdefault("retry_max", 0.05)
        outbox = Outbox(database or db, {P: adapter}, **kw)
        made.append(outbox)
        return outbox

    yield make
    for outbox in made:
        await outbox.stop(grace=0.5)


A = ThreadRef(P, "chat1", "A")
B = ThreadRef(P, "chat1", "B")


# --- delivery order and priority ---------------------------------------------------


async def test_order_per_thread_preserved_through_transient_failures(make_outbox: Any) -> None:
    fake = FakePlatform()
    outbox = make_outbox(fake)
    for i in range(12):
        outbox.enqueue(A, text(f"a{i}"))
        outbox.enqueue(B, text(f"b{i}"))
    fake.fail_next(TransientError("502 Bad Gateway"), times=2)
    await outbox.start()
    for _ in range(3):
        fake.fail_next(TransientError("timeout"))
        await asyncio.sleep(0.01)
    assert await outbox.wait_idle(timeout=10)
    assert fake.sent_texts("A") == [f"a{i}" for i in range(12)]
    assert fake.sent_texts("B") == [f"b{i}" for i in range(12)]
    assert outbox.db.outbox.counts() == {"sent": 24}


async def test_priority0_overtakes_queued_stream_updates_across_threads(make_outbox: Any) -> None:
    fake = FakePlatform(rate=50, burst=1)
    outbox = make_outbox(fake)
    await outbox.start()
    ma, mb = outbox.enqueue(A, text("status A"))[0], outbox.enqueue(B, text("status B"))[0]
    await outbox.wait_sent(ma, timeout=5)
    await outbox.wait_sent(mb, timeout=5)
    # Queued in one go: the worker sees them all at its next pick.
    outbox.enqueue_edit(A, ma, text("A streaming"), priority=1, stream_key="sa")
    outbox.enqueue_edit(B, mb, text("B streaming"), priority=1, stream_key="sb")
    outbox.enqueue(B, text("permission B"), priority=0)
    outbox.enqueue(A, text("final A"), priority=0)
    assert await outbox.wait_idle(timeout=5)
    tail = [(c.op, c.text) for c in fake.calls[2:]]
    assert tail == [
        ("send", "permission B"),
        ("send", "final A"),
        ("edit", "A streaming"),
        ("edit", "B streaming"),
    ]


async def test_priority_does_not_reorder_sends_within_a_thread(make_outbox: Any) -> None:
    fake = FakePlatform()
    outbox = make_outbox(fake)
    outbox.enqueue(A, text("tool line"), priority=1)
    outbox.enqueue(A, text("permission"), priority=0)
    await outbox.start()
    assert await outbox.wait_idle(timeout=5)
    assert fake.sent_texts() == ["tool line", "permission"]


async def test_edit_waits_for_its_target(make_outbox: Any) -> None:
    fake = FakePlatform()
    outbox = make_outbox(fake)
    fake.fail_next(TransientError("503"), op="send", times=3)
    await outbox.start()
    target = outbox.enqueue(A, text("prompt"))[0]
    # From another thread of the chat, so only the target dependency holds it back.
    edit = outbox.enqueue_edit(B, target, text("prompt: allowed by Ann"))
    mid = await outbox.wait_sent(edit, timeout=5)
    assert [c.op for c in fake.calls] == ["send", "edit"]
    assert fake.messages[("chat1", mid)] == "prompt: allowed by Ann"
    assert outbox.platform_message_id(target) == mid


async def test_split_message_is_one_row_per_part(make_outbox: Any) -> None:
    fake = FakePlatform(max_text=10)
    outbox = make_outbox(fake)
    ids = outbox.enqueue(A, text("x" * 25))
    assert len(ids) == 3
    await outbox.start()
    assert await outbox.wait_idle(timeout=5)
    assert fake.sent_texts() == ["x" * 10, "x" * 10, "x" * 5]


# --- streaming ---------------------------------------------------------------------


async def test_200_stream_updates_coalesce_and_deliver_the_last_content(make_outbox: Any) -> None:
    fake = FakePlatform(rate=20, burst=2)
    outbox = make_outbox(fake)
    await outbox.start()
    target = outbox.enqueue(A, text("…"))[0]
    await outbox.wait_sent(target, timeout=5)
    words: list[str] = []
    started = time.time()
    for i in range(200):
        words.append(f"w{i}")
        outbox.enqueue_edit(A, target, text(" ".join(words)), priority=1, stream_key="turn1")
        await asyncio.sleep(0.001)
    producing = time.time() - started
    assert await outbox.wait_idle(timeout=5)
    edits = [c for c in fake.calls if c.op == "edit"]
    assert edits[-1].text == " ".join(words)  # the exact final content
    # At most what the budget allows while producing (+ burst + the last one).
    assert len(edits) <= 2 + producing * 20 + 1 < 200
    assert fake.rate_limited == 0


async def test_native_stream_drafts_coalesce_and_supersede(make_outbox: Any) -> None:
    fake = FakePlatform(native_stream=True, draft_rate=10)
    outbox = make_outbox(fake)
    await outbox.start()
    for i in range(50):
        outbox.update_stream(A, "turn2", text(f"draft {i}"))
        await asyncio.sleep(0.002)
    assert await outbox.wait_idle(timeout=5)
    drafts = [c for c in fake.calls if c.op == "draft"]
    assert drafts[-1].text == "draft 49"
    assert len(drafts) <= 5 and fake.rate_limited == 0
    assert len({c.message_id for c in drafts}) == 1  # one stable draft id
    # The final message replaces pending drafts: none is sent after supersede.
    outbox.update_stream(A, "turn2", text("stale"))
    outbox.supersede("turn2")
    final = outbox.enqueue(A, text("final answer"))[0]
    await outbox.wait_sent(final, timeout=5)
    assert "stale" not in [c.text for c in fake.calls]


async def test_drafts_do_not_wait_for_a_spent_message_budget(make_outbox: Any) -> None:
    fake = FakePlatform(rate=4, burst=1, native_stream=True, draft_rate=100)
    outbox = make_outbox(fake)
    await outbox.start()
    for i in range(3):
        outbox.enqueue(A, text(f"tool {i}"))  # 0.5 s of message budget
    outbox.update_stream(A, "turn3", text("preview"))  # a preview, not history: no wait
    assert await outbox.wait_idle(timeout=5)
    assert [c.text for c in fake.calls] == ["tool 0", "preview", "tool 1", "tool 2"]
    assert fake.rate_limited == 0


async def test_update_stream_without_native_streaming_is_dropped(
    make_outbox: Any, db: Database
) -> None:
    outbox = make_outbox(FakePlatform(native_stream=False))
    outbox.update_stream(A, "k", text("preview"))
    assert db.outbox.counts() == {}


# --- rate budget ---------------------------------------------------------------------


async def test_two_sessions_share_one_chat_budget_without_any_429(make_outbox: Any) -> None:
    rate, burst = 40.0, 3
    fake = FakePlatform(rate=rate, burst=burst)
    outbox = make_outbox(fake)
    await outbox.start()
    heads = {t.thread_id: outbox.enqueue(t, text(f"{t.thread_id} status"))[0] for t in (A, B)}
    for i in range(15):
        for t in (A, B):
            outbox.enqueue(t, text(f"{t.thread_id} tool {i}"))
            outbox.enqueue_edit(
                t,
                heads[t.thread_id],
                text(f"{t.thread_id} {i}"),
                priority=1,
                stream_key=f"s{t.thread_id}",
            )
        await asyncio.sleep(0.005)
    assert await outbox.wait_idle(timeout=10)
    assert fake.rate_limited == 0
    assert fake.sent_texts("A") == ["A status"] + [f"A tool {i}" for i in range(15)]
    assert fake.messages[("chat1", outbox.platform_message_id(heads["B"]))] == "B 14"
    span = fake.calls[-1].at - fake.calls[0].at
    assert span >= (len(fake.calls) - burst) / rate * 0.95  # paced by the shared budget


async def test_retry_after_is_honoured_and_not_a_failure(make_outbox: Any, db: Database) -> None:
    fake = FakePlatform(rate=500, burst=5)
    outbox = make_outbox(fake)
    await outbox.start()
    first = outbox.enqueue(A, text("one"))[0]
    await outbox.wait_sent(first, timeout=5)
    fake.fail_next(RateLimited(0.3), op="send")
    t429 = time.time()
    ids = [outbox.enqueue(t, text(f"{t.thread_id}{i}"))[0] for i in range(3) for t in (A, B)]
    assert await outbox.wait_idle(timeout=5)
    later = [c for c in fake.calls if c.at > t429]
    assert later and min(c.at for c in later) >= t429 + 0.3
    assert fake.rate_limited == 1  # nothing was tried again during the pause
    assert all((row := db.outbox.get(i)) is not None and row.attempts == 0 for i in ids)


async def test_group_chat_per_minute_budget() -> None:
    now = [1000.0]
    caps = Capabilities(per_chat_rate=100, per_chat_burst=100, group_per_minute=3)
    budget = RateBudget(
        caps, is_group=lambda chat: chat.startswith("-"), clock=lambda: now[0], margin=0
    )
    for _ in range(3):
        assert budget.delay("-g") == 0
        budget.take("-g")
    assert budget.delay("-g") == pytest.approx(60.0)
    assert budget.delay("private") == 0  # not a group: no per-minute window
    now[0] += 60.0
    assert budget.delay("-g") == 0


async def test_acquire_books_a_slot_the_outbox_then_respects(make_outbox: Any) -> None:
    fake = FakePlatform(rate=10, burst=1)
    outbox = make_outbox(fake)
    await outbox.start()
    outbox.enqueue(A, text("queued"))
    await outbox.budget(P).acquire("chat1")  # e.g. open_thread about to post a header
    # Our own call, counted by the platform like any other.
    fake._admit("send", "chat1", B)
    assert await outbox.wait_idle(timeout=5)
    assert fake.rate_limited == 0


def test_budget_pause_and_global_rate() -> None:
    now = [0.0]
    caps = Capabilities(per_chat_rate=1, per_chat_burst=3, global_rate=2)
    budget = RateBudget(caps, clock=lambda: now[0], margin=0)
    budget.take("a")
    budget.take("b")
    assert budget.delay("c") == pytest.approx(0.5)  # global: 2/s, burst 2
    budget.pause("a", 7.5)
    now[0] = 5.0
    assert budget.delay("a") == pytest.approx(2.5)
    assert budget.delay("b") == 0
    now[0] = 7.5
    assert budget.delay("a") == 0
    budget.take("a")
    assert budget.delay("a") == pytest.approx(1.0)  # after a 429: one call, then the rate
    now[0] = 3.0  # the wall clock is set back: no stall, no burst
    assert budget.delay("a") == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1.0, 3.0, 20.0, 500.0]),
    burst=st.integers(1, 5),
    gaps=st.lists(st.floats(0, 2.0), min_size=1, max_size=60),
    lags=st.lists(st.floats(0, 0.01), min_size=60, max_size=60),
)
def test_budget_never_exceeds_a_strict_platform_bucket(
    rate: float, burst: int, gaps: list[float], lags: list[float]
) -> None:
    """Calls taken whenever the budget allows, counted by the platform up to
    `margin` later, are never refused by a strict bucket of the same rate."""
    now = [0.0]
    budget = RateBudget(
        Capabilities(per_chat_rate=rate, per_chat_burst=burst, global_rate=1e6),
        clock=lambda: now[0],
        margin=0.01,
    )
    tat, interval = float("-inf"), 1.0 / rate
    for gap, lag in zip(gaps, lags, strict=False):
        now[0] += gap
        now[0] += budget.delay("c")
        budget.take("c")
        seen = now[0] + min(lag, interval / 2)  # when the platform counts it
        assert tat - (burst - 1) * interval <= seen + 1e-9
        tat = max(tat, seen) + interval


# --- failures ------------------------------------------------------------------------


async def test_transient_failures_are_retried_and_delivered_once(
    make_outbox: Any, db: Database
) -> None:
    fake = FakePlatform()
    outbox = make_outbox(fake)
    fake.fail_next(TransientError("500 Internal Server Error"), times=3)
    row = outbox.enqueue(A, text("hello"))[0]
    await outbox.start()
    mid = await outbox.wait_sent(row, timeout=5)
    assert fake.sent_texts() == ["hello"]
    assert fake.messages[("chat1", mid)] == "hello"
    stored = db.outbox.get(row)
    assert stored is not None and stored.attempts == 3 and stored.state == "sent"


async def test_permanent_error_fails_the_row_and_the_thread_moves_on(
    make_outbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakePlatform()
    outbox = make_outbox(fake)
    fake.fail_next(PermanentError("Bad Request: can't parse entities"))
    fake.fail_next(TransientError("502"))
    bad = outbox.enqueue(A, text("SECRET-TOKEN-1 <b"))[0]
    good = outbox.enqueue(A, text("SECRET-TOKEN-2"))[0]
    with caplog.at_level(logging.DEBUG):
        await outbox.start()
        await outbox.wait_sent(good, timeout=5)
    with pytest.raises(DeliveryFailed):
        await outbox.wait_sent(bad, timeout=1)
    assert fake.sent_texts() == ["SECRET-TOKEN-2"]
    assert f"row {bad} (send) in {P}:chat1" in caplog.text
    assert "SECRET" not in caplog.text  # payload text is never logged


async def test_not_modified_counts_as_sent(make_outbox: Any) -> None:
    fake = FakePlatform()
    outbox = make_outbox(fake)
    await outbox.start()
    target = outbox.enqueue(A, text("same"))[0]
    edit = outbox.enqueue_edit(A, target, text("same"))
    assert await outbox.wait_sent(edit, timeout=5) == await outbox.wait_sent(target, timeout=5)


class AttemptIdPlatform(FakePlatform):
    """Renders edits with a fresh attempt id each time, as the Matrix adapter does."""

    def render_edit(self, msg: Outbound) -> Rendered:
        self._next_id += 1
        return Rendered({**super().render_edit(msg).payload, "txn": f"t{self._next_id}"})


@pytest.mark.parametrize("platform", [FakePlatform, AttemptIdPlatform])
async def test_identical_edit_costs_no_call(make_outbox: Any, platform: type[FakePlatform]) -> None:
    fake = platform()
    attempts: list[str] = []  # every edit call, answered or refused
    edit = fake.edit

    async def counted(thread: ThreadRef, message_id: str, msg: Rendered) -> None:
        attempts.append(msg.payload["text"])
        await edit(thread, message_id, msg)

    fake.edit = counted  # type: ignore[method-assign]
    outbox = make_outbox(fake)
    await outbox.start()
    target = outbox.enqueue(A, text("v1"))[0]
    mid = await outbox.wait_sent(target, timeout=5)
    first = outbox.enqueue_edit(A, target, text("v2"))
    assert await outbox.wait_sent(first, timeout=5) == mid
    again = outbox.enqueue_edit(A, target, text("v2"))
    assert await outbox.wait_sent(again, timeout=5) == mid, "counted as sent"
    assert attempts == ["v2"], "an edit that changes nothing makes no platform call"
    changed = outbox.enqueue_edit(A, target, text("v3"))
    await outbox.wait_sent(changed, timeout=5)
    back = outbox.enqueue_edit(A, target, text("v2"))
    await outbox.wait_sent(back, timeout=5)
    assert attempts == ["v2", "v3", "v2"]
    assert [c.text for c in fake.calls if c.op == "edit"] == ["v2", "v3", "v2"]
    assert fake.messages[("chat1", mid)] == "v2"


async def test_thread_gone_moves_pending_rows_to_the_fallback_thread(
    make_outbox: Any, db: Database
) -> None:
    fake = FakePlatform()
    fake.gone.add("A")
    reply_chain = ThreadRef(P, "chat1", "reply:1")
    asked: list[ThreadRef] = []

    async def fallback(thread: ThreadRef) -> ThreadRef | None:
        asked.append(thread)
        return reply_chain

    outbox = make_outbox(fake, thread_fallback=fallback)
    ids = [outbox.enqueue(A, text(f"m{i}"), session_id="s1")[0] for i in range(3)]
    await outbox.start()
    assert await outbox.wait_idle(timeout=5)
    later = outbox.enqueue(A, text("after"))[0]  # a producer still holding the old thread
    await outbox.wait_sent(later, timeout=5)
    assert asked == [A]
    assert fake.sent_texts("reply:1") == ["m0", "m1", "m2", "after"]
    origin = db.outbox.origin_of_message(P, "chat1", outbox.platform_message_id(ids[1]) or "")
    assert origin is not None and origin.thread_key == reply_chain.key and origin.session_id == "s1"


async def test_thread_gone_without_fallback_fails_the_rows(make_outbox: Any) -> None:
    fake = FakePlatform()
    fake.gone.add("A")
    outbox = make_outbox(fake)
    ids = [outbox.enqueue(A, text(f"m{i}"))[0] for i in range(2)]
    other = outbox.enqueue(B, text("elsewhere"))[0]
    await outbox.start()
    await outbox.wait_sent(other, timeout=5)
    assert await outbox.wait_idle(timeout=5)
    for row in ids:
        with pytest.raises(DeliveryFailed):
            await outbox.wait_sent(row, timeout=1)


async def test_delete_of_an_unsent_message_cancels_it(make_outbox: Any) -> None:
    fake = FakePlatform()
    outbox = make_outbox(fake)
    row = outbox.enqueue(A, text("thinking…"))[0]
    assert outbox.enqueue_delete(A, row) is None
    await outbox.start()
    sent = outbox.enqueue(A, text("kept"))[0]
    await outbox.wait_sent(sent, timeout=5)
    deleted = outbox.enqueue_delete(A, sent)
    assert deleted is not None
    await outbox.wait_sent(deleted, timeout=5)
    assert [c.op for c in fake.calls] == ["send", "delete"]


# --- durability ------------------------------------------------------------------------


async def test_restart_delivers_pending_rows_and_never_resends_sent_ones(
    make_outbox: Any, db_url: str
) -> None:
    fake = FakePlatform()
    first_db = Database(db_url)
    first_db.migrate()
    first = make_outbox(fake, first_db, retry_initial=0.5, retry_max=0.5)
    ids = [first.enqueue(A if i % 2 else B, text(f"m{i}"))[0] for i in range(6)]
    fake.fail_next(TransientError("connection reset"))  # m0 (thread B) retries in 0.25-0.5 s
    await first.start()
    await first.wait_sent(ids[5], timeout=5)  # thread A goes on while B waits
    await first.stop()
    first_db.close()
    delivered_before = fake.sent_texts()
    assert delivered_before == ["m1", "m3", "m5"]

    second_db = Database(db_url)  # a new process on the same file
    second = make_outbox(fake, second_db)
    await second.start()
    assert await second.wait_idle(timeout=5)
    assert fake.sent_texts("B") == ["m0", "m2", "m4"]
    assert sorted(fake.sent_texts()) == [f"m{i}" for i in range(6)]  # each exactly once
    second_db.close()


def _raw_files(tmp_path: Path) -> bytes:
    """The database as it lies on disk: main file, WAL and shared memory."""
    return b"".join(p.read_bytes() for p in tmp_path.glob("enc.db*"))


async def test_encryption_at_rest(tmp_path: Path, make_outbox: Any) -> None:
    url = f"sqlite:///{tmp_path}/enc.db"
    database = Database(url, cipher=BodyCipher(b"k" * 32))
    database.migrate()
    fake = FakePlatform()
    outbox = make_outbox(fake, database)
    row = outbox.enqueue(A, text("the launch code is 0000-SWORDFISH"))[0]
    assert b"SWORDFISH" not in _raw_files(tmp_path)
    await outbox.start()
    mid = await outbox.wait_sent(row, timeout=5)
    assert fake.messages[("chat1", mid)] == "the launch code is 0000-SWORDFISH"
    await outbox.stop()
    database.close()
    assert b"SWORDFISH" not in _raw_files(tmp_path)


async def test_reply_chain_lookup(make_outbox: Any, db: Database) -> None:
    fake = FakePlatform()
    outbox = make_outbox(fake)
    await outbox.start()
    row = outbox.enqueue(B, text("header"), session_id="sess9")[0]
    mid = await outbox.wait_sent(row, timeout=5)
    origin = db.outbox.origin_of_message(P, "chat1", mid)
    assert origin is not None and origin.thread_key == B.key
    assert db.outbox.origin_of_message(P, "other-chat", mid) is None


async def test_stop_cancels_every_task(make_outbox: Any) -> None:
    fake = FakePlatform()
    outbox = make_outbox(fake)
    await outbox.start()
    outbox.enqueue(A, text("x"))
    assert await outbox.wait_idle(timeout=5)
    await outbox.stop()
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("outbox-")] == []


# --- fencing: only the platform's gateway sends ---------------------------------------


async def test_a_host_that_may_not_send_calls_nothing_and_leaves_rows_pending(
    make_outbox: Any,
) -> None:
    fake = FakePlatform()
    gateway = {"ours": False}
    asked: list[str] = []
    looked = asyncio.Event()

    async def asked_at_least(n: int) -> None:
        while len(asked) < n:
            looked.clear()
            await asyncio.wait_for(looked.wait(), 5)

    def may_send(platform: str) -> bool:
        asked.append(platform)
        looked.set()
        return gateway["ours"]

    outbox = make_outbox(fake, may_send=may_send)
    ids = [outbox.enqueue(A, text(f"m{i}"))[0] for i in range(3)]
    await outbox.start()
    # the worker looks, is told no, and looks again after FENCED_RECHECK_S
    await asked_at_least(2)
    assert fake.calls == []
    assert outbox.db.outbox.counts() == {"pending": 3}
    gateway["ours"] = True  # this host became the gateway
    outbox.resume(P)
    await outbox.wait_sent(ids[2], timeout=5)
    assert fake.sent_texts("A") == ["m0", "m1", "m2"]

    gateway["ours"] = False  # deposed: nothing more goes out, rows wait
    later = [outbox.enqueue(B, text(f"n{i}"))[0] for i in range(2)]
    await asked_at_least(len(asked) + 2)
    assert fake.sent_texts("B") == []
    assert outbox.db.outbox.counts() == {"sent": 3, "pending": 2}
    gateway["ours"] = True  # the worker's own recheck picks them up again
    await outbox.wait_sent(later[1], timeout=5)
    assert fake.sent_texts() == ["m0", "m1", "m2", "n0", "n1"], "each exactly once"
