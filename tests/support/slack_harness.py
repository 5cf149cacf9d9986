"""The Slack end-to-end harness: the whole daemon (bridge, outbox, the real Slack
adapter on slack-bolt, the real Claude Code CLI through claude-agent-sdk) wired to
the two local fakes — Slack (Web API, Socket Mode, signed HTTP delivery) and the
Anthropic Messages API.

A test talks as a person through `SlackHarness.say()` / `slash()` / `press()` and
reads what the bot did through the fake's transcript; it scripts the model with
`harness.model.on(...)`.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from adapters.slack.adapter import SlackAdapter
from bridge.app import Bridge
from bridge.config import Config, parse_config
from storage.db import Database
from tests.support.fakes.anthropic import FakeAnthropic
from tests.support.fakes.claude_env import claude_env
from tests.support.fakes.slack import Delivery, FakeMessage, FakeSlack

OWNER = "U0ADA00001"
OWNER_NAME = "Ada"
OWNER2 = "U0BOB00001"
OWNER2_NAME = "Bob"
STRANGER = "U0MAL00001"
CHANNEL = "C0THREADS1"
OTHER = "C0RANDOM01"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SlackHarness:
    slack: FakeSlack
    model: FakeAnthropic
    bridge: Bridge
    adapter: SlackAdapter
    db: Database
    config: Config
    root: Path
    home: Path
    channel: str = CHANNEL
    env: dict[str, str] = field(default_factory=dict)

    # --- acting as a person ---------------------------------------------------------

    def say(
        self, text: str, *, thread: str | None = None, user: str = OWNER, channel: str | None = None
    ) -> FakeMessage:
        return self.slack.user_message(channel or self.channel, user, text, thread_ts=thread)

    def slash(self, text: str, *, user: str = OWNER, channel: str | None = None) -> Delivery:
        return self.slack.slash(channel or self.channel, user, text)

    def press(
        self, msg: FakeMessage, label: str, *, user: str = OWNER, stale: bool = False
    ) -> Delivery:
        return self.slack.click(msg, label, user=user, stale=stale)

    # --- reading the transcript ---------------------------------------------------------

    def bot_messages(self, thread: str | None = None) -> list[FakeMessage]:
        return self.slack.messages(self.channel, thread)

    async def wait_msg(
        self, pred: Callable[[FakeMessage], bool], timeout: float = 30.0, thread: str | None = None
    ) -> FakeMessage:
        return await self.slack.wait_for(
            pred, channel=self.channel, thread_ts=thread, timeout=timeout
        )

    async def wait_text(
        self, needle: str, timeout: float = 30.0, thread: str | None = None
    ) -> FakeMessage:
        return await self.wait_msg(lambda m: needle in m.visible_text, timeout, thread)

    async def new_session(
        self, path: str, prompt: str = "", *, slash: bool = False, timeout: float = 30.0
    ) -> tuple[str, str]:
        """`!new PATH PROMPT` (or `/threadline new …`); returns (thread ts, session id)."""
        before = {m.ts for m in self.bot_messages()}
        command = f"new {path} {prompt}".strip()
        if slash:
            self.slash(command)
        else:
            self.say("!" + command)

        def bound() -> Any:
            for m in self.bot_messages():
                if m.ts not in before:
                    binding = self.db.bindings.by_thread_key(f"slack:{self.channel}:{m.ts}")
                    if binding is not None:
                        return m.ts, binding.session_id
            return None

        found: tuple[str, str] = await self.slack.wait_until(bound, timeout)
        return found

    def model_saw(self, needle: str) -> bool:
        return any(needle in json.dumps(r) for r in self.model.requests)


def make_config(
    *, slack: FakeSlack, root: Path, db_url: str, mode: str = "socket", http_port: int = 0
) -> Config:
    return parse_config(
        f"""
[storage]
url = "{db_url}"
[agent]
allowed_roots = ["{root}"]
permission_timeout_s = 600
[access]
owners = ["slack:{OWNER}", "slack:{OWNER2}"]
[slack]
enabled = true
bot_token = "{slack.bot_token}"
app_token = "{slack.app_token}"
signing_secret = "{slack.signing_secret}"
mode = "{mode}"
http_port = {http_port}
base_url = "{slack.base_url}"
channel = "{CHANNEL}"
"""
    )


def populate(slack: FakeSlack) -> None:
    """The people and channels every test has."""
    slack.add_user(OWNER, OWNER_NAME)
    slack.add_user(OWNER2, OWNER2_NAME)
    slack.add_user(STRANGER, "Mallory")
    slack.add_channel(CHANNEL, "threadline", members=[OWNER, OWNER2, STRANGER])
    slack.add_channel(OTHER, "random", members=[OWNER, STRANGER])
    slack.add_dm(OWNER)


async def start_slack_harness(
    tmp_path: Path,
    *,
    mode: str = "socket",
    agent_extra: dict[str, Any] | None = None,
    stream_interval: float = 0.3,
    slack: FakeSlack | None = None,
    model: FakeAnthropic | None = None,
    speed: float = 1.0,
    claude_extra: dict[str, str] | None = None,
    **fake_kw: Any,
) -> SlackHarness:
    """Start the fakes (unless given) and the bridge.  Stop with `stop_slack_harness`.

    `speed` scales Slack's rate limits in the fake and the adapter's pacing alike, so
    functional tests need not wait a second per message; the tests about rate limits
    run at `speed=1`, Slack's real numbers.  `claude_extra`: more environment for the
    Claude Code CLI (e.g. its retry count)."""
    if slack is None:
        slack = await FakeSlack(**fake_kw).start()
        populate(slack)
    if model is None:
        model = FakeAnthropic()
        await model.start()
    root = tmp_path / "code"
    (root / "app").mkdir(parents=True, exist_ok=True)
    port = free_port() if mode == "http" else 0
    config = make_config(
        slack=slack,
        root=root,
        db_url=f"sqlite:///{tmp_path}/threadline.db",
        mode=mode,
        http_port=port,
    )
    for key, value in (agent_extra or {}).items():
        setattr(config.agent, key, value)
    if mode == "http":
        slack.set_request_url(f"http://127.0.0.1:{port}/slack/events")
    db = Database(config.storage.url)
    db.migrate()
    home = tmp_path / "claude-home"
    env = claude_env(home, model.base_url, **(claude_extra or {}))
    adapter = SlackAdapter(config.slack, owners_hint=config.access.owners)
    if speed != 1.0:
        speed_up(adapter, slack, speed)
    bridge = Bridge(config, db, {"slack": adapter}, agent_env=env, stream_interval=stream_interval)
    await bridge.start()
    return SlackHarness(
        slack=slack,
        model=model,
        bridge=bridge,
        adapter=adapter,
        db=db,
        config=config,
        root=root,
        home=home,
        env=env,
    )


def speed_up(adapter: SlackAdapter, slack: FakeSlack, factor: float) -> None:
    caps = adapter.capabilities
    adapter.capabilities = replace(
        caps,
        per_chat_rate=caps.per_chat_rate * factor,
        global_rate=caps.global_rate * factor,
        draft_rate=caps.draft_rate * factor,
    )
    adapter.guard.scale(factor)
    slack.set_rate_limits(
        post_rate=slack.rate_limits.post_rate * factor,
        window_s=slack.rate_limits.window_s / factor,
    )


async def stop_slack_harness(h: SlackHarness, *, keep_fakes: bool = False) -> None:
    await h.bridge.stop()
    h.db.close()
    if not keep_fakes:
        await h.slack.stop()
        await h.model.stop()
