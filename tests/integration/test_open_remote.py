"""Opening a session on a host that is not its platform's gateway (`Forwarder.open_remote`,
what `new`, `import` and attach use there): with no gateway at all the person is told so
and nothing is written; with a gateway that never answers the request waits in its
inbox, and after the timeout the person is told and the session ends (never half open).
Real `Bridge` objects on SQLite that never start their adapter (so never hold a lease)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from adapters.messages import ThreadRef
from adapters.telegram.adapter import TelegramAdapter
from bridge import forward
from bridge.app import Bridge
from bridge.commands.opening import open_session
from bridge.gateway import account_key
from storage.db import Database, select
from storage.models import OutboxRow, utcnow
from tests.support.harness import OWNER, make_config

ORIGIN = ThreadRef("telegram", str(OWNER))


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[Bridge]:
    fake = SimpleNamespace(
        token="123456789:TEST-threadline-token", base_url="http://127.0.0.1:9/bot"
    )
    config = make_config(tg=fake, root=tmp_path, db_url=f"sqlite:///{tmp_path}/t.db", chat_id=OWNER)  # type: ignore[arg-type]
    config.daemon.host = "box"
    db = Database(config.storage.url)
    db.migrate()
    adapter = TelegramAdapter(config.telegram, owners_hint=config.access.owners)
    b = Bridge(config, db, {"telegram": adapter})
    b.inbox.start()  # the adapter is never started: this host is not the gateway
    yield b
    await b.inbox.stop()
    await b.tasks.close()
    db.close()


def said(b: Bridge) -> list[str]:
    """What this host asked the gateway to say (its outbox rows' payloads, in order)."""
    with b.db.session() as s:
        rows = s.exec(select(OutboxRow).order_by(OutboxRow.id)).all()  # type: ignore[arg-type]
    return [json.dumps(json.loads(r.payload), ensure_ascii=False) for r in rows]


async def test_no_gateway_is_said_and_nothing_is_written(bridge: Bridge, tmp_path: Path) -> None:
    opened = await open_session(bridge, ORIGIN, f"telegram:{OWNER}", tmp_path, title="t")
    assert opened is None
    assert bridge.db.sessions.list() == [] and bridge.db.inbox.count() == 0
    assert any("No host is connected to telegram" in text for text in said(bridge))
    rows = bridge.db.outbox.counts()
    assert rows == {"pending": 1}, "told, through the outbox (the gateway delivers it)"


async def test_a_gateway_that_never_opens_the_thread_times_out_cleanly(
    bridge: Bridge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forward, "OPEN_TIMEOUT_S", 0.5)
    account = account_key("telegram", bridge.config.telegram)
    assert bridge.db.gateways.acquire(account, "laptop", utcnow(), 600) == 1
    opened = await open_session(bridge, ORIGIN, f"telegram:{OWNER}", tmp_path, title="t")
    assert opened is None
    (row,) = bridge.db.sessions.list()
    assert row.host == "box" and row.state == "ended"
    (item,) = bridge.db.inbox.list("laptop")
    assert item.kind == "open_thread" and item.state == "pending", "waits for laptop"
    assert any("laptop (the telegram gateway) did not open a thread" in t for t in said(bridge))
    # an expired lease is no gateway
    bridge.db.gateways.acquire(account, "laptop", utcnow() - timedelta(seconds=700), 600)
    assert bridge.forward.gateway_host("telegram", utcnow()) is None
