"""Outbox housekeeping: settled rows past the retention are pruned, and what the
reply-chain routing, `find_sent` and later edits still read survives it.

Against the same fake platform as `tests/test_outbox.py`, with the outbox's clock
moved past the retention instead of waiting 30 days.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from adapters.base import PermanentError
from adapters.messages import ThreadRef, text
from bridge.outbox.delivery import to_datetime
from bridge.outbox.housekeeping import RETENTION
from bridge.outbox.outbox import Outbox
from storage.db import Database
from storage.models import OutboxRow
from tests.integration.test_outbox import A, B, FakePlatform, P

DAY = 86400.0
GONE = ThreadRef("no-adapter", "chat9", "T")  # rows for it stay pending


@pytest.fixture
def db(tmp_path: Path) -> Any:
    database = Database(f"sqlite:///{tmp_path}/t.db")
    database.migrate()
    yield database
    database.close()


@pytest.fixture
async def started(db: Database) -> AsyncIterator[tuple[Outbox, FakePlatform, list[float]]]:
    skew = [0.0]  # how far the outbox's clock is ahead of the real one
    fake = FakePlatform(native_stream=True)
    outbox = Outbox(
        db, {P: fake}, clock=lambda: time.time() + skew[0], retry_initial=0.01, retry_max=0.05
    )
    await outbox.start()
    yield outbox, fake, skew
    await outbox.stop(grace=0.5)


def rows(db: Database) -> dict[int, OutboxRow]:
    with db.session() as s:
        return {r.id: r for r in s.exec(select(OutboxRow)) if r.id is not None}


async def test_old_settled_rows_are_pruned_and_routing_still_works(
    started: tuple[Outbox, FakePlatform, list[float]], db: Database
) -> None:
    outbox, fake, skew = started
    [kept] = outbox.enqueue(A, text("the old message"), session_id="s1")
    mid = await outbox.wait_sent(kept, timeout=5)
    edit = outbox.enqueue_edit(A, kept, text("the old message, edited"), stream_key="k")
    await outbox.wait_sent(edit, timeout=5)
    outbox.update_stream(B, "b-stream", text("a draft"), session_id="s2")
    [doomed] = outbox.enqueue(B, text("deleted later"))
    await outbox.wait_sent(doomed, timeout=5)
    delete = outbox.enqueue_delete(B, doomed)
    assert delete is not None
    await outbox.wait_sent(delete, timeout=5)
    fake.fail_next(PermanentError("Bad Request: chat not found"), "send")
    [failed] = outbox.enqueue(A, text("never arrives"))
    assert await outbox.wait_idle(timeout=5)
    [stuck] = db.outbox.add(
        platform=GONE.platform,
        chat_id=GONE.chat_id,
        thread_id=GONE.thread_id,
        thread_key=GONE.key,
        op="send",
        payloads=[{"text": "waiting for its adapter"}],
        priority=0,
        not_before=to_datetime(time.time()),
    )
    before = rows(db)
    assert {r.op for r in before.values()} == {"send", "edit", "draft", "delete"}
    assert before[failed].state == "failed"

    assert await outbox.pruner.prune() == 0, "nothing is past the retention yet"
    assert rows(db) == before

    skew[0] = RETENTION + DAY
    [fresh] = outbox.enqueue(A, text("a new message"), session_id="s1")
    await outbox.wait_sent(fresh, timeout=5)
    fresh_edit = outbox.enqueue_edit(A, fresh, text("a new message, edited"))
    await outbox.wait_sent(fresh_edit, timeout=5)
    changed = await outbox.pruner.prune()

    after = rows(db)
    old_ops = {r.op for i, r in after.items() if i in before}
    assert old_ops == {"send"}, "old edits, drafts and deletes are gone"
    assert set(after) == {kept, doomed, failed, stuck, fresh, fresh_edit}
    assert changed == 3 + 3, "3 rows deleted (edit, draft, delete), 3 sends emptied"
    for row_id in (kept, doomed, failed):
        assert after[row_id].payload == "", "old content is not kept"
        assert after[row_id].state == before[row_id].state
        assert after[row_id].platform_message_id == before[row_id].platform_message_id
    assert after[stuck].payload == before[stuck].payload, "a pending row is never touched"
    assert after[stuck].state == "pending"
    assert after[fresh].payload != "", "a recent row is kept whole"
    assert after[fresh_edit].payload != ""
    assert await outbox.pruner.prune() == 0, "a second run finds nothing"

    # what still reads the old send rows: reply-chain routing, find_sent, later edits
    origin = db.outbox.origin_of_message(P, A.chat_id, mid)
    assert origin is not None
    assert (origin.thread_key, origin.session_id) == (A.key, "s1")
    assert db.outbox.row_of_message(P, A.chat_id, mid) == kept
    _, ours = db.outbox.our_messages(f"{P}:{A.chat_id}", before=to_datetime(time.time() + skew[0]))
    assert mid in ours
    again = outbox.enqueue_edit(A, kept, text("edited a month later"))
    await outbox.wait_sent(again, timeout=5)
    assert fake.messages[(A.chat_id, mid)] == "edited a month later"


async def test_pruning_runs_by_itself_and_stops_with_the_outbox(db: Database) -> None:
    skew = [0.0]
    fake = FakePlatform()
    outbox = Outbox(db, {P: fake}, clock=lambda: time.time() + skew[0], prune_every=0.05)
    await outbox.start()
    [row] = outbox.enqueue(A, text("hello"))
    await outbox.wait_sent(row, timeout=5)
    edit = outbox.enqueue_edit(A, row, text("hello again"))
    await outbox.wait_sent(edit, timeout=5)
    skew[0] = RETENTION + DAY
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while edit in rows(db) and loop.time() < deadline:  # noqa: ASYNC110 - it signals nothing else
        await asyncio.sleep(0.02)
    assert edit not in rows(db), "the periodic prune deleted the old edit"
    assert rows(db)[row].payload == ""
    await outbox.stop()
    assert [t for t in asyncio.all_tasks() if t.get_name() == "outbox-prune"] == []
