"""The person's phone in the Matrix tests: a real matrix-nio client with its own E2EE
store, syncing in the background against the test Synapse.

It keeps what a person would see — every message with its edits applied, the
reactions on it, the thread it is in — as `PhoneMessage`s, plus whether each event
arrived encrypted.  `raw_events()` reads the room from the homeserver as stored
(`/messages`, ciphertext and all) so tests can check what went over the wire, and
`decrypt()` opens one of those with the phone's keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    MegolmEvent,
    RoomCreateResponse,
    SyncResponse,
)

from tests.support.synapse import Account

T = TypeVar("T")
ENCRYPTION = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


@dataclass
class PhoneMessage:
    event_id: str
    room_id: str
    sender: str
    content: dict[str, Any]  # the latest content (edits applied)
    encrypted: bool  # the original event was m.room.encrypted
    thread: str | None  # thread root, if in a thread
    versions: list[dict[str, Any]] = field(default_factory=list)  # original + edits
    edit_events: list[str] = field(default_factory=list)
    reactions: list[tuple[str, str]] = field(default_factory=list)  # (sender, key)

    @property
    def body(self) -> str:
        return str(self.content.get("body", ""))

    @property
    def html(self) -> str:
        return str(self.content.get("formatted_body", ""))

    @property
    def msgtype(self) -> str:
        return str(self.content.get("msgtype", ""))

    def reaction_keys(self, sender: str) -> list[str]:
        return [k for s, k in self.reactions if s == sender]


class Phone:
    def __init__(self, base_url: str, account: Account, store: Path) -> None:
        self.account = account
        self.user_id = account.user_id
        store.mkdir(parents=True, exist_ok=True)
        config = AsyncClientConfig(store_sync_tokens=True, max_limit_exceeded=0, max_timeouts=3)
        self.client = AsyncClient(base_url, account.user_id, store_path=str(store), config=config)
        self.base_url = base_url
        self.messages: dict[str, PhoneMessage] = {}
        self.order: list[str] = []
        self.events: list[tuple[str, Any]] = []  # (room id, nio event) as synced
        self._task: asyncio.Task[None] | None = None
        self._pending_edits: list[tuple[str, dict[str, Any]]] = []

    async def start(self) -> Phone:
        resp = await self.client.login(self.account.password, device_name="phone")
        assert not isinstance(resp, ErrorResponse), resp
        await self.client.keys_upload()
        await self.sync_once(0)
        self._task = asyncio.create_task(self._loop(), name=f"phone-{self.user_id}")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.client.close()

    # --- syncing ----------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            try:
                await self.sync_once(5000)
            except asyncio.CancelledError:
                raise
            except Exception:  # the homeserver restarting; try again
                await asyncio.sleep(0.2)

    async def sync_once(self, timeout: int) -> None:
        resp = await self.client.sync(
            timeout=timeout, sync_filter={"room": {"timeline": {"limit": 100}}}
        )
        if isinstance(resp, SyncResponse):
            self._record(resp)
        await self.client.send_to_device_messages()
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        if self.client.should_query_keys:
            await self.client.keys_query()
        if self.client.should_claim_keys:
            await self.client.keys_claim(self.client.get_users_for_key_claiming())

    def _record(self, resp: SyncResponse) -> None:
        for room_id, info in resp.rooms.join.items():
            for event in info.timeline.events:
                self.events.append((room_id, event))
                self._apply(room_id, event)

    def _apply(self, room_id: str, event: Any) -> None:
        source = getattr(event, "source", {}) or {}
        content = source.get("content") or {}
        rel = content.get("m.relates_to") or {}
        encrypted = bool(getattr(event, "decrypted", False)) or isinstance(event, MegolmEvent)
        if source.get("type") == "m.reaction" and rel.get("rel_type") == "m.annotation":
            target = self.messages.get(rel.get("event_id", ""))
            if target is not None:
                target.reactions.append((event.sender, rel.get("key", "")))
            return
        if source.get("type") != "m.room.message":
            return
        if rel.get("rel_type") == "m.replace":
            self._pending_edits.append((rel.get("event_id", ""), source))
            self._flush_edits()
            return
        thread = rel.get("event_id") if rel.get("rel_type") == "m.thread" else None
        msg = PhoneMessage(
            event.event_id, room_id, event.sender, content, encrypted, thread, [content]
        )
        self.messages[event.event_id] = msg
        self.order.append(event.event_id)
        self._flush_edits()

    def _flush_edits(self) -> None:
        left = []
        for target_id, source in self._pending_edits:
            target = self.messages.get(target_id)
            if target is None:
                left.append((target_id, source))
                continue
            new = source["content"].get("m.new_content") or {}
            target.content = new
            target.versions.append(new)
            target.edit_events.append(source.get("event_id", ""))
        self._pending_edits = left

    # --- acting -----------------------------------------------------------------------

    async def create_room(
        self, invite: list[str], *, encrypted: bool = True, name: str = ""
    ) -> str:
        resp = await self.client.room_create(
            name=name or None,
            invite=invite,
            initial_state=[ENCRYPTION] if encrypted else [],
        )
        assert isinstance(resp, RoomCreateResponse), resp
        await self.wait(lambda: resp.room_id in self.client.rooms or None)
        return resp.room_id

    async def wait_member(self, room_id: str, user_id: str, timeout: float = 20.0) -> None:
        """Until `user_id` has joined and the phone knows their devices."""

        def joined() -> bool | None:
            room = self.client.rooms.get(room_id)
            if room is None or user_id not in room.users:
                return None
            if room.encrypted and not list(self.client.device_store.active_user_devices(user_id)):
                return None
            return True

        await self.wait(joined, timeout)

    async def send(
        self, room_id: str, content: dict[str, Any], kind: str = "m.room.message"
    ) -> str:
        if self.client.should_query_keys:
            await self.client.keys_query()
        resp = await self.client.room_send(room_id, kind, content, ignore_unverified_devices=True)
        assert not isinstance(resp, ErrorResponse), resp
        return str(resp.event_id)

    async def say(self, room_id: str, text: str, *, thread: str | None = None) -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": text}
        if thread:
            latest = self.latest_in_thread(room_id, thread) or thread
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": thread,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": latest},
            }
        return await self.send(room_id, content)

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        """As Element does: an unencrypted `m.reaction` (its relation is cleartext anyway)."""
        rel = {"rel_type": "m.annotation", "event_id": event_id, "key": key}
        return await self.send(room_id, {"m.relates_to": rel}, kind="m.reaction")

    # --- reading ----------------------------------------------------------------------

    def in_room(self, room_id: str, thread: str | None | bool = False) -> list[PhoneMessage]:
        """Messages in the room; `thread=None`: main timeline only; a root: that thread."""
        out = [self.messages[e] for e in self.order if self.messages[e].room_id == room_id]
        if thread is False:
            return out
        return [m for m in out if m.thread == thread]

    def latest_in_thread(self, room_id: str, root: str) -> str | None:
        found = [m.event_id for m in self.in_room(room_id, root)]
        return found[-1] if found else None

    async def wait(self, pred: Callable[[], T | None], timeout: float = 30.0) -> T:
        deadline = time.monotonic() + timeout
        while True:
            got = pred()
            if got:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError("phone: condition not met in time")
            await asyncio.sleep(0.05)

    async def wait_message(
        self, pred: Callable[[PhoneMessage], bool], timeout: float = 30.0
    ) -> PhoneMessage:
        return await self.wait(
            lambda: next((self.messages[e] for e in self.order if pred(self.messages[e])), None),
            timeout,
        )

    async def raw_events(self, room_id: str) -> list[dict[str, Any]]:
        """The room's events as the homeserver stores them, oldest first."""
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b&limit=1000"
        headers = {"Authorization": f"Bearer {self.client.access_token}"}
        async with aiohttp.ClientSession() as http:
            async with http.get(self.base_url + path, headers=headers) as resp:
                resp.raise_for_status()
                chunk = (await resp.json())["chunk"]
        return list(reversed(chunk))

    def decrypt(self, raw: dict[str, Any]) -> Any:
        event = MegolmEvent.from_dict(raw)
        return self.client.decrypt_event(event)

    async def query_devices(self, user_id: str) -> list[str]:
        """The user's device ids from `/keys/query` (what another client sees)."""
        body = {"device_keys": {user_id: []}}
        headers = {"Authorization": f"Bearer {self.client.access_token}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{self.base_url}/_matrix/client/v3/keys/query", json=body, headers=headers
            ) as resp:
                resp.raise_for_status()
                got = await resp.json()
        return sorted(got.get("device_keys", {}).get(user_id, {}))
