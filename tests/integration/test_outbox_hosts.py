"""The outbox across hosts: two `Outbox` objects on one real PostgreSQL database are two
hosts.  Host A is the gateway (it may send, it has the database listener); host B may
not send and only writes rows, as a host running a session does.  Checked: B's stream
(many coalesced edits) delivered by A with the exact final content and every send once
and in order; an update coalesced on B while A's call for the row is under way becomes
a new row (never lost); the claim's row lock is skipped, not waited for; a row written
on B reaches A by notification (poll off) and by the poll (listener off); `wait_sent`
on B resolves when A sends; the close op (FakePlatform, and real PTB against the fake
Bot API); `outbox.host` and `MessageOrigin.host`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from adapters.base import ChatAdapter, TransientError
from adapters.messages import Rendered, ThreadRef
from adapters.messages import text as plain
from adapters.telegram.adapter import TelegramAdapter
from bridge.outbox.outbox import Outbox
from storage.db import Database
from storage.notify import Listener
from storage.outbox_pick import T
from tests.integration.test_outbox import A, B, Call, FakePlatform, P, db, db_url
from tests.integration.test_telegram_adapter import GROUP, Started, started

__all__ = ["db", "db_url", "started"]  # fixtures, used by name

pytestmark = pytest.mark.timeout(60)


class ClosingPlatform(FakePlatform):
    """`FakePlatform` that can close threads, and hold an edit open on request."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.closed: list[str | None] = []
        self.hold: asyncio.Event | None = None  # set: edits wait for it
        self.holding = asyncio.Event()  # an edit is being held

    async def edit(self, thread: ThreadRef, message_id: str, msg: Rendered) -> None:
        if self.hold is not None:
            self.holding.set()
            await self.hold.wait()
        await super().edit(thread, message_id, msg)

    async def close_thread(self, thread: ThreadRef) -> None:
        self._admit("close", thread.chat_id, thread)
        self.closed.append(thread.thread_id)
        self.calls.append(Call(self.clock(), "close", thread.chat_id, thread.thread_id, "", ""))


@dataclass
class Host:
    name: str
    db: Database
    outbox: Outbox
    adapter: ChatAdapter
    listener: Listener | None


@pytest.fixture
async def hosts(postgres_url: str) -> AsyncIterator[Callable[..., Any]]:
    """`await make(name, gateway=..., listen=..., poll_every=...)` → a started host."""
    made: list[Host] = []
    Database(postgres_url).migrate()

    async def make(
        name: str,
        *,
        gateway: bool,
        listen: bool = True,
        poll_every: float | None = None,
        adapter: ChatAdapter | None = None,
    ) -> Host:
        db = Database(postgres_url)
        platform = adapter or ClosingPlatform()
        listener = Listener(postgres_url) if listen else None
        outbox = Outbox(
            db,
            {platform.platform: platform},
            may_send=lambda _p: gateway,
            host=name,
            listener=listener,
            poll_every=poll_every,
            retry_initial=0.01,
            retry_max=0.05,
        )
        await outbox.start()
        if listener is not None:
            await listener.start()
            await asyncio.wait_for(listener.connected.wait(), 10)
        host = Host(name, db, outbox, platform, listener)
        made.append(host)
        return host

    yield make
    for host in made:
        if host.listener is not None:
            await host.listener.stop()
        await host.outbox.stop(grace=0.5)
        host.db.close()


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def fake(host: Host) -> ClosingPlatform:
    assert isinstance(host.adapter, ClosingPlatform)
    return host.adapter


# --- a stream from another host -----------------------------------------------------------


async def test_a_stream_written_on_b_is_delivered_by_a_exactly(hosts: Any) -> None:
    a = await hosts("a", gateway=True)
    b = await hosts("b", gateway=False)
    status = b.outbox.enqueue(A, plain("working…"), priority=1)[0]
    sends: list[int] = []
    last_edit = 0
    for i in range(300):
        last_edit = b.outbox.enqueue_edit(A, status, plain(f"v{i}"), priority=1, stream_key="s")
        if i % 30 == 0:
            sends.append(b.outbox.enqueue(B, plain(f"m{i // 30}"))[0])
        await asyncio.sleep(0.001)  # A delivers meanwhile
    await b.outbox.wait_sent(sends[-1], timeout=20)
    mid = await b.outbox.wait_sent(status, timeout=20)
    await b.outbox.wait_sent(last_edit, timeout=20)
    assert fake(a).messages[("chat1", mid)] == "v299", "the final content is exact"
    assert fake(a).sent_texts("B") == [f"m{i}" for i in range(10)], "each once, in order"
    assert fake(a).sent_texts("A") == ["working…"]
    edits = [c.text for c in fake(a).calls if c.op == "edit"]
    assert edits == sorted(edits, key=lambda t: int(t[1:])), "edits never go backwards"
    assert len(edits) < 300, "coalesced"
    assert fake(b).calls == [], "B is not the gateway: it calls nothing"


async def test_an_update_coalesced_while_a_sends_the_row_becomes_a_new_row(hosts: Any) -> None:
    a = await hosts("a", gateway=True)
    b = await hosts("b", gateway=False)
    status = b.outbox.enqueue(A, plain("status"))[0]
    await b.outbox.wait_sent(status, timeout=10)
    fake(a).hold = asyncio.Event()
    first = b.outbox.enqueue_edit(A, status, plain("v1"), stream_key="s")
    await asyncio.wait_for(fake(a).holding.wait(), 10)  # A is inside the call for `first`
    second = b.outbox.enqueue_edit(A, status, plain("v2"), stream_key="s")
    assert second != first, "a claimed row is not coalesced into"
    fake(a).hold.set()
    await b.outbox.wait_sent(second, timeout=10)
    assert [c.text for c in fake(a).calls if c.op == "edit"] == ["v1", "v2"]
    assert fake(a).messages[("chat1", fake(a).calls[0].message_id)] == "v2"
    # withdraw and supersede leave a claimed row alone too
    fake(a).hold, fake(a).holding = asyncio.Event(), asyncio.Event()
    third = b.outbox.enqueue_edit(A, status, plain("v3"), stream_key="s")
    await asyncio.wait_for(fake(a).holding.wait(), 10)
    assert not b.outbox.withdraw(third)
    b.outbox.supersede("s")
    fake(a).hold.set()
    await b.outbox.wait_sent(third, timeout=10)


async def test_a_claim_skips_a_row_a_producer_has_locked(postgres_url: str) -> None:
    db = Database(postgres_url)
    db.migrate()
    try:
        row = db.outbox.add(
            platform=P,
            chat_id="chat1",
            thread_id="A",
            thread_key=A.key,
            op="edit",
            payloads=[{"text": "old"}],
            priority=3,
            not_before=datetime.now(UTC),
            stream_key="s",
        )[0]
        now = datetime.now(UTC)
        with Session(db.engine) as s:  # a coalesce on another host, not yet committed
            s.execute(select(T.id).where(T.id == row).with_for_update())
            s.execute(
                text("UPDATE outbox SET payload = :p WHERE id = :i"),
                {"p": '{"text":"new"}', "i": row},
            )
            picked = await asyncio.wait_for(
                asyncio.to_thread(db.outbox.claim_next, f"{P}:chat1", now, "a:1"), 5
            )
            assert picked is None, "skipped, not waited for"
            s.commit()
        item = db.outbox.claim_next(f"{P}:chat1", now, "a:2")
        assert item is not None and item.payload == {"text": "new"} and item.claim == "a:2"
        # claimed: the producer's coalesce makes a new row instead
        assert (
            db.outbox.coalesce(stream_key="s", op="edit", target_id=None, payload={}, priority=3)
            is None
        )
        assert db.outbox.supersede("s") == []
        assert not db.outbox.mark_superseded(row)
        db.outbox.release(row, "someone-else")  # not their claim: kept
        assert (
            db.outbox.coalesce(stream_key="s", op="edit", target_id=None, payload={}, priority=3)
            is None
        )
        db.outbox.release(row, "a:2")
        assert (
            db.outbox.coalesce(stream_key="s", op="edit", target_id=None, payload={}, priority=3)
            == row
        )
    finally:
        db.close()


# --- waking the gateway ---------------------------------------------------------------------


async def _latency(a: Host, b: Host) -> float:
    warm = b.outbox.enqueue(A, plain("warm"))[0]
    await b.outbox.wait_sent(warm, timeout=10)  # A's worker exists and sleeps now
    await asyncio.sleep(0.2)
    began = time.time()
    row = b.outbox.enqueue(A, plain("ping"))[0]
    await until(lambda: "ping" in fake(a).sent_texts(), timeout=10)
    assert (await b.outbox.wait_sent(row, timeout=5)).isdigit()
    return fake(a).calls[-1].at - began


async def test_a_row_written_on_b_wakes_a_by_notification(hosts: Any) -> None:
    a = await hosts("a", gateway=True, poll_every=None)  # no poll: only the notification
    b = await hosts("b", gateway=False, listen=False)
    assert await _latency(a, b) < 1.0
    assert a.outbox.wakeups.notified >= 2


async def test_without_notifications_the_poll_delivers(hosts: Any) -> None:
    a = await hosts("a", gateway=True, listen=False, poll_every=0.3)
    b = await hosts("b", gateway=False, listen=False)
    assert await _latency(a, b) < 2.0
    assert a.outbox.wakeups.notified == 0


async def test_wait_sent_on_b_resolves_when_a_sends(hosts: Any) -> None:
    a = await hosts("a", gateway=True)
    b = await hosts("b", gateway=False)
    row = b.outbox.enqueue(A, plain("hello"))[0]
    mid = await b.outbox.wait_sent(row, timeout=10)
    assert fake(a).sent_texts("A") == ["hello"] and mid == fake(a).calls[0].message_id


# --- the host of a row, and closing a thread -------------------------------------------------


async def test_each_row_records_the_host_that_wrote_it(hosts: Any) -> None:
    await hosts("a", gateway=True)
    b = await hosts("b", gateway=False)
    mid = await b.outbox.wait_sent(b.outbox.enqueue(A, plain("from b"))[0], timeout=10)
    origin = b.db.outbox.origin_of_message(P, "chat1", mid)
    assert origin is not None and origin.host == "b" and origin.thread_key == A.key


async def test_close_written_on_b_goes_after_the_notice_and_is_retried(hosts: Any) -> None:
    a = await hosts("a", gateway=True)
    b = await hosts("b", gateway=False)
    fake(a).fail_next(TransientError("502"), op="close")
    notice = b.outbox.enqueue(A, plain("Session ended."))[0]
    close = b.outbox.enqueue_close(A, session_id="s1")
    assert close is not None
    await b.outbox.wait_sent(close, timeout=10)
    assert [(c.op, c.thread_id) for c in fake(a).calls] == [("send", "A"), ("close", "A")]
    assert fake(a).closed == ["A"] and b.outbox.platform_message_id(notice)


async def test_close_on_one_host(db: Database) -> None:
    platform = ClosingPlatform()
    outbox = Outbox(db, {P: platform}, retry_initial=0.01, retry_max=0.05)
    await outbox.start()
    try:
        outbox.enqueue(B, plain("bye"))
        close = outbox.enqueue_close(B)
        assert close is not None
        await outbox.wait_sent(close, timeout=10)
        assert platform.closed == ["B"]
    finally:
        await outbox.stop()


async def test_close_through_real_ptb_from_another_host(hosts: Any, started: Started) -> None:
    tg, gateway_adapter, _ = await started(has_topics_enabled=True)
    order: list[str] = []
    tg.on_api = lambda phase, method, _params: order.append(method) if phase == "received" else None
    thread, _ = await gateway_adapter.open_thread(str(GROUP), "x: work", plain("📂 header"))
    await hosts("a", gateway=True, adapter=gateway_adapter)
    other = TelegramAdapter(gateway_adapter.config, owners_hint=[])  # host B: never started
    b = await hosts("b", gateway=False, adapter=other)
    order.clear()
    b.outbox.enqueue(thread, plain("Session ended."))
    close = b.outbox.enqueue_close(thread)
    assert close is not None
    await b.outbox.wait_sent(close, timeout=15)
    assert tg.topic(GROUP, int(thread.thread_id or 0)).closed
    assert order == ["sendMessage", "closeForumTopic"]


def test_migration_13_adds_host_and_claim_to_an_older_outbox(db: Database) -> None:
    """An outbox from before migration 13 (the columns dropped, version 12) gets both
    columns back, on SQLite and PostgreSQL, and keeps its rows."""
    row = db.outbox.add(
        platform=P,
        chat_id="chat1",
        thread_id="A",
        thread_key=A.key,
        op="send",
        payloads=[{"text": "old"}],
        priority=2,
        not_before=datetime.now(UTC),
    )[0]
    with db.engine.begin() as c:
        c.execute(text("ALTER TABLE outbox DROP COLUMN host"))
        c.execute(text("ALTER TABLE outbox DROP COLUMN claim"))
        c.execute(text("UPDATE schema_version SET version = 12"))
    assert db.migrate() >= 13
    assert db.outbox.claim_next(f"{P}:chat1", datetime.now(UTC), "h:1") is not None
    assert db.outbox.state_of(row) == ("pending", None)
