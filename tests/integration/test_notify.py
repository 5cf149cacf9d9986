"""`storage/notify.py` against a real PostgreSQL: a notification written in a
transaction reaches the listener at commit, never for a rolled-back one, and a
(re)connection calls every callback with "" so nothing written meanwhile is missed."""

from __future__ import annotations

import asyncio

from storage.db import Database
from storage.notify import INBOX, OUTBOX, Listener, libpq_url, notify


def test_libpq_url_drops_the_driver_and_keeps_options() -> None:
    url = "postgresql+psycopg://tl:s3cret@db.example:5433/threadline?sslmode=verify-full"
    assert libpq_url(url) == "postgresql://tl:s3cret@db.example:5433/threadline?sslmode=verify-full"


def test_sqlite_listener_never_connects() -> None:
    assert not Listener("sqlite:///x.db").enabled


async def _exchange(url: str) -> tuple[list[str], list[str]]:
    db = Database(url)
    db.migrate()
    outbox: list[str] = []
    inbox: list[str] = []
    arrived = asyncio.Event()
    listener = Listener(url)
    listener.on(OUTBOX, lambda p: (outbox.append(p), arrived.set()))
    listener.on(INBOX, inbox.append)
    await listener.start()
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        # the hello on connect is dispatched before `connected` is seen set
        assert outbox == [""] and inbox == [""]
        outbox.clear()
        arrived.clear()
        with db.session() as s:  # rolled back: nothing
            notify(s, OUTBOX, "telegram:rolled-back")
            s.rollback()
        with db.session() as s:
            notify(s, OUTBOX, "telegram:42")
            s.commit()
        await asyncio.wait_for(arrived.wait(), 5)
        return outbox, inbox
    finally:
        await listener.stop()
        db.close()


def test_a_committed_notification_reaches_the_listener(postgres_url: str) -> None:
    outbox, inbox = asyncio.run(_exchange(postgres_url))
    assert outbox == ["telegram:42"]
    assert inbox == [""]
