"""The Bot API's wire format: method names (case-insensitive), request parameters
(form, multipart, JSON or query string) and how loosely typed values are read."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .errors import bad_request

METHODS = [
    "getMe",
    "logOut",
    "close",
    "deleteWebhook",
    "setWebhook",
    "getWebhookInfo",
    "getUpdates",
    "setMyCommands",
    "getMyCommands",
    "deleteMyCommands",
    "sendMessage",
    "editMessageText",
    "editMessageReplyMarkup",
    "editMessageCaption",
    "deleteMessage",
    "sendMessageDraft",
    "sendDocument",
    "sendPhoto",
    "answerCallbackQuery",
    "createForumTopic",
    "editForumTopic",
    "closeForumTopic",
    "reopenForumTopic",
    "deleteForumTopic",
    "sendChatAction",
    "getChat",
    "getFile",
    "setMessageReaction",
]
CANONICAL = {m.lower(): m for m in METHODS}


async def read_params(
    request: web.Request,
) -> tuple[dict[str, Any], dict[str, tuple[str | None, bytes, str | None]]]:
    params: dict[str, Any] = dict(request.query)
    files: dict[str, tuple[str | None, bytes, str | None]] = {}
    ctype = request.content_type
    if request.method == "GET" or not request.can_read_body:
        return params, files
    if ctype == "application/json":
        body = await request.read()
        if body:
            try:
                data = json.loads(body)
            except ValueError:
                raise bad_request("can't parse JSON") from None
            if not isinstance(data, dict):
                raise bad_request("can't parse JSON")
            params.update(data)
    elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        post = await request.post()
        for k, v in post.items():
            if isinstance(v, web.FileField):
                files[k] = (v.filename, v.file.read(), v.content_type)
            else:
                params[k] = v if isinstance(v, str) else bytes(v).decode()
    else:
        await request.read()
    return params, files


def maybe_int(v: Any) -> int | None:
    if v is None or v == "" or isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    try:
        return int(str(v).strip())
    except ValueError:
        return None


def truthy(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v is None:
        return False
    return str(v).strip().lower() in ("true", "1", "yes")


def json_param(v: Any, what: str) -> Any:
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            raise bad_request(f"can't parse {what} JSON object") from None
    return v
