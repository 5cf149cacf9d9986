"""`get PATH` on Matrix in an encrypted room (issue 15, point 6, first half): the file
goes up encrypted (`m.file` with `file`: mxc URL, key, iv, hash; the homeserver only
ever holds ciphertext) and Element's own stack (`element_js`, the phone) decrypts it to
the same bytes, against the real Synapse with the whole daemon as the bot."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.element_harness import World, start_world, stop_world
from tests.support.element_js import ElementEvent
from tests.support.fakes.anthropic import Text
from tests.support.synapse import Synapse

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture()
async def w(tmp_path: Path, synapse: Synapse) -> AsyncIterator[World]:
    world = await start_world(tmp_path, synapse)
    yield world
    await stop_world(world)


async def test_get_sends_an_encrypted_file_that_element_decrypts(w: World) -> None:
    data = os.urandom(70_000) + b"\x00end"  # binary, several AES blocks
    (w.root / "app" / "blob.bin").write_bytes(data)
    w.model.on("hello", Text("Hi."))
    thread = await w.new_session("hello")
    await w.wait_text("Hi.", thread=thread)
    await w.phone.send(w.room, "!get blob.bin", thread=thread)

    def sent_file() -> ElementEvent | None:
        return next(
            (
                e
                for e in w.phone.room_events(w.room)
                if e.sender == w.bot.user_id and e.content.get("msgtype") == "m.file"
            ),
            None,
        )

    event = await w.phone.wait(sent_file, 30)
    assert event.encrypted, "the event itself is Megolm-encrypted"
    assert "url" not in event.content and event.content["file"]["url"].startswith("mxc://")
    assert event.content["filename"] == "blob.bin" and event.content["info"]["size"] == len(data)
    got = await w.phone.call("download_encrypted", file=event.content["file"])
    assert base64.b64decode(got["data_b64"]) == data
    assert got["ciphertext_len"] == len(data)  # AES-CTR: same length, other bytes
