"""The Element-stack world for the end-to-end tests: the whole daemon as the bot (the
real matrix-nio adapter, the real Claude Code CLI against the fake Anthropic API, as
`matrix_harness.py` builds it) and Element's own crypto stack as its owner's phone
(`element_js.ElementPhone`), in an encrypted DM the phone created, as Element does.

Besides the world: one SAS run as the person does it (`verify`: compare the emoji
Element shows with those the daemon logs, then "They match"), and the timing helpers
that measure what the person waits for (`stamped`/`model_time`: when the fake model
started writing; `first_seen`: when the phone first showed a text; `timing`: printed
for issue 15's baseline).
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from asyncio.subprocess import PIPE
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.matrix.adapter import MatrixAdapter
from adapters.matrix.limits import RateLimit
from adapters.telegram.adapter import TelegramAdapter
from bridge.app import Bridge
from bridge.config import Config
from storage.db import Database
from tests.support.element_js import ElementMessage, ElementPhone, require_element
from tests.support.fakes.anthropic import Computed, FakeAnthropic, Text, ToolUse
from tests.support.fakes.claude_env import claude_env
from tests.support.fakes.telegram import FakeTelegram
from tests.support.matrix_harness import FAST, _bridge, make_config
from tests.support.synapse import Account, Synapse

TG_OWNER = 424242  # the owner's Telegram id when Telegram is configured too
SAS_LOG = re.compile(r"verification (\S+) with (\S+): (.+)$")


@dataclass
class World:
    """The bridge as the bot, Element's stack as its owner's phone, their encrypted DM."""

    synapse: Synapse
    model: FakeAnthropic
    bridge: Bridge
    db: Database
    config: Config
    bot: Account
    person: Account
    phone: ElementPhone
    room: str
    root: Path
    env: dict[str, str]
    rate: RateLimit

    @property
    def adapter(self) -> MatrixAdapter:
        adapter = self.bridge.adapters["matrix"]
        assert isinstance(adapter, MatrixAdapter)
        return adapter

    @property
    def bot_device(self) -> str:
        return str(self.adapter.client.device_id)

    def bot_messages(self, thread: str | None = None) -> list[ElementMessage]:
        return [
            m
            for m in self.phone.messages(self.room)
            if m.event.sender == self.bot.user_id and (thread is None or m.thread == thread)
        ]

    async def wait_text(
        self, needle: str, *, thread: str | None = None, timeout: float = 30.0
    ) -> ElementMessage:
        def found() -> ElementMessage | None:
            return next((m for m in self.bot_messages(thread) if needle in m.body), None)

        return await self.phone.wait(found, timeout)

    async def new_session(self, prompt: str) -> str:
        """`!new PATH PROMPT` from the phone; returns the thread's root event id."""
        await self.phone.send(self.room, f"!new {self.root / 'app'} {prompt}")
        header = await self.wait_text(f"app: {prompt}")
        return header.event_id

    async def restart_bot(self) -> None:
        await self.bridge.stop()
        self.db.close()
        self.db = Database(self.config.storage.url)
        self.db.migrate()
        self.bridge = _bridge(self.config, self.db, self.env, self.rate)
        await self.bridge.start()


async def start_world(
    tmp_path: Path,
    synapse: Synapse,
    rate: RateLimit = FAST,
    *,
    tg: FakeTelegram | None = None,
    matrix_extra: str = "",
) -> World:
    """`tg`: Telegram configured too (the fake Bot API), its owner `TG_OWNER`;
    `matrix_extra`: more `[matrix]` keys (e.g. `approvals = "verified"`)."""
    require_element()
    bot, person = synapse.register(), synapse.register()
    model = FakeAnthropic()
    await model.start()
    root = tmp_path / "code"
    (root / "app").mkdir(parents=True)
    extra = "" if tg is None else f'[telegram]\ntoken = "{tg.token}"\nbase_url = "{tg.base_url}"\n'
    config = make_config(
        synapse=synapse,
        bot=bot,
        owner=person.user_id,
        root=root,
        tmp=tmp_path,
        extra=f"{matrix_extra}\n{extra}",
    )
    db = Database(config.storage.url)
    db.migrate()
    env = claude_env(tmp_path / "claude-home", model.base_url)
    bridge = _bridge(config, db, env, rate)
    if tg is not None:
        tg.add_chat(TG_OWNER, "private", first_name="Owner")
        config.access.owners.append(f"telegram:{TG_OWNER}")
        bridge = Bridge(
            config,
            db,
            {
                "matrix": MatrixAdapter(config.matrix, owners_hint=config.access.owners, rate=rate),
                "telegram": TelegramAdapter(config.telegram, owners_hint=config.access.owners),
            },
            agent_env=env,
            stream_interval=0.3,
        )
    phone = ElementPhone(tmp_path / "element-phone.log")
    try:
        await bridge.start()
        await phone.start()
        await phone.login(synapse.base_url, person.user_id, person.password)
        await phone.call("bootstrap_cross_signing")
        room = await phone.create_dm([bot.user_id], name="Threadline")
        await phone.wait(lambda: phone.membership(room, bot.user_id) == "join", 30)
    except BaseException:
        await phone.stop()
        await bridge.stop()
        db.close()
        await model.stop()
        raise
    return World(synapse, model, bridge, db, config, bot, person, phone, room, root, env, rate)


async def stop_world(w: World) -> None:
    await w.phone.stop()
    await w.bridge.stop()
    w.db.close()
    await w.model.stop()


def timing(name: str, seconds: float) -> None:
    print(f"[element timing] {name}: {seconds:.2f} s")


def stamped(times: list[float], step: Text | ToolUse) -> Computed:
    """`step`, noting when the fake model starts writing it (its first delta follows
    within the same millisecond)."""

    def make(_: Any) -> Text | ToolUse:
        times.append(time.time())
        return step

    return Computed(make)


def model_time(times: list[float], seen: float) -> float:
    """When the model started the turn whose text the phone showed at `seen`."""
    return max(t for t in times if t <= seen)


def first_seen(messages: list[ElementMessage], needle: str) -> float | None:
    """When the phone first showed `needle` in any version of these messages."""
    times = [
        t
        for m in messages
        for v, t in zip(m.versions, m.version_times, strict=True)
        if needle in str(v.get("body", ""))
    ]
    return min(times) if times else None


def bot_emoji(caplog: pytest.LogCaptureFixture, txn: str) -> list[str]:
    """The emoji the daemon shows for a verification today: its log line."""
    for record in caplog.records:
        m = SAS_LOG.search(record.getMessage())
        if m and m.group(1) == txn:
            return m.group(3).split(" ")
    return []


def cli_config(w: World) -> Path:
    """A config file for `threadline verify` on the daemon's database (DB-only)."""
    path = w.root.parent / "cli.toml"
    path.write_text(f'[storage]\nurl = "{w.config.storage.url}"\n')
    return path


async def threadline(w: World, *args: str) -> tuple[int, str, str]:
    """The real `threadline` console script, as the person runs it on the machine."""
    exe = Path(sys.executable).with_name("threadline")
    proc = await asyncio.create_subprocess_exec(
        str(exe), *args, "--config", str(cli_config(w)), stdout=PIPE, stderr=PIPE
    )
    out, err = await proc.communicate()
    return int(proc.returncode or 0), out.decode(), err.decode()


async def verify(
    w: World, caplog: pytest.LogCaptureFixture, cmd: str, **args: Any
) -> dict[str, float]:
    """One SAS run started by the phone: the emoji Element shows must be the ones the
    daemon logs; then "They match" and both sides finish.  Returns its timings."""
    t0 = time.time()
    started = await w.phone.call(cmd, **args)
    vid = int(started["vid"])
    emoji = await w.phone.wait_emoji(vid)
    t_emoji = time.time()
    txn = str(w.phone.verification(vid)["transaction_id"])
    logged = await w.phone.wait(lambda: bot_emoji(caplog, txn), 10)
    assert [e for e, _ in emoji] == logged, "the same emoji on both sides"
    await w.phone.call("verify_confirm", vid=vid)
    if cmd == "verify_user":  # the bot says "they match" once the person did on the machine
        row = await w.phone.wait(lambda: w.db.sas.get(txn), 10)
        assert row.id is not None and w.db.sas.decide(row.id, "confirm", by="test")
    await w.phone.wait(lambda: w.phone.phase_seen(vid, "Verified"), 30)
    done = time.time()
    assert not w.phone.phase_seen(vid, "Cancelled") and not w.phone.phase_seen(vid, "Failed")
    times = {"to emoji": t_emoji - t0, "total": done - t0}
    if cmd == "verify_user":
        times["trusted"] = await w.phone.wait_trusted(w.bot.user_id) - t0
    return times
