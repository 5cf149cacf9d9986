"""Attachments: a photo reaches Claude as an image block, a document lands in the
session's inbox and is named in the prompt, and `get PATH` sends a file back — only
from inside the session directory.  End to end through the real python-telegram-bot
(the fake Bot API serves the files) and the real Claude Code CLI (the fake model
records what it was sent); the path and name rules also as unit tests."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.messages import Attachment
from bridge.files import (
    FileRefused,
    prepare_prompt,
    read_inside,
    sanitise_name,
    save_to_inbox,
    sniff_image,
)
from tests.support.fakes.anthropic import Text
from tests.support.fakes.telegram import TINY_PNG
from tests.support.harness import OWNER, Harness, start_harness, stop_harness

# --- units ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..", "file"),
        (".bashrc", "bashrc"),
        ("a/b\\c.txt", "c.txt"),
        ("we;ird $(name)`x`.sh", "we_ird _(name)_x_.sh"),
        ("ctrl\x00\x1b[31m.txt", "ctrl_31m.txt"),
        ("", "file"),
    ],
)
def test_sanitise_name(raw: str, want: str) -> None:
    assert sanitise_name(raw) == want


def test_sanitise_name_keeps_the_extension_of_a_long_name() -> None:
    name = sanitise_name("x" * 500 + ".tar.gz")
    assert len(name) <= 120 and name.endswith(".gz")


def test_sniffed_image_types() -> None:
    assert sniff_image(TINY_PNG) == "image/png"
    assert sniff_image(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_image(b"GIF89a...") == "image/gif"
    assert sniff_image(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert sniff_image(b"%PDF-1.7") is None


def test_inbox_never_overwrites_and_is_gitignored(tmp_path: Path) -> None:
    first = save_to_inbox(tmp_path, "notes.txt", b"one")
    second = save_to_inbox(tmp_path, "notes.txt", b"two")
    assert first.name == "notes.txt" and second.name == "notes-1.txt"
    assert first.read_bytes() == b"one" and second.read_bytes() == b"two"
    assert (tmp_path / ".threadline" / ".gitignore").read_text() == "*\n"
    assert oct(first.stat().st_mode & 0o777) == "0o600"
    # a planted symlink with the next free name is not followed
    outside = tmp_path.parent / "victim.txt"
    (tmp_path / ".threadline" / "inbox" / "notes-2.txt").symlink_to(outside)
    third = save_to_inbox(tmp_path, "notes.txt", b"three")
    assert third.name == "notes-3.txt" and not outside.exists()


def test_prepare_prompt_caps_documents_and_defaults_image_text(tmp_path: Path) -> None:
    photo = Attachment.of("image", "photo.jpg", "image/jpeg", TINY_PNG)
    only_photo = prepare_prompt("", [(photo, TINY_PNG)], tmp_path, max_bytes=1000)
    assert only_photo.images == [("image/png", TINY_PNG)] and only_photo.text
    big = Attachment.of("file", "big.bin", "application/octet-stream", b"x" * 2000)
    capped = prepare_prompt("look", [(big, b"x" * 2000)], tmp_path, max_bytes=1000)
    assert not capped.saved and "not saved" in capped.text and capped.text.startswith("look")


def test_read_inside_refuses_escapes(tmp_path: Path) -> None:
    cwd = tmp_path / "app"
    (cwd / "sub").mkdir(parents=True)
    (cwd / "sub" / "ok.txt").write_text("fine")
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    (cwd / "link").symlink_to(secret)
    (cwd / "dirlink").symlink_to(tmp_path)
    data, rel = read_inside(str(cwd), "sub/ok.txt", max_bytes=100)
    assert data == b"fine" and str(rel) == os.path.join("sub", "ok.txt")
    assert read_inside(str(cwd), str(cwd / "sub" / "ok.txt"), max_bytes=100) == (data, rel)
    assert read_inside(str(cwd), "sub/../sub/./ok.txt", max_bytes=100) == (data, rel)
    for raw, why in [
        ("../secret.txt", "outside"),
        (str(secret), "outside"),
        ("link", "symbolic link"),
        ("dirlink/secret.txt", "symbolic link"),
        ("sub", "not a regular file"),
        ("missing.txt", "does not exist"),
        ("sub/ok.txt/x", "does not exist"),
        ("", "which file"),
    ]:
        with pytest.raises(FileRefused, match=why):
            read_inside(str(cwd), raw, max_bytes=100)
    (cwd / "big.txt").write_bytes(b"x" * 101)
    with pytest.raises(FileRefused, match="limit"):
        read_inside(str(cwd), "big.txt", max_bytes=100)


# --- end to end ------------------------------------------------------------------


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path)
    yield harness
    await stop_harness(harness)


def _user() -> dict[str, Any]:
    return {"id": OWNER, "is_bot": False, "first_name": "Ada"}


def _image_blocks(h: Harness) -> list[dict[str, Any]]:
    return [
        block
        for request in h.model.requests
        for message in request.get("messages", [])
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if block.get("type") == "image"
    ]


@pytest.mark.e2e
async def test_photo_document_and_get(h: Harness) -> None:
    app = h.root / "app"
    h.model.on("what is in this picture", Text("A very small picture."))
    h.model.on("summarise the attached file", Text("It is a short note."))
    topic, _ = await h.new_session(str(app))
    await h.wait_text("Ready", thread_id=topic)

    # a photo: an image block in the model's request, with its real media type
    h.tg.user_photo(
        h.chat_id, _user(), TINY_PNG, caption="what is in this picture", message_thread_id=topic
    )
    await h.wait_text("A very small picture.", thread_id=topic)
    images = _image_blocks(h)
    assert images, "the photo reached the model as an image block"
    assert images[0]["source"]["media_type"] == "image/png"
    assert base64.b64decode(images[0]["source"]["data"]) == TINY_PNG

    # a document: saved into the inbox under a safe name, and named in the prompt
    h.tg.user_document(
        h.chat_id,
        _user(),
        b"meeting at noon\n",
        file_name="../notes;rm -rf.txt",
        caption="summarise the attached file",
        message_thread_id=topic,
    )
    await h.wait_text("It is a short note.", thread_id=topic)
    saved = app / ".threadline" / "inbox" / "notes_rm -rf.txt"
    assert saved.read_bytes() == b"meeting at noon\n"
    assert h.model_saw(".threadline/inbox/notes_rm -rf.txt"), "the prompt names the saved file"

    # get: a file from inside the session directory comes back as a document
    (app / "out").mkdir()
    (app / "out" / "result.csv").write_text("a,b\n1,2\n")
    h.say("/get out/result.csv", thread_id=topic)
    doc = await h.wait_msg(lambda m: m.kind == "document", thread_id=topic)
    assert doc.file is not None and doc.file.data == b"a,b\n1,2\n"
    assert doc.file.file_name == "result.csv"

    # …and nothing from outside it, not through `..`, an absolute path or a symlink
    secret = h.root / "secret.txt"
    secret.write_text("top secret")
    (app / "sneaky").symlink_to(secret)
    for n, raw in enumerate(["../secret.txt", str(secret), "sneaky"], start=1):
        h.say(f"/get {raw}", thread_id=topic)
        await h.tg.wait_until(
            lambda n=n: (
                len([m for m in h.bot_messages(topic) if "🚫" in (m.visible_text or "")]) >= n
                or None
            )
        )
    docs = [m for m in h.bot_messages(topic) if m.kind == "document"]
    assert len(docs) == 1 and all(
        b"top secret" not in (d.file.data if d.file else b"") for d in docs
    )
    refused = [r for r in h.db.audit.recent() if r.action == "get" and not r.allowed]
    assert len(refused) == 3
