"""The Slack `ChatAdapter`: slack-bolt (`AsyncApp`) and slack_sdk wired to the seam.

Owns the Bolt app and its transport (Socket Mode by default, HTTP mode with signature
verification; `adapters.slack.client`), acknowledges every event, button press and
slash command before handing the parsed result to the bridge's sink (events are
acknowledged by Bolt itself; a delivery Slack retries — same event or trigger id —
is handled once), and delivers rendered outbox rows: ``chat.postMessage``,
``chat.update``, ``chat.delete``, ``files_upload_v2``, native streaming
(`adapters.slack.stream`) and ``chat.postEphemeral`` for per-presser answers.

A session is a thread: `open_thread` posts the header in the channel and the
header's ts is the thread.  The adapter notices a turn by its status message (the
one carrying a Stop button ``x:…``): it sets the assistant status ("is thinking…")
when the turn starts and, when the status loses its Stop button (the turn ended),
stops the native stream and deletes the streamed messages, since the final message
that follows carries the exact answer.  If the workspace refuses streaming, that
turn's previews are merged into the status message with ``chat.update`` and later
turns stream by the bridge's edits (`supports_draft` is then false).  Identical
edits are answered `NotModified` without calling Slack.  Secrets never reach logs or
exception texts (`adapters.slack.errors`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import ChatAdapter, InboundSink, NotModified, PermanentError, RateLimited
from adapters.slack import client, inbound, limits
from adapters.slack import render as slack_render
from adapters.slack.errors import SlackErrors
from adapters.slack.markdown import escape
from adapters.slack.stream import Streamer
from bridge.config import SlackConfig
from bridge.messages import ButtonPress, Inbound, Outbound, Rendered, ThreadRef

log = logging.getLogger(__name__)

THINKING = "is thinking…"
_SEEN_MAX = 5000
_GUARD_SLEEP_MAX = 2.0  # wait this long for a workspace budget; beyond it, RateLimited


def has_stop(payload: dict[str, Any]) -> bool:
    return any(
        str(e.get("value", "")).startswith("x:")
        for b in payload.get("blocks") or ()
        if b.get("type") == "actions"
        for e in b.get("elements", ())
    )


@dataclass(slots=True)
class _Turn:
    """A running turn in a thread, known by its status message."""

    status_ts: str
    status: dict[str, Any]  # the status message's latest payload
    fallback: bool = False  # streaming failed: previews go into the status message
    preview: tuple[dict[str, Any], ...] = ()


class SlackAdapter(ChatAdapter):
    platform = "slack"

    def __init__(self, config: SlackConfig, *, owners_hint: Sequence[str] = ()) -> None:
        self.config = config
        self.owners = tuple(o.split(":", 1)[1] for o in owners_hint if o.startswith("slack:"))
        self.capabilities = limits.CAPABILITIES
        self.errors = SlackErrors((config.bot_token, config.app_token, config.signing_secret))
        self.guard = limits.MethodGuard()
        self.username = ""
        self.bot_user_id = self.team_id = self.workspace_url = ""
        self._sink: InboundSink | None = None
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebClient | None = None
        self._runner: client.SocketModeRunner | client.HttpRunner | None = None
        self._turns: dict[str, _Turn] = {}
        self._no_stream = False
        self._no_status = False
        self._names: dict[str, str] = {}
        self._last_sender: dict[str, str] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._edited: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.streams = Streamer(lambda: self.client, self.errors, self.guard, self._recipient)

    # --- lifecycle --------------------------------------------------------------------

    @property
    def client(self) -> AsyncWebClient:
        if self._client is None:
            raise RuntimeError("SlackAdapter is not started")
        return self._client

    @property
    def http_port(self) -> int | None:
        return self._runner.port if isinstance(self._runner, client.HttpRunner) else None

    async def start(self, sink: InboundSink) -> None:
        self._sink = sink
        self._session = aiohttp.ClientSession()
        self._client = client.web_client(self.config, self._session)
        try:
            auth = await self.errors.call(self.client.auth_test)
            self.bot_user_id, self.team_id = str(auth["user_id"]), str(auth["team_id"])
            self.username, self.workspace_url = str(auth.get("user") or ""), str(auth["url"])
            app = client.build_app(self.config, self.client)
            app.event("message")(self._on_message)
            app.command(inbound.SLASH_COMMAND)(self._on_command)
            app.block_action(client.ANY)(self._on_action)
            for register in (app.command, app.action, app.shortcut, app.view, app.options):
                register(client.ANY)(self._ack_only)
            app.event(client.ANY)(self._ignore)
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
            self._spawn(self._lookup_name(owner))
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

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- inbound ----------------------------------------------------------------------

    def _first_time(self, body: dict[str, Any]) -> bool:
        key = inbound.dedupe_key(body)
        if key is None:
            return True
        if key in self._seen:
            log.info("ignoring a repeated Slack delivery (%s)", key)
            return False
        self._seen[key] = None
        while len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)
        return True

    def _allowed(self, thread: ThreadRef, chat_type: str) -> bool:
        """DMs, and the configured channel if there is one: other channels the app is
        in are not ours."""
        return (
            chat_type == "private"
            or not self.config.channel
            or (thread.chat_id == self.config.channel)
        )

    async def _on_message(self, body: dict[str, Any]) -> None:
        try:
            if not self._first_time(body):
                return
            parsed = inbound.parse_message_event(
                body.get("event") or {}, bot_user_id=self.bot_user_id, names=self._names
            )
            if parsed is None:
                return
            msg = parsed.message
            if not self._allowed(msg.thread, msg.chat_type):
                log.info(
                    "ignoring a message in channel %s (not [slack] channel)", msg.thread.chat_id
                )
                return
            if msg.sender.user_id not in self._names:
                self._spawn(self._lookup_name(msg.sender.user_id))
            if parsed.files and self._session is not None:
                attachments, notes = await client.download(
                    self._session, self.config.bot_token, parsed.files, self.errors.redact
                )
                text = "\n".join([msg.text, *notes]).strip() if notes else msg.text
                msg = replace(msg, attachments=attachments, text=text)
            self._last_sender[msg.thread.key] = msg.sender.user_id
            await self._deliver(msg)
        except Exception:
            log.exception("dropping a Slack message event that could not be handled")

    async def _on_command(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()  # first: Slack shows the person an error after 3 s
        try:
            if not self._first_time(body):
                return
            name = self._names.get(str(body.get("user_id")), "")
            msg = inbound.parse_slash_command(body, name)
            if msg is not None:
                await self._deliver(msg)
        except Exception:
            log.exception("dropping a slash command that could not be handled")

    async def _on_action(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        try:
            if not self._first_time(body):
                return
            user = str((body.get("user") or {}).get("id") or "")
            name = self._names.get(user) or await self._lookup_name(user)
            press = inbound.parse_block_actions(body, name)
            if press is None:
                log.debug("dropping a block action without a usable button value")
                return
            self._last_sender[press.thread.key] = press.sender.user_id
            await self._deliver(press)
        except Exception:
            log.exception("dropping a button press that could not be handled")

    async def _ack_only(self, ack: AsyncAck) -> None:
        await ack()

    async def _ignore(self, body: dict[str, Any]) -> None:
        log.debug("ignoring Slack event %s", (body.get("event") or {}).get("type"))

    async def _deliver(self, event: Inbound) -> None:
        if self._sink is None:
            return
        try:
            await self._sink(event)
        except Exception:
            log.exception("the bridge failed on an inbound Slack event")

    async def _lookup_name(self, user_id: str) -> str:
        """A person's display name (users.info, cached); "" if unknown."""
        if not user_id:
            return ""
        try:
            resp = await asyncio.wait_for(self.client.users_info(user=user_id), 5)
            user = resp.get("user") or {}
            profile = user.get("profile") or {}
            name = profile.get("display_name") or profile.get("real_name") or user.get("name")
            self._names[user_id] = str(name or user_id)
        except Exception as e:
            log.debug("users.info %s failed: %s", user_id, self.errors.translate(e))
            return ""
        return self._names[user_id]

    def _recipient(self, thread: ThreadRef) -> tuple[str, str] | None:
        last = self._last_sender.get(thread.key, "")
        user = last if last in self.owners or not self.owners else self.owners[0]
        return (user, self.team_id) if user and self.team_id else None

    # --- threads ----------------------------------------------------------------------

    async def open_thread(
        self, chat_id: str, title: str, header: Outbound, *, prefer_topic: bool = True
    ) -> tuple[ThreadRef, str | None]:
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

    def thread_link(self, thread: ThreadRef) -> str | None:
        if not self.workspace_url or not thread.thread_id:
            return None
        return f"{self.workspace_url}archives/{thread.chat_id}/p{thread.thread_id.replace('.', '')}"

    def default_chat(self, origin: ThreadRef) -> str:
        return self.config.channel or origin.chat_id

    def is_group(self, chat_id: str) -> bool:
        return chat_id[:1] in ("C", "G")

    def supports_draft(self, thread: ThreadRef) -> bool:
        if not thread.thread_id or self._recipient(thread) is None:
            return False
        turn = self._turns.get(thread.key)
        return not self._no_stream or bool(turn and turn.fallback)

    # --- outgoing ---------------------------------------------------------------------

    def render(self, msg: Outbound) -> list[Rendered]:
        mention = " ".join(f"<@{o}>" for o in self.owners)
        return slack_render.render(msg, mention=mention)

    def render_edit(self, msg: Outbound) -> Rendered:
        return slack_render.render_edit(msg)

    async def _guarded(
        self, method: str, fn: Callable[[], Awaitable[Any]], thread: ThreadRef
    ) -> Any:
        wait = self.guard.wait(method)
        if wait > _GUARD_SLEEP_MAX:
            raise RateLimited(wait, f"{method}: workspace budget")
        if wait > 0:
            await asyncio.sleep(wait)
        self.guard.take(method)
        return await self.errors.call(fn, in_thread=bool(thread.thread_id))

    async def send(self, thread: ThreadRef, msg: Rendered) -> str:
        p = msg.payload
        if "file" in p:
            return await self._upload(thread, p["file"])
        ts = await self._post(thread, p)
        if has_stop(p):
            self._turns[thread.key] = _Turn(ts, p)
            await self._set_status(thread, THINKING)
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
            if (
                not str(e).startswith(("invalid_blocks", "msg_blocks_too_long"))
                or "blocks" not in kw
            ):
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
        p = msg.payload
        turn = self._turns.get(thread.key)
        if turn is not None and turn.status_ts == message_id:
            if not has_stop(p):  # the turn ended: the final message follows
                del self._turns[thread.key]
                await self.streams.finish(thread)
                await self._set_status(thread, "")
            else:
                turn.status = p
                if turn.fallback and turn.preview:
                    p = slack_render.merge_preview(p, turn.preview)
        await self._update(thread, message_id, p)

    async def _update(self, thread: ThreadRef, ts: str, p: dict[str, Any]) -> None:
        key = (thread.chat_id, ts)
        digest = hashlib.sha256(
            json.dumps([p.get("text"), p.get("blocks")], sort_keys=True).encode()
        ).hexdigest()
        if self._edited.get(key) == digest:
            raise NotModified("identical content")
        blocks = p.get("blocks") or []
        await self._guarded(
            "chat.update",
            lambda: self.client.chat_update(
                channel=thread.chat_id, ts=ts, text=p.get("text") or "…", blocks=blocks
            ),
            thread,
        )
        self._edited[key] = digest
        while len(self._edited) > _SEEN_MAX:
            self._edited.popitem(last=False)

    async def draft(self, thread: ThreadRef, draft_id: int, msg: Rendered) -> None:
        turn = self._turns.get(thread.key)
        if not self._no_stream and not (turn and turn.fallback):
            markdown = str(msg.payload.get("markdown") or msg.payload.get("text") or "")
            try:
                await self.streams.push(thread, draft_id, markdown)
                return
            except PermanentError as e:
                log.warning("Slack refused native streaming (%s); editing messages instead", e)
                self._no_stream = True
                await self.streams.finish(thread)
                if turn is not None:
                    turn.fallback = True
        if turn is None:
            return
        turn.preview = tuple(b for b in msg.payload.get("blocks") or () if b["type"] != "actions")
        await self._update(
            thread, turn.status_ts, slack_render.merge_preview(turn.status, turn.preview)
        )

    async def _set_status(self, thread: ThreadRef, status: str) -> None:
        if self._no_status or not thread.thread_id:
            return
        try:
            await self.client.assistant_threads_setStatus(
                channel_id=thread.chat_id, thread_ts=thread.thread_id, status=status
            )
        except Exception as e:  # not an AI app, no assistant:write: fine, stop trying
            self._no_status = True
            log.info(
                "assistant status unavailable (%s); not setting it again", self.errors.translate(e)
            )

    async def delete(self, thread: ThreadRef, message_id: str) -> None:
        if message_id.startswith("file:"):
            return
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
