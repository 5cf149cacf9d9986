"""End to end on Matrix: nothing the owner sent while the daemon was down is dropped,
nothing is handled twice, and history from before the bot was there is left alone.

The whole daemon (real nio adapter with E2EE, the real Claude Code CLI against the
fake Anthropic API) against a real Synapse; the phone is a second real nio client.
The bot is stopped (a clean stop, or a "kill -9 after the sync" simulated by putting
the saved sync position back), the phone talks meanwhile, and a new daemon starts on
the same database and store.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.matrix import catchup
from adapters.matrix import client as mx_client
from adapters.matrix.inbox import Inbox
from storage.db import Database
from tests.support.fakes.anthropic import Text
from tests.support.matrix_harness import (
    MatrixHarness,
    _bridge,
    start_matrix_harness,
    stop_matrix_harness,
)
from tests.support.synapse import Synapse

pytestmark = pytest.mark.e2e
DOWN_S = 3.0  # how long the daemon stays down: past the old code's 2 s clock slack


@pytest.fixture()
async def h(tmp_path: Path, synapse: Synapse) -> AsyncIterator[MatrixHarness]:
    harness = await start_matrix_harness(tmp_path, synapse)
    yield harness
    await stop_matrix_harness(harness)


async def stop_bot(h: MatrixHarness) -> None:
    await h.bridge.stop()
    h.db.close()


async def start_bot(h: MatrixHarness) -> None:
    h.db = Database(h.config.storage.url)
    h.db.migrate()
    h.bridge = _bridge(h.config, h.db, h.env, h.rate)
    await h.bridge.start()


async def stay_down(h: MatrixHarness, event_id: str) -> None:
    """Until the homeserver's copy of `event_id` is `DOWN_S` old (the restart took that long)."""
    raw = next(e for e in await h.phone.raw_events(h.room) if e["event_id"] == event_id)
    sent = raw["origin_server_ts"] / 1000
    await h.phone.wait(lambda: time.time() - sent > DOWN_S or None, DOWN_S + 5)


def prompts_with(h: MatrixHarness, needle: str) -> int:
    """How many of the model's requests have `needle` in their latest user turn (the
    CLI puts its environment after it, as a "system" message, on a session's first)."""
    count = 0
    for request in h.model.requests:
        users = [m for m in request.get("messages") or [] if m.get("role") == "user"]
        if users and needle in json.dumps(users[-1]):
            count += 1
    return count


def inbox_file(h: MatrixHarness) -> Path:
    return Path(h.config.matrix.store_path) / "inbox.db"


async def test_prompt_sent_while_down_is_answered_once_with_a_notice(
    h: MatrixHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catchup, "LATE_S", DOWN_S - 1)  # "waited long" without a real minute
    h.model.on("remember the number 42", Text("I will remember 42."))
    h.model.on("what number", Text("It was 42."))
    h.model.on("still there", Text("Still here."))
    thread, _ = await h.new_session(str(h.root / "app"), "remember the number 42")
    await h.wait_text("I will remember 42.", thread=thread)
    await stop_bot(h)
    asked = await h.say("what number", thread=thread)
    await stay_down(h, asked)
    await start_bot(h)
    answer = await h.wait_text("It was 42.", thread=thread, timeout=60)
    assert answer.encrypted
    notice = await h.wait_text("arrived while the daemon was down", thread=thread)
    assert notice.msgtype == "m.notice" and "⏳" in notice.body
    assert h.phone.order.index(notice.event_id) < h.phone.order.index(answer.event_id)
    # a second restart does not bring it back
    await stop_bot(h)
    await start_bot(h)
    await h.say("still there", thread=thread)
    await h.wait_text("Still here.", thread=thread, timeout=60)
    assert prompts_with(h, "what number") == 1, "answered exactly once"
    assert len([m for m in h.bot_messages(thread) if "It was 42." in m.body]) == 1
    assert len([m for m in h.bot_messages(thread) if "while the daemon was down" in m.body]) == 1


async def test_a_kill_after_the_sync_repeats_no_prompt(h: MatrixHarness) -> None:
    """The daemon handled a prompt but died before saving its sync position: the next
    start gets the prompt from the homeserver again, recognises it and skips it."""
    h.model.on("count the files", Text("There are 3 files."))
    h.model.on("still there", Text("Still here."))
    thread, _ = await h.new_session(str(h.root / "app"))
    await h.wait_text("Ready", thread=thread)
    device = h.adapter.client.device_id
    assert h.adapter.inbox is not None
    before = h.adapter.inbox.position(device)
    assert before, "the sync position is saved in the store"
    await h.say("count the files", thread=thread)
    await h.wait_text("There are 3 files.", thread=thread, timeout=60)
    await stop_bot(h)
    rewind = Inbox(inbox_file(h))
    assert rewind.position(device) != before
    rewind.save_position(device, before)  # as if the kill came before the save
    rewind.close()
    await start_bot(h)
    await h.say("still there", thread=thread)
    await h.wait_text("Still here.", thread=thread, timeout=60)
    assert prompts_with(h, "count the files") == 1, "not answered again"
    assert len([m for m in h.bot_messages(thread) if "3 files" in m.body]) == 1


async def test_a_message_sent_during_a_clean_stop_is_answered_by_the_next_start(
    h: MatrixHarness,
) -> None:
    """From the first step of `Bridge.stop` the adapter takes no more events (the
    gateway's intake is closed): a message arriving while the daemon shuts down stays
    after the saved position and the next start answers it (it used to be taken and
    dropped as "shutting down")."""
    outgoing = h.adapter.outgoing
    plain_send = outgoing.send
    slow = asyncio.Event()

    async def slow_send(thread: Any, msg: Any) -> str:
        if not slow.is_set():  # a slow homeserver keeps the stopping daemon delivering
            slow.set()
            await asyncio.sleep(3.0)
        return await plain_send(thread, msg)

    outgoing.send = slow_send  # type: ignore[method-assign]
    await h.say("!help")
    await h.phone.wait(lambda: slow.is_set() or None)
    stopping = asyncio.create_task(h.bridge.stop())
    await h.phone.wait(lambda: h.bridge.sessions.stopping or None, 10)
    await h.say("!sessions")
    await stopping
    h.db.close()
    await h.wait_text("!new", thread=None)  # the slow /help answer went out
    assert not [m for m in h.bot_messages(None) if "No sessions" in m.body]
    await start_bot(h)
    await h.wait_text("No sessions", thread=None, timeout=30)
    await h.say("!help")
    await h.phone.wait(
        lambda: len([m for m in h.bot_messages(None) if "!new" in m.body]) == 2 or None, 30
    )
    assert len([m for m in h.bot_messages(None) if "No sessions" in m.body]) == 1


async def test_encrypted_messages_sent_while_down_decrypt_after_restart(
    h: MatrixHarness,
) -> None:
    """One on the room key the bot already has; one on a new key the phone sent to the
    bot's device while it was down (queued by the homeserver as a to-device message)."""
    h.model.on("first of two", Text("Got the first."))
    h.model.on("second of two", Text("Got the second."))
    h.model.on("hello", Text("Hello back."))
    thread, _ = await h.new_session(str(h.root / "app"), "hello")
    await h.wait_text("Hello back.", thread=thread)
    await stop_bot(h)
    first = await h.say("first of two", thread=thread)
    assert h.phone.client.olm is not None
    h.phone.client.olm.outbound_group_sessions.pop(h.room)  # the phone rotates its key
    second = await h.say("second of two", thread=thread)
    raw = {e["event_id"]: e for e in await h.phone.raw_events(h.room)}
    assert raw[first]["type"] == raw[second]["type"] == "m.room.encrypted"
    sessions = {raw[e]["content"]["session_id"] for e in (first, second)}
    assert len(sessions) == 2, "the second message is on a key the bot never saw running"
    await stay_down(h, second)
    await start_bot(h)
    await h.wait_text("Got the first.", thread=thread, timeout=60)
    await h.wait_text("Got the second.", thread=thread, timeout=60)
    assert prompts_with(h, "first of two") == 1 and prompts_with(h, "second of two") == 1


async def test_more_missed_than_a_sync_carries_are_all_answered(
    h: MatrixHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The homeserver cuts a long backlog short (a "limited" timeline): the rest is read
    from the room's history back to the saved position, oldest first."""
    monkeypatch.setattr(mx_client, "SYNC_FILTER", {"room": {"timeline": {"limit": 1}}})
    for n in ("one", "two", "three"):
        h.model.on(f"backlog {n}", Text(f"Answered {n}."))
    h.model.on("hello", Text("Hello back."))
    thread, _ = await h.new_session(str(h.root / "app"), "hello")
    await h.wait_text("Hello back.", thread=thread)
    await stop_bot(h)
    for n in ("one", "two", "three"):
        await h.say(f"backlog {n}", thread=thread)
    await start_bot(h)
    for n in ("one", "two", "three"):
        await h.wait_text(f"Answered {n}.", thread=thread, timeout=60)
    order = [
        m.body for m in h.bot_messages(thread) if m.body.startswith("Answered") and "⏱" in m.body
    ]
    assert [b.split()[1] for b in order] == ["one.", "two.", "three."], order
    for n in ("one", "two", "three"):
        assert prompts_with(h, f"backlog {n}") == 1


async def test_history_from_before_the_bot_joined_is_not_handled(
    tmp_path: Path, synapse: Synapse
) -> None:
    """A room the owner talked in before inviting the bot: what was said before the
    bot's join is history, not a request (unencrypted, so it could be read)."""
    h = await start_matrix_harness(tmp_path, synapse, matrix_extra='encryption = "optional"')
    try:
        h.model.on("old request", Text("Ran the old one."))
        h.model.on("fresh request", Text("Ran the fresh one."))
        room = await h.phone.create_room([], encrypted=False, name="earlier")
        await h.say(f"!new {h.root / 'app'} old request", room=room)
        await h.phone.client.room_invite(room, h.bot.user_id)
        await h.phone.wait_member(room, h.bot.user_id)
        await h.say(f"!new {h.root / 'app'} fresh request", room=room)
        await h.phone.wait_message(lambda m: m.room_id == room and "Ran the fresh one." in m.body)
        assert h.model_saw("fresh request") and not h.model_saw("old request")
        assert len([b for b in h._bindings() if b.chat_id == room]) == 1
        # nor after a restart
        await stop_bot(h)
        await start_bot(h)
        await h.say("!sessions", room=room)
        await h.phone.wait_message(lambda m: m.room_id == room and "Sessions" in m.body)
        assert not h.model_saw("old request")
        assert len([b for b in h._bindings() if b.chat_id == room]) == 1
    finally:
        await stop_matrix_harness(h)


async def test_a_new_devices_first_sync_is_history(tmp_path: Path, synapse: Synapse) -> None:
    """A store lost (or a new machine): the bot logs in as a new device, which could not
    decrypt what came before it; its first sync is history, not requests."""
    h = await start_matrix_harness(tmp_path, synapse, matrix_extra='encryption = "optional"')
    try:
        h.model.on("stale request", Text("Ran the stale one."))
        h.model.on("live request", Text("Ran the live one."))
        room = await h.phone.create_room([h.bot.user_id], encrypted=False, name="plain")
        await h.phone.wait_member(room, h.bot.user_id)
        old_device = h.adapter.client.device_id
        await stop_bot(h)
        shutil.rmtree(h.config.matrix.store_path)
        await h.say(f"!new {h.root / 'app'} stale request", room=room)
        await start_bot(h)
        assert h.adapter.client.device_id != old_device, "a new device"
        await h.say(f"!new {h.root / 'app'} live request", room=room)
        await h.phone.wait_message(lambda m: m.room_id == room and "Ran the live one." in m.body)
        assert h.model_saw("live request") and not h.model_saw("stale request")
    finally:
        await stop_matrix_harness(h)
