"""`end` on a host that is not the gateway: two real `Bridge`s on one PostgreSQL, the
real PTB adapter against the fake Bot API.  Host A holds the Telegram gateway; the
session belongs to host B, whose adapter never starts.  B runs `end`: its notice and
the close of the topic are outbox rows, delivered by A in that order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.messages import Sender, UserMessage
from adapters.messages import text as plain
from adapters.telegram.adapter import TelegramAdapter
from bridge.app import Bridge
from bridge.commands.dispatch import parse_command
from storage.db import Database
from storage.models import SessionRow
from tests.support.fakes.telegram import FakeTelegram
from tests.support.harness import GROUP, OWNER, make_config

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning"),
]


@pytest.fixture
async def two_hosts(
    postgres_url: str, tmp_path: Path
) -> AsyncIterator[tuple[FakeTelegram, Bridge, Bridge]]:
    tg = await FakeTelegram(has_topics_enabled=True).start()
    tg.add_chat(GROUP, "supergroup", is_forum=True, title="Team")
    Database(postgres_url).migrate()
    bridges: list[Bridge] = []
    for name in ("a", "b"):  # A starts first: it takes the gateway lease
        root = tmp_path / name
        root.mkdir()
        config = make_config(tg=tg, root=root, db_url=postgres_url, chat_id=GROUP)
        config.daemon.host = name
        config.daemon.data_dir = str(tmp_path / f"data-{name}")  # its own attach socket
        db = Database(postgres_url)
        adapter = TelegramAdapter(config.telegram, owners_hint=config.access.owners)
        bridge = Bridge(config, db, {"telegram": adapter})
        await bridge.start()
        bridges.append(bridge)
    yield tg, bridges[0], bridges[1]
    for bridge in reversed(bridges):
        await bridge.stop()
        bridge.db.close()
    await tg.stop()


async def test_end_on_a_host_that_is_not_the_gateway(
    two_hosts: tuple[FakeTelegram, Bridge, Bridge],
) -> None:
    tg, a, b = two_hosts
    assert a.gateways.may_send("telegram") and not b.gateways.may_send("telegram")
    order: list[str] = []
    tg.on_api = lambda phase, method, _p: order.append(method) if phase == "received" else None
    thread, header = await a.adapters["telegram"].open_thread(str(GROUP), "b: work", plain("📂"))
    row = SessionRow(id="S1", platform="telegram", cwd=str(b.config.agent.allowed_roots[0]))
    row.host = "b"
    b.bind(row, thread, header, "topic")
    order.clear()
    end = parse_command("/end")
    assert end is not None
    sender = Sender("telegram", str(OWNER), "Ada")
    await b.commands.command(end, UserMessage(thread, sender, "/end", "1"), row)

    await tg.wait_until(
        lambda: tg.topic(GROUP, int(thread.thread_id or 0)).closed or None, timeout=15
    )
    assert order == ["sendMessage", "closeForumTopic"], "the notice first, then the close"
    texts = [m.visible_text or "" for m in tg.messages(GROUP, int(thread.thread_id or 0))]
    assert any("ended" in t for t in texts)
    session = b.db.sessions.get("S1")
    assert session is not None and session.state == "ended"
