"""The Web API methods (`auth.test`, `chat.*`, streams, file uploads, assistant status,
`conversations.info`, `users.info`) and the checks they share."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from aiohttp import web

from .errors import ApiError
from .formatting import check_blocks
from .state import (
    BOT_ID,
    BOT_NAME,
    BOT_USER,
    TEAM_DOMAIN,
    TEAM_ID,
    Channel,
    Ephemeral,
    FakeFile,
    FakeMessage,
    StatusCall,
    Version,
)


class WebApiMixin:
    """The Web API methods of a `FakeSlack` and their shared checks."""

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
