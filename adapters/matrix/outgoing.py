"""The sending side of the Matrix adapter: outbox rows → room events.

`Outgoing` turns a rendered row into one `m.room.message` (encrypted by nio in an
encrypted room): a thread relation for a session's thread (`rel_type: m.thread` with
the reply fallback, `is_falling_back` and `m.in_reply_to` the thread's latest event,
for clients without threads), an `m.replace` edit with `m.new_content`, an uploaded
(and, in an encrypted room, encrypted) file.  Each event passes the `Pacer` first and
carries the transaction id stored in its row, so a retried row is one event, not two.
(Identical edits never get here: the outbox counts them as sent without a call.)

Buttons are the bot's own reactions on the message, sent after it by a background
task: unencrypted, as every Matrix client sends reactions — clients only aggregate
`m.reaction` events into the tappable row under a message, and a reaction's relation
is cleartext even when encrypted, so encrypting would hide nothing but the emoji.  An
edit without buttons retires the message's buttons.  With `encryption = "required"`
nothing goes to an unencrypted room.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from nio import AsyncClient, MatrixRoom

from adapters.base import NotModified, PermanentError, RateLimited, TransientError
from adapters.matrix import client as mx_client
from adapters.matrix import limits
from adapters.matrix import render as mx_render
from adapters.matrix.buttons import ButtonMap, Entry
from adapters.matrix.errors import MatrixErrors
from adapters.matrix.pacing import Pacer
from adapters.messages import Rendered, ThreadRef
from adapters.tasks import TaskGroup

log = logging.getLogger(__name__)

BACKGROUND_ATTEMPTS = 5
ROOM_WAIT_S = 10.0  # a room just joined is known from the next sync on
MAX_TRACKED = 2000  # thread tails kept in memory


def _remember(cache: OrderedDict[Any, str], key: Any, value: str) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > MAX_TRACKED:
        cache.popitem(last=False)


class Outgoing:
    def __init__(
        self,
        client: Callable[[], AsyncClient],
        *,
        encryption: str,
        pacer: Pacer,
        errors: MatrixErrors,
        buttons: ButtonMap,
        tasks: TaskGroup,
    ) -> None:
        self.client = client
        self.encryption = encryption
        self.pacer = pacer
        self.errors = errors
        self.buttons = buttons
        self.tasks = tasks
        self._tails: OrderedDict[tuple[str, str], str] = OrderedDict()  # thread → latest event

    async def room(self, room_id: str) -> MatrixRoom:
        """The room, once the sync loop knows it (a room just joined appears with the
        next sync); refuses unencrypted rooms when encryption is required."""
        room = self.client().rooms.get(room_id)
        for _ in range(int(ROOM_WAIT_S / 0.1)):
            if room is not None:
                break
            await asyncio.sleep(0.1)
            room = self.client().rooms.get(room_id)
        if room is None:
            raise PermanentError(f"the bot is not in room {room_id}")
        if self.encryption == "required" and not room.encrypted:
            raise PermanentError(f"room {room_id} is not encrypted; refusing to send")
        return room

    def relate(self, content: dict[str, Any], thread: ThreadRef) -> None:
        root = thread.root
        if root and thread.kind == "reply":
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": root}}
        elif root:
            latest = self._tails.get((thread.chat_id, root), root)
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": latest},
            }

    async def room_send(self, room_id: str, kind: str, content: dict[str, Any], txn: str) -> str:
        try:
            resp = await self.errors.call(
                lambda: self.client().room_send(
                    room_id, kind, content, tx_id=txn, ignore_unverified_devices=True
                )
            )
        except RateLimited as e:
            self.pacer.pause(e.retry_after)
            raise
        return str(resp.event_id)

    async def send(self, thread: ThreadRef, msg: Rendered) -> str:
        room = await self.room(thread.chat_id)
        p = msg.payload
        txn = str(p.get("txn") or mx_render.txn())
        if "file" in p:
            content = await self._file_content(room, p["file"], notify=bool(p.get("notify")))
        else:
            content = json.loads(json.dumps(p["content"]))
        self.relate(content, thread)
        await self.pacer.inline()
        event_id = await self.room_send(room.room_id, "m.room.message", content, txn)
        if thread.kind == "thread" and thread.root:
            _remember(self._tails, (thread.chat_id, thread.root), event_id)
        pairs = [(str(k), str(d)) for k, d in p.get("buttons") or ()]
        if pairs:
            self.buttons.set(event_id, Entry(room.room_id, thread.thread_id, tuple(pairs)))
            self.react_later(room.room_id, event_id, [k for k, _ in pairs], txn)
        return event_id

    async def _file_content(
        self, room: MatrixRoom, f: dict[str, Any], *, notify: bool
    ) -> dict[str, Any]:
        data = base64.b64decode(f["data_b64"])
        if len(data) > limits.MAX_UPLOAD_BYTES:
            raise PermanentError(f"{f['name']} is too big to upload ({len(data)} bytes)")
        where = await mx_client.upload(
            self.client(),
            data,
            name=f["name"],
            mime=f["mime"],
            encrypt=room.encrypted,
            errors=self.errors,
        )
        return {
            "msgtype": "m.file",
            "body": f.get("caption") or f["name"],
            "filename": f["name"],
            "info": {"mimetype": f["mime"], "size": len(data)},
            **where,
        }

    async def edit(self, thread: ThreadRef, message_id: str, msg: Rendered) -> None:
        room = await self.room(thread.chat_id)
        p = msg.payload
        if "content" not in p:
            raise NotModified("a file message cannot be edited")
        new = dict(p["content"])
        pairs = [(str(k), str(d)) for k, d in p.get("buttons") or ()]
        content = {
            "msgtype": new.get("msgtype", "m.notice"),
            "body": f"* {new.get('body', '')}",
            "format": mx_render.HTML_FORMAT,
            "formatted_body": f"* {new.get('formatted_body', '')}",
            "m.new_content": {**new, "m.mentions": new.get("m.mentions", {})},
            "m.mentions": {},
            "m.relates_to": {"rel_type": "m.replace", "event_id": message_id},
        }
        txn = str(p.get("txn") or mx_render.txn())
        await self.pacer.inline()
        await self.room_send(room.room_id, "m.room.message", content, txn)
        old = self.buttons.get(message_id)
        if not pairs:
            self.buttons.forget(message_id)  # later reactions on it are stale
            return
        self.buttons.set(message_id, Entry(room.room_id, thread.thread_id, tuple(pairs)))
        known = {k for k, _ in old.pairs} if old else set()
        added = [k for k, _ in pairs if k not in known]
        if added:
            self.react_later(room.room_id, message_id, added, txn)

    async def delete(self, thread: ThreadRef, message_id: str) -> None:
        await self.pacer.inline()
        try:
            await self.errors.call(lambda: self.client().room_redact(thread.chat_id, message_id))
        except PermanentError as e:
            log.info("Matrix: redacting %s failed: %s", message_id, e)

    # --- sends outside the outbox ---------------------------------------------------

    def react_later(self, room_id: str, event_id: str, keys: list[str], txn: str) -> None:
        self.tasks.spawn(self._react(room_id, event_id, keys, txn), name=f"matrix-react-{event_id}")

    async def _react(self, room_id: str, event_id: str, keys: list[str], txn: str) -> None:
        for i, key in enumerate(keys):
            content = {
                "m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}
            }
            await self.send_paced(room_id, "m.reaction", content, f"{txn}-r{i}")

    def notice_later(self, room_id: str, text: str) -> None:
        content = {"msgtype": "m.notice", "body": text}
        self.tasks.spawn(
            self.send_paced(room_id, "m.room.message", content, mx_render.txn()),
            name=f"matrix-notice-{room_id}",
        )

    async def send_paced(self, room_id: str, kind: str, content: dict[str, Any], txn: str) -> None:
        """A send outside the outbox: waits its turn, retries a few times, logs failure."""
        for attempt in range(BACKGROUND_ATTEMPTS):
            await self.pacer.wait()
            try:
                await self.room_send(room_id, kind, content, txn)
                return
            except RateLimited as e:
                await asyncio.sleep(e.retry_after)
            except TransientError as e:
                log.info("Matrix: %s to %s failed (%s); retrying", kind, room_id, e)
                await asyncio.sleep(min(30.0, 2.0**attempt))
            except PermanentError as e:
                log.warning("Matrix: %s to %s refused: %s", kind, room_id, e)
                return
        log.warning("Matrix: gave up sending %s to %s", kind, room_id)
