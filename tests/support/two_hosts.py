"""Two hosts in one test process on one real PostgreSQL: "laptop", the Telegram gateway
(the real PTB adapter against the fake Bot API), and "box", a second `Bridge` on the
same database whose Telegram lease laptop holds — it builds its adapter but never
starts it.  Both run the real Claude CLI against one fake Anthropic API, each with its
own allowed root (`<tmp>/<host>/code`, with `app/` in it), data dir and Claude home.

`TwoHosts.start_box()` / `stop_box()` start and stop box alone (a new `Bridge` on the
same database, as a restarted daemon), so a test can take the host down and back.
What box says reaches the chat as in production: box writes outbox rows, laptop is
woken by the database (NOTIFY) and delivers them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from adapters.telegram.adapter import TelegramAdapter
from bridge.app import Bridge
from bridge.config import Config, parse_config
from storage.db import Database
from tests.support.fakes.anthropic import FakeAnthropic
from tests.support.fakes.claude_env import claude_env
from tests.support.fakes.telegram import FakeTelegram
from tests.support.harness import OWNER, OWNER_NAME, STRANGER, Harness, config_text


@dataclass
class Node:
    """One host: its name, config, database handle and running bridge (None: down)."""

    name: str
    dir: Path
    config: Config
    env: dict[str, str]
    bridge: Bridge | None = None
    db: Database | None = None

    @property
    def root(self) -> Path:
        return self.dir / "code"

    @property
    def b(self) -> Bridge:
        assert self.bridge is not None, f"{self.name} is down"
        return self.bridge


@dataclass
class TwoHosts:
    tg: FakeTelegram
    model: FakeAnthropic
    laptop: Node
    box: Node
    url: str
    h: Harness  # laptop seen as the one-host harness (say, press, wait_text, …)

    async def start_box(self) -> Bridge:
        self.box.bridge, self.box.db = await _start(self.box, self.tg)
        return self.box.bridge

    async def stop_box(self) -> None:
        node = self.box
        if node.bridge is not None:
            await node.bridge.stop()
            assert node.db is not None
            node.db.close()
        node.bridge = node.db = None


def _node(tmp: Path, name: str, tg: FakeTelegram, model: FakeAnthropic, url: str) -> Node:
    where = tmp / name
    (where / "code" / "app").mkdir(parents=True)
    text = config_text(tg=tg, root=where / "code", db_url=url, chat_id=OWNER)
    text += f'[daemon]\nhost = "{name}"\ndata_dir = "{where}"\n'
    env = claude_env(where / "claude-home", model.base_url)
    return Node(name, where, parse_config(text), env)


async def _start(node: Node, tg: FakeTelegram) -> tuple[Bridge, Database]:
    db = Database(node.config.storage.url)
    db.migrate()
    adapter = TelegramAdapter(node.config.telegram, owners_hint=node.config.access.owners)
    bridge = Bridge(node.config, db, {"telegram": adapter}, agent_env=node.env, stream_interval=0.3)
    await bridge.start()
    return bridge, db


@contextlib.asynccontextmanager
async def two_hosts(tmp: Path, url: str) -> AsyncIterator[TwoHosts]:
    model = FakeAnthropic()
    await model.start()
    tg = await FakeTelegram(has_topics_enabled=True).start()
    tg.add_chat(OWNER, "private", first_name=OWNER_NAME)
    tg.add_chat(STRANGER, "private", first_name="Mallory")
    laptop, box = _node(tmp, "laptop", tg, model, url), _node(tmp, "box", tg, model, url)
    world: TwoHosts | None = None
    try:
        laptop.bridge, laptop.db = await _start(laptop, tg)  # first: the gateway
        h = Harness(
            tg=tg, model=model, bridge=laptop.bridge, db=laptop.db, config=laptop.config,
            root=laptop.root, chat_id=OWNER, home=laptop.dir / "claude-home", env=laptop.env,
        )  # fmt: skip
        world = TwoHosts(tg, model, laptop, box, url, h)
        await world.start_box()
        yield world
    finally:
        if world is not None:
            await world.stop_box()
        if laptop.bridge is not None:
            await laptop.bridge.stop()
            assert laptop.db is not None
            laptop.db.close()
        await tg.stop()
        await model.stop()


__all__ = ["Node", "TwoHosts", "two_hosts"]
