"""Interactive SAS (emoji) verification of the bot by its owner, over a real Synapse.

The bot runs `SasResponder` on a real nio client.  The owner's phone is a second real
nio client that sends the to-device messages: once with nio's own `Sas` (how another
nio-based client talks), once with a spec-conforming initiator written here on
vodozemac the way Element behaves (`hkdf-hmac-sha256.v2`, base64 commitment, MAC over
the cross-signing master key), which is what the bot has to satisfy in practice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nio
import pytest
import vodozemac
from nio.crypto import Sas
from nio.event_builders import ToDeviceMessage

from adapters.matrix.e2ee import sas_core
from adapters.matrix.e2ee.crosssign import ensure_cross_signed
from adapters.matrix.e2ee.verification import SasResponder, Verification
from tests.support.synapse import Synapse

pytestmark = pytest.mark.timeout(120)
V = "m.key.verification."


class Device:
    """A logged-in nio client whose sync loop runs and whose to-device events are kept."""

    def __init__(self, client: nio.AsyncClient) -> None:
        self.client = client
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.changed = asyncio.Event()
        client.add_to_device_callback(self._on, (nio.ToDeviceEvent,))
        self.task = asyncio.create_task(client.sync_forever(timeout=2000))

    async def _on(self, event: nio.ToDeviceEvent) -> None:
        self.events.append((event.source["type"], event.source.get("content", {})))
        self.changed.set()

    def got(self, kind: str, txn: str) -> dict[str, Any] | None:
        return next(
            (c for t, c in self.events if t == V + kind and c.get("transaction_id") == txn), None
        )

    async def next(self, kind: str, txn: str, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while (content := self.got(kind, txn)) is None:
                self.changed.clear()
                await self.changed.wait()
        return content

    async def send(self, kind: str, to: nio.AsyncClient, content: dict[str, Any]) -> None:
        message = ToDeviceMessage(V + kind, to.user_id, to.device_id, content)
        assert isinstance(await self.client.to_device(message), nio.ToDeviceResponse)

    async def request(self, bot: nio.AsyncClient) -> str:
        txn = uuid.uuid4().hex
        await self.send(
            "request",
            bot,
            {
                "from_device": self.client.device_id,
                "methods": ["m.sas.v1"],
                "timestamp": int(time.time() * 1000),
                "transaction_id": txn,
            },
        )
        return txn

    async def know(self, other: nio.AsyncClient) -> nio.OlmDevice:
        assert self.client.olm is not None
        self.client.olm.users_for_key_query.add(other.user_id)
        await self.client.keys_query()
        return self.client.device_store[other.user_id][other.device_id]


@pytest.fixture
async def world(synapse: Synapse, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """A cross-signed bot with a SasResponder, its owner's phone and a stranger."""
    devices: list[Device] = []
    keys: dict[str, str] = {}

    async def login(name: str) -> Device:
        account = synapse.register()
        client = nio.AsyncClient(synapse.base_url, account.user_id, store_path=str(tmp_path / name))
        (tmp_path / name).mkdir()
        assert isinstance(await client.login(account.password, device_name=name), nio.LoginResponse)
        await client.keys_upload()
        if name == "bot":
            state = await ensure_cross_signed(
                client, password=account.password, store_path=tmp_path / name
            )
            keys["master"] = state.master_key
        devices.append(Device(client))
        return devices[-1]

    bot, phone, stranger = await login("bot"), await login("phone"), await login("stranger")
    shown: list[Verification] = []
    emoji_shown = asyncio.Event()

    def on_emoji(verification: Verification) -> None:
        shown.append(verification)
        emoji_shown.set()

    responder = SasResponder(
        bot.client,
        ["telegram:1", f"matrix:{phone.client.user_id}"],
        master_key=keys["master"],
        on_emoji=on_emoji,
    )
    responder.register()
    yield {
        "bot": bot,
        "phone": phone,
        "stranger": stranger,
        "responder": responder,
        "shown": shown,
        "emoji_shown": emoji_shown,
        "master_key": keys["master"],
    }
    for device in devices:
        device.task.cancel()
        await device.client.close()


def unpadded(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


async def test_owner_verifies_bot_with_nio_sas(world: dict[str, Any]) -> None:
    bot, phone, responder = world["bot"], world["phone"], world["responder"]
    bot_device = await phone.know(bot.client)
    txn = await phone.request(bot.client)
    ready = await phone.next("ready", txn)
    assert ready == {
        "from_device": bot.client.device_id,
        "methods": ["m.sas.v1"],
        "transaction_id": txn,
    }
    me = phone.client
    sas = Sas(
        me.user_id,
        me.device_id,
        me.olm.account.identity_keys["ed25519"],
        bot_device,
        transaction_id=txn,
    )
    me.olm.key_verifications[txn] = sas
    await phone.send("start", bot.client, sas.start_verification().content)
    await phone.next("key", txn)  # nio's sync handles it before the callbacks run
    session = responder.sessions[txn]
    # The bot sends its key before its own callback derives the emoji; on a loaded
    # machine the phone can see the key first, so wait for the emoji (not a pause).
    await asyncio.wait_for(world["emoji_shown"].wait(), 10)
    assert sas.established_sas is not None
    # Both sides show the same short string (from the same shared secret).
    indices = sas.established_sas.bytes(sas._extra_info).emoji_indices
    assert session.emoji == [sas_core.EMOJI[i] for i in indices] and len(session.emoji) == 7
    assert session.decimals == tuple(sas.get_decimals())
    assert world["shown"] == [session]
    # The bot waits for the owner: no MAC from it before the owner confirms.
    await asyncio.sleep(0.5)
    assert phone.got("mac", txn) is None and session.state == "keys"
    assert isinstance(await me.confirm_short_auth_string(txn), nio.ToDeviceResponse)
    assert (await responder.wait(txn, 10)).state == "verified"
    mac = await phone.next("mac", txn)
    await phone.next("done", txn)
    assert sas.verified
    assert me.device_store[bot.client.user_id][bot.client.device_id].verified
    assert bot.client.device_store[me.user_id][me.device_id].verified
    assert set(mac["mac"]) == {f"ed25519:{bot.client.device_id}", f"ed25519:{world['master_key']}"}


class SpecPhone:
    """The starting side as the spec (and Element) does it, on vodozemac directly."""

    def __init__(self, phone: Device, bot: nio.AsyncClient, bot_ed25519: str) -> None:
        self.phone, self.bot, self.bot_ed25519 = phone, bot, bot_ed25519
        self.sas = vodozemac.Sas()
        self.pub = self.sas.public_key.to_base64()

    async def run_to_emoji(self, txn: str) -> list[tuple[str, str]]:
        me, bot = self.phone.client, self.bot
        self.txn = txn
        start = {
            "from_device": me.device_id,
            "method": "m.sas.v1",
            "transaction_id": txn,
            "key_agreement_protocols": ["curve25519-hkdf-sha256", "curve25519"],
            "hashes": ["sha256"],
            "short_authentication_string": ["decimal", "emoji"],
            "message_authentication_codes": [
                "hkdf-hmac-sha256.v2",
                "org.matrix.msc3783.hkdf-hmac-sha256",
                "hkdf-hmac-sha256",
            ],
        }
        await self.phone.send("start", bot, start)
        accept = await self.phone.next("accept", txn)
        assert accept["message_authentication_code"] == "hkdf-hmac-sha256.v2"
        assert accept["key_agreement_protocol"] == "curve25519-hkdf-sha256"
        await self.phone.send("key", bot, {"transaction_id": txn, "key": self.pub})
        key = (await self.phone.next("key", txn))["key"]
        canonical = json.dumps(start, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert accept["commitment"] == unpadded(hashlib.sha256((key + canonical).encode()).digest())
        self.established = self.sas.diffie_hellman(vodozemac.Curve25519PublicKey.from_base64(key))
        info = (
            f"MATRIX_KEY_VERIFICATION_SAS|{me.user_id}|{me.device_id}|{self.pub}"
            f"|{bot.user_id}|{bot.device_id}|{key}|{txn}"
        )
        return [sas_core.EMOJI[i] for i in self.established.bytes(info).emoji_indices]

    async def confirm(self) -> None:
        me, bot = self.phone.client, self.bot
        info = (
            f"MATRIX_KEY_VERIFICATION_MAC{me.user_id}{me.device_id}"
            f"{bot.user_id}{bot.device_id}{self.txn}"
        )
        key_id = f"ed25519:{me.device_id}"
        mac = self.established.calculate_mac
        await self.phone.send(
            "mac",
            bot,
            {
                "transaction_id": self.txn,
                "mac": {key_id: mac(me.olm.account.identity_keys["ed25519"], info + key_id)},
                "keys": mac(key_id, info + "KEY_IDS"),
            },
        )

    def check_mac(self, content: dict[str, Any], master_key: str) -> None:
        me, bot = self.phone.client, self.bot
        info = (
            f"MATRIX_KEY_VERIFICATION_MAC{bot.user_id}{bot.device_id}"
            f"{me.user_id}{me.device_id}{self.txn}"
        )
        keys = {f"ed25519:{bot.device_id}": self.bot_ed25519, f"ed25519:{master_key}": master_key}
        mac = self.established.calculate_mac
        assert content["keys"] == mac(",".join(sorted(keys)), info + "KEY_IDS")
        assert content["mac"] == {k: mac(v, info + k) for k, v in keys.items()}


async def test_owner_verifies_bot_like_element(world: dict[str, Any]) -> None:
    bot, phone, responder = world["bot"], world["phone"], world["responder"]
    bot_device = await phone.know(bot.client)
    spec = SpecPhone(phone, bot.client, bot_device.ed25519)
    txn = await phone.request(bot.client)
    await phone.next("ready", txn)
    emoji = await spec.run_to_emoji(txn)
    assert responder.sessions[txn].emoji == emoji
    await asyncio.sleep(0.3)
    assert phone.got("mac", txn) is None
    await spec.confirm()
    assert (await responder.wait(txn, 10)).state == "verified"
    spec.check_mac(await phone.next("mac", txn), world["master_key"])
    await phone.next("done", txn)
    assert bot.client.device_store[phone.client.user_id][phone.client.device_id].verified


async def test_owner_rejecting_the_emoji_leaves_nothing_verified(world: dict[str, Any]) -> None:
    bot, phone, responder = world["bot"], world["phone"], world["responder"]
    bot_device = await phone.know(bot.client)
    spec = SpecPhone(phone, bot.client, bot_device.ed25519)
    txn = await phone.request(bot.client)
    await phone.next("ready", txn)
    await spec.run_to_emoji(txn)
    await phone.send(
        "cancel",
        bot.client,
        {"transaction_id": txn, "code": "m.mismatched_sas", "reason": "emoji differ"},
    )
    session = await responder.wait(txn, 10)
    assert (session.state, session.cancel_code) == ("cancelled", "m.mismatched_sas")
    await asyncio.sleep(0.3)
    assert phone.got("mac", txn) is None and phone.got("done", txn) is None
    assert not bot.client.device_store[phone.client.user_id][phone.client.device_id].verified


async def test_strangers_are_refused(world: dict[str, Any]) -> None:
    bot, stranger, responder = world["bot"], world["stranger"], world["responder"]
    bot_device = await stranger.know(bot.client)
    txn = await stranger.request(bot.client)
    cancel = await stranger.next("cancel", txn)
    assert cancel["code"] == "m.user"
    assert (await responder.wait(txn, 5)).state == "cancelled"
    # Starting directly, without a request, does not work either.
    me = stranger.client
    sas = Sas(me.user_id, me.device_id, me.olm.account.identity_keys["ed25519"], bot_device)
    await stranger.send("start", bot.client, sas.start_verification().content)
    cancel = await stranger.next("cancel", sas.transaction_id)
    assert cancel["code"] == "m.user"
    await asyncio.sleep(0.3)
    for txn_id in (txn, sas.transaction_id):
        assert stranger.got("ready", txn_id) is None and stranger.got("accept", txn_id) is None
    assert world["shown"] == []
    assert not bot.client.device_store[me.user_id][me.device_id].verified
