"""The Matrix `ChatAdapter`: matrix-nio (with E2EE, vodozemac) wired to the bridge's seam.

Owns the nio `AsyncClient` (logged in on one persistent device, `client.py`), the sync
loop (a registered task; every response goes to the `Receiver`), and delivery of
rendered outbox rows.  A session is an `m.thread` rooted at its header message in the
room (`[matrix] room`, or the room the command came from): `ThreadRef("matrix", room,
header event id)`; messages in it carry `rel_type: m.thread` with the reply fallback
(`is_falling_back`, `m.in_reply_to` the thread's latest event) for clients without
threads.  Edits are `m.replace` with `m.new_content`; identical edits are skipped
(`NotModified`) to spare the rate budget.  Buttons are the bot's own reactions on the
message (`buttons.py`), sent after it in the background; they are sent unencrypted as
every Matrix client does (reactions must stay `m.reaction` for clients to aggregate
them; their relation is cleartext in any case), while every message, edit and file is
encrypted in encrypted rooms.  With `encryption = "required"` nothing is sent to, or
taken from, an unencrypted room except the notice saying why.

Every event passes the `Pacer` (the homeserver's per-user budget) and carries the
transaction id stored in its outbox row, so a retried row is one event, not two.
Hooks for trust (other modules of this package, used when present): after login
`crosssign.ensure_cross_signed(client, password=, store_path=)`, then
`verification.SasResponder(client, owners, master_key=).register()` before the first
sync, so a verification request waiting in it is answered.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import importlib.util
import inspect
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from nio import AsyncClient, ErrorResponse, MatrixRoom

from adapters.base import (
    ChatAdapter,
    InboundSink,
    NotModified,
    PermanentError,
    RateLimited,
    TransientError,
)
from adapters.matrix import client as mx_client
from adapters.matrix import limits
from adapters.matrix import render as mx_render
from adapters.matrix.buttons import ButtonMap, Entry
from adapters.matrix.errors import MatrixErrors
from adapters.matrix.pacing import Pacer
from adapters.matrix.receiver import Receiver
from adapters.matrix.store import MatrixStore
from bridge.config import MatrixConfig
from bridge.messages import Inbound, Outbound, Rendered, ThreadRef
from bridge.tasks import TaskGroup

log = logging.getLogger(__name__)

REACTION_ATTEMPTS = 5
MAX_TRACKED = 2000  # edited-content digests and thread tails kept in memory


def _hook(name: str) -> Any | None:
    """An optional module of this package (cross-signing, SAS), if it exists."""
    full = f"adapters.matrix.{name}"
    return importlib.import_module(full) if importlib.util.find_spec(full) else None


def _remember(cache: OrderedDict[Any, str], key: Any, value: str) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > MAX_TRACKED:
        cache.popitem(last=False)


class MatrixAdapter(ChatAdapter):
    platform = "matrix"

    def __init__(
        self,
        config: MatrixConfig,
        *,
        owners_hint: Sequence[str] = (),
        rate: limits.RateLimit | None = None,
    ) -> None:
        self.config = config
        self.owners = tuple(
            o.removeprefix("matrix:") for o in owners_hint if o.startswith("matrix:")
        )
        self.rate = rate or limits.RateLimit()
        self.capabilities = limits.capabilities(self.rate)
        self.pacer = Pacer(self.rate)
        self.errors = MatrixErrors([config.password, config.access_token])
        self.store = MatrixStore(config.store_path)
        self.buttons = ButtonMap(None)
        self.tasks = TaskGroup()
        self.username = ""
        self.receiver: Receiver | None = None
        self._client: AsyncClient | None = None
        self._sink: InboundSink | None = None
        self._sas: Any = None
        self._edited: OrderedDict[str, str] = OrderedDict()  # event → digest of its content
        self._tails: OrderedDict[tuple[str, str], str] = OrderedDict()  # thread → latest event

    # --- lifecycle --------------------------------------------------------------------

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            raise TransientError("the Matrix client is not running")
        return self._client

    async def start(self, sink: InboundSink) -> None:
        self._sink = sink
        self.store.prepare()
        self.buttons = ButtonMap(self.store.buttons_file)
        encryption = self.config.encryption != "off"
        self._client = client = await mx_client.login(
            self.config, self.store, self.errors, encryption=encryption
        )
        try:
            if client.olm is not None and client.should_upload_keys:
                self.errors.check(await client.keys_upload())
            master_key = await self._cross_sign()
            verification = _hook("verification")
            if verification is not None:
                self._sas = verification.SasResponder(client, self.owners, master_key=master_key)
                self._sas.register()
            self.receiver = Receiver(
                client,
                owners=self.owners,
                encryption=self.config.encryption,
                buttons=self.buttons,
                errors=self.errors,
                deliver=self._deliver,
                notify=self._notice_later,
            )
            first = await self.errors.call(
                lambda: client.sync(
                    timeout=0,
                    sync_filter=mx_client.SYNC_FILTER
                    if client.loaded_sync_token
                    else mx_client.FIRST_SYNC_FILTER,
                    full_state=True,
                )
            )
            await self.receiver.handle(first)
            await self._join_control_room()
            self.tasks.spawn(self._sync_forever(), name="matrix-sync")
        except BaseException:
            await self._shutdown()
            raise
        log.info(
            "Matrix: %s up on device %s (encryption %s)%s",
            client.user_id,
            client.device_id,
            self.config.encryption,
            "" if self.owners else "; no Matrix owner configured yet",
        )

    async def _cross_sign(self) -> str | None:
        """Run the cross-signing hook if it exists; returns the bot's master key."""
        crosssign = _hook("crosssign")
        if crosssign is None:
            return None
        if not self.config.password:
            log.warning("Matrix: cross-signing needs [matrix] password; the bot stays unverified")
            return None
        try:
            state = await crosssign.ensure_cross_signed(
                self.client, password=self.config.password, store_path=self.store.path
            )
        except Exception as e:  # an unverified bot still works; say why it is unverified
            log.error(
                "Matrix: cross-signing the bot's device failed: %s", self.errors.redact(repr(e))
            )
            return None
        return getattr(state, "master_key", None)

    async def _join_control_room(self) -> None:
        room = self.config.room
        if not room or room in self.client.rooms:
            return
        try:
            self.errors.check(await self.client.join(room))
        except Exception as e:
            log.error("Matrix: cannot join the control room %s: %s (invite the bot)", room, e)

    async def _sync_forever(self) -> None:
        backoff = 1.0
        while True:
            try:
                resp = await self.client.sync(
                    timeout=mx_client.SYNC_TIMEOUT_MS, sync_filter=mx_client.SYNC_FILTER
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                resp = None
                log.warning("Matrix: sync failed: %s", self.errors.redact(repr(e))[:300])
            if resp is None or isinstance(resp, ErrorResponse):
                if resp is not None:
                    log.warning("Matrix: sync refused: %s", self.errors.redact(str(resp)))
                await asyncio.sleep(backoff)
                backoff = min(60.0, backoff * 2)
                continue
            backoff = 1.0
            assert self.receiver is not None
            try:
                await self.receiver.handle(resp)
            except Exception:
                log.exception("Matrix: handling a sync response failed")

    async def stop(self) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        await self.tasks.close()
        close = getattr(self._sas, "close", None)
        if close is not None:
            result = close()
            if inspect.isawaitable(result):
                await result
        self._sas = None
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _deliver(self, event: Inbound) -> None:
        if self._sink is None:
            return
        try:
            await self._sink(event)
        except Exception:
            log.exception("the bridge failed on an inbound Matrix event")

    # --- threads ----------------------------------------------------------------------

    async def open_thread(
        self, chat_id: str, title: str, header: Outbound, *, prefer_topic: bool = True
    ) -> tuple[ThreadRef, str | None]:
        parts = self.render(header)
        first = parts[0].payload
        if "content" in first:
            name = " ".join(title.split())[:200] or "session"
            content = dict(first["content"])
            content["body"] = f"{name}\n\n{content['body']}"
            content["formatted_body"] = (
                f"<p><strong>{mx_render.escape(name)}</strong></p>\n{content['formatted_body']}"
            )
            parts[0] = Rendered({**first, "content": content})
        header_id = await self.send(ThreadRef(self.platform, chat_id), parts[0])
        root = header_id if prefer_topic else f"reply:{header_id}"
        thread = ThreadRef(self.platform, chat_id, root)
        for part in parts[1:]:
            await self.send(thread, part)
        return thread, header_id

    def thread_link(self, thread: ThreadRef) -> str | None:
        target = (thread.thread_id or "").removeprefix("reply:")
        link = f"https://matrix.to/#/{quote(thread.chat_id, safe='')}"
        return f"{link}/{quote(target, safe='')}" if target else link

    def default_chat(self, origin: ThreadRef) -> str:
        return self.config.room or origin.chat_id

    # --- outgoing ---------------------------------------------------------------------

    def render(self, msg: Outbound) -> list[Rendered]:
        return mx_render.render(msg, self.owners)

    def render_edit(self, msg: Outbound) -> Rendered:
        return mx_render.render_edit(msg, self.owners)

    def _room(self, room_id: str) -> MatrixRoom:
        room = self.client.rooms.get(room_id)
        if room is None:
            raise PermanentError(f"the bot is not in room {room_id}")
        if self.config.encryption == "required" and not room.encrypted:
            raise PermanentError(f"room {room_id} is not encrypted; refusing to send")
        return room

    def _relate(self, content: dict[str, Any], thread: ThreadRef) -> None:
        root = thread.thread_id
        if root and root.startswith("reply:"):
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": root[6:]}}
        elif root:
            latest = self._tails.get((thread.chat_id, root), root)
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": latest},
            }

    async def _room_send(self, room_id: str, kind: str, content: dict[str, Any], txn: str) -> str:
        try:
            resp = await self.errors.call(
                lambda: self.client.room_send(
                    room_id, kind, content, tx_id=txn, ignore_unverified_devices=True
                )
            )
        except RateLimited as e:
            self.pacer.pause(e.retry_after)
            raise
        return str(resp.event_id)

    async def send(self, thread: ThreadRef, msg: Rendered) -> str:
        room = self._room(thread.chat_id)
        p = msg.payload
        txn = str(p.get("txn") or mx_render.txn())
        if "file" in p:
            content = await self._file_content(room, p["file"], notify=bool(p.get("notify")))
        else:
            content = json.loads(json.dumps(p["content"]))
        self._relate(content, thread)
        await self.pacer.inline()
        event_id = await self._room_send(room.room_id, "m.room.message", content, txn)
        if thread.thread_id and not thread.thread_id.startswith("reply:"):
            _remember(self._tails, (thread.chat_id, thread.thread_id), event_id)
        pairs = [(str(k), str(d)) for k, d in p.get("buttons") or ()]
        if pairs:
            self.buttons.set(event_id, Entry(room.room_id, thread.thread_id, tuple(pairs)))
            self._react_later(room.room_id, event_id, [k for k, _ in pairs], txn)
        return event_id

    async def _file_content(
        self, room: MatrixRoom, f: dict[str, Any], *, notify: bool
    ) -> dict[str, Any]:
        data = base64.b64decode(f["data_b64"])
        if len(data) > limits.MAX_UPLOAD_BYTES:
            raise PermanentError(f"{f['name']} is too big to upload ({len(data)} bytes)")
        where = await mx_client.upload(
            self.client,
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
        room = self._room(thread.chat_id)
        p = msg.payload
        if "content" not in p:
            raise NotModified("a file message cannot be edited")
        new = dict(p["content"])
        pairs = [(str(k), str(d)) for k, d in p.get("buttons") or ()]
        digest = hashlib.sha256(json.dumps([new, pairs], sort_keys=True).encode()).hexdigest()
        if self._edited.get(message_id) == digest:
            raise NotModified("same content")
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
        await self._room_send(room.room_id, "m.room.message", content, txn)
        _remember(self._edited, message_id, digest)
        old = self.buttons.get(message_id)
        if not pairs:
            self.buttons.forget(message_id)  # later reactions on it are stale
            return
        self.buttons.set(message_id, Entry(room.room_id, thread.thread_id, tuple(pairs)))
        known = {k for k, _ in old.pairs} if old else set()
        added = [k for k, _ in pairs if k not in known]
        if added:
            self._react_later(room.room_id, message_id, added, txn)

    async def delete(self, thread: ThreadRef, message_id: str) -> None:
        await self.pacer.inline()
        try:
            await self.errors.call(lambda: self.client.room_redact(thread.chat_id, message_id))
        except PermanentError as e:
            log.info("Matrix: redacting %s failed: %s", message_id, e)

    # --- background sends -------------------------------------------------------------

    def _react_later(self, room_id: str, event_id: str, keys: list[str], txn: str) -> None:
        self.tasks.spawn(self._react(room_id, event_id, keys, txn), name=f"matrix-react-{event_id}")

    async def _react(self, room_id: str, event_id: str, keys: list[str], txn: str) -> None:
        for i, key in enumerate(keys):
            content = {
                "m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}
            }
            await self._send_paced(room_id, "m.reaction", content, f"{txn}-r{i}")

    def _notice_later(self, room_id: str, text: str) -> None:
        content = {"msgtype": "m.notice", "body": text}
        self.tasks.spawn(
            self._send_paced(room_id, "m.room.message", content, mx_render.txn()),
            name=f"matrix-notice-{room_id}",
        )

    async def _send_paced(self, room_id: str, kind: str, content: dict[str, Any], txn: str) -> None:
        """A send outside the outbox: waits its turn, retries a few times, logs failure."""
        for attempt in range(REACTION_ATTEMPTS):
            await self.pacer.wait()
            try:
                await self._room_send(room_id, kind, content, txn)
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
