"""Sending, editing and deleting messages, drafts, files and callback answers, with the
checks the Bot API makes on each (chat, topic, reply target, markup, buttons, files)."""

from __future__ import annotations

import re
import struct
import time
from typing import Any

from .entities import EntityParseError, Parsed
from .errors import ApiError, bad_request
from .formatting import parse_text
from .limits import (
    CALLBACK_DATA_LIMIT,
    CAPTION_LIMIT,
    NOT_MODIFIED,
    QUERY_TOO_OLD,
    TEXT_LIMIT,
    UPLOAD_LIMIT,
)
from .state import ChatRecord, Draft, FakeMessage, FileRecord, Version
from .wire import json_param, maybe_int, truthy


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG/JPEG/GIF/WebP, (0, 0) if recognised but unmeasured,
    None if it is not an image."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return (512, 512)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xC0, 0xC1, 0xC2):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return (w, h)
            seg = struct.unpack(">H", data[i + 2 : i + 4])[0]
            i += 2 + seg
        return (800, 600)
    return None


class MessagesMixin:
    """The message methods of the Bot API and the checks they share."""

    # ---------------------------------------------------------------- validation helpers
    def _chat_for(self, params: dict[str, Any], *, sending: bool = True) -> ChatRecord:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise bad_request("chat_id is empty")
        chat: ChatRecord | None = None
        if isinstance(raw, str) and raw.startswith("@"):
            chat = next((c for c in self._chats.values() if c.username == raw[1:]), None)
        else:
            cid = maybe_int(raw)
            chat = self._chats.get(cid) if cid is not None else None
        if chat is None:
            raise bad_request("chat not found")
        if sending and chat.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _thread_for(self, chat: ChatRecord, params: dict[str, Any]) -> int | None:
        tid = maybe_int(params.get("message_thread_id"))
        if not tid:
            return None
        topic = chat.topics.get(tid)
        usable = (chat.type == "supergroup" and chat.is_forum) or (
            chat.type == "private" and self.has_topics_enabled
        )
        if not usable or topic is None or topic.deleted:
            raise bad_request("message thread not found")
        if topic.closed and self.reject_closed_topics:
            raise bad_request("TOPIC_CLOSED")
        return tid

    def _parse(self, text: str | None, params: dict[str, Any], *, caption: bool = False) -> Parsed:
        mode = params.get("parse_mode") or None
        ents_raw = params.get("caption_entities" if caption else "entities")
        ents = json_param(ents_raw, "entities") if ents_raw else None
        try:
            return parse_text(text or "", mode, ents, strict_ampersand=self.strict_ampersand)
        except EntityParseError as exc:
            raise bad_request(f"can't parse entities: {exc}") from None
        except ValueError:
            raise bad_request("unsupported parse_mode") from None

    def _markup(self, params: dict[str, Any]) -> dict[str, Any] | None:
        raw = params.get("reply_markup")
        if raw is None or raw == "":
            return None
        markup = json_param(raw, "reply keyboard markup")
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise bad_request(
                    'can\'t parse inline keyboard markup: field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
                )
            for row in rows:
                for b in row:
                    self._check_button(b)
        return markup

    @staticmethod
    def _check_button(b: Any) -> None:
        if not isinstance(b, dict):
            raise bad_request(
                "can't parse inline keyboard button: InlineKeyboardButton should be an Object"
            )
        if not isinstance(b.get("text"), str):
            raise bad_request('can\'t parse inline keyboard button: Field "text" must be of type String')
        actions = {
            "url",
            "callback_data",
            "web_app",
            "login_url",
            "switch_inline_query",
            "switch_inline_query_current_chat",
            "switch_inline_query_chosen_chat",
            "copy_text",
            "callback_game",
            "pay",
        }
        if not actions & b.keys():
            raise bad_request(
                "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
            )
        if "callback_data" in b:
            data = b["callback_data"]
            if (
                not isinstance(data, str)
                or not 1 <= len(data.encode("utf-8")) <= CALLBACK_DATA_LIMIT
            ):
                raise bad_request("BUTTON_DATA_INVALID")
        if "url" in b:
            url = b["url"]
            if not isinstance(url, str) or not re.match(r"(https?|tg)://\S+$", url):
                raise bad_request("BUTTON_URL_INVALID")

    def _reply_to(self, chat: ChatRecord, params: dict[str, Any]) -> int | None:
        rp = params.get("reply_parameters")
        allow = False
        mid: int | None = None
        if rp:
            rp = json_param(rp, "reply parameters")
            if not isinstance(rp, dict):
                raise bad_request("can't parse reply parameters JSON object")
            mid = maybe_int(rp.get("message_id"))
            allow = bool(rp.get("allow_sending_without_reply"))
            if rp.get("chat_id") not in (None, "", chat.id, str(chat.id)):
                raise bad_request("replies to other chats are not modelled by the fake")
        elif params.get("reply_to_message_id"):
            mid = maybe_int(params.get("reply_to_message_id"))
            allow = truthy(params.get("allow_sending_without_reply"))
        if mid is None:
            return None
        target = chat.messages.get(mid)
        if target is None or target.deleted:
            if allow:
                return None
            raise bad_request("message to be replied not found")
        return mid

    def _new_bot_message(
        self,
        chat: ChatRecord,
        kind: str,
        params: dict[str, Any],
        raw_text: str | None,
        parsed: Parsed,
        markup: dict[str, Any] | None,
        thread_id: int | None,
        reply_to: int | None,
        file: FileRecord | None = None,
    ) -> FakeMessage:
        if thread_id is None and reply_to is not None:
            thread_id = chat.messages[reply_to].thread_id
        now = int(time.time())
        msg = FakeMessage(
            chat_id=chat.id,
            message_id=self._next_id(chat),
            date=now,
            from_bot=True,
            kind=kind,
            thread_id=thread_id,
            reply_to=reply_to,
            disable_notification=truthy(params.get("disable_notification")),
            history=[
                Version(
                    raw_text,
                    parsed.text if raw_text is not None else None,
                    params.get("parse_mode") or None,
                    parsed.entities,
                    markup,
                    now,
                )
            ],
            file=file,
            link_preview_options=json_param(params["link_preview_options"], "link preview options")
            if params.get("link_preview_options")
            else None,
            params=dict(params),
            _chat=chat,
            _fake=self,
        )
        chat.messages[msg.message_id] = msg
        return msg

    def _editable(self, params: dict[str, Any]) -> FakeMessage:
        if params.get("inline_message_id"):
            raise bad_request("inline messages are not modelled by the fake")
        chat = self._chat_for(params)
        mid = maybe_int(params.get("message_id"))
        if mid is None:
            raise bad_request("message identifier is not specified")
        msg = chat.messages.get(mid)
        if msg is None or msg.deleted or msg.kind == "forum_topic_created":
            raise bad_request("message to edit not found")
        if not msg.from_bot:
            raise bad_request("message can't be edited")
        return msg

    def _apply_edit(
        self,
        msg: FakeMessage,
        raw_text: str | None,
        parsed: Parsed | None,
        parse_mode: str | None,
        markup: dict[str, Any] | None,
    ) -> dict[str, Any]:
        cur = msg.current
        if parsed is None:  # markup-only edit
            new = Version(cur.text, cur.visible_text, cur.parse_mode, cur.entities, markup, 0)
        else:
            new = Version(raw_text, parsed.text, parse_mode, parsed.entities, markup, 0)
        if (
            new.visible_text == cur.visible_text
            and tuple(new.entities) == tuple(cur.entities)
            and (new.reply_markup or None) == (cur.reply_markup or None)
        ):
            raise bad_request(NOT_MODIFIED)
        new.date = msg.edit_date = int(time.time())
        msg.history.append(new)
        return msg.to_api()

    def _upload(
        self,
        params: dict[str, Any],
        files: dict[str, tuple[str | None, bytes, str | None]],
        name: str,
    ) -> tuple[bytes, str | None, str | None, FileRecord | None]:
        """(data, filename, mime, existing record) for an InputFile / file_id / attach://."""
        if name in files:
            fname, data, mime = files[name]
            return data, fname, mime, None
        raw = params.get(name)
        if isinstance(raw, str) and raw.startswith("attach://") and raw[9:] in files:
            fname, data, mime = files[raw[9:]]
            return data, fname, mime, None
        if isinstance(raw, str) and raw in self._files:
            rec = self._files[raw]
            return rec.data, rec.file_name, rec.mime_type, rec
        if not raw:
            raise bad_request(f"there is no {name} in the request")
        raise bad_request("wrong file identifier/HTTP URL specified")

    async def _api_sendmessage(self, p: dict[str, Any], f: Any) -> Any:
        chat = self._chat_for(p)
        thread = self._thread_for(chat, p)
        text = p.get("text")
        if text is None or text == "":
            raise bad_request("message text is empty")
        parsed = self._parse(text, p)
        if not parsed.text:
            raise bad_request("message text is empty")
        if len(parsed.text) > TEXT_LIMIT:
            raise bad_request("message is too long")
        markup = self._markup(p)
        reply_to = self._reply_to(chat, p)
        msg = self._new_bot_message(chat, "text", p, text, parsed, markup, thread, reply_to)
        return msg.to_api()

    async def _api_sendmessagedraft(self, p: dict[str, Any], f: Any) -> Any:
        chat = self._chat_for(p)
        if chat.type != "private":
            raise bad_request("TEXTDRAFT_PEER_INVALID")
        draft_id = maybe_int(p.get("draft_id"))
        if not draft_id:
            raise bad_request("DRAFT_ID_INVALID")  # fake's wording
        thread = self._thread_for(chat, p)
        text = p.get("text")
        parsed = self._parse(text, p) if text else Parsed("")
        if len(parsed.text) > TEXT_LIMIT:
            raise bad_request("message is too long")
        self._drafts.append(
            Draft(
                chat_id=chat.id,
                draft_id=draft_id,
                thread_id=thread,
                text=text,
                visible_text=parsed.text,
                parse_mode=p.get("parse_mode") or None,
                entities=parsed.entities,
                at=time.time(),
            )
        )
        return True

    async def _api_editmessagetext(self, p: dict[str, Any], f: Any) -> Any:
        msg = self._editable(p)
        if msg.kind != "text":
            raise bad_request("there is no text in the message to edit")
        text = p.get("text")
        if not text:
            raise bad_request("message text is empty")
        parsed = self._parse(text, p)
        if not parsed.text:
            raise bad_request("message text is empty")
        if len(parsed.text) > TEXT_LIMIT:
            raise bad_request("message is too long")
        markup = self._markup(p)
        return self._apply_edit(msg, text, parsed, p.get("parse_mode") or None, markup)

    async def _api_editmessagecaption(self, p: dict[str, Any], f: Any) -> Any:
        msg = self._editable(p)
        if msg.kind not in ("photo", "document"):
            raise bad_request("there is no caption in the message to edit")
        caption = p.get("caption") or ""
        parsed = self._parse(caption, p, caption=True)
        if len(parsed.text) > CAPTION_LIMIT:
            raise bad_request("message caption is too long")
        markup = self._markup(p)
        return self._apply_edit(msg, caption or None, parsed, p.get("parse_mode") or None, markup)

    async def _api_editmessagereplymarkup(self, p: dict[str, Any], f: Any) -> Any:
        msg = self._editable(p)
        markup = self._markup(p)
        return self._apply_edit(msg, None, None, None, markup)

    async def _api_deletemessage(self, p: dict[str, Any], f: Any) -> Any:
        chat = self._chat_for(p, sending=False)
        mid = maybe_int(p.get("message_id"))
        msg = chat.messages.get(mid) if mid is not None else None
        if msg is None or msg.deleted:
            raise bad_request("message to delete not found")
        if msg.kind == "forum_topic_created":
            raise bad_request("message can't be deleted")
        msg.deleted = True
        return True

    async def _send_file(
        self, p: dict[str, Any], files: dict[str, Any], kind: str
    ) -> dict[str, Any]:
        chat = self._chat_for(p)
        thread = self._thread_for(chat, p)
        data, fname, mime, existing = self._upload(p, files, kind)
        if len(data) > UPLOAD_LIMIT:
            raise ApiError(413, "Request Entity Too Large")
        if not data:
            raise bad_request("file must be non-empty")
        caption = p.get("caption") or None
        parsed = self._parse(caption, p, caption=True) if caption else Parsed("")
        if len(parsed.text) > CAPTION_LIMIT:
            raise bad_request("message caption is too long")
        markup = self._markup(p)
        reply_to = self._reply_to(chat, p)
        if kind == "photo":
            size = image_size(data)
            if size is None:
                raise bad_request("IMAGE_PROCESS_FAILED")
            rec = existing or self._store_file(
                data, "photos", ".jpg", None, "image/jpeg", width=size[0], height=size[1]
            )
        else:
            ext = "." + fname.rsplit(".", 1)[1] if fname and "." in fname else ""
            rec = existing or self._store_file(data, "documents", ext, fname, mime)
        msg = self._new_bot_message(chat, kind, p, caption, parsed, markup, thread, reply_to, rec)
        return msg.to_api()

    async def _api_senddocument(self, p: dict[str, Any], f: Any) -> Any:
        return await self._send_file(p, f, "document")

    async def _api_sendphoto(self, p: dict[str, Any], f: Any) -> Any:
        return await self._send_file(p, f, "photo")

    async def _api_answercallbackquery(self, p: dict[str, Any], f: Any) -> Any:
        qid = str(p.get("callback_query_id") or "")
        rec = self._callbacks.get(qid)
        too_old = (
            rec is not None
            and self.callback_query_ttl is not None
            and self.clock() - rec.created > self.callback_query_ttl
        )
        if rec is None or rec.answer is not None or too_old:
            raise bad_request(QUERY_TOO_OLD)
        text = p.get("text") or None
        if text is not None and len(text) > 200:
            raise bad_request("MESSAGE_TOO_LONG")  # fake's wording
        rec.answer = {
            "text": text,
            "show_alert": truthy(p.get("show_alert")),
            "url": p.get("url") or None,
            "cache_time": maybe_int(p.get("cache_time")) or 0,
        }
        return True
