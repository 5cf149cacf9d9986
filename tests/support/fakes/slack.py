"""A local fake of Slack that the *real* slack-bolt / slack_sdk talk to.

Start it, point an ``AsyncWebClient(base_url=fake.base_url)`` (and so Bolt and Socket
Mode) at it, and drive a "person" from the test::

    async with FakeSlack() as fake:
        general = fake.add_channel("C0GENERAL", "general", members=[ADA])
        ...                                              # start the app under test
        fake.user_message(general, ADA, "!new ~/code/app hi")
        reply = await fake.wait_for(lambda m: "session" in m.visible_text, channel=general)
        fake.click(reply, "Allow", user=ADA)

What it models (real HTTP and WebSocket on 127.0.0.1, a free port, aiohttp.web):

* Web API: ``POST|GET /api/<method>`` with query, form, multipart or JSON bodies
  (Slack accepts all), the token as ``Authorization: Bearer`` or a ``token``
  parameter; answers ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}`` with
  HTTP 200, ``x-oauth-scopes`` on every bot-token answer, 429 with ``Retry-After``
  when rate limited, 5xx on outages.  Methods: ``auth.test``, ``apps.connections.open``
  (app token only), ``chat.postMessage``, ``chat.update``, ``chat.delete``,
  ``chat.postEphemeral``, ``chat.startStream`` / ``appendStream`` / ``stopStream``,
  ``files.getUploadURLExternal`` + the upload URL + ``files.completeUploadExternal``
  (what ``files_upload_v2`` does), ``assistant.threads.setStatus``,
  ``conversations.info``, ``users.info``; anything else is ``unknown_method``.
* Limits and strict errors (TESTING.md): 50 blocks, section text 3000, context 10
  elements, actions 25 elements, button text 75 / value 2000 / action_id 255 (unique
  per message), a known block type and text-object shape (else ``invalid_blocks``),
  more than 12,000 characters of block text (button labels included) →
  ``msg_blocks_too_long``, ``text`` over 40,000 → ``msg_too_long``, neither text nor
  blocks → ``no_text``; ``channel_not_found``, ``not_in_channel``, ``is_archived``,
  ``thread_not_found`` (a reply to a missing or deleted parent), ``message_not_found``,
  ``cant_update_message``, ``invalid_auth`` / ``not_authed``, ``missing_scope``.
  Streams: 12,000 markdown characters per call, ``recipient_user_id`` and
  ``recipient_team_id`` required (``missing_recipient_*``), a stream ends after
  ``stream_lifetime`` s (``message_not_in_streaming_state``); ``streaming=False``
  makes ``chat.startStream`` answer ``feature_not_enabled`` (fake's wording).
* Rate limits (:class:`RateLimits`, on by default): per channel a token bucket for new
  messages (``chat.postMessage`` and file shares; 1/s, burst 3); per workspace
  sliding minutes for ``chat.update`` / ``chat.delete`` (50), ``chat.appendStream``
  (100), ``chat.startStream`` / ``chat.stopStream`` (20).  Only successful calls count.
* Socket Mode: ``apps.connections.open`` → ``ws://…/link/?ticket=…`` (single use);
  ``hello``; envelopes ``events_api`` / ``interactive`` / ``slash_commands`` with
  ``envelope_id``; acks (``{"envelope_id", "payload"?}``, accepted on any connection);
  an ``events_api`` envelope not acked within ``ack_timeout`` or left unacked on a
  closed connection is redelivered (``retry_attempt``, at most 3 retries);
  :meth:`FakeSlack.refresh` sends ``{"type": "disconnect", "reason":
  "refresh_requested"}``, routes nothing more to that connection and closes it after
  ``disconnect_grace`` s.
* HTTP mode (:meth:`FakeSlack.set_request_url`): events as JSON, interactivity as
  form ``payload=``, slash commands as form fields, signed with ``X-Slack-Signature``
  / ``X-Slack-Request-Timestamp``; an event not answered 2xx within ``ack_timeout`` is
  retried with ``X-Slack-Retry-Num`` / ``X-Slack-Retry-Reason``;
  :meth:`FakeSlack.lose_acks` makes the next answers count as lost (forcing retries);
  :meth:`FakeSlack.deliver_raw` posts any body with any signature.
* A person (Python methods): :meth:`user_message`, :meth:`user_edit`,
  :meth:`user_join`, :meth:`bot_message`, :meth:`slash`, :meth:`click`; a transcript:
  :meth:`messages`, :meth:`message`, :meth:`ephemerals`, ``files``, ``downloads``, ``statuses``,
  ``calls``, ``count_429``, ``deliveries``, :meth:`wait_for`, :meth:`wait_until`;
  faults: :meth:`fail_next`, :meth:`set_outage`.

Not modelled: OAuth and installs, user tokens, Enterprise Grid, modals and views,
shortcuts, message attachments (legacy), reactions, pins, scheduled messages, rich
text input from the person (``text`` only), unfurls, the exact text of errors Slack
does not document (marked "fake's wording").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import math
import re
import secrets
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp import web

log = logging.getLogger(__name__)

TEAM_ID = "T0TEAM0001"
TEAM_DOMAIN = "fake-workspace"
APP_ID = "A0APP00001"
BOT_USER = "U0BOT00001"
BOT_ID = "B0BOT00001"
BOT_NAME = "threadline"
DEFAULT_SCOPES = (
    "chat:write",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "channels:read",
    "groups:read",
    "im:read",
    "commands",
    "files:read",
    "files:write",
    "users:read",
    "assistant:write",
)
_SCOPE_OF = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.delete": "chat:write",
    "chat.postEphemeral": "chat:write",
    "chat.startStream": "chat:write",
    "chat.appendStream": "chat:write",
    "chat.stopStream": "chat:write",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "users.info": "users:read",
    "conversations.info": "channels:read",
    "assistant.threads.setStatus": "assistant:write",
}
Kind = Literal["events_api", "interactive", "slash_commands"]


class ApiError(Exception):
    def __init__(self, error: str, status: int = 200, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = extra


# --- transcript objects ----------------------------------------------------------


def slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn_plain(text: str) -> str:
    """What a person reads: fences dropped, links as their labels, escapes decoded
    (formatting marks like ``*`` are kept)."""
    text = "\n".join(line for line in text.split("\n") if line.strip() != "```")

    def link(m: re.Match[str]) -> str:
        inner = m.group(1)
        target, _, label = inner.partition("|")
        if label:
            return label
        if target.startswith(("@", "#")):
            return target
        if target.startswith("!"):
            return "@" + target[1:]
        return target

    text = re.sub(r"<([^<>]*)>", link, text)
    return (
        text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace("\u200b", "")
    )


@dataclass
class Version:
    text: str
    blocks: list[dict[str, Any]]
    at: float


@dataclass
class FakeFile:
    id: str
    name: str
    length: int
    data: bytes = b""
    uploaded: bool = False
    title: str = ""
    channel: str | None = None
    thread_ts: str | None = None
    comment: str = ""


@dataclass
class FakeMessage:
    channel: str
    ts: str
    user: str
    versions: list[Version]
    thread_ts: str | None = None
    bot_id: str | None = None
    subtype: str | None = None
    deleted: bool = False
    stream: bool = False
    stream_state: str = ""  # "streaming" | "stopped"
    stream_started: float = 0.0
    stream_chunks: list[str] = field(default_factory=list)
    files: list[FakeFile] = field(default_factory=list)

    def __repr__(self) -> str:
        kind = "stream" if self.stream else ("bot" if self.bot_id else "user")
        return f"<FakeMessage {kind} {self.channel}/{self.ts} {self.visible_text[:60]!r}>"

    @property
    def text(self) -> str:
        return self.versions[-1].text

    @property
    def blocks(self) -> list[dict[str, Any]]:
        return self.versions[-1].blocks

    @property
    def history(self) -> list[Version]:
        return list(self.versions)

    @property
    def edit_count(self) -> int:
        return len(self.versions) - 1

    @property
    def is_bot(self) -> bool:
        return self.bot_id is not None

    @property
    def mrkdwn(self) -> str:
        return block_texts(self.blocks) if self.blocks else self.text

    @property
    def visible_text(self) -> str:
        if self.stream:
            return self.text
        return mrkdwn_plain(self.mrkdwn)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        return [
            e
            for b in self.blocks
            if b.get("type") == "actions"
            for e in b.get("elements", ())
            if e.get("type") == "button"
        ]

    @property
    def button_labels(self) -> list[str]:
        return [b["text"]["text"] for b in self.buttons]

    def button(self, label: str, *, stale: bool = False) -> dict[str, Any]:
        """The button labelled (or partly labelled) `label`; with `stale`, also one
        an earlier version had (what a client that has not refreshed still shows)."""
        versions = reversed(self.versions) if stale else [self.versions[-1]]
        for v in versions:
            for b in (
                e for blk in v.blocks if blk.get("type") == "actions" for e in blk["elements"]
            ):
                if label == b["text"]["text"] or label in b["text"]["text"]:
                    return dict(b)
        raise KeyError(f"no button {label!r} in {self.button_labels}")

    def to_api(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "message", "ts": self.ts, "text": self.text, "user": self.user}
        if self.blocks:
            d["blocks"] = self.blocks
        if self.bot_id:
            d.update(bot_id=self.bot_id, app_id=APP_ID)
        if self.subtype:
            d["subtype"] = self.subtype
        if self.thread_ts:
            d["thread_ts"] = self.thread_ts
        return d


def block_texts(blocks: Iterable[Mapping[str, Any]]) -> str:
    parts: list[str] = []
    for b in blocks:
        if b.get("type") in ("section", "header", "markdown"):
            t = b.get("text")
            parts.append(t.get("text", "") if isinstance(t, Mapping) else str(t or ""))
        elif b.get("type") == "context":
            parts.extend(e.get("text", "") for e in b.get("elements", ()) if "text" in e)
    return "\n".join(parts)


@dataclass
class Ephemeral:
    channel: str
    user: str
    text: str
    thread_ts: str | None
    at: float


@dataclass
class StatusCall:
    channel: str
    thread_ts: str
    status: str
    at: float


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]
    at: float
    error: str | None = None
    status: int = 200


@dataclass
class Fault:
    method: str
    error: str
    status: int
    retry_after: float | None
    times: int | None
    match: Callable[[dict[str, Any]], bool] | None
    delay: float
    drop: bool


@dataclass
class RateLimits:
    enabled: bool = True
    post_rate: float = 1.0  # new messages per second per channel
    post_burst: int = 3
    window_s: float = 60.0  # the "minute" of the per-minute limits (tests may shorten it)
    per_minute: dict[str, int] = field(
        default_factory=lambda: {
            "chat.update": 50,
            "chat.delete": 50,
            "chat.appendStream": 100,
            "chat.startStream": 20,
            "chat.stopStream": 20,
        }
    )


@dataclass
class Channel:
    id: str
    name: str
    members: set[str]
    is_im: bool = False
    is_private: bool = False
    is_archived: bool = False
    im_user: str = ""

    @property
    def channel_type(self) -> str:
        return "im" if self.is_im else ("group" if self.is_private else "channel")


@dataclass
class Delivery:
    """One event, interaction or slash command on its way to the app."""

    id: str
    kind: Kind
    payload: dict[str, Any]
    attempt: int = 0
    retry_reason: str = ""
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    ack_payload: Any = None
    failed: bool = False
    log: list[str] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    conn: int | None = None
    sent_at: float = 0.0  # monotonic time of the latest attempt
    acked_at: float = 0.0

    @property
    def ack_seconds(self) -> float | None:
        """How long the app took to acknowledge the latest attempt."""
        return self.acked_at - self.sent_at if self.acked.is_set() else None


@dataclass
class _Conn:
    id: int
    ws: web.WebSocketResponse
    draining: bool = False


class _Bucket:
    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, float(burst), now

    def wait(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1


class _Window:
    def __init__(self, limit: int, span: float = 60.0) -> None:
        self.limit, self.span, self.times = limit, span, deque[float]()

    def wait(self, now: float) -> float:
        while self.times and self.times[0] <= now - self.span:
            self.times.popleft()
        return 0.0 if len(self.times) < self.limit else self.times[0] + self.span - now

    def take(self, now: float) -> None:
        self.times.append(now)


# --- Block Kit validation ---------------------------------------------------------


def _text_obj(obj: Any, where: str, limit: int, errors: list[str], plain: bool = False) -> int:
    if not isinstance(obj, Mapping) or obj.get("type") not in ("mrkdwn", "plain_text"):
        errors.append(f"{where}: must be a text object")
        return 0
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        errors.append(f"{where}.text: must be a non-empty string")
        return 0
    if plain and obj["type"] != "plain_text":
        errors.append(f"{where}: must be plain_text")
    if obj["type"] == "mrkdwn" and "emoji" in obj:
        errors.append(f"{where}: emoji is only allowed in plain_text")
    if len(text) > limit:
        errors.append(f"{where}.text: must be less than {limit + 1} characters")
    return len(text)


def _button(e: Any, where: str, action_ids: set[str], errors: list[str]) -> int:
    if not isinstance(e, Mapping) or e.get("type") != "button":
        errors.append(f"{where}: unsupported element")
        return 0
    n = _text_obj(e.get("text"), f"{where}.text", 75, errors, plain=True)
    action_id = e.get("action_id")
    if action_id is not None:
        if not isinstance(action_id, str) or len(action_id) > 255:
            errors.append(f"{where}.action_id: must be less than 256 characters")
        elif action_id in action_ids:
            errors.append(f"{where}.action_id: duplicate action_id {action_id!r}")
        else:
            action_ids.add(action_id)
    value = e.get("value")
    if value is not None and (not isinstance(value, str) or len(value) > 2000):
        errors.append(f"{where}.value: must be less than 2001 characters")
    if e.get("style") not in (None, "primary", "danger"):
        errors.append(f"{where}.style: must be primary or danger")
    return n


def check_blocks(blocks: Any) -> tuple[list[str], int]:
    """(errors, total text characters) of a `blocks` array."""
    errors: list[str] = []
    if not isinstance(blocks, list):
        return ["blocks: must be an array"], 0
    if len(blocks) > 50:
        errors.append("blocks: no more than 50 items allowed")
    total = 0
    block_ids: set[str] = set()
    action_ids: set[str] = set()
    for i, b in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(b, Mapping):
            errors.append(f"{where}: must be an object")
            continue
        bid = b.get("block_id")
        if bid is not None:
            if not isinstance(bid, str) or len(bid) > 255 or bid in block_ids:
                errors.append(f"{where}.block_id: invalid or duplicate")
            block_ids.add(str(bid))
        kind = b.get("type")
        if kind == "section":
            if "text" in b or "fields" not in b:
                total += _text_obj(b.get("text"), f"{where}.text", 3000, errors)
            for j, f in enumerate(b.get("fields") or ()):
                total += _text_obj(f, f"{where}.fields[{j}]", 2000, errors)
            if "accessory" in b and b["accessory"].get("type") == "button":
                total += _button(b["accessory"], f"{where}.accessory", action_ids, errors)
        elif kind == "context":
            elements = b.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                errors.append(f"{where}.elements: must have 1-10 items")
                continue
            for j, e in enumerate(elements):
                if isinstance(e, Mapping) and e.get("type") == "image":
                    continue
                total += _text_obj(e, f"{where}.elements[{j}]", 3000, errors)
        elif kind == "actions":
            elements = b.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
                errors.append(f"{where}.elements: must have 1-25 items")
                continue
            for j, e in enumerate(elements):
                total += _button(e, f"{where}.elements[{j}]", action_ids, errors)
        elif kind == "header":
            total += _text_obj(b.get("text"), f"{where}.text", 150, errors, plain=True)
        elif kind == "markdown":
            text = b.get("text")
            if not isinstance(text, str) or not text or len(text) > 12_000:
                errors.append(f"{where}.text: must be 1-12000 characters")
            else:
                total += len(text)
        elif kind not in ("divider", "rich_text", "image"):
            errors.append(f"{where}.type: unsupported type {kind!r}")
    return errors, total


# --- the server ------------------------------------------------------------------


class FakeSlack:
    """One workspace with one app (bot).  ``start()`` binds 127.0.0.1 on a free port."""

    MAX_BLOCK_TEXT = 12_000
    MAX_TEXT = 40_000
    MAX_STREAM_CALL = 12_000

    def __init__(
        self,
        *,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        streaming: bool = True,
        ack_timeout: float = 3.0,
        retry_delays: tuple[float, ...] = (0.0, 1.0, 5.0),
        stream_lifetime: float = 300.0,
        disconnect_grace: float = 2.0,
    ) -> None:
        self.bot_token = "xoxb-" + secrets.token_hex(12)
        self.app_token = "xapp-1-" + secrets.token_hex(12)
        self.signing_secret = secrets.token_hex(16)
        self.scopes = list(scopes)
        self.streaming = streaming
        self.ack_timeout = ack_timeout
        self.retry_delays = retry_delays
        self.stream_lifetime = stream_lifetime
        self.disconnect_grace = disconnect_grace
        self.rate_limits = RateLimits()
        self.channels: dict[str, Channel] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.transcript: list[FakeMessage] = []
        self.ephemerals_log: list[Ephemeral] = []
        self.statuses: list[StatusCall] = []
        self.files: dict[str, FakeFile] = {}
        self.calls: list[ApiCall] = []
        self.downloads: list[str] = []  # ids of files fetched with the bot token
        self.deliveries: list[Delivery] = []
        self.count_429 = 0
        self.hello_count = 0
        self.request_url: str | None = None
        self._faults: list[Fault] = []
        self._outage = False
        self._lost_acks = 0
        self._seq = itertools.count(1)
        self._epoch = int(time.time())
        self._tickets: set[str] = set()
        self._conns: list[_Conn] = []
        self._conn_ids = itertools.count(1)
        self._pending: dict[str, Delivery] = {}  # envelope id → unacked socket delivery
        self._queue: asyncio.Queue[Delivery] | None = None
        self._changed = asyncio.Event()
        self._buckets: dict[str, _Bucket] = {}
        self._windows: dict[str, _Window] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""
        self.add_user(BOT_USER, BOT_NAME, is_bot=True)

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> FakeSlack:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/{file_id}", self._handle_upload)
        app.router.add_get("/files/{file_id}/{name}", self._handle_download)
        app.router.add_get("/link/", self._handle_ws)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._session = aiohttp.ClientSession()
        self._queue = asyncio.Queue()
        self._spawn(self._dispatcher())
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in list(self._conns):
            await conn.ws.close()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/"

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _fire(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # --- the world --------------------------------------------------------------

    def add_user(
        self, user_id: str, name: str, *, real_name: str = "", is_bot: bool = False
    ) -> str:
        self.users[user_id] = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name.lower(),
            "real_name": real_name or name,
            "is_bot": is_bot,
            "deleted": False,
            "profile": {"display_name": name, "real_name": real_name or name},
        }
        return user_id

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        members: Iterable[str] = (),
        private: bool = False,
        bot_member: bool = True,
    ) -> str:
        people = set(members) | ({BOT_USER} if bot_member else set())
        self.channels[channel_id] = Channel(channel_id, name, people, is_private=private)
        return channel_id

    def add_dm(self, user_id: str, channel_id: str | None = None) -> str:
        cid = channel_id or "D" + user_id[1:]
        self.channels[cid] = Channel(cid, "", {user_id, BOT_USER}, is_im=True, im_user=user_id)
        return cid

    # --- faults and limits ------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        error: str = "internal_error",
        status: int = 200,
        retry_after: float | None = None,
        times: int | None = 1,
        match: Callable[[dict[str, Any]], bool] | None = None,
        delay: float = 0.0,
        drop: bool = False,
    ) -> None:
        """The next `times` calls of `method` ("*": any method; `times` None: until
        cleared) matching `match` fail: an ``error`` answer with HTTP ``status`` (5xx:
        an HTML error page), a 429 with ``Retry-After`` when ``retry_after`` is set,
        after ``delay`` seconds (a hung request); ``drop`` aborts the connection
        instead (a connection reset) — the call never takes effect."""
        self._faults.append(Fault(method, error, status, retry_after, times, match, delay, drop))

    def clear_faults(self) -> None:
        self._faults.clear()

    def set_outage(self, on: bool) -> None:
        self._outage = on

    def lose_acks(self, n: int = 1) -> None:
        """The app's next `n` answers to deliveries are lost on the way back."""
        self._lost_acks += n

    def set_rate_limits(self, **changes: Any) -> RateLimits:
        for key, value in changes.items():
            setattr(self.rate_limits, key, value)
        self._buckets.clear()
        self._windows.clear()
        return self.rate_limits

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

    # --- Web API -------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.method != "POST" or not request.can_read_body:
            return params
        if request.content_type == "application/json":
            with contextlib.suppress(ValueError):
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
        else:
            post = await request.post()
            params.update({k: v for k, v in post.items() if isinstance(v, str)})
        return params

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params = await self._params(request)
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else str(params.pop("token", "") or "")
        params.pop("token", None)
        call = ApiCall(method, params, time.time())
        self.calls.append(call)
        headers = {"x-oauth-scopes": ",".join(self.scopes)} if token == self.bot_token else {}
        try:
            if self._outage:
                raise ApiError("service_unavailable", status=503)
            fault = self._take_fault(method, params)
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.drop and request.transport is not None:
                    request.transport.abort()
                    return web.Response(status=500)
                extra = {"retry_after": fault.retry_after} if fault.retry_after else {}
                raise ApiError(fault.error, status=fault.status, **extra)
            self._auth(method, token)
            handler = getattr(self, "_api_" + method.replace(".", "_"), None)
            if handler is None:
                raise ApiError("unknown_method")
            scope = _SCOPE_OF.get(method)
            if scope and scope not in self.scopes:
                raise ApiError("missing_scope", needed=scope, provided=",".join(self.scopes))
            commit = self._check_rate(method, params)
            result = await handler(params)
            commit()
        except ApiError as e:
            call.error, call.status = e.error, e.status
            return self._error(e, headers)
        self._fire()
        return web.json_response({"ok": True, **result}, headers=headers)

    def _error(self, e: ApiError, headers: dict[str, str]) -> web.Response:
        if e.status == 429:
            self.count_429 += 1
            retry = max(1, math.ceil(float(e.extra.get("retry_after") or 1)))
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={**headers, "Retry-After": str(retry)},
            )
        if e.status >= 500:
            return web.Response(status=e.status, text="upstream error", content_type="text/html")
        extra = {k: v for k, v in e.extra.items() if k != "retry_after"}
        return web.json_response({"ok": False, "error": e.error, **extra}, headers=headers)

    def _take_fault(self, method: str, params: dict[str, Any]) -> Fault | None:
        for fault in self._faults:
            if fault.method not in ("*", method) or (
                fault.match is not None and not fault.match(params)
            ):
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
            return fault
        return None

    def _auth(self, method: str, token: str) -> None:
        if not token:
            raise ApiError("not_authed")
        if method == "apps.connections.open":
            if token == self.bot_token:
                raise ApiError("not_allowed_token_type")
            if token != self.app_token:
                raise ApiError("invalid_auth")
        elif token != self.bot_token:
            raise ApiError("invalid_auth")

    def _check_rate(self, method: str, params: dict[str, Any]) -> Callable[[], None]:
        rl = self.rate_limits
        now = time.monotonic()
        if not rl.enabled:
            return lambda: None
        if method == "chat.postMessage" or (
            method == "files.completeUploadExternal" and params.get("channel_id")
        ):
            channel = str(params.get("channel") or params.get("channel_id"))
            bucket = self._buckets.setdefault(channel, _Bucket(rl.post_rate, rl.post_burst, now))
            wait = bucket.wait(now)
            if wait > 0:
                raise ApiError("ratelimited", status=429, retry_after=wait)
            return bucket.take
        if method in rl.per_minute:
            window = self._windows.setdefault(method, _Window(rl.per_minute[method], rl.window_s))
            wait = window.wait(now)
            if wait > 0:
                raise ApiError("ratelimited", status=429, retry_after=wait)
            return lambda: window.take(time.monotonic())
        return lambda: None

    def _channel(self, channel_id: Any, *, post: bool = True) -> Channel:
        ch = self.channels.get(str(channel_id or ""))
        if ch is None or (ch.is_private and BOT_USER not in ch.members):
            raise ApiError("channel_not_found")
        if post and BOT_USER not in ch.members:
            raise ApiError("not_in_channel")
        if post and ch.is_archived:
            raise ApiError("is_archived")
        return ch

    def _thread(self, ch: Channel, thread_ts: Any) -> str | None:
        if not thread_ts:
            return None
        try:
            parent = self.message(ch.id, str(thread_ts))
        except KeyError:
            raise ApiError("thread_not_found") from None
        if parent.deleted:
            raise ApiError("thread_not_found")
        return parent.thread_ts or parent.ts

    def _content(self, params: dict[str, Any], *, required: bool = True) -> tuple[str, list[Any]]:
        text = params.get("text")
        blocks: Any = params.get("blocks")
        if isinstance(blocks, str):
            try:
                blocks = json.loads(blocks)
            except ValueError:
                raise ApiError("invalid_blocks_format") from None
        if blocks is not None:
            errors, total = check_blocks(blocks)
            if errors:
                raise ApiError("invalid_blocks", errors=errors)
            if total > self.MAX_BLOCK_TEXT:
                raise ApiError("msg_blocks_too_long")
        if required and not text and not blocks:
            raise ApiError("no_text")
        if text is not None and len(str(text)) > self.MAX_TEXT:
            raise ApiError("msg_too_long")
        return str(text or ""), list(blocks or [])

    def _editable(self, params: dict[str, Any]) -> FakeMessage:
        ch = self._channel(params.get("channel"), post=False)
        try:
            msg = self.message(ch.id, str(params.get("ts")))
        except KeyError:
            raise ApiError("message_not_found") from None
        if msg.deleted:
            raise ApiError("message_not_found")
        if not msg.is_bot:
            raise ApiError("cant_update_message")
        return msg

    def _bot_message(
        self, ch: Channel, thread: str | None, text: str, blocks: list[Any], **kw: Any
    ) -> FakeMessage:
        msg = FakeMessage(
            ch.id, self._ts(), BOT_USER, [Version(text, blocks, time.time())], thread, BOT_ID, **kw
        )
        self.transcript.append(msg)
        return msg

    async def _api_auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "Fake Team",
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    async def _api_apps_connections_open(self, p: dict[str, Any]) -> dict[str, Any]:
        ticket = secrets.token_hex(8)
        self._tickets.add(ticket)
        return {"url": f"ws://127.0.0.1:{self.url.rsplit(':', 1)[1]}/link/?ticket={ticket}"}

    async def _api_chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        ch = self._channel(p.get("channel"))
        thread = self._thread(ch, p.get("thread_ts"))
        text, blocks = self._content(p)
        msg = self._bot_message(ch, thread, text, blocks)
        return {"channel": ch.id, "ts": msg.ts, "message": msg.to_api()}

    async def _api_chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self._editable(p)
        if msg.stream and msg.stream_state == "streaming":
            raise ApiError("cant_update_message")
        text, blocks = self._content(p)
        msg.versions.append(Version(text, blocks, time.time()))
        return {"channel": msg.channel, "ts": msg.ts, "text": text, "message": msg.to_api()}

    async def _api_chat_delete(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self._editable(p)
        msg.deleted = True
        return {"channel": msg.channel, "ts": msg.ts}

    async def _api_chat_postEphemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        ch = self._channel(p.get("channel"))
        user = str(p.get("user") or "")
        if user not in self.users:
            raise ApiError("user_not_found")
        if user not in ch.members:
            raise ApiError("user_not_in_channel")
        text, _ = self._content(p)
        self.ephemerals_log.append(Ephemeral(ch.id, user, text, p.get("thread_ts"), time.time()))
        return {"message_ts": self._ts()}

    def _stream(self, p: dict[str, Any]) -> FakeMessage:
        msg = self._editable(p)
        if not msg.stream:
            raise ApiError("message_not_in_streaming_state")
        if msg.stream_state == "streaming" and (
            time.monotonic() - msg.stream_started > self.stream_lifetime
        ):
            msg.stream_state = "stopped"
        if msg.stream_state != "streaming":
            raise ApiError("message_not_in_streaming_state")
        return msg

    def _stream_text(self, p: dict[str, Any], *, required: bool) -> str:
        text = p.get("markdown_text")
        if text is None or text == "":
            if required:
                raise ApiError("invalid_arguments")
            return ""
        if len(str(text)) > self.MAX_STREAM_CALL:
            raise ApiError("msg_too_long")
        return str(text)

    async def _api_chat_startStream(self, p: dict[str, Any]) -> dict[str, Any]:
        if not self.streaming:
            raise ApiError("feature_not_enabled")
        ch = self._channel(p.get("channel"))
        if not p.get("recipient_user_id"):
            raise ApiError("missing_recipient_user_id")
        if not p.get("recipient_team_id"):
            raise ApiError("missing_recipient_team_id")
        if not p.get("thread_ts") and ch.is_im:
            raise ApiError("invalid_arguments")
        thread = self._thread(ch, p.get("thread_ts"))
        text = self._stream_text(p, required=False)
        msg = self._bot_message(ch, thread, text, [], stream=True, stream_state="streaming")
        msg.stream_started = time.monotonic()
        msg.stream_chunks.append(text)
        return {"channel": ch.id, "ts": msg.ts}

    async def _api_chat_appendStream(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self._stream(p)
        text = self._stream_text(p, required=True)
        msg.stream_chunks.append(text)
        msg.versions.append(Version(msg.text + text, [], time.time()))
        return {"channel": msg.channel, "ts": msg.ts}

    async def _api_chat_stopStream(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self._stream(p)
        text = self._stream_text(p, required=False)
        _, blocks = self._content(p, required=False)
        msg.stream_state = "stopped"
        msg.versions.append(Version(msg.text + text, blocks, time.time()))
        return {"channel": msg.channel, "ts": msg.ts, "message": msg.to_api()}

    async def _api_files_getUploadURLExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        name, length = p.get("filename"), p.get("length")
        if not name or length is None or not str(length).isdigit():
            raise ApiError("invalid_arguments")
        f = FakeFile("F" + secrets.token_hex(5).upper(), str(name), int(length))
        self.files[f.id] = f
        return {"upload_url": f"{self.url}/upload/{f.id}", "file_id": f.id}

    async def _handle_upload(self, request: web.Request) -> web.Response:
        f = self.files.get(request.match_info["file_id"])
        if f is None:
            return web.Response(status=404, text="file not found")
        f.data = await request.read()
        f.uploaded = True
        return web.Response(text=f"OK - {len(f.data)}", content_type="text/plain")

    async def _handle_download(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization", "") != f"Bearer {self.bot_token}":
            return web.Response(status=302, headers={"Location": "/login"})
        self.downloads.append(request.match_info["file_id"])
        f = self.files.get(request.match_info["file_id"])
        if f is None:
            return web.Response(status=404)
        return web.Response(body=f.data, content_type="application/octet-stream")

    async def _api_files_completeUploadExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        try:
            items = json.loads(str(p.get("files") or "[]"))
        except ValueError:
            raise ApiError("invalid_arguments") from None
        done: list[FakeFile] = []
        for item in items:
            f = self.files.get(str(item.get("id")))
            if f is None or not f.uploaded:
                raise ApiError("file_not_found")
            f.title = str(item.get("title") or f.name)
            done.append(f)
        if p.get("channel_id"):
            ch = self._channel(p.get("channel_id"))
            thread = self._thread(ch, p.get("thread_ts"))
            comment = str(p.get("initial_comment") or "")
            self._bot_message(ch, thread, comment, [], subtype="file_share", files=done)
            for f in done:
                f.channel, f.thread_ts, f.comment = ch.id, thread, comment
        return {
            "files": [
                {"id": f.id, "name": f.name, "title": f.title, "size": len(f.data)} for f in done
            ]
        }

    async def _api_assistant_threads_setStatus(self, p: dict[str, Any]) -> dict[str, Any]:
        ch = self._channel(p.get("channel_id"))
        if not p.get("thread_ts"):
            raise ApiError("invalid_arguments")
        status = str(p.get("status") or "")
        self.statuses.append(StatusCall(ch.id, str(p["thread_ts"]), status, time.time()))
        return {}

    async def _api_conversations_info(self, p: dict[str, Any]) -> dict[str, Any]:
        ch = self._channel(p.get("channel"), post=False)
        return {
            "channel": {
                "id": ch.id,
                "name": ch.name,
                "is_channel": not ch.is_im and not ch.is_private,
                "is_group": ch.is_private,
                "is_im": ch.is_im,
                "is_private": ch.is_private or ch.is_im,
                "is_archived": ch.is_archived,
                "is_member": BOT_USER in ch.members,
            }
        }

    async def _api_users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(p.get("user") or ""))
        if user is None:
            raise ApiError("user_not_found")
        return {"user": user}

    # --- deliveries: Socket Mode and HTTP --------------------------------------------

    def set_request_url(self, url: str | None) -> None:
        """HTTP mode: deliver to `url` (Request URL for events, interactivity and
        slash commands); None: back to Socket Mode."""
        self.request_url = url

    def _send(self, kind: Kind, payload: dict[str, Any]) -> Delivery:
        d = Delivery(secrets.token_hex(8), kind, payload)
        self.deliveries.append(d)
        assert self._queue is not None, "FakeSlack is not started"
        self._queue.put_nowait(d)
        return d

    async def _dispatcher(self) -> None:
        assert self._queue is not None
        while True:
            d = await self._queue.get()
            try:
                if self.request_url:
                    self._spawn(self._deliver_http(d))
                else:
                    await self._deliver_socket(d)
            except Exception:  # a broken connection: the retry logic takes over
                log.exception("fake slack: delivery %s failed", d.id)

    def _retry(self, d: Delivery, reason: str) -> None:
        """An unacknowledged delivery: events are retried (3 times), the rest fail."""
        if d.acked.is_set() or d.failed:
            return
        self._pending.pop(d.id, None)
        if d.kind != "events_api" or d.attempt >= len(self.retry_delays):
            d.failed = True
            d.log.append(f"failed: {reason}")
            self._fire()
            return
        delay = self.retry_delays[d.attempt]
        d.attempt += 1
        d.retry_reason = reason
        d.log.append(f"retry {d.attempt} in {delay} s: {reason}")
        assert self._queue is not None
        queue = self._queue
        asyncio.get_running_loop().call_later(delay, queue.put_nowait, d)

    async def _deliver_socket(self, d: Delivery) -> None:
        conn = await self._active_conn()
        envelope: dict[str, Any] = {
            "envelope_id": d.id,
            "type": d.kind,
            "payload": d.payload,
            "accepts_response_payload": d.kind != "events_api",
        }
        if d.kind == "events_api":
            envelope["retry_attempt"] = d.attempt
            envelope["retry_reason"] = d.retry_reason
        d.conn = conn.id
        d.sent_at = time.monotonic()
        self._pending[d.id] = d
        d.log.append(f"sent on connection {conn.id}")
        loop = asyncio.get_running_loop()
        d.timer = loop.call_later(self.ack_timeout, self._retry, d, "timeout")
        await conn.ws.send_json(envelope)

    async def _active_conn(self) -> _Conn:
        while True:
            live = [c for c in self._conns if not c.draining and not c.ws.closed]
            if live:
                return live[-1]
            await self.wait_until(
                lambda: any(not c.draining and not c.ws.closed for c in self._conns), 3600
            )

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(next(self._conn_ids), ws)
        self._conns.append(conn)
        self.hello_count += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._conns),
                "debug_info": {"host": "applink-fake", "approximate_connection_time": 18060},
                "connection_info": {"app_id": APP_ID},
            }
        )
        self._fire()
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                with contextlib.suppress(ValueError):
                    data = json.loads(message.data)
                    if isinstance(data, dict) and data.get("envelope_id"):
                        self._ack(str(data["envelope_id"]), data.get("payload"))
        finally:
            self._conns.remove(conn)
            for d in [d for d in self._pending.values() if d.conn == conn.id]:
                if d.timer is not None:
                    d.timer.cancel()
                self._retry(d, "connection_closed")
            self._fire()
        return ws

    def _ack(self, envelope_id: str, payload: Any) -> None:
        d = self._pending.pop(envelope_id, None)
        if d is None:
            return
        if self._lost_acks > 0:
            self._lost_acks -= 1
            self._pending[envelope_id] = d  # the timer retries it
            d.log.append("ack lost")
            return
        if d.timer is not None:
            d.timer.cancel()
        d.ack_payload = payload
        d.log.append("acked")
        d.acked_at = time.monotonic()
        d.acked.set()
        self._fire()

    async def refresh(self, reason: str = "refresh_requested") -> None:
        """Ask the app to reconnect: a ``disconnect`` on every live connection, which
        then gets no new envelopes and is closed after `disconnect_grace` s."""
        for conn in [c for c in self._conns if not c.draining]:
            conn.draining = True
            await conn.ws.send_json(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
            )
            self._spawn(self._close_later(conn))

    async def _close_later(self, conn: _Conn) -> None:
        await asyncio.sleep(self.disconnect_grace)
        await conn.ws.close()

    @property
    def connections(self) -> int:
        return len([c for c in self._conns if not c.ws.closed])

    def sign(self, body: str, timestamp: str) -> str:
        base = f"v0:{timestamp}:{body}".encode()
        return "v0=" + hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()

    def _http_body(self, d: Delivery) -> tuple[str, str]:
        if d.kind == "events_api":
            return json.dumps(d.payload), "application/json"
        if d.kind == "interactive":
            return urllib.parse.urlencode(
                {"payload": json.dumps(d.payload)}
            ), "application/x-www-form-urlencoded"
        return urllib.parse.urlencode(d.payload), "application/x-www-form-urlencoded"

    async def deliver_raw(
        self,
        body: str,
        *,
        content_type: str = "application/json",
        timestamp: str | None = None,
        signature: str | None = None,
        retry_num: int | None = None,
    ) -> tuple[int, str]:
        """POST `body` to the request URL, signed correctly unless told otherwise."""
        assert self.request_url and self._session is not None
        ts = timestamp or str(int(time.time()))
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature or self.sign(body, ts),
        }
        if retry_num:
            headers.update(
                {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
            )
        async with self._session.post(self.request_url, data=body.encode(), headers=headers) as r:
            return r.status, await r.text()

    async def _deliver_http(self, d: Delivery) -> None:
        body, ctype = self._http_body(d)
        d.log.append(f"POST attempt {d.attempt}")
        d.sent_at = time.monotonic()
        try:
            status, text = await asyncio.wait_for(
                self.deliver_raw(body, content_type=ctype, retry_num=d.attempt or None),
                self.ack_timeout,
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            self._retry(d, "http_timeout" if isinstance(e, TimeoutError) else "http_error")
            return
        if self._lost_acks > 0:
            self._lost_acks -= 1
            d.log.append(f"answer {status} lost")
            self._retry(d, "http_timeout")
            return
        if not 200 <= status < 300:
            self._retry(d, "http_error")
            return
        with contextlib.suppress(ValueError):
            d.ack_payload = json.loads(text) if text else None
        d.log.append(f"acked {status}")
        d.acked_at = time.monotonic()
        d.acked.set()
        self._fire()


__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER",
    "TEAM_ID",
    "ApiCall",
    "Delivery",
    "FakeFile",
    "FakeMessage",
    "FakeSlack",
    "RateLimits",
    "Version",
    "check_blocks",
    "mrkdwn_plain",
]
