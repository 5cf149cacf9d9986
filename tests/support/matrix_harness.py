"""The Matrix end-to-end harness: the whole daemon (bridge, outbox, the real Matrix
adapter on matrix-nio with E2EE, the real Claude Code CLI through claude-agent-sdk)
against a real Synapse and the fake Anthropic API, with a second real nio client as
the person's phone.

`start_matrix_harness` registers a fresh bot and phone account, starts the bridge,
has the phone create an encrypted room and invite the bot (the bot accepts: the phone
is its owner) and waits until both sides know each other's devices.  A test then talks
as the person (`say`, `react`) and reads what the phone sees (`phone.messages`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.matrix.adapter import MatrixAdapter
from adapters.matrix.limits import RateLimit
from bridge.app import Bridge
from bridge.config import Config, parse_config
from storage.db import Database
from tests.support.fakes.anthropic import FakeAnthropic
from tests.support.fakes.claude_env import claude_env
from tests.support.matrix_phone import Phone, PhoneMessage
from tests.support.synapse import Account, Synapse

FAST = RateLimit(per_second=50.0, burst=100)  # the raised limits of the `synapse` fixture


@dataclass
class MatrixHarness:
    synapse: Synapse
    phone: Phone
    model: FakeAnthropic
    bridge: Bridge
    db: Database
    config: Config
    bot: Account
    root: Path
    room: str
    tmp: Path
    rate: RateLimit
    env: dict[str, str] = field(default_factory=dict)

    @property
    def adapter(self) -> MatrixAdapter:
        adapter = self.bridge.adapters["matrix"]
        assert isinstance(adapter, MatrixAdapter)
        return adapter

    # --- acting as the person -------------------------------------------------

    async def say(self, text: str, *, thread: str | None = None, room: str | None = None) -> str:
        return await self.phone.say(room or self.room, text, thread=thread)

    async def react(self, msg: PhoneMessage, key: str) -> str:
        return await self.phone.react(msg.room_id, msg.event_id, key)

    async def new_session(
        self, path: str, prompt: str = "", timeout: float = 30.0
    ) -> tuple[str, str]:
        """`!new PATH PROMPT`; returns (thread root event id, session id)."""
        known = {b.session_id for b in self._bindings()}
        await self.say(f"!new {path} {prompt}".strip())
        binding = await self.phone.wait(
            lambda: next((b for b in self._bindings() if b.session_id not in known), None),
            timeout,
        )
        assert binding.thread_id
        return binding.thread_id, binding.session_id

    def _bindings(self) -> list[Any]:
        from sqlmodel import select

        from storage.models import ThreadBinding

        with self.db.session() as s:
            return list(s.exec(select(ThreadBinding)))

    # --- reading what the phone shows -------------------------------------------

    def bot_messages(self, thread: str | None | bool = False) -> list[PhoneMessage]:
        return [m for m in self.phone.in_room(self.room, thread) if m.sender == self.bot.user_id]

    async def wait_text(
        self, needle: str, *, thread: str | None | bool = False, timeout: float = 30.0
    ) -> PhoneMessage:
        def found() -> PhoneMessage | None:
            return next((m for m in self.bot_messages(thread) if needle in m.body), None)

        return await self.phone.wait(found, timeout)

    def model_saw(self, needle: str) -> bool:
        return any(needle in json.dumps(r) for r in self.model.requests)

    # --- the bot's process --------------------------------------------------------

    async def restart_bot(self) -> None:
        """Stop the daemon and start a new one on the same database and store."""
        await self.bridge.stop()
        self.db.close()
        self.db = Database(self.config.storage.url)
        self.db.migrate()
        self.bridge = _bridge(self.config, self.db, self.env, self.rate)
        await self.bridge.start()


def make_config(
    *, synapse: Synapse, bot: Account, owner: str, root: Path, tmp: Path, extra: str = ""
) -> Config:
    return parse_config(
        f"""
[storage]
url = "sqlite:///{tmp}/threadline.db"
[agent]
allowed_roots = ["{root}"]
permission_timeout_s = 600
[access]
owners = ["matrix:{owner}"]
[matrix]
enabled = true
homeserver = "{synapse.base_url}"
user_id = "{bot.user_id}"
password = "{bot.password}"
store_path = "{tmp}/bot-store"
{extra}
"""
    )


def _bridge(config: Config, db: Database, env: dict[str, str], rate: RateLimit) -> Bridge:
    adapter = MatrixAdapter(config.matrix, owners_hint=config.access.owners, rate=rate)
    return Bridge(config, db, {"matrix": adapter}, agent_env=env, stream_interval=0.3)


async def start_matrix_harness(
    tmp_path: Path,
    synapse: Synapse,
    *,
    rate: RateLimit = FAST,
    agent_extra: dict[str, Any] | None = None,
    matrix_extra: str = "",
    encrypted: bool = True,
    homeserver: str = "",
) -> MatrixHarness:
    """`homeserver`: the URL the bot uses instead of Synapse's own (a fault proxy)."""
    bot, person = synapse.register(), synapse.register()
    model = FakeAnthropic()
    await model.start()
    root = tmp_path / "code"
    (root / "app").mkdir(parents=True, exist_ok=True)
    config = make_config(
        synapse=synapse, bot=bot, owner=person.user_id, root=root, tmp=tmp_path, extra=matrix_extra
    )
    for key, value in (agent_extra or {}).items():
        setattr(config.agent, key, value)
    if homeserver:
        config.matrix.homeserver = homeserver
    db = Database(config.storage.url)
    db.migrate()
    env = claude_env(tmp_path / "claude-home", model.base_url)
    bridge = _bridge(config, db, env, rate)
    await bridge.start()
    phone = await Phone(synapse.base_url, person, tmp_path / "phone-store").start()
    room = await phone.create_room([bot.user_id], encrypted=encrypted, name="Threadline")
    await phone.wait_member(room, bot.user_id)
    return MatrixHarness(
        synapse=synapse,
        phone=phone,
        model=model,
        bridge=bridge,
        db=db,
        config=config,
        bot=bot,
        root=root,
        room=room,
        tmp=tmp_path,
        rate=rate,
        env=env,
    )


async def stop_matrix_harness(h: MatrixHarness) -> None:
    await h.bridge.stop()
    h.db.close()
    await h.phone.stop()
    await h.model.stop()
