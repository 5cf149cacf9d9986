"""End to end on Matrix: encrypted files and pictures from the owner's phone reach
Claude Code as on the other platforms, and one that does not decrypt is said so.

The phone uploads with nio's attachment encryption (spec "Sending encrypted
attachments": the homeserver stores ciphertext, the key travels inside the
`m.room.encrypted` event); the bot downloads, checks the hash, decrypts, and the
bridge hands the picture to the real Claude Code CLI as an image block.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nio import UploadResponse

from tests.support.fakes.anthropic import Text
from tests.support.fakes.telegram.state import TINY_PNG
from tests.support.matrix_harness import MatrixHarness, start_matrix_harness, stop_matrix_harness
from tests.support.synapse import Synapse

pytestmark = pytest.mark.e2e


@pytest.fixture()
async def h(tmp_path: Path, synapse: Synapse) -> AsyncIterator[MatrixHarness]:
    harness = await start_matrix_harness(tmp_path, synapse)
    yield harness
    await stop_matrix_harness(harness)


async def send_encrypted(
    h: MatrixHarness,
    data: bytes,
    *,
    msgtype: str,
    name: str,
    mime: str,
    thread: str,
    caption: str = "",
    tamper: bool = False,
) -> str:
    """An encrypted `m.image`/`m.file` in `thread`; returns its mxc URL."""
    resp, keys = await h.phone.client.upload(
        io.BytesIO(data), mime, name, encrypt=True, filesize=len(data)
    )
    assert isinstance(resp, UploadResponse) and keys, resp
    file: dict[str, Any] = {**keys, "url": resp.content_uri}
    if tamper:  # what a homeserver swapping the ciphertext would cause: a hash mismatch
        file["hashes"] = {"sha256": base64.b64encode(b"\0" * 32).decode().rstrip("=")}
    await h.phone.send(
        h.room,
        {
            "msgtype": msgtype,
            "body": caption or name,
            "filename": name,
            "info": {"mimetype": mime, "size": len(data)},
            "file": file,
            "m.relates_to": {"rel_type": "m.thread", "event_id": thread},
        },
    )
    return str(resp.content_uri)


def image_blocks(h: MatrixHarness) -> list[dict[str, Any]]:
    return [
        block
        for request in h.model.requests
        for message in request.get("messages", [])
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if block.get("type") == "image"
    ]


async def test_an_encrypted_picture_reaches_claude_as_an_image(h: MatrixHarness) -> None:
    h.model.on("what is in this picture", Text("A very small picture."))
    thread, _ = await h.new_session(str(h.root / "app"))
    await h.wait_text("Ready", thread=thread)
    media = await send_encrypted(
        h,
        TINY_PNG,
        msgtype="m.image",
        name="dot.png",
        mime="image/png",
        thread=thread,
        caption="what is in this picture",
    )
    await h.wait_text("A very small picture.", thread=thread, timeout=60)
    [image] = image_blocks(h)
    assert image["source"]["media_type"] == "image/png"
    assert base64.b64decode(image["source"]["data"]) == TINY_PNG
    stored = await h.phone.client.download(media)
    body = getattr(stored, "body", b"")
    assert body and body != TINY_PNG, "the homeserver only had ciphertext"


async def test_a_file_that_does_not_decrypt_is_left_out_and_said_so(h: MatrixHarness) -> None:
    h.model.on("read my notes", Text("No notes arrived."))
    thread, _ = await h.new_session(str(h.root / "app"))
    await h.wait_text("Ready", thread=thread)
    await send_encrypted(
        h,
        b"secret notes\n",
        msgtype="m.file",
        name="notes.txt",
        mime="text/plain",
        thread=thread,
        caption="read my notes",
        tamper=True,
    )
    notice = await h.wait_text("Not attached", thread=thread, timeout=60)
    assert "notes.txt" in notice.body and "could not be downloaded" in notice.body
    await h.wait_text("No notes arrived.", thread=thread, timeout=60)
    assert not (h.root / "app" / ".threadline" / "inbox" / "notes.txt").exists()
    assert not [m for m in h.bot_messages(thread) if "went wrong" in m.body]
    assert h.model_saw("notes.txt was sent but not attached")
