"""End to end on Matrix (real Synapse, encrypted room, the whole daemon with the real
CLI): what a homeserver could forge is refused.  The forged events are sent with the
owner's own account through the raw client-server API, unencrypted - exactly what an
admin of the homeserver could inject in the owner's name.  Under `approvals =
"verified"` a prompt is decided only by an encrypted reply from a device the owner
cross-signed (the phone's account gets a cross-signing identity with the same code
the bot uses for its own); a forged ✅ and a reply from a second, not cross-signed
device of the owner are refused.  Under "reactions" (the default) the forged ✅
decides, as before."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from nio import MegolmEvent

from adapters.matrix.e2ee import crosssign
from tests.support.element_harness import start_world, stop_world
from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.matrix_harness import MatrixHarness, start_matrix_harness, stop_matrix_harness
from tests.support.matrix_phone import Phone, PhoneMessage
from tests.support.synapse import Synapse

pytestmark = pytest.mark.e2e


@pytest.fixture()
async def h(tmp_path: Path, synapse: Synapse) -> AsyncIterator[MatrixHarness]:
    harness = await start_matrix_harness(tmp_path, synapse)
    yield harness
    await stop_matrix_harness(harness)


@pytest.fixture()
async def hv(tmp_path: Path, synapse: Synapse) -> AsyncIterator[MatrixHarness]:
    harness = await start_matrix_harness(tmp_path, synapse, matrix_extra='approvals = "verified"')
    yield harness
    await stop_matrix_harness(harness)


async def forge(h: MatrixHarness, kind: str, content: dict[str, Any]) -> str:
    """An unencrypted event in the owner's name, straight through the client API."""
    path = f"/_matrix/client/v3/rooms/{quote(h.room)}/send/{kind}/{uuid.uuid4().hex}"
    headers = {"Authorization": f"Bearer {h.phone.client.access_token}"}
    async with aiohttp.ClientSession() as http:
        async with http.put(h.phone.base_url + path, json=content, headers=headers) as resp:
            resp.raise_for_status()
            return str((await resp.json())["event_id"])


def audit(h: MatrixHarness) -> list[tuple[str, str, bool]]:
    return [(r.action, r.detail, r.allowed) for r in h.db.audit.recent()]


async def test_plaintext_message_in_an_encrypted_room_is_refused(h: MatrixHarness) -> None:
    await forge(h, "m.room.message", {"msgtype": "m.text", "body": f"!new {h.root}/app forged"})
    notice = await h.wait_text("unencrypted message", timeout=20)
    assert notice.msgtype == "m.notice"
    await forge(h, "m.room.message", {"msgtype": "m.text", "body": "!help"})
    await h.say("!help")  # encrypted: answered, and handled after the second forgery
    await h.wait_text("!new", timeout=20)
    assert len([m for m in h.bot_messages() if "unencrypted message" in m.body]) == 1
    assert len([m for m in h.bot_messages() if "!new" in m.body]) == 1, "only the real !help"
    assert not h._bindings() and not h.model_saw("forged")
    refused = [(a, d) for a, d, ok in audit(h) if a.startswith("refused") and not ok]
    assert [a for a, _ in refused] == ["refused", "refused-notified"], refused  # newest first
    assert all(d.startswith("plaintext: plaintext message in encrypted room") for _, d in refused)


async def prompt_for_a_write(h: MatrixHarness) -> tuple[str, PhoneMessage, Path]:
    target = h.root / "app" / "hello.py"
    target.write_text("old\n")
    h.model.on(
        "greet the world",
        ToolUse("Write", {"file_path": str(target), "content": "new\n"}),
        Text("Updated hello.py."),
    )
    thread, _ = await h.new_session(str(h.root / "app"), "greet the world")
    prompt = await h.phone.wait_message(lambda m: "React ✅ Allow" in m.body)
    await h.phone.wait(lambda: len(prompt.reaction_keys(h.bot.user_id)) == 3 or None)
    return thread, prompt, target


def forged_check(h: MatrixHarness, prompt: PhoneMessage) -> dict[str, Any]:
    rel = {"rel_type": "m.annotation", "event_id": prompt.event_id, "key": "✅"}
    return {"m.relates_to": rel}


async def test_forged_reaction_decides_under_reactions(h: MatrixHarness) -> None:
    thread, prompt, target = await prompt_for_a_write(h)
    await forge(h, "m.reaction", forged_check(h, prompt))
    await h.wait_text("Updated hello.py.", thread=thread)
    assert target.read_text() == "new\n"


async def test_verified_refuses_forged_reaction_and_unsigned_device(
    hv: MatrixHarness, tmp_path: Path
) -> None:
    h = hv
    await crosssign.ensure_cross_signed(
        h.phone.client, password=h.phone.account.password, store_path=tmp_path / "phone-xsign"
    )
    thread, prompt, target = await prompt_for_a_write(h)
    # 1. a forged ✅: refused, with a notice saying how to answer
    await forge(h, "m.reaction", forged_check(h, prompt))
    await h.wait_text("Reactions are not encrypted", thread=thread, timeout=20)
    # 2. an encrypted "allow" from a second device of the owner, not cross-signed
    second = await Phone(h.synapse.base_url, h.phone.account, tmp_path / "phone2").start()
    try:
        await second.say(h.room, "allow", thread=thread)
        refusal = await h.wait_text(
            "not sent from a device you have cross-signed", thread=thread, timeout=20
        )
        # and the bot did not share its room key with that device: it cannot read the answer
        seen = await second.wait(
            lambda: next((e for _, e in second.events if e.event_id == refusal.event_id), None)
        )
        assert isinstance(seen, MegolmEvent), "the bot's keys went to a device not cross-signed"
    finally:
        await second.stop()
    assert target.read_text() == "old\n" and "Allowed by" not in prompt.body
    # 3. the same from the owner's cross-signed device decides it
    await h.say("allow", thread=thread)
    await h.wait_text("Updated hello.py.", thread=thread)
    assert target.read_text() == "new\n"
    actions = [a for a, _, _ in audit(h)]
    assert "refused-notified" in actions, actions


async def forge_as(base_url: str, user: str, password: str, room: str, content: Any) -> None:
    """A plaintext `m.reaction` in `user`'s name from a fresh login: what the
    homeserver's admin could inject."""
    async with aiohttp.ClientSession() as http:
        login = {"type": "m.login.password", "user": user, "password": password}
        async with http.post(f"{base_url}/_matrix/client/v3/login", json=login) as resp:
            resp.raise_for_status()
            token = (await resp.json())["access_token"]
        path = f"/_matrix/client/v3/rooms/{quote(room)}/send/m.reaction/{uuid.uuid4().hex}"
        headers = {"Authorization": f"Bearer {token}"}
        async with http.put(base_url + path, json=content, headers=headers) as resp:
            resp.raise_for_status()


async def test_element_verified_refuses_a_forged_check_and_takes_an_encrypted_allow(
    tmp_path: Path, synapse: Synapse
) -> None:
    """Element's own crypto (matrix-js-sdk + Rust crypto) as the owner's phone, its
    device cross-signed by Element's bootstrap: a forged ✅ is refused, the encrypted
    `allow` Element sends decides."""
    w = await start_world(tmp_path, synapse, matrix_extra='approvals = "verified"')
    try:
        target = w.root / "app" / "hello.py"
        w.model.on(
            "write hello",
            ToolUse("Write", {"file_path": str(target), "content": "hi\n"}),
            Text("Wrote hello.py."),
        )
        thread = await w.new_session("write hello")
        prompt = await w.wait_text("React ✅ Allow", thread=thread, timeout=60)
        rel = {"rel_type": "m.annotation", "event_id": prompt.event_id, "key": "✅"}
        await forge_as(
            synapse.base_url, w.person.user_id, w.person.password, w.room, {"m.relates_to": rel}
        )
        notice = await w.wait_text("Reactions are not encrypted", thread=thread)
        assert notice.event.encrypted and not target.exists()
        await w.phone.send(w.room, "allow", thread=thread)
        await w.wait_text("Wrote hello.py.", thread=thread, timeout=60)
        assert target.read_text() == "hi\n"
    finally:
        await stop_world(w)
