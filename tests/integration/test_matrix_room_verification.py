"""In-room SAS (emoji) verification of the bot *user* by its owner, over a real Synapse.

Element verifies another user - the cross-signed bot - in their DM room: the request
is an `m.room.message` (msgtype `m.key.verification.request`) and every later step a
room event related to it, encrypted in an encrypted room.  The bot runs
`RoomSasResponder` on a real nio client; the owner's phone is a second real nio
client driven like Element (`tests/support/element_room_phone.py`), which checks the bot's
accept, key and MAC the way Element does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nio
import pytest

from adapters.matrix.e2ee.crosssign import ensure_cross_signed
from adapters.matrix.e2ee.room_verification import RoomSasResponder
from adapters.matrix.e2ee.sas_core import Verification
from tests.support.element_room_phone import ElementPhone, Member, verified
from tests.support.synapse import Synapse

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def world(synapse: Synapse, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """A cross-signed bot with a RoomSasResponder, its owner's phone and a stranger."""
    members: list[Member] = []

    async def login(name: str) -> Member:
        account = synapse.register()
        (tmp_path / name).mkdir()
        client = nio.AsyncClient(synapse.base_url, account.user_id, store_path=str(tmp_path / name))
        assert isinstance(await client.login(account.password, device_name=name), nio.LoginResponse)
        await client.keys_upload()
        state = await ensure_cross_signed(
            client, password=account.password, store_path=tmp_path / name
        )
        members.append(Member(client, state.master_key))
        return members[-1]

    bot, phone, stranger = await login("bot"), await login("phone"), await login("stranger")
    shown: list[Verification] = []
    owners = ["telegram:1", f"matrix:{phone.client.user_id}"]
    responder = RoomSasResponder(
        bot.client, owners, master_key=bot.master_key, on_emoji=shown.append
    )
    responder.register()
    yield {"bot": bot, "phone": phone, "stranger": stranger, "responder": responder, "shown": shown}
    await responder.close()
    for member in members:
        member.task.cancel()
        await member.client.close()


async def element(world: dict[str, Any], *, encrypted: bool = True) -> ElementPhone:
    bot, phone = world["bot"], world["phone"]
    room_id = await phone.dm(bot, encrypted=encrypted)
    bot_device = await phone.know(bot.client)
    await bot.know(phone.client)
    return ElementPhone(phone, bot.client, room_id, bot_device.ed25519)


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain"])
async def test_owner_verifies_the_bot_user_in_their_dm(
    world: dict[str, Any], encrypted: bool
) -> None:
    bot, phone, responder = world["bot"], world["phone"], world["responder"]
    spec = await element(world, encrypted=encrypted)
    assert not verified(bot, phone)
    txn = await spec.request()
    ready = await phone.next("ready", txn)
    assert ready == {
        "from_device": bot.client.device_id,
        "methods": ["m.sas.v1"],
        "m.relates_to": {"rel_type": "m.reference", "event_id": txn},
        "encrypted": encrypted,
    }
    emoji = await spec.run_to_emoji()
    session = responder.sessions[txn]
    assert session.emoji == emoji and len(emoji) == 7  # both screens show the same
    assert world["shown"] == [session] and session.state == "keys"
    # The bot waits for the owner: no MAC from it before the owner confirms.
    await asyncio.sleep(0.5)
    assert phone.got("mac", txn) is None and not verified(bot, phone)
    await spec.confirm()
    assert (await responder.wait(txn, 10)).state == "verified"
    mac = await phone.next("mac", txn)
    assert mac["encrypted"] == encrypted
    spec.check_mac(mac, await phone.master_key_of(bot.client.user_id))
    assert (await phone.next("done", txn))["encrypted"] == encrypted
    assert verified(bot, phone)
    await spec.send("done", {})  # Element's done: nothing more happens
    await asyncio.sleep(0.3)
    assert phone.got("cancel", txn) is None and session.state == "verified"


async def test_a_stranger_in_room_request_is_cancelled(world: dict[str, Any]) -> None:
    bot, stranger, responder = world["bot"], world["stranger"], world["responder"]
    room_id = await stranger.dm(bot)
    txn = await stranger.request(room_id, bot.client.user_id)
    cancel = await stranger.next("cancel", txn)
    assert cancel["code"] == "m.user" and cancel["encrypted"]
    assert (await responder.wait(txn, 5)).state == "cancelled"
    # Carrying on regardless gets nothing either.
    await stranger.send(room_id, "start", txn, {"from_device": stranger.client.device_id})
    await asyncio.sleep(0.5)
    assert stranger.got("ready", txn) is None and stranger.got("accept", txn) is None
    assert world["shown"] == []
    assert not verified(bot, stranger)


async def test_owner_cancelling_leaves_nothing_verified(world: dict[str, Any]) -> None:
    bot, phone, responder = world["bot"], world["phone"], world["responder"]
    spec = await element(world)
    txn = await spec.request()
    await phone.next("ready", txn)
    await spec.run_to_emoji()
    await spec.send("cancel", {"code": "m.mismatched_sas", "reason": "emoji differ"})
    session = await responder.wait(txn, 10)
    assert (session.state, session.cancel_code) == ("cancelled", "m.mismatched_sas")
    await spec.confirm()  # a MAC after the cancel is ignored
    await asyncio.sleep(0.5)
    assert phone.got("mac", txn) is None and phone.got("done", txn) is None
    assert not verified(bot, phone)


async def test_a_mac_over_another_key_is_refused(world: dict[str, Any]) -> None:
    bot, phone, responder = world["bot"], world["phone"], world["responder"]
    spec = await element(world)
    txn = await spec.request()
    await phone.next("ready", txn)
    await spec.run_to_emoji()
    await spec.confirm(wrong_key=True)
    assert (await phone.next("cancel", txn))["code"] == "m.key_mismatch"
    session = await responder.wait(txn, 5)
    assert (session.state, session.cancel_code) == ("cancelled", "m.key_mismatch")
    assert phone.got("mac", txn) is None and phone.got("done", txn) is None
    assert not verified(bot, phone)


async def test_an_unconfirmed_run_times_out(world: dict[str, Any]) -> None:
    bot, phone, responder = world["bot"], world["phone"], world["responder"]
    responder.sas_timeout = 1.5
    spec = await element(world)
    txn = await spec.request()
    await phone.next("ready", txn)
    await spec.run_to_emoji()  # ... and the owner never confirms
    assert (await phone.next("cancel", txn))["code"] == "m.timeout"
    session = await responder.wait(txn, 5)
    assert (session.state, session.cancel_code) == ("cancelled", "m.timeout")
    assert phone.got("mac", txn) is None
    assert not verified(bot, phone)
