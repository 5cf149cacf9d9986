"""The person's side of a `FakeSlack` (Python methods): messages, edits, joins, other
bots, slash commands and clicks sent to the app, and the transcript tests read and wait on."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from .formatting import slack_escape
from .state import (
    APP_ID,
    BOT_USER,
    TEAM_DOMAIN,
    TEAM_ID,
    ApiCall,
    Delivery,
    Ephemeral,
    FakeFile,
    FakeMessage,
    Version,
)


class PersonMixin:
    """The person acting in the workspace; the transcript."""

    # --- the person -------------------------------------------------------------

    def _ts(self) -> str:
        n = next(self._seq)
        return f"{self._epoch + n // 1_000_000}.{n % 1_000_000:06d}"

    def user_message(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        raw: bool = False,
        files: Iterable[tuple[str, str, bytes]] = (),
    ) -> FakeMessage:
        """The person posts `text` (escaped as Slack does unless `raw`); `files` are
        (name, mimetype, data) shared with it."""
        body = text if raw else slack_escape(text)
        msg = FakeMessage(channel, self._ts(), user, [Version(body, [], time.time())], thread_ts)
        shared = []
        for name, mime, data in files:
            f = FakeFile("F" + secrets.token_hex(5).upper(), name, len(data), data, True, name)
            self.files[f.id] = f
            msg.files.append(f)
            shared.append(
                {
                    "id": f.id,
                    "name": name,
                    "title": name,
                    "mimetype": mime,
                    "size": len(data),
                    "url_private": f"{self.url}/files/{f.id}/{name}",
                    "url_private_download": f"{self.url}/files/{f.id}/{name}",
                }
            )
        if shared:
            msg.subtype = "file_share"
        self.transcript.append(msg)
        event = self._message_event(msg)
        if shared:
            event["files"] = shared
        self._event(event)
        self._fire()
        return msg

    def _message_event(self, msg: FakeMessage) -> dict[str, Any]:
        ch = self.channels[msg.channel]
        event: dict[str, Any] = {
            "type": "message",
            "channel": msg.channel,
            "user": msg.user,
            "text": msg.text,
            "ts": msg.ts,
            "event_ts": msg.ts,
            "channel_type": ch.channel_type,
            "team": TEAM_ID,
            "client_msg_id": secrets.token_hex(8),
        }
        if msg.subtype:
            event["subtype"] = msg.subtype
        if msg.thread_ts:
            event["thread_ts"] = msg.thread_ts
            parent = self.message(msg.channel, msg.thread_ts)
            event["parent_user_id"] = parent.user
        return event

    def user_edit(self, msg: FakeMessage, text: str) -> None:
        msg.versions.append(Version(slack_escape(text), [], time.time()))
        event = {
            "type": "message",
            "subtype": "message_changed",
            "channel": msg.channel,
            "hidden": True,
            "message": msg.to_api(),
            "ts": self._ts(),
            "event_ts": self._ts(),
            "channel_type": self.channels[msg.channel].channel_type,
        }
        self._event(event)

    def user_join(self, channel: str, user: str) -> None:
        self.channels[channel].members.add(user)
        ts = self._ts()
        self._event(
            {
                "type": "message",
                "subtype": "channel_join",
                "channel": channel,
                "user": user,
                "text": f"<@{user}> has joined the channel",
                "ts": ts,
                "event_ts": ts,
                "channel_type": self.channels[channel].channel_type,
            }
        )

    def bot_message(self, channel: str, text: str, bot_id: str = "B0OTHER001") -> None:
        """Another app posts into the channel."""
        ts = self._ts()
        self._event(
            {
                "type": "message",
                "subtype": "bot_message",
                "bot_id": bot_id,
                "channel": channel,
                "text": text,
                "ts": ts,
                "event_ts": ts,
                "channel_type": self.channels[channel].channel_type,
            }
        )

    def _event(self, event: dict[str, Any]) -> Delivery:
        body = {
            "token": "verification-token",
            "team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": "Ev" + secrets.token_hex(6).upper(),
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        return self._send("events_api", body)

    def slash(
        self, channel: str, user: str, text: str, *, command: str = "/threadline"
    ) -> Delivery:
        u = self.users.get(user, {"name": user})
        return self._send(
            "slash_commands",
            {
                "token": "verification-token",
                "team_id": TEAM_ID,
                "team_domain": TEAM_DOMAIN,
                "channel_id": channel,
                "channel_name": self.channels[channel].name if channel in self.channels else "",
                "user_id": user,
                "user_name": u["name"],
                "command": command,
                "text": text,
                "api_app_id": APP_ID,
                "is_enterprise_install": "false",
                "response_url": f"{self.url}/response/{secrets.token_hex(6)}",
                "trigger_id": f"{next(self._seq)}.{secrets.token_hex(6)}",
            },
        )

    def click(
        self,
        msg: FakeMessage,
        label: str,
        *,
        user: str,
        value: str | None = None,
        action_id: str | None = None,
        stale: bool = False,
    ) -> Delivery:
        """The person presses a button of `msg` (with `stale`, one its earlier version
        showed); `value` / `action_id` forge the payload (a crafted request),
        otherwise they are the button's own."""
        button = msg.button(label, stale=stale) if value is None else {"text": {"text": label}}
        u = self.users.get(user, {"name": user})
        container: dict[str, Any] = {
            "type": "message",
            "message_ts": msg.ts,
            "channel_id": msg.channel,
            "is_ephemeral": False,
        }
        if msg.thread_ts:
            container["thread_ts"] = msg.thread_ts
        action = {
            "action_id": action_id or button.get("action_id", "forged"),
            "block_id": "b" + secrets.token_hex(3),
            "text": {"type": "plain_text", "text": button["text"]["text"], "emoji": True},
            "value": value if value is not None else button.get("value"),
            "type": "button",
            "action_ts": f"{time.time():.6f}",
        }
        if "style" in button:
            action["style"] = button["style"]
        return self._send(
            "interactive",
            {
                "type": "block_actions",
                "user": {"id": user, "username": u["name"], "name": u["name"], "team_id": TEAM_ID},
                "api_app_id": APP_ID,
                "token": "verification-token",
                "container": container,
                "trigger_id": f"{next(self._seq)}.{secrets.token_hex(6)}",
                "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
                "is_enterprise_install": False,
                "channel": {"id": msg.channel, "name": self.channels[msg.channel].name},
                "message": msg.to_api(),
                "state": {"values": {}},
                "response_url": f"{self.url}/response/{secrets.token_hex(6)}",
                "actions": [action],
            },
        )

    # --- transcript ----------------------------------------------------------------

    def messages(
        self,
        channel: str,
        thread_ts: str | None = None,
        *,
        by_bot: bool | None = True,
        include_deleted: bool = False,
        streams: bool = False,
    ) -> list[FakeMessage]:
        """Top-level messages of `channel`, or the replies in thread `thread_ts`;
        by default the bot's own, not deleted, no stream messages."""
        out = []
        for m in self.transcript:
            if m.channel != channel or (m.deleted and not include_deleted):
                continue
            if (m.stream and not streams) or (by_bot is not None and m.is_bot != by_bot):
                continue
            in_thread = m.thread_ts is not None and m.thread_ts != m.ts
            if (thread_ts is None and not in_thread) or (in_thread and m.thread_ts == thread_ts):
                out.append(m)
        return out

    def message(self, channel: str, ts: str) -> FakeMessage:
        for m in self.transcript:
            if m.channel == channel and m.ts == ts:
                return m
        raise KeyError(f"no message {channel}/{ts}")

    def stream_messages(self, channel: str | None = None) -> list[FakeMessage]:
        return [m for m in self.transcript if m.stream and channel in (None, m.channel)]

    def ephemerals(self, user: str | None = None) -> list[Ephemeral]:
        return [e for e in self.ephemerals_log if user in (None, e.user)]

    def calls_to(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method]

    async def wait_until(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Until `fn()` is truthy (re-checked on every change and every 50 ms)."""
        deadline = time.monotonic() + timeout
        while True:
            value = fn()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met in {timeout} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(0.05, remaining))

    async def wait_for(
        self,
        pred: Callable[[FakeMessage], bool],
        *,
        channel: str | None = None,
        thread_ts: str | None = None,
        any_thread: bool = False,
        timeout: float = 30.0,
    ) -> FakeMessage:
        """The first bot message (not deleted) matching `pred`, waiting for it."""

        def find() -> FakeMessage | None:
            for m in self.transcript:
                if not m.is_bot or m.deleted or m.stream:
                    continue
                if channel is not None and m.channel != channel:
                    continue
                in_thread = m.thread_ts is not None and m.thread_ts != m.ts
                if not any_thread and (m.thread_ts if in_thread else None) != thread_ts:
                    continue
                if pred(m):
                    return m
            return None

        try:
            found: FakeMessage = await self.wait_until(find, timeout)
        except TimeoutError:
            seen = [m for m in self.transcript if m.is_bot and channel in (None, m.channel)]
            raise TimeoutError(
                f"no matching message in {timeout} s; bot said: {seen[-8:]}"
            ) from None
        return found
