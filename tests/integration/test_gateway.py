"""The gateway election in one process, on both databases, with a short lease: the
first host starts its adapter and may send, the second stands by; when the first
stalls (its renew loop stops) it stops being allowed to send by its own clock before
the second takes over; when it runs again its renewal fails, it stops its adapter and
says so — one log line and one audit row per change."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.base import InboundSink
from adapters.messages import Inbound
from adapters.tasks import TaskGroup
from bridge.config import Config
from bridge.gateway import Gateway, account_key
from storage.db import Database
from storage.models import utcnow
from tests.integration.test_outbox import FakePlatform

ACCOUNT = "fake:1"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "postgresql":
        url = str(request.getfixturevalue("postgres_url"))
    else:
        url = f"sqlite:///{tmp_path}/t.db"
    database = Database(url)
    database.migrate()
    yield database
    database.close()


class Adapter(FakePlatform):
    def __init__(self) -> None:
        super().__init__()
        self.started = self.stopped = 0

    async def start(self, sink: InboundSink) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1


async def until(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.01)  # noqa: ASYNC110 - the state lives in another object


def gateway(
    db: Database, adapter: Adapter, host: str, tasks: TaskGroup, gained: list[str]
) -> Gateway:
    async def sink(_event: Inbound) -> None:
        return None

    return Gateway(
        db,
        adapter,
        sink,
        tasks,
        account=ACCOUNT,
        host=host,
        now=utcnow,
        on_gained=gained.append,
        ttl=0.8,
        renew_every=0.1,
        retry_every=0.1,
        margin=0.3,
    )


async def test_a_stalled_gateway_is_fenced_then_replaced_then_deposed(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.gateway")
    tasks = TaskGroup()
    gained: list[str] = []
    a, b = Adapter(), Adapter()
    laptop, box = gateway(db, a, "laptop", tasks, gained), gateway(db, b, "box", tasks, gained)
    try:
        await laptop.begin()
        assert laptop.may_send() and a.started == 1 and laptop.epoch == 1
        await box.begin()
        assert not box.may_send() and b.started == 0
        await asyncio.sleep(1.0)  # renewed through more than a TTL: still laptop's
        assert laptop.may_send() and not box.may_send() and b.started == 0

        # laptop stalls: its renew loop stops running
        assert laptop._task is not None
        laptop._task.cancel()
        stalled = time.monotonic()
        await until(lambda: not laptop.may_send())
        fenced_after = time.monotonic() - stalled
        assert not box.may_send(), "fenced by its own clock before anyone can take over"
        await until(box.may_send)
        await until(lambda: gained)  # the adapter starts in the background
        assert box.epoch == 2 and b.started == 1 and gained == ["fake"]
        assert fenced_after < time.monotonic() - stalled

        # laptop runs again: its renewal fails, it disconnects and says so
        await laptop._renew()
        assert laptop.epoch is None and not laptop.may_send() and a.stopped == 1
        lines = [r.getMessage() for r in caplog.records if r.name == "bridge.gateway"]
        assert lines == [
            "fake: this host (laptop) is the gateway, epoch 1",
            "fake: laptop is the gateway; this host (box) stands by",
            "fake: this host (box) is the gateway, epoch 2",
            "fake: lost the gateway to box",
        ]
        audit = [(r.user, r.detail) for r in reversed(db.audit.recent()) if r.action == "gateway"]
        assert audit == [
            ("host:laptop", "this host (laptop) is the gateway, epoch 1"),
            ("host:box", "this host (box) is the gateway, epoch 2"),
            ("host:laptop", "lost the gateway to box"),
        ]
        # a clean stop hands the lease over at once
        await box.release()
        assert not box.may_send()
        assert db.gateways.acquire(ACCOUNT, "laptop", utcnow(), 8) == 3
    finally:
        await tasks.close()


def test_account_keys_name_the_bot_not_the_host() -> None:
    cfg = Config.model_validate(
        {
            "telegram": {"enabled": True, "token": "123456:ABC-def"},
            "slack": {"bot_token": "xoxb-111-222-secret", "app_token": "xapp-1-A1-x"},
            "matrix": {"user_id": "@bot:example.org"},
        }
    )
    assert account_key("telegram", cfg.platform("telegram")) == "telegram:123456"
    assert account_key("slack", cfg.platform("slack")) == "slack:111-222"
    assert account_key("matrix", cfg.platform("matrix")) == "matrix:@bot:example.org"
    assert account_key("slack", Config.model_validate({}).platform("slack")) == "slack"
