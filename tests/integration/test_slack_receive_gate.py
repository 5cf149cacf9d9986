"""A deposed Slack gateway does not acknowledge what reaches its Socket Mode connection:
two gateways for one Slack app on one database, each with the real Bolt adapter against
the fake Slack and a short lease.

The first gateway stalls (its renewals stop); once its lease has run out by its own
clock, a person posts and the fake delivers the envelope on its connection.  It is
answered with no ack, so when the second host has taken the gateway over (and the
first has let go, closing its connection) Slack delivers it again, to the second
host, which handles it exactly once.  Without the gate the first host would ack it
and drop it (it is no longer the gateway): lost."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.messages import Inbound, UserMessage
from adapters.slack.adapter import SlackAdapter
from adapters.tasks import TaskGroup
from bridge.gateway import Gateway
from storage.db import Database
from storage.models import utcnow
from tests.support.fakes.slack import FakeSlack
from tests.support.slack_harness import CHANNEL, OWNER, make_config, populate


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = await FakeSlack().start()
    populate(fake)
    yield fake
    await fake.stop()


class Host:
    """One host's gateway for the Slack app, recording the messages it handles."""

    def __init__(self, name: str, db: Database, slack: FakeSlack, tmp: Path, tasks: TaskGroup):
        config = make_config(slack=slack, root=tmp / name, db_url=db.url)
        self.adapter = SlackAdapter(config.slack, owners_hint=config.access.owners)
        self.handled: list[str] = []

        async def sink(event: Inbound) -> None:
            if isinstance(event, UserMessage):
                self.handled.append(event.text)

        self.gateway = Gateway(
            db, self.adapter, sink, tasks,
            account="slack:1", host=name, now=utcnow, on_gained=lambda _p: None,
            ttl=3.0, renew_every=0.1, retry_every=0.1, margin=0.5,
        )  # fmt: skip
        self.adapter.set_receive_gate(self.gateway.may_send)  # as `bridge/app.py` wires it


async def test_an_envelope_reaching_a_deposed_gateway_is_redelivered_to_the_next(
    slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.slack.receiver")
    db = Database(f"sqlite:///{tmp_path}/t.db")
    db.migrate()
    tasks = TaskGroup()
    laptop = Host("laptop", db, slack, tmp_path, tasks)
    box = Host("box", db, slack, tmp_path, tasks)
    try:
        await laptop.gateway.begin()
        assert laptop.gateway.may_send() and laptop.gateway.running

        assert laptop.gateway._task is not None
        laptop.gateway._task.cancel()  # laptop stalls: its lease runs out
        await slack.wait_until(lambda: not laptop.gateway.may_send(), 10)

        slack.user_message(CHANNEL, OWNER, "sent while the gateway was frozen")
        await slack.wait_until(lambda: "not acknowledged" in caplog.text, 10)

        await box.gateway.begin()  # takes the gateway once the lease has expired
        await slack.wait_until(lambda: box.gateway.running, 15)
        await laptop.gateway._renew()  # laptop wakes: deposed, its connection closes
        assert laptop.gateway.epoch is None and not laptop.gateway.running
        await slack.wait_until(lambda: box.handled, 20)

        slack.user_message(CHANNEL, OWNER, "sent after the takeover")
        await slack.wait_until(lambda: len(box.handled) >= 2, 15)
        assert box.handled == ["sent while the gateway was frozen", "sent after the takeover"]
        assert laptop.handled == []
    finally:
        for host in (box, laptop):
            if host.gateway.running:
                await host.adapter.stop()
        await tasks.close()
        db.close()
