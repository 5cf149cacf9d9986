"""The end-to-end harness: the whole daemon (bridge, outbox, real Telegram adapter on
python-telegram-bot, real Claude Code CLI through claude-agent-sdk) wired to the two
local fakes — the Bot API server and the Anthropic Messages API.

A test talks as the person through `Harness.say()` / `Harness.press()` and reads what
the bot did through the fake Telegram transcript; it scripts the model with
`harness.model.on(...)`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.telegram.adapter import TelegramAdapter
from bridge.app import Bridge
from bridge.config import Config, parse_config
from storage.crypto import BodyCipher
from storage.db import Database
from tests.support.fakes.anthropic import FakeAnthropic
from tests.support.fakes.claude_env import claude_env
from tests.support.fakes.telegram import FakeMessage, FakeTelegram

OWNER = 1001
OWNER_NAME = "Ada"
STRANGER = 6666
GROUP = -1002000000001


@dataclass
class Harness:
    tg: FakeTelegram
    model: FakeAnthropic
    bridge: Bridge
    db: Database
    config: Config
    root: Path
    chat_id: int
    home: Path
    env: dict[str, str] = field(default_factory=dict)

    # --- acting as the person -------------------------------------------------

    def say(
        self,
        text: str,
        *,
        thread_id: int | None = None,
        user: int = OWNER,
        reply_to: int | None = None,
    ) -> dict[str, Any]:
        user_obj = {
            "id": user,
            "is_bot": False,
            "first_name": OWNER_NAME if user == OWNER else "Mallory",
        }
        return self.tg.user_message(
            self.chat_id, user_obj, text, message_thread_id=thread_id, reply_to=reply_to
        )

    def press(self, msg: FakeMessage, label: str, *, user: int = OWNER) -> str:
        user_obj = {
            "id": user,
            "is_bot": False,
            "first_name": OWNER_NAME if user == OWNER else "Mallory",
        }
        return self.tg.press_button(
            self.chat_id, msg.message_id, msg.callback_data(label), user_obj
        )

    # --- reading the transcript -------------------------------------------------

    def bot_messages(self, thread_id: int | None = None) -> list[FakeMessage]:
        return self.tg.messages(self.chat_id, thread_id)

    async def wait_msg(
        self,
        pred: Callable[[FakeMessage], bool],
        timeout: float = 30.0,
        thread_id: int | None = None,
    ) -> FakeMessage:
        return await self.tg.wait_for(
            pred, timeout=timeout, chat_id=self.chat_id, thread_id=thread_id
        )

    async def wait_text(
        self, needle: str, timeout: float = 30.0, thread_id: int | None = None
    ) -> FakeMessage:
        return await self.wait_msg(
            lambda m: needle in (m.visible_text or ""), timeout=timeout, thread_id=thread_id
        )

    async def new_session(
        self, path: str, prompt: str = "", timeout: float = 30.0
    ) -> tuple[int, str]:
        """`/new PATH PROMPT` and wait for the topic; returns (thread id, session id)."""
        before = set(self.tg.topics(self.chat_id))
        self.say(f"/new {path} {prompt}".strip())
        topic_id = await self.tg.wait_until(
            lambda: next(iter(set(self.tg.topics(self.chat_id)) - before), None), timeout=timeout
        )
        binding = await self.tg.wait_until(
            lambda: self.db.bindings.by_thread_key(f"telegram:{self.chat_id}:{topic_id}"),
            timeout=timeout,
        )
        return topic_id, binding.session_id

    def model_saw(self, needle: str) -> bool:
        return any(needle in json.dumps(r) for r in self.model.requests)

    def write_config(self, path: Path) -> Path:
        """This harness's config as a file, for `threadline` subprocesses (attach,
        import) talking to this in-process daemon."""
        db_url = self.config.storage.url
        path.write_text(
            config_text(tg=self.tg, root=self.root, db_url=db_url, chat_id=self.chat_id)
        )
        return path


def make_config(
    *, tg: FakeTelegram, root: Path, db_url: str, chat_id: int, extra: str = ""
) -> Config:
    return parse_config(config_text(tg=tg, root=root, db_url=db_url, chat_id=chat_id, extra=extra))


def config_text(*, tg: FakeTelegram, root: Path, db_url: str, chat_id: int, extra: str = "") -> str:
    """The TOML `make_config` parses (a file for `threadline` subprocesses)."""
    return f"""
[storage]
url = "{db_url}"
[agent]
allowed_roots = ["{root}"]
permission_timeout_s = 600
[access]
owners = ["telegram:{OWNER}"]
[telegram]
enabled = true
token = "{tg.token}"
base_url = "{tg.base_url}"
chat_id = {chat_id if chat_id < 0 else 0}
{extra}
"""


async def start_harness(
    tmp_path: Path,
    *,
    group: bool = False,
    topics: bool = True,
    agent_extra: dict[str, Any] | None = None,
    telegram_extra: str = "",
    stream_interval: float = 0.3,
    tg: FakeTelegram | None = None,
    model: FakeAnthropic | None = None,
    bridge_kwargs: dict[str, Any] | None = None,
    cipher: BodyCipher | None = None,
    claude_extra: dict[str, str] | None = None,
) -> Harness:
    """Start fakes (unless given) and the bridge.  Caller stops with `stop_harness`."""
    if tg is None:
        tg = await FakeTelegram(has_topics_enabled=topics).start()
    if model is None:
        model = FakeAnthropic()
        await model.start()
    root = tmp_path / "code"
    (root / "app").mkdir(parents=True, exist_ok=True)
    chat_id = GROUP if group else OWNER
    if group:
        tg.add_chat(GROUP, "supergroup", is_forum=True, title="Team")
    else:
        tg.add_chat(OWNER, "private", first_name=OWNER_NAME)
    tg.add_chat(STRANGER, "private", first_name="Mallory")
    config = make_config(
        tg=tg,
        root=root,
        db_url=f"sqlite:///{tmp_path}/threadline.db",
        chat_id=chat_id,
        extra=telegram_extra,
    )
    for key, value in (agent_extra or {}).items():
        setattr(config.agent, key, value)
    db = Database(config.storage.url, cipher=cipher)
    db.migrate()
    home = tmp_path / "claude-home"
    env = claude_env(home, model.base_url, **(claude_extra or {}))
    adapter = TelegramAdapter(config.telegram, owners_hint=config.access.owners)
    bridge = Bridge(
        config,
        db,
        {"telegram": adapter},
        agent_env=env,
        stream_interval=stream_interval,
        **(bridge_kwargs or {}),
    )
    await bridge.start()
    return Harness(
        tg=tg,
        model=model,
        bridge=bridge,
        db=db,
        config=config,
        root=root,
        chat_id=chat_id,
        home=home,
        env=env,
    )


async def stop_harness(h: Harness, *, keep_fakes: bool = False) -> None:
    await h.bridge.stop()
    h.db.close()
    if not keep_fakes:
        await h.tg.stop()
        await h.model.stop()
