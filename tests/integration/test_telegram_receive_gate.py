"""A deposed Telegram gateway neither handles nor confirms the updates its stalled long
poll returns: two gateways for one bot on one database, each with the real PTB adapter
against the fake Bot API and a short lease.

The first gateway stalls (its renewals stop) while its long poll is open; once its
lease has run out by its own clock, a person sends a message and the fake answers that
poll with it.  The update is left unconfirmed, so the second host, which takes the
gateway over, gets it from `getUpdates` and handles it — exactly once (a later message
shows the offset moved on past it).  Without the receive gate the stalled host's PTB
would take the update, its gateway would drop it (no longer the gateway) and PTB would
confirm it: lost."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.messages import Inbound, UserMessage
from adapters.tasks import TaskGroup
from adapters.telegram.adapter import TelegramAdapter
from bridge.config import parse_config
from bridge.gateway import Gateway
from storage.db import Database
from storage.models import utcnow
from tests.support.fakes.telegram import FakeTelegram
from tests.support.harness import OWNER, OWNER_NAME, config_text

USER = {"id": OWNER, "is_bot": False, "first_name": OWNER_NAME}


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    fake = await FakeTelegram().start()
    fake.add_chat(OWNER, "private", first_name=OWNER_NAME)
    yield fake
    await fake.stop()


class Host:
    """One host's gateway for the bot, recording the events it handles."""

    def __init__(self, name: str, db: Database, tg: FakeTelegram, tmp: Path, tasks: TaskGroup):
        config = parse_config(config_text(tg=tg, root=tmp / name, db_url=db.url, chat_id=OWNER))
        self.adapter = TelegramAdapter(config.telegram, owners_hint=config.access.owners)
        self.handled: list[str] = []

        async def sink(event: Inbound) -> None:
            if isinstance(event, UserMessage):
                self.handled.append(event.text)

        self.gateway = Gateway(
            db, self.adapter, sink, tasks,
            account="telegram:1", host=name, now=utcnow, on_gained=lambda _p: None,
            ttl=3.0, renew_every=0.1, retry_every=0.1, margin=0.5,
        )  # fmt: skip
        # As the composition root wires it (`bridge/app.py`).
        self.adapter.set_receive_gate(self.gateway.may_send)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    url = (
        str(request.getfixturevalue("postgres_url"))
        if request.param == "postgresql"
        else f"sqlite:///{tmp_path}/t.db"
    )
    database = Database(url)
    database.migrate()
    return database


async def test_an_update_answered_to_a_deposed_gateway_is_handled_once_by_the_next(
    db: Database, tg: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.telegram.client")
    tasks = TaskGroup()
    laptop = Host("laptop", db, tg, tmp_path, tasks)
    box = Host("box", db, tg, tmp_path, tasks)
    try:
        await laptop.gateway.begin()
        assert laptop.gateway.may_send() and laptop.gateway.running
        await tg.wait_until(lambda: tg.calls["getUpdates"], timeout=10)

        # laptop stalls with its long poll open: renewals stop, its lease runs out.
        assert laptop.gateway._task is not None
        laptop.gateway._task.cancel()
        await tg.wait_until(lambda: not laptop.gateway.may_send(), timeout=10)

        tg.user_message(OWNER, USER, "sent while the gateway was frozen")
        await tg.wait_until(lambda: "left unconfirmed for the next poller" in caplog.text, timeout=10)
        assert laptop.handled == []

        await box.gateway.begin()  # stands by until the lease has expired, then takes it
        await tg.wait_until(lambda: box.handled, timeout=15)
        # laptop wakes: its renewal fails and its adapter stops.
        await laptop.gateway._renew()
        assert laptop.gateway.epoch is None and not laptop.gateway.running

        tg.user_message(OWNER, USER, "sent after the takeover")
        await tg.wait_until(lambda: len(box.handled) >= 2, timeout=15)
        assert box.handled == ["sent while the gateway was frozen", "sent after the takeover"]
        assert laptop.handled == []
    finally:
        for host in (box, laptop):
            if host.gateway.running:
                await host.adapter.stop()
        await tasks.close()
        db.close()
