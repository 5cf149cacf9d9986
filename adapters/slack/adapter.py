"""The Slack `ChatAdapter`: slack-bolt (`AsyncApp`) and slack_sdk wired to the seam.

Owns the Bolt app and its transport (Socket Mode by default, HTTP mode with signature
verification; `adapters.slack.client`), hands inbound events to the bridge through
`adapters.slack.receiver` (which acknowledges everything first and handles a
delivery Slack repeats once), and delivers rendered outbox rows:
``chat.postMessage`` (retried as plain text if Slack refuses our blocks),
``chat.update`` (an identical edit is answered `NotModified` without a call),
``chat.delete``, ``files_upload_v2``, native streaming (`adapters.slack.stream`, with
the turn bookkeeping in `adapters.slack.turns`) and ``chat.postEphemeral`` for
per-presser answers.  A session is a thread: `open_thread` posts the header in the
channel and the header's ts is the thread.  The workspace-wide method tiers are
kept with `limits.MethodGuard`; errors are translated by `adapters.slack.errors`,
which also keeps the tokens out of every log line and exception.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import ChatAdapter, InboundSink, NotModified, PermanentError, RateLimited
from adapters.messages import ButtonPress, Outbound, Rendered, ThreadRef
from adapters.slack import client, limits
from adapters.slack import render as slack_render
from adapters.slack.config import SlackConfig
from adapters.slack.errors import SlackErrors
from adapters.slack.markdown import escape
from adapters.slack.receiver import Receiver
from adapters.slack.stream import Streamer
from adapters.slack.turns import Turns

log = logging.getLogger(__name__)

EDITS_REMEMBERED = 5000
GUARD_SLEEP_MAX = 2.0  # wait this long for a workspace budget; beyond it, RateLimited
REFUSED_BLOCKS = ("invalid_blocks", "msg_blocks_too_long")


class SlackAdapter(ChatAdapter):
    platform = "slack"

    def __init__(self, config: SlackConfig, *, owners_hint: Sequence[str] = ()) -> None:
        self.config = config
        self.owners = tuple(o.split(":", 1)[1] for o in owners_hint if o.startswith("slack:"))
        self.capabilities = limits.CAPABILITIES
        self.errors = SlackErrors((config.bot_token, config.app_token, config.signing_secret))
        self.guard = limits.MethodGuard()
        self.username = ""
        self.team_id = self.workspace_url = ""
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebClient | None = None
        self._runner: client.SocketModeRunner | client.HttpRunner | None = None
        self._edited: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.receiver = Receiver(config, self.errors, lambda: self.client, self._spawn)
        self.streams = Streamer(lambda: self.client, self.errors, self.guard, self._recipient)
        self.turns = Turns(self.streams, lambda: self.client, self.errors, self._update, self.guard)

    # --- lifecycle --------------------------------------------------------------------

    @property
    def client(self) -> AsyncWebClient:
        if self._client is None:
            raise RuntimeError("SlackAdapter is not started")
        return self._client

    @property
    def bot_user_id(self) -> str:
        return self.receiver.bot_user_id

    @property
    def http_port(self) -> int | None:
        """HTTP mode: the port events arrive on (useful with ``http_port = 0``)."""
        return self._runner.port if isinstance(self._runner, client.HttpRunner) else None

    def set_receive_gate(self, gate: Callable[[], bool]) -> None:
        """Take deliveries only while `gate()` (this host is the gateway): see
        `adapters.slack.receiver.Receiver.gate_deliveries`."""
        self.receiver.gate = gate

    async def start(self, sink: InboundSink) -> None:
        self._session = aiohttp.ClientSession()
        self._client = client.web_client(self.config, self._session)
        self.receiver.sink, self.receiver.session = sink, self._session
        try:
            auth = await self.errors.call(self.client.auth_test)
            self.receiver.bot_user_id, self.team_id = str(auth["user_id"]), str(auth["team_id"])
            self.username, self.workspace_url = str(auth.get("user") or ""), str(auth["url"])
            app = client.build_app(self.config, self.client)
            self.receiver.register(app)
            if self.config.mode == "http":
                if not self.config.signing_secret:
                    raise PermanentError("[slack] signing_secret is needed in http mode")
                self._runner = client.HttpRunner(app, self.config.http_port)
            else:
                self._runner = client.SocketModeRunner(
                    app, self.config.app_token, self.client, self.errors
                )
            await self._runner.start()
        except BaseException:
            await self.stop()
            raise
        for owner in self.owners:
            self._spawn(self.receiver.lookup_name(owner))
        log.info(
            "Slack app @%s up (%s mode)%s",
            self.username,
            self.config.mode,
            "" if self.owners else "; no Slack owner configured yet: use `threadline pair`",
        )

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            if runner is not None:
                await runner.stop()
        except Exception as e:  # stopping must not fail the daemon's shutdown
            log.warning("stopping Slack cleanly failed: %s", self.errors.redact(repr(e)))
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def add_owner(self, user_id: str) -> None:
        """A paired owner: mentioned on prompts and finals, a native stream's recipient."""
        if user_id in self.owners:
            return
        self.owners = (*self.owners, user_id)
        if self._client is not None:
            self._spawn(self.receiver.lookup_name(user_id))

    def remove_owner(self, user_id: str) -> None:
        self.owners = tuple(o for o in self.owners if o != user_id)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _recipient(self, thread: ThreadRef) -> tuple[str, str] | None:
        """Who a native stream is for (Slack requires one): the owner who wrote last
        in the thread, else the first owner."""
        last = self.receiver.last_sender.get(thread.key, "")
        user = last if last in self.owners or not self.owners else self.owners[0]
        return (user, self.team_id) if user and self.team_id else None

    # --- threads ----------------------------------------------------------------------

    async def open_thread(
        self,
        chat_id: str,
        title: str,
        header: Outbound,
        *,
        prefer_topic: bool = True,
        on_created: Callable[[ThreadRef], None] | None = None,
    ) -> tuple[ThreadRef, str | None]:
        # The header is the thread's root: there is no thread before it (on_created unused).
        parts = self.render(header)
        first = dict(parts[0].payload)
        if "blocks" in first:
            titled = slack_render.section(f"*{escape(' '.join(title.split()))}*")
            first["blocks"] = [titled, *first["blocks"]][: limits.MAX_BLOCKS]
            first["text"] = f"{titled['text']['text']}\n{first['text']}"[: limits.MAX_TEXT]
        header_ts = await self.send(ThreadRef(self.platform, chat_id), Rendered(first))
        thread = ThreadRef(self.platform, chat_id, header_ts)
        for part in parts[1:]:
            await self.send(thread, part)
        return thread, header_ts

    def accepts_chat(self, thread: ThreadRef, chat_type: str) -> bool:
        return self.receiver.allowed(thread, chat_type)

    def thread_link(self, thread: ThreadRef) -> str | None:
        if not self.workspace_url or not thread.thread_id:
            return None
        ts = thread.thread_id.replace(".", "")
        return f"{self.workspace_url}archives/{thread.chat_id}/p{ts}"

    def default_chat(self, origin: ThreadRef) -> str:
        return self.config.channel or origin.chat_id

    def is_group(self, chat_id: str) -> bool:
        return chat_id[:1] in ("C", "G")

    def supports_draft(self, thread: ThreadRef) -> bool:
        if not thread.thread_id or self._recipient(thread) is None:
            return False
        return self.turns.draft_allowed(thread)

    # --- outgoing ---------------------------------------------------------------------

    def render(self, msg: Outbound) -> list[Rendered]:
        return slack_render.render(msg, mention=" ".join(f"<@{o}>" for o in self.owners))

    def render_edit(self, msg: Outbound) -> Rendered:
        return slack_render.render_edit(msg)

    async def _guarded(
        self, method: str, fn: Callable[[], Awaitable[Any]], thread: ThreadRef
    ) -> Any:
        wait = self.guard.wait(method)
        if wait > GUARD_SLEEP_MAX:
            raise RateLimited(wait, f"{method}: workspace budget")
        if wait > 0:
            await asyncio.sleep(wait)
        self.guard.take(method)
        return await self.errors.call(fn, in_thread=bool(thread.thread_id))

    async def send(self, thread: ThreadRef, msg: Rendered) -> str:
        p = msg.payload
        if "file" in p:
            return await self._upload(thread, p["file"])
        if p.get(slack_render.TURN_ANSWER):
            await self.turns.answering(thread)
        ts = await self._post(thread, self.turns.sending(thread, p))
        await self.turns.sent(thread, ts, p)
        return ts

    async def _post(self, thread: ThreadRef, p: dict[str, Any]) -> str:
        kw: dict[str, Any] = {"channel": thread.chat_id, "text": p.get("text") or "…"}
        kw.update(unfurl_links=False, unfurl_media=False)
        if p.get("blocks"):
            kw["blocks"] = p["blocks"]
        if thread.thread_id:
            kw["thread_ts"] = thread.thread_id
        in_thread = bool(thread.thread_id)
        try:
            resp = await self.errors.call(
                lambda: self.client.chat_postMessage(**kw), in_thread=in_thread
            )
        except PermanentError as e:
            if not str(e).startswith(REFUSED_BLOCKS) or "blocks" not in kw:
                raise
            # A message that arrives unformatted beats one that never arrives.
            log.warning("Slack refused our blocks (%s); sending the text alone", e)
            kw.pop("blocks")
            kw["text"] = slack_render.fallback_text(p["blocks"])
            resp = await self.errors.call(
                lambda: self.client.chat_postMessage(**kw), in_thread=in_thread
            )
        return str(resp["ts"])

    async def _upload(self, thread: ThreadRef, f: dict[str, Any]) -> str:
        data = base64.b64decode(f["data_b64"])
        resp = await self.errors.call(
            lambda: self.client.files_upload_v2(
                channel=thread.chat_id,
                thread_ts=thread.thread_id,
                content=data,
                filename=f.get("name") or "file",
                title=f.get("title") or f.get("name") or "file",
                initial_comment=f.get("comment") or None,
            ),
            in_thread=bool(thread.thread_id),
        )
        files = resp.get("files") or [resp.get("file") or {}]
        return f"file:{files[0].get('id', '')}"

    async def edit(self, thread: ThreadRef, message_id: str, msg: Rendered) -> None:
        if message_id.startswith("file:"):
            raise NotModified("a file message cannot be edited")
        payload = await self.turns.editing(thread, message_id, msg.payload)
        await self._update(thread, message_id, payload)

    async def _update(self, thread: ThreadRef, ts: str, p: dict[str, Any]) -> None:
        key = (thread.chat_id, ts)
        content = json.dumps([p.get("text"), p.get("blocks")], sort_keys=True)
        digest = hashlib.sha256(content.encode()).hexdigest()
        if self._edited.get(key) == digest:
            raise NotModified("identical content")
        await self._guarded(
            "chat.update",
            lambda: self.client.chat_update(
                channel=thread.chat_id,
                ts=ts,
                text=p.get("text") or "…",
                blocks=p.get("blocks") or [],
            ),
            thread,
        )
        self._edited[key] = digest
        while len(self._edited) > EDITS_REMEMBERED:
            self._edited.popitem(last=False)

    async def draft(self, thread: ThreadRef, draft_id: int, msg: Rendered) -> None:
        if not self.turns.falling_back(thread):
            # Drafts have their own budget and often overtake the turn's status message
            # (which waits for the channel's ~1 post/s): the stream starts at once, in
            # the thread, rather than waiting for the status (the first text would
            # come a debounce interval and a draft budget later, ~1.2 s).
            markdown = str(msg.payload.get("markdown") or msg.payload.get("text") or "")
            try:
                await self.streams.push(thread, draft_id, markdown)
                return
            except PermanentError as e:
                log.warning("Slack refused native streaming (%s); editing messages instead", e)
                self.turns.no_stream = True
                await self.streams.finish(thread)
        await self.turns.preview(thread, msg.payload)

    async def delete(self, thread: ThreadRef, message_id: str) -> None:
        if message_id.startswith("file:"):
            return
        await self.turns.deleting(thread, message_id)
        try:
            await self._guarded(
                "chat.delete",
                lambda: self.client.chat_delete(channel=thread.chat_id, ts=message_id),
                ThreadRef(thread.platform, thread.chat_id),
            )
        except PermanentError as e:
            log.info("deleting %s/%s failed: %s", thread.chat_id, message_id, e)

    async def answer_press(self, press: ButtonPress, text: str) -> None:
        try:
            await self.client.chat_postEphemeral(
                channel=press.thread.chat_id,
                user=press.sender.user_id,
                text=text,
                thread_ts=press.thread.thread_id,
            )
        except Exception as e:
            log.info(
                "ephemeral answer to %s failed: %s", press.sender.key, self.errors.translate(e)
            )
