"""End to end on Matrix (real Synapse, encrypted room, the whole daemon with the real
CLI): what a homeserver could forge is refused.  The forged events are sent with the
owner's own account through the raw client-server API, unencrypted - exactly what an
admin of the homeserver could inject in the owner's name."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.support.matrix_harness import MatrixHarness, start_matrix_harness, stop_matrix_harness
from tests.support.synapse import Synapse

pytestmark = pytest.mark.e2e


@pytest.fixture()
async def h(tmp_path: Path, synapse: Synapse) -> AsyncIterator[MatrixHarness]:
    harness = await start_matrix_harness(tmp_path, synapse)
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
