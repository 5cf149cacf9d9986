"""The inbox between hosts (`storage/inbox_repo.py`, `bridge/inbox.py`) on SQLite and a
real PostgreSQL: items are claimed once each, in id order; a run that died holding
claims loses nothing; hostile payloads are failed and the worker goes on; on
PostgreSQL a notification wakes the worker at once (not its poll)."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.tasks import TaskGroup
from bridge.inbox import Inbox
from bridge.inbox_codec import decode_event
from storage.crypto import BodyCipher
from storage.db import Database
from storage.models import InboxRow
from storage.notify import INBOX, Listener


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/t.db"
    else:
        url = request.getfixturevalue("postgres_url")
    database = Database(url, cipher=BodyCipher(b"k" * 32))
    database.migrate()
    yield database
    database.close()


def test_items_are_claimed_once_in_order_and_sealed(db: Database) -> None:
    ids = [db.inbox.add(host="box", kind="message", payload={"n": n}) for n in range(5)]
    db.inbox.add(host="laptop", kind="message", payload={"n": 99})
    with db.session() as s:
        stored = s.get(InboxRow, ids[0])
        assert stored is not None and stored.payload.startswith("nacl:"), "sealed at rest"
    first = db.inbox.claim("box", limit=3)
    assert [i.id for i in first] == ids[:3] and [json.loads(i.payload or "") for i in first] == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
    ]
    assert [i.id for i in db.inbox.claim("box")] == ids[3:]
    assert db.inbox.claim("box") == []
    db.inbox.finish(ids[0])
    assert db.inbox.count(host="box", state="done") == 1
    assert db.inbox.release_claimed("box") == 4, "a dead run's claims are pending again"
    assert [i.id for i in db.inbox.claim("box")] == ids[1:]


def test_concurrent_claims_never_share_an_item(postgres_url: str) -> None:
    db = Database(postgres_url)
    db.migrate()
    try:
        for n in range(200):
            db.inbox.add(host="box", kind="message", payload={"n": n})
        got: list[list[int]] = [[] for _ in range(4)]

        def claimer(k: int) -> None:
            while items := db.inbox.claim("box", limit=7):
                got[k].extend(i.id for i in items)

        threads = [threading.Thread(target=claimer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        claimed = [i for ids in got for i in ids]
        assert len(claimed) == len(set(claimed)) == 200
        assert all(ids == sorted(ids) for ids in got), "each claimer sees id order"
    finally:
        db.close()


def _event(text: str) -> dict[str, object]:
    return {
        "thread": {"platform": "telegram", "chat_id": "1", "thread_id": None},
        "sender": {"platform": "telegram", "user_id": "1", "name": ""},
        "text": text,
        "message_id": "1",
        "reply_to": None,
        "chat_type": "private",
        "files": [],
        "bot": "",
    }


async def _run_worker(db: Database, *, poll_s: float = 0.05) -> tuple[Inbox, TaskGroup, list[str]]:
    handed: list[str] = []
    tasks = TaskGroup()
    inbox = Inbox(db, tasks, host="box", poll_s=poll_s)

    def handler(raw: str, _sender: str) -> object:
        event = decode_event("message", raw).event
        return lambda: handed.append(getattr(event, "text", ""))

    inbox.on("message", handler)
    inbox.start()
    return inbox, tasks, handed


async def _until(check: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


hostile = st.one_of(
    st.text(max_size=100),
    st.binary(max_size=50).map(lambda b: b.hex()),
    st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8)).map(json.dumps),
    st.just("nacl:" + "00" * 40),  # sealed with another key
    st.just('{"a":' * 5000 + "1" + "}" * 5000),  # nested past the JSON parser's depth
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk=st.lists(hostile, min_size=1, max_size=4), kind=st.sampled_from(["message", "??"]))
def test_hostile_payloads_are_failed_and_the_worker_goes_on(
    tmp_path: Path, junk: list[str], kind: str
) -> None:
    db = Database(f"sqlite:///{tmp_path}/hostile-{uuid.uuid4().hex}.db")  # one per example
    db.migrate()

    async def scenario() -> None:
        inbox, tasks, handed = await _run_worker(db)
        try:
            with db.session() as s:  # written raw, as anyone with database access could
                for raw in junk:
                    s.add(InboxRow(host="box", kind=kind, payload=raw))
                s.commit()
            db.inbox.add(host="box", kind="message", payload=_event("after the junk"))
            inbox.wake("box")
            await _until(lambda: handed == ["after the junk"])
            assert db.inbox.count(host="box", state="failed") == len(junk)
            assert db.inbox.count(host="box", state="pending") == 0
        finally:
            await inbox.stop()
            await tasks.close()

    try:
        asyncio.run(scenario())
    finally:
        db.close()


async def test_a_run_that_died_holding_claims_loses_nothing(db: Database) -> None:
    db.inbox.add(host="box", kind="message", payload=_event("one"))
    db.inbox.add(host="box", kind="message", payload=_event("two"))
    assert len(db.inbox.claim("box")) == 2  # …and the process died before handing over
    inbox, tasks, handed = await _run_worker(db)
    try:
        await _until(lambda: handed == ["one", "two"])
        assert db.inbox.count(host="box", state="done") == 2
    finally:
        await inbox.stop()
        await tasks.close()


async def test_a_notification_wakes_the_worker_at_once(postgres_url: str) -> None:
    db = Database(postgres_url)
    db.migrate()
    inbox, tasks, handed = await _run_worker(db, poll_s=60.0)  # the poll never comes
    listener = Listener(postgres_url)
    listener.on(INBOX, inbox.wake)
    await listener.start()
    other = Database(postgres_url)  # another host writes the item
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        await asyncio.sleep(0.2)  # the hello on connect has been handled
        other.inbox.add(host="laptop", kind="message", payload=_event("not for box"))
        other.inbox.add(host="box", kind="message", payload=_event("wake up"))
        await _until(lambda: handed == ["wake up"], timeout=5)
    finally:
        await listener.stop()
        await inbox.stop()
        await tasks.close()
        other.close()
        db.close()
