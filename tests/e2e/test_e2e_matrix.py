"""End to end on Matrix: the real matrix-nio adapter (E2EE, vodozemac) against a real
Synapse, the real Claude Code CLI against the fake Anthropic API, the whole bridge
between, and a second real nio client with its own keys as the person's phone.

Each test plays the person (encrypted messages, reactions) and checks what the phone
shows, what went over the wire (every message, edit and file the bot sends is
`m.room.encrypted`; only its reaction "buttons" are plain `m.reaction`, as in every
Matrix client), and what really happened on disk.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nio import UploadResponse
from nio.crypto.attachments import decrypt_attachment

from adapters.matrix.limits import RateLimit
from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.matrix_harness import MatrixHarness, start_matrix_harness, stop_matrix_harness
from tests.support.matrix_phone import Phone, PhoneMessage
from tests.support.synapse import Synapse

pytestmark = pytest.mark.e2e
BUTTON_KEYS = {"✅", "♾️", "❌", "⏹", "⏹️"} | {f"{n}\ufe0f\u20e3" for n in range(1, 10)}


@pytest.fixture()
async def h(tmp_path: Path, synapse: Synapse) -> AsyncIterator[MatrixHarness]:
    harness = await start_matrix_harness(tmp_path, synapse)
    yield harness
    await stop_matrix_harness(harness)


def prompt_pred(m: PhoneMessage) -> bool:
    return "React ✅ Allow" in m.body


async def assert_wire_is_encrypted(h: MatrixHarness) -> dict[str, int]:
    """Every event the bot sent, as the homeserver stores it: messages, edits and files
    are `m.room.encrypted` and decrypt on the phone to the expected relation; reactions
    are `m.annotation`s with a button key on the bot's own messages; all < 64 KiB."""
    raw = await h.phone.raw_events(h.room)
    roots = {b.thread_id for b in h._bindings()}
    bot_ids = {e["event_id"] for e in raw if e["sender"] == h.bot.user_id}
    counts = {"thread": 0, "main": 0, "edit": 0, "reaction": 0}
    for event in raw:
        if event["sender"] != h.bot.user_id or event["type"] == "m.room.member":
            continue
        assert len(json.dumps(event, ensure_ascii=False).encode()) < 65_536
        if event["type"] == "m.reaction":
            rel = event["content"]["m.relates_to"]
            assert rel["rel_type"] == "m.annotation" and rel["event_id"] in bot_ids
            assert rel["key"] in BUTTON_KEYS and set(event["content"]) == {"m.relates_to"}
            counts["reaction"] += 1
            continue
        assert event["type"] == "m.room.encrypted", event["type"]
        assert event["content"]["algorithm"] == "m.megolm.v1.aes-sha2"
        # No plaintext beside the ciphertext: only Megolm's fields (and a cleartext
        # relation).  (Searching the JSON for "body" also hits base64 ciphertext, ~1%.)
        plain = set(event["content"]) - {"ciphertext", "m.relates_to"}
        assert plain <= {"algorithm", "sender_key", "session_id", "device_id"}, plain
        assert set(event["content"].get("m.relates_to") or {}) <= {
            "rel_type",
            "event_id",
            "is_falling_back",
            "m.in_reply_to",
            "key",
        }
        clear = h.phone.decrypt(event)
        assert clear.source["type"] == "m.room.message", type(clear).__name__
        rel = clear.source["content"].get("m.relates_to") or {}
        if rel.get("rel_type") == "m.replace":
            assert rel["event_id"] in bot_ids and "m.new_content" in clear.source["content"]
            counts["edit"] += 1
        elif rel.get("rel_type") == "m.thread":
            assert rel["event_id"] in roots and rel["is_falling_back"] is True
            assert rel["m.in_reply_to"]["event_id"] in bot_ids | roots
            counts["thread"] += 1
        else:
            assert not rel
            counts["main"] += 1
    return counts


async def test_new_session_streams_by_edits_into_an_encrypted_thread(h: MatrixHarness) -> None:
    answer = "\n\n".join(f"Paragraph {i}: add() subtracted, now it adds." for i in range(15))
    h.model.on("fix the failing test", Text(answer, chunk=20, delay=0.05))
    thread, sid = await h.new_session(str(h.root / "app"), "fix the failing test")
    final = await h.wait_text("⏱", thread=thread, timeout=40)
    assert answer in final.body and final.msgtype == "m.text", "a new, notifying event"
    assert final.content["format"] == "org.matrix.custom.html" and "<p>" in final.html
    header = h.phone.messages[thread]
    assert header.thread is None and "app: fix the failing test" in header.body
    assert any(f"session `{sid}`" in m.body for m in h.bot_messages(None))
    started = await h.wait_text("started in", thread=None)
    assert "https://matrix.to/#/" in started.body and started.msgtype == "m.notice"
    status = next(m for m in h.bot_messages(thread) if len(m.versions) > 1)
    # its last edit goes after the answer (the answer first)
    await h.phone.wait(lambda: "Done" in status.body or None)
    assert len(status.versions) >= 3, "the answer streamed by editing the status message"
    assert any("Paragraph 1" in v.get("body", "") for v in status.versions[:-1])
    assert (
        status.reaction_keys(h.bot.user_id) == ["⏹"]
        and "React ⏹ Stop" in status.versions[1]["body"]
    )
    assert "React" not in status.body and "Done" in status.body, "finished: no Stop any more"
    counts = await assert_wire_is_encrypted(h)
    assert counts["edit"] >= 2 and counts["thread"] >= 2 and counts["reaction"] == 1
    # ⏹ on the finished status message is stale: nothing happens
    before = len(h.bot_messages())
    await h.react(status, "⏹")
    await asyncio.sleep(1.5)
    assert len(h.bot_messages()) == before
    assert h.db.sessions.get(sid).cost_usd > 0


async def test_permission_by_reaction_and_by_text_reply(h: MatrixHarness) -> None:
    target = h.root / "app" / "hello.py"
    target.write_text("print('hello')\n")
    h.model.on(
        "greet the world",
        ToolUse("Write", {"file_path": str(target), "content": "print('hello, world')\n"}),
        Text("Updated hello.py."),
    )
    second = h.root / "app" / "second.txt"
    h.model.on(
        "write another",
        ToolUse("Write", {"file_path": str(second), "content": "no"}),
        Text("Left it alone."),
    )
    thread, _ = await h.new_session(str(h.root / "app"), "greet the world")
    prompt = await h.phone.wait_message(prompt_pred)
    assert prompt.thread == thread and prompt.msgtype == "m.text", "a prompt notifies"
    assert '<code class="language-diff">' in prompt.html and "+print('hello, world')" in prompt.body
    assert prompt.content["m.mentions"] == {"user_ids": [h.phone.user_id]}
    assert f'href="https://matrix.to/#/{h.phone.user_id}"' in prompt.html, "a pill"
    await h.phone.wait(lambda: len(prompt.reaction_keys(h.bot.user_id)) == 3 or None)
    assert prompt.reaction_keys(h.bot.user_id) == ["✅", "♾️", "❌"]
    await h.react(prompt, "✅")
    await h.wait_text("Updated hello.py.", thread=thread)
    assert target.read_text() == "print('hello, world')\n"
    await h.phone.wait(lambda: "Allowed by" in prompt.body or None)
    assert "React" not in prompt.body
    # a text reply in the thread answers the next prompt
    await h.say("write another", thread=thread)
    second_prompt = await h.phone.wait_message(lambda m: prompt_pred(m) and "second.txt" in m.body)
    await h.react(prompt, "❌")  # stale: the first prompt is decided
    await h.say("deny because not now", thread=thread)
    await h.wait_text("Left it alone.", thread=thread)
    assert not second.exists() and target.read_text() == "print('hello, world')\n"
    await h.phone.wait(lambda: "Denied by" in second_prompt.body or None)
    counts = await assert_wire_is_encrypted(h)
    assert counts["reaction"] >= 6 + 2  # two prompts and two status messages


async def test_commands_in_a_thread(h: MatrixHarness) -> None:
    app = h.root / "app"
    thread, sid = await h.new_session(str(app))
    await h.wait_text("Ready", thread=thread)
    await h.say("!mode", thread=thread)
    picker = await h.wait_text("Permission mode", thread=thread)
    assert "1️⃣ • Default" in picker.body and "2️⃣ Accept edits" in picker.body
    await h.phone.wait(lambda: len(picker.reaction_keys(h.bot.user_id)) == 3 or None)
    await h.react(picker, "2️⃣")
    await h.wait_text("Permission mode: **acceptEdits**", thread=thread)
    h.model.on(
        "auto edit",
        ToolUse("Write", {"file_path": str(app / "auto.txt"), "content": "auto"}),
        Text("Auto-edited."),
    )
    await h.say("auto edit", thread=thread)
    await h.wait_text("Auto-edited.", thread=thread)
    assert (app / "auto.txt").read_text() == "auto"
    await h.say("!model claude-test-model", thread=thread)
    await h.wait_text("Model: **claude-test-model**", thread=thread)
    await h.say("!cost", thread=thread)
    await h.wait_text("This session:", thread=thread)
    await h.say("!diff", thread=thread)
    await h.wait_text("git diff", thread=thread)
    await h.say("!sessions")
    listing = await h.wait_text("Sessions", thread=None)
    assert sid in listing.body and "matrix.to" in listing.html
    await h.say("!help")
    help_msg = await h.wait_text("!new", thread=None)
    for cmd in ("!stop", "!mode", "!model", "!end", "!sessions", "!diff", "!cost"):
        assert cmd in help_msg.body
    await h.say("!end", thread=thread)
    await h.wait_text("ended", thread=thread)
    await h.phone.wait(lambda: h.db.sessions.get(sid).state == "ended" or None)


async def test_stop_by_reaction_and_by_command(h: MatrixHarness) -> None:
    slow = Text("word " * 300, chunk=5, delay=0.05)
    h.model.on("count slowly", slow)
    h.model.on("count again", slow)
    h.model.on("are you there", Text("Still here."))
    thread, _ = await h.new_session(str(h.root / "app"), "count slowly")
    status = await h.wait_text("React ⏹ Stop", thread=thread)
    await h.phone.wait(lambda: status.reaction_keys(h.bot.user_id) or None)
    await h.react(status, "⏹️")  # with the variation selector, as emoji pickers send it
    # The whole answer streams in 15 s, inside these 20 s waits: the answer arriving proves
    # nothing on its own.  A stop shows as "Stopped" on the status and a cut answer.
    final = await h.wait_text("⏱", thread=thread, timeout=20)
    await h.phone.wait(lambda: "Stopped" in status.body or None, 20)
    assert final.body.count("word") < 300, "the answer was cut, not streamed to its end"
    await h.say("count again", thread=thread)
    await h.phone.wait(
        lambda: len([m for m in h.bot_messages(thread) if "⏹" in m.body]) >= 2 or None
    )
    second = next(
        m for m in h.bot_messages(thread) if "React ⏹ Stop" in m.body and m is not status
    )
    await h.say("!stop", thread=thread)
    await h.phone.wait(
        lambda: len([m for m in h.bot_messages(thread) if "⏱" in m.body]) >= 2 or None, 20
    )
    await h.phone.wait(lambda: "Stopped" in second.body or None, 20)
    second_final = [m for m in h.bot_messages(thread) if "⏱" in m.body][-1]
    assert second_final.body.count("word") < 300, "the answer was cut, not streamed to its end"
    await h.say("are you there", thread=thread)
    await h.wait_text("Still here.", thread=thread)


async def test_unencrypted_room_is_refused_and_says_why(h: MatrixHarness) -> None:
    plain = await h.phone.create_room([h.bot.user_id], encrypted=False, name="plain")
    await h.phone.wait_member(plain, h.bot.user_id)
    await h.say(f"!new {h.root / 'app'} hello", room=plain)
    refusal = await h.phone.wait_message(
        lambda m: m.room_id == plain and "not end-to-end encrypted" in m.body
    )
    assert refusal.sender == h.bot.user_id and not refusal.encrypted
    await h.say("are you there?", room=plain)
    await asyncio.sleep(1.0)
    assert len([m for m in h.phone.in_room(plain) if m.sender == h.bot.user_id]) == 1, "said once"
    assert not h._bindings() and not h.model.requests


async def test_restart_keeps_the_device_and_still_decrypts(h: MatrixHarness) -> None:
    h.model.on("remember the number 42", Text("I will remember 42."))
    h.model.on("what number", Text("It was 42."))
    thread, sid = await h.new_session(str(h.root / "app"), "remember the number 42")
    await h.wait_text("I will remember 42.", thread=thread)
    devices = await h.phone.query_devices(h.bot.user_id)
    assert len(devices) == 1
    all_devices = h.synapse.devices(h.bot.user_id)  # with the registration's, keyless
    await h.restart_bot()
    await h.say("what number", thread=thread)
    answer = await h.wait_text("It was 42.", thread=thread, timeout=40)
    assert answer.encrypted
    assert await h.phone.query_devices(h.bot.user_id) == devices, "no new device appeared"
    assert h.synapse.devices(h.bot.user_id) == all_devices
    assert any("remember the number 42" in str(r.get("messages")) for r in h.model.requests[-2:])
    assert h.db.sessions.get(sid).claude_session_id


async def test_invites_and_strangers(h: MatrixHarness, synapse: Synapse) -> None:
    stranger = await Phone(synapse.base_url, synapse.register(), h.tmp / "stranger").start()
    try:
        # a stranger's invite is declined
        theirs = await stranger.create_room([h.bot.user_id], name="mine")
        await stranger.wait(
            lambda: _membership(synapse, theirs, h.bot.user_id) == "leave" or None, 20
        )
        # in the owner's room a stranger's reaction and messages change nothing
        target = h.root / "app" / "x.txt"
        h.model.on(
            "owner asks",
            ToolUse("Write", {"file_path": str(target), "content": "x"}),
            Text("Owner done."),
        )
        thread, _ = await h.new_session(str(h.root / "app"), "owner asks")
        prompt = await h.phone.wait_message(prompt_pred)
        await h.phone.client.room_invite(h.room, stranger.user_id)
        await stranger.wait(lambda: h.room in stranger.client.invited_rooms or None)
        await stranger.client.join(h.room)
        await stranger.wait_member(h.room, h.bot.user_id)
        await stranger.react(h.room, prompt.event_id, "✅")
        await stranger.say(h.room, f"!new {h.root / 'app'} steal the keys")
        bait = await _send_file(stranger, h.room, b"x" * 4096, "bait.txt", thread)
        await h.wait_text("only works for its owners")  # once, wherever it was first due
        await asyncio.sleep(1.0)
        assert not target.exists() and "Allowed" not in prompt.body
        await h.react(prompt, "❌")
        await h.wait_text("Owner done.", thread=thread)
        assert not target.exists() and not h.model_saw("steal the keys")
        refused = [r for r in h.db.audit.recent() if not r.allowed]
        assert refused and all(r.user == f"matrix:{stranger.user_id}" for r in refused)
        assert len(refused) >= 3, "the reaction, the command and the file were refused"
        # the stranger's file was never fetched; the owner's is (Synapse's access log)
        h.model.on("here is my file", Text("Got the file."))
        mine = await _send_file(h.phone, h.room, b"mine\n", "mine.txt", thread, "here is my file")
        await h.wait_text("Got the file.", thread=thread)
        fetched = " ".join(synapse.responses(h.bot.user_id, 200))
        assert mine in fetched and bait not in fetched
        assert (h.root / "app" / ".threadline" / "inbox" / "mine.txt").read_bytes() == b"mine\n"
    finally:
        await stranger.stop()


async def _send_file(
    phone: Phone, room: str, data: bytes, name: str, thread: str, caption: str = ""
) -> str:
    """An encrypted `m.file` in `thread`; returns its media id."""
    resp, keys = await phone.client.upload(
        io.BytesIO(data), "text/plain", name, encrypt=True, filesize=len(data)
    )
    assert isinstance(resp, UploadResponse) and keys, resp
    await phone.send(
        room,
        {
            "msgtype": "m.file",
            "body": caption or name,
            "filename": name,
            "info": {"mimetype": "text/plain", "size": len(data)},
            "file": {**keys, "url": resp.content_uri},
            "m.relates_to": {"rel_type": "m.thread", "event_id": thread},
        },
    )
    return str(resp.content_uri).rsplit("/", 1)[-1]


def _membership(synapse: Synapse, room: str, user: str) -> str | None:
    from urllib.parse import quote

    state = synapse.request(
        "GET", f"/_synapse/admin/v1/rooms/{quote(room)}/state", token=synapse.admin.access_token
    )["state"]
    found = [e for e in state if e["type"] == "m.room.member" and e["state_key"] == user]
    return found[0]["content"]["membership"] if found else None


async def test_long_answer_is_split_and_a_long_diff_is_an_encrypted_file(h: MatrixHarness) -> None:
    paras = [f"Section {i}. " + "Lorem <ipsum> & dolor sit amet. " * 40 for i in range(60)]
    answer = "\n\n".join(paras)
    assert len(answer) > 70_000
    target = h.root / "app" / "big.py"
    content = "".join(f"value_{i} = {i} * 2  # generated line\n" for i in range(400))
    h.model.on(
        "write a big file",
        ToolUse("Write", {"file_path": str(target), "content": content}),
        Text(answer, chunk=2000),
    )
    thread, _ = await h.new_session(str(h.root / "app"), "write a big file")
    prompt = await h.phone.wait_message(prompt_pred)
    doc = await h.phone.wait_message(lambda m: m.msgtype == "m.file" and m.thread == thread)
    assert doc.content["filename"].endswith(".diff") and "url" not in doc.content
    file = doc.content["file"]
    got = await h.phone.client.download(file["url"])
    plain = decrypt_attachment(got.body, file["key"]["k"], file["hashes"]["sha256"], file["iv"])
    assert b"+value_399 = 399 * 2" in plain and b"+value_399" not in got.body
    await h.react(prompt, "✅")
    await h.wait_text("⏱", thread=thread, timeout=60)
    parts = [m for m in h.bot_messages(thread) if "Section" in m.body and m is not prompt]
    assert len(parts) >= 2
    joined = "".join(m.body for m in parts)
    assert all(f"Section {i}." in joined for i in range(60))
    assert joined.count("Lorem <ipsum> & dolor") == 60 * 40
    assert target.read_text() == content
    await assert_wire_is_encrypted(h)


async def test_streaming_at_synapse_default_rate_limits(
    tmp_path: Path, synapse_default_limits: Synapse
) -> None:
    """Synapse's own rc_message (0.2/s, burst 10): the bot paces itself, the answer
    streams and arrives exact, and no rate-limit error reaches the person."""
    server = synapse_default_limits
    h = await start_matrix_harness(tmp_path, server, rate=RateLimit())
    server.unlimit(h.phone.user_id)  # only the bot lives with the defaults
    try:
        answer = " ".join(f"word{i}" for i in range(400))
        h.model.on("stream politely", Text(answer, chunk=30, delay=0.08))
        thread, _ = await h.new_session(str(h.root / "app"), "stream politely", timeout=60)
        final = await h.wait_text("⏱", thread=thread, timeout=150)
        assert answer in final.body
        texts = " ".join(v.get("body", "") for m in h.bot_messages() for v in m.versions)
        assert not re.search(r"LIMIT|rate.?limit|went wrong|failed", texts, re.IGNORECASE)
        status = next(m for m in h.bot_messages(thread) if len(m.versions) > 1)
        assert len(status.versions) >= 2, "it still streamed"
        assert server.responses(h.bot.user_id, 200), "the access log is readable"
        assert not server.responses(h.bot.user_id, 429), "the bot paced itself: no 429 at all"
        await assert_wire_is_encrypted(h)
    finally:
        await stop_matrix_harness(h)
