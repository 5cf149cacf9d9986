"""The inbound side of the Slack adapter: Bolt listeners → the bridge's sink.

Every listener acknowledges first (Bolt acknowledges events itself; slash commands
and button presses call `ack()` before anything else, because Slack shows the person
an error after 3 s), then drops a delivery it has already handled — Slack repeats an
event it thinks went unacknowledged (HTTP ``X-Slack-Retry-Num``, Socket Mode
``retry_attempt``), with the same event id or trigger id — then parses it
(`adapters.slack.inbound`), wraps shared files as lazy attachments (the bridge
downloads them only for an owner), and hands the result to the sink.
Messages in channels other than ``[slack] channel`` are refused by `allowed()` (the
bridge asks through `accepts_chat`, drops them and writes an audit row; DMs and slash
commands are always ours); strangers are passed on, because the bridge refuses
them itself and writes the audit row.  It also remembers people's display names
(``users.info``) and who last wrote in each thread (a native stream's recipient).

With a receive `gate` (the gateway's `may_send`: several hosts share the app, one is
its gateway), a delivery reaching this process while the gate is shut — a deposed
gateway waking with envelopes its connection took while it stalled — is answered
503 before any listener runs: Bolt then sends no Socket Mode ack (and HTTP mode
answers 503), so Slack delivers the event again, to the gateway's connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from adapters import payload
from adapters.base import InboundSink
from adapters.messages import Inbound, ThreadRef
from adapters.slack import client, inbound
from adapters.slack.config import SlackConfig
from adapters.slack.errors import SlackErrors

log = logging.getLogger(__name__)

SEEN_MAX = 5000


class Receiver:
    def __init__(
        self,
        config: SlackConfig,
        errors: SlackErrors,
        web: Callable[[], AsyncWebClient],
        spawn: Callable[[Awaitable[Any]], None],
    ) -> None:
        self.config = config
        self.errors = errors
        self._web = web
        self._spawn = spawn
        self.sink: InboundSink | None = None
        # Whether this process may take deliveries now (the gateway's `may_send`).
        self.gate: Callable[[], bool] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.bot_user_id = ""
        self.names: dict[str, str] = {}
        self.last_sender: dict[str, str] = {}  # thread key → user id
        self._seen: OrderedDict[str, None] = OrderedDict()

    def register(self, app: AsyncApp) -> None:
        """Our listeners first; then catch-alls that acknowledge anything else, so
        Slack never retries or shows an error for what we don't use."""
        app.middleware(self.gate_deliveries)
        app.event("message")(self.on_message)
        app.command(inbound.SLASH_COMMAND)(self.on_command)
        app.block_action(client.ANY)(self.on_action)
        for register in (app.command, app.action, app.shortcut, app.view, app.options):
            register(client.ANY)(self.ack_only)
        app.event(client.ANY)(self.ignore)

    async def gate_deliveries(
        self, body: dict[str, Any], next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        """Bolt middleware: no listener and no ack while the gate is shut."""
        if self.gate is None or self.gate():
            await next()
            return None
        log.warning(
            "a Slack delivery (%s) reached this host after it stopped being the gateway;"
            " not acknowledged, so Slack delivers it again to the gateway",
            payload.mapping(body.get("event")).get("type") or body.get("type") or "?",
        )
        return BoltResponse(status=503, body="")

    def first_time(self, body: dict[str, Any]) -> bool:
        key = inbound.dedupe_key(body)
        if key is None:
            return True
        if key in self._seen:
            log.info("ignoring a repeated Slack delivery (%s)", key)
            return False
        self._seen[key] = None
        while len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
        return True

    def allowed(self, thread: ThreadRef, chat_type: str) -> bool:
        channel = self.config.channel
        return chat_type == "private" or not channel or thread.chat_id == channel

    async def on_message(self, body: dict[str, Any]) -> None:
        try:
            if not self.first_time(body):
                return
            parsed = inbound.parse_message_event(
                payload.mapping(body.get("event")), bot_user_id=self.bot_user_id, names=self.names
            )
            if parsed is None:
                return
            msg = parsed.message  # other channels are dropped (and audited) by the bridge
            if msg.sender.user_id not in self.names:
                self._spawn(self.lookup_name(msg.sender.user_id))
            if parsed.files and self.session is not None:
                session = self.session  # the bridge downloads them, only for an owner
                attachments = tuple(
                    client.attachment(
                        session,
                        self.config.bot_token,
                        ref,
                        self.errors.redact,
                        self.config.base_url,
                    )
                    for ref in parsed.files
                )
                msg = replace(msg, attachments=attachments)
            self.last_sender[msg.thread.key] = msg.sender.user_id
            await self.deliver(msg)
        except Exception:
            log.exception("dropping a Slack message event that could not be handled")

    async def on_command(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        try:
            if not self.first_time(body):
                return
            name = self.names.get(str(body.get("user_id")), "")
            msg = inbound.parse_slash_command(body, name)
            if msg is not None:
                await self.deliver(msg)
        except Exception:
            log.exception("dropping a slash command that could not be handled")

    async def on_action(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        try:
            if not self.first_time(body):
                return
            user = payload.ident(payload.mapping(body.get("user")).get("id")) or ""
            name = self.names.get(user) or await self.lookup_name(user)
            press = inbound.parse_block_actions(body, name)
            if press is None:
                log.debug("dropping a block action without a usable button value")
                return
            self.last_sender[press.thread.key] = press.sender.user_id
            await self.deliver(press)
        except Exception:
            log.exception("dropping a button press that could not be handled")

    async def ack_only(self, ack: AsyncAck) -> None:
        await ack()

    async def ignore(self, body: dict[str, Any]) -> None:
        log.debug("ignoring Slack event %r", payload.mapping(body.get("event")).get("type"))

    async def deliver(self, event: Inbound) -> None:
        if self.sink is None:
            return
        try:
            await self.sink(event)
        except Exception:
            log.exception("the bridge failed on an inbound Slack event")

    async def lookup_name(self, user_id: str) -> str:
        """A person's display name (``users.info``, cached); "" if unknown."""
        if not user_id:
            return ""
        try:
            resp = await asyncio.wait_for(self._web().users_info(user=user_id), 5)
        except Exception as e:
            log.debug("users.info %s failed: %s", user_id, self.errors.translate(e))
            return ""
        user = resp.get("user") or {}
        profile = user.get("profile") or {}
        name = profile.get("display_name") or profile.get("real_name") or user.get("name")
        self.names[user_id] = str(name or user_id)
        return self.names[user_id]
