"""The owner's side of an in-room SAS verification, as Element's Rust crypto does it.

`Member` is a real nio client syncing against the test Synapse that keeps the room
events it sees (and whether they arrived encrypted) and opens DMs.  `ElementPhone`
requests and starts the verification on vodozemac directly: the request as an
`m.room.message`, later steps as room events related to it, `hkdf-hmac-sha256.v2`,
the commitment checked over the start *including* `m.relates_to`, a MAC over its
device and master keys, and the bot's MAC checked against the bot's device key and
the master key the server publishes for it - what Element checks before it trusts
the bot user.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

import nio
import vodozemac

from adapters.matrix.e2ee import sas_core

V = "m.key.verification."
ENCRYPTION = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


async def until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{check.__name__} still false after {timeout} s")


class Member:
    """A logged-in nio client whose sync loop runs and whose room events are kept."""

    def __init__(self, client: nio.AsyncClient, master_key: str) -> None:
        self.client, self.master_key = client, master_key
        self.events: list[tuple[str, dict[str, Any], bool]] = []  # type, content, encrypted
        self.changed = asyncio.Event()
        client.add_event_callback(self._on, (nio.Event,))
        self.task = asyncio.create_task(client.sync_forever(timeout=2000))

    async def _on(self, room: nio.MatrixRoom, event: nio.Event) -> None:
        if event.sender != self.client.user_id:
            source = event.source
            self.events.append((source["type"], source.get("content", {}), event.decrypted))
            self.changed.set()

    def got(self, kind: str, txn: str) -> dict[str, Any] | None:
        for t, content, encrypted in self.events:
            if t == V + kind and content.get("m.relates_to", {}).get("event_id") == txn:
                assert content["m.relates_to"]["rel_type"] == "m.reference"
                return {**content, "encrypted": encrypted}
        return None

    async def next(self, kind: str, txn: str, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while (content := self.got(kind, txn)) is None:
                self.changed.clear()
                await self.changed.wait()
        return content

    async def room_send(self, room_id: str, kind: str, content: dict[str, Any]) -> str:
        resp = await self.client.room_send(room_id, kind, content, ignore_unverified_devices=True)
        assert isinstance(resp, nio.RoomSendResponse), resp
        return str(resp.event_id)

    async def send(self, room_id: str, kind: str, txn: str, content: dict[str, Any]) -> None:
        relation = {"rel_type": "m.reference", "event_id": txn}
        await self.room_send(room_id, V + kind, {**content, "m.relates_to": relation})

    async def request(self, room_id: str, to: str) -> str:
        """The request as Element sends it; its event id is the transaction id."""
        content = {
            "msgtype": V + "request",
            "body": f"{self.client.user_id} is requesting to verify your key, but your "
            "client does not support in-chat key verification.",
            "from_device": self.client.device_id,
            "methods": ["m.sas.v1", "m.qr_code.show.v1", "m.reciprocate.v1"],
            "to": to,
        }
        return await self.room_send(room_id, "m.room.message", content)

    async def dm(self, other: Member, *, encrypted: bool = True) -> str:
        """A direct chat with `other` (who joins), known to both sides."""
        resp = await self.client.room_create(
            is_direct=True,
            invite=[other.client.user_id],
            initial_state=[ENCRYPTION] if encrypted else [],
        )
        assert isinstance(resp, nio.RoomCreateResponse), resp
        await until(lambda: resp.room_id in other.client.invited_rooms)
        assert isinstance(await other.client.join(resp.room_id), nio.JoinResponse)
        room_id = str(resp.room_id)

        def both_in() -> bool:
            rooms = [m.client.rooms.get(room_id) for m in (self, other)]
            return all(room is not None and room.joined_count == 2 for room in rooms)

        await until(both_in)
        return room_id

    async def master_key_of(self, user_id: str) -> str:
        """The master key the server publishes for `user_id` (nio drops it)."""
        body = json.dumps({"device_keys": {user_id: []}})
        headers = {"Authorization": f"Bearer {self.client.access_token}"}
        resp = await self.client.send("POST", "/_matrix/client/v3/keys/query", body, headers)
        async with resp:
            data = await resp.json()
        return str(next(iter(data["master_keys"][user_id]["keys"].values())))

    async def know(self, other: nio.AsyncClient) -> nio.OlmDevice:
        assert self.client.olm is not None
        self.client.olm.users_for_key_query.add(other.user_id)
        await self.client.keys_query()
        return self.client.device_store[other.user_id][other.device_id]


def verified(member: Member, other: Member) -> bool:
    """Whether `member`'s nio store has `other`'s device as verified."""
    devices = member.client.device_store.active_user_devices(other.client.user_id)
    return any(d.verified for d in devices if d.id == other.client.device_id)


def unpadded(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


class ElementPhone:
    """The requesting and starting side, on vodozemac, as Element's Rust crypto does it."""

    def __init__(self, phone: Member, bot: nio.AsyncClient, room_id: str, bot_key: str) -> None:
        self.phone, self.me, self.bot, self.room_id = phone, phone.client, bot, room_id
        self.bot_ed25519 = bot_key
        self.sas = vodozemac.Sas()
        self.pub = self.sas.public_key.to_base64()

    async def request(self) -> str:
        self.txn = await self.phone.request(self.room_id, self.bot.user_id)
        return self.txn

    async def send(self, kind: str, content: dict[str, Any]) -> None:
        await self.phone.send(self.room_id, kind, self.txn, content)

    async def run_to_emoji(self) -> list[tuple[str, str]]:
        me, bot, txn = self.me, self.bot, self.txn
        start = {
            "from_device": me.device_id,
            "method": "m.sas.v1",
            "key_agreement_protocols": ["curve25519-hkdf-sha256", "curve25519"],
            "hashes": ["sha256"],
            "message_authentication_codes": [
                "hkdf-hmac-sha256.v2",
                "org.matrix.msc3783.hkdf-hmac-sha256",
                "hkdf-hmac-sha256",
            ],
            "short_authentication_string": ["decimal", "emoji"],
            "m.relates_to": {"rel_type": "m.reference", "event_id": txn},
        }
        await self.send("start", start)
        accept = await self.phone.next("accept", txn)
        assert accept["method"] == "m.sas.v1"  # ruma cannot parse an accept without it
        assert accept["key_agreement_protocol"] == "curve25519-hkdf-sha256"
        assert accept["message_authentication_code"] == "hkdf-hmac-sha256.v2"
        assert (accept["hash"], accept["short_authentication_string"]) == (
            "sha256",
            ["decimal", "emoji"],
        )
        await self.send("key", {"key": self.pub})
        key = (await self.phone.next("key", txn))["key"]
        canonical = json.dumps(start, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert accept["commitment"] == unpadded(hashlib.sha256((key + canonical).encode()).digest())
        self.established = self.sas.diffie_hellman(vodozemac.Curve25519PublicKey.from_base64(key))
        info = (
            f"MATRIX_KEY_VERIFICATION_SAS|{me.user_id}|{me.device_id}|{self.pub}"
            f"|{bot.user_id}|{bot.device_id}|{key}|{txn}"
        )
        return [sas_core.EMOJI[i] for i in self.established.bytes(info).emoji_indices]

    async def confirm(self, *, wrong_key: bool = False) -> None:
        """The owner says the emoji match: MAC over our device key and master key."""
        me, bot = self.me, self.bot
        info = f"MATRIX_KEY_VERIFICATION_MAC{me.user_id}{me.device_id}{bot.user_id}{bot.device_id}{self.txn}"  # fmt: skip
        assert me.olm is not None
        device_key = me.olm.account.identity_keys["ed25519"]
        if wrong_key:  # what a device key swapped by the server would look like
            device_key = vodozemac.Account().ed25519_key.to_base64()
        keys = {f"ed25519:{me.device_id}": device_key}
        keys[f"ed25519:{self.phone.master_key}"] = self.phone.master_key
        mac = self.established.calculate_mac
        await self.send(
            "mac",
            {
                "mac": {key_id: mac(key, info + key_id) for key_id, key in keys.items()},
                "keys": mac(",".join(sorted(keys)), info + "KEY_IDS"),
            },
        )

    def check_mac(self, content: dict[str, Any], master_key: str) -> None:
        """As Element does: every key id MAC'd, each against the key it names."""
        me, bot = self.me, self.bot
        info = f"MATRIX_KEY_VERIFICATION_MAC{bot.user_id}{bot.device_id}{me.user_id}{me.device_id}{self.txn}"  # fmt: skip
        keys = {f"ed25519:{bot.device_id}": self.bot_ed25519, f"ed25519:{master_key}": master_key}
        assert set(content["mac"]) == set(keys)
        verify = self.established.verify_mac  # raises on a mismatch
        verify(",".join(sorted(content["mac"])), info + "KEY_IDS", content["keys"])
        for key_id, tag in content["mac"].items():
            verify(keys[key_id], info + key_id, tag)
