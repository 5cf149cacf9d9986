"""The Matrix adapter on its own against a real Synapse, with a real nio client as the
person's phone: login and device persistence, threads and edits on the wire, reactions
as button presses (and when they are not), inbound parsing with encrypted attachments,
the error mapping for Synapse's own 429, and `threadline doctor`'s Matrix checks."""

from __future__ import annotations

import asyncio
import io
import json
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nio import UploadResponse
from rich.console import Console

from adapters.base import PermanentError, RateLimited
from adapters.matrix.adapter import MatrixAdapter
from adapters.matrix.config import MatrixConfig
from adapters.matrix.limits import RateLimit
from adapters.messages import (
    AttachmentTooLarge,
    AttachmentUnavailable,
    ButtonPress,
    Inbound,
    ThreadRef,
    UserMessage,
)
from bridge.cli.doctor import check_platform
from bridge.config import Config
from bridge.render import notice, permission_decided, permission_prompt
from tests.support.matrix_phone import Phone
from tests.support.synapse import Account, Synapse

FAST = RateLimit(50.0, 100)


@dataclass
class Setup:
    synapse: Synapse
    bot: Account
    phone: Phone
    adapter: MatrixAdapter
    config: MatrixConfig
    room: str
    inbound: list[Inbound] = field(default_factory=list)

    async def next_inbound(self, kind: type, timeout: float = 15.0) -> Inbound:
        return await self.phone.wait(
            lambda: next((e for e in self.inbound if isinstance(e, kind)), None), timeout
        )


def matrix_config(synapse: Synapse, bot: Account, store: Path, **kw: str) -> MatrixConfig:
    values = {
        "enabled": True,
        "homeserver": synapse.base_url,
        "user_id": bot.user_id,
        "password": bot.password,
        "store_path": str(store),
    }
    return MatrixConfig.model_validate(values | kw)


async def start_adapter(config: MatrixConfig, owner: str, sink: list[Inbound]) -> MatrixAdapter:
    adapter = MatrixAdapter(config, owners_hint=[f"matrix:{owner}"], rate=FAST)

    async def collect(event: Inbound) -> None:
        sink.append(event)

    await adapter.start(collect)
    return adapter


@pytest.fixture()
async def s(tmp_path: Path, synapse: Synapse) -> AsyncIterator[Setup]:
    bot, person = synapse.register(), synapse.register()
    phone = await Phone(synapse.base_url, person, tmp_path / "phone").start()
    config = matrix_config(synapse, bot, tmp_path / "bot")
    events: list[Inbound] = []
    adapter = await start_adapter(config, person.user_id, events)
    room = await phone.create_room([bot.user_id])
    await phone.wait_member(room, bot.user_id)
    setup = Setup(synapse, bot, phone, adapter, config, room, events)
    yield setup
    await setup.adapter.stop()
    await phone.stop()


async def test_the_login_is_kept_and_a_restart_reuses_the_device(s: Setup) -> None:
    device = s.adapter.client.device_id
    creds = json.loads((Path(s.config.store_path) / "credentials.json").read_text())
    assert creds["device_id"] == device and creds["user_id"] == s.bot.user_id
    assert stat.S_IMODE((Path(s.config.store_path) / "credentials.json").stat().st_mode) == 0o600
    before = s.synapse.devices(s.bot.user_id)
    await s.adapter.stop()
    s.adapter = await start_adapter(s.config, s.phone.user_id, s.inbound)
    assert s.adapter.client.device_id == device
    assert s.synapse.devices(s.bot.user_id) == before, "no new device"
    assert await s.phone.query_devices(s.bot.user_id) == [device]
    await s.phone.say(s.room, "after the restart")
    msg = await s.next_inbound(UserMessage)
    assert isinstance(msg, UserMessage) and msg.text == "after the restart"


async def test_an_access_token_from_the_config_is_used_as_is(
    tmp_path: Path, synapse: Synapse
) -> None:
    bot = synapse.register()
    config = matrix_config(
        synapse,
        bot,
        tmp_path / "tok",
        password="",
        access_token=bot.access_token,
        device_id=bot.device_id,
    )
    adapter = await start_adapter(config, "@nobody:localhost", [])
    try:
        assert adapter.client.device_id == bot.device_id
        assert adapter.client.olm is not None, "E2EE set up on the configured device"
        assert synapse.devices(bot.user_id) == [bot.device_id]
    finally:
        await adapter.stop()


async def test_threads_edits_and_reactions_as_buttons(s: Setup) -> None:
    a = s.adapter
    thread, header_id = await a.open_thread(s.room, "app: a title", notice("📂 header"))
    assert thread == ThreadRef("matrix", s.room, header_id)
    header = await s.phone.wait_message(lambda m: m.event_id == header_id)
    assert header.thread is None and header.body.startswith("app: a title")
    prompt = permission_prompt(
        "req42", "Bash", {"command": "make"}, "/w", session_rule="stores `Bash(make)`"
    )
    [rendered] = a.render(prompt)
    prompt_id = await a.send(thread, rendered)
    shown = await s.phone.wait_message(lambda m: m.event_id == prompt_id)
    assert shown.thread == header_id and shown.encrypted
    raw = next(e for e in await s.phone.raw_events(s.room) if e["event_id"] == prompt_id)
    rel = s.phone.decrypt(raw).source["content"]["m.relates_to"]
    assert rel == {
        "rel_type": "m.thread",
        "event_id": header_id,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": header_id},
    }
    await s.phone.wait(lambda: len(shown.reaction_keys(s.bot.user_id)) == 3 or None)
    await s.phone.react(s.room, prompt_id, "♾️")
    press = await s.next_inbound(ButtonPress)
    assert press == ButtonPress(thread, press.sender, prompt_id, "p:req42:s")
    assert press.sender.user_id == s.phone.user_id
    # the decided prompt: edited in place, its reactions no longer act
    await a.edit(
        thread,
        prompt_id,
        a.render_edit(permission_decided("Bash", {"command": "make"}, "/w", "allowed", "Ada")),
    )
    await s.phone.wait(lambda: "Allowed by Ada" in shown.body or None)
    s.inbound.clear()
    await s.phone.react(s.room, prompt_id, "✅")
    await s.phone.react(s.room, header_id, "✅")  # not a message with buttons
    await asyncio.sleep(1.0)
    assert not s.inbound
    # (an identical edit costs no event: the outbox skips it, for every platform —
    # tests/test_outbox.py, test_identical_edit_costs_no_call)
    second = await a.send(thread, a.render(notice("next"))[0])
    raw = next(e for e in await s.phone.raw_events(s.room) if e["event_id"] == second)
    rel = s.phone.decrypt(raw).source["content"]["m.relates_to"]
    assert rel["m.in_reply_to"] == {"event_id": prompt_id}, "the fallback replies to the latest"


async def test_a_retried_row_is_sent_once(s: Setup) -> None:
    rendered = s.adapter.render(notice("only once"))[0]
    first = await s.adapter.send(ThreadRef("matrix", s.room), rendered)
    again = await s.adapter.send(ThreadRef("matrix", s.room), rendered)
    assert first == again, "the stored transaction id makes the homeserver deduplicate"


async def test_inbound_messages_threads_and_encrypted_attachments(s: Setup) -> None:
    await s.phone.say(s.room, "!help")
    msg = await s.next_inbound(UserMessage)
    assert isinstance(msg, UserMessage)
    assert msg.text == "!help" and msg.thread == ThreadRef("matrix", s.room, None)
    assert msg.sender.key == f"matrix:{s.phone.user_id}" and msg.chat_type == "private"
    s.inbound.clear()
    root = await s.phone.say(s.room, "a root")
    await s.next_inbound(UserMessage)
    s.inbound.clear()
    await s.phone.say(s.room, "in a thread", thread=root)
    msg = await s.next_inbound(UserMessage)
    assert isinstance(msg, UserMessage) and msg.thread.thread_id == root
    s.inbound.clear()
    data = b"\x89PNG fake image bytes"
    resp, keys = await s.phone.client.upload(
        io.BytesIO(data), "image/png", "cat.png", encrypt=True, filesize=len(data)
    )
    assert isinstance(resp, UploadResponse) and keys
    await s.phone.send(
        s.room,
        {
            "msgtype": "m.image",
            "body": "cat.png",
            "info": {"mimetype": "image/png", "size": len(data)},
            "file": {**keys, "url": resp.content_uri},
        },
    )
    msg = await s.next_inbound(UserMessage)
    assert isinstance(msg, UserMessage)
    [att] = msg.attachments
    assert (att.kind, att.name, att.mime) == ("image", "cat.png", "image/png")
    assert await att.fetch(2**20) == data, "fetched (and decrypted) only when asked"
    with pytest.raises(AttachmentTooLarge):
        await att.fetch(len(data) - 1)  # the body is streamed and cut at the cap
    # the adapter hands a message on without touching its file: one that cannot be
    # fetched arrives all the same, and only fails when the bridge asks for it
    s.inbound.clear()
    await s.phone.send(
        s.room,
        {
            "msgtype": "m.file",
            "body": "ghost.txt",
            "url": f"mxc://{s.phone.user_id.split(':', 1)[1]}/missingmedia",
        },
    )
    msg = await s.next_inbound(UserMessage)
    assert isinstance(msg, UserMessage) and msg.text == ""
    [ghost] = msg.attachments
    with pytest.raises(AttachmentUnavailable):
        await ghost.fetch(2**20)


async def test_sending_to_an_unencrypted_room_is_refused(s: Setup) -> None:
    plain = await s.phone.create_room([s.bot.user_id], encrypted=False)
    await s.phone.wait_member(plain, s.bot.user_id)
    with pytest.raises(PermanentError, match="not encrypted"):
        await s.adapter.send(ThreadRef("matrix", plain), s.adapter.render(notice("hi"))[0])


async def test_synapse_429_becomes_rate_limited(
    tmp_path: Path, synapse_default_limits: Synapse
) -> None:
    server = synapse_default_limits
    bot, person = server.register(), server.register()
    phone = await Phone(server.base_url, person, tmp_path / "phone").start()
    adapter = MatrixAdapter(
        matrix_config(server, bot, tmp_path / "bot"),
        owners_hint=[f"matrix:{person.user_id}"],
        rate=RateLimit(1000.0, 1000),  # no pacing: let Synapse say no
    )
    await adapter.start(lambda _e: asyncio.sleep(0))
    try:
        room = await phone.create_room([bot.user_id])
        await phone.wait_member(room, bot.user_id)
        with pytest.raises(RateLimited) as e:
            for i in range(15):
                await adapter.send(ThreadRef("matrix", room), adapter.render(notice(f"n{i}"))[0])
        assert 0 < e.value.retry_after <= 10
        assert "M_LIMIT_EXCEEDED" in str(e.value)
    finally:
        await adapter.stop()
        await phone.stop()


async def test_doctor_checks_login_store_and_owner(tmp_path: Path, synapse: Synapse) -> None:
    bot = synapse.register()
    before = synapse.devices(bot.user_id)
    good = Config.model_validate(
        {
            "access": {"owners": ["matrix:@me:localhost"]},
            "matrix": matrix_config(synapse, bot, tmp_path / "store").model_dump(),
        }
    )
    out = Console(file=io.StringIO(), width=200)
    assert await check_platform(good, "matrix", out) == 0
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert "the password works" in text and "writable" in text
    assert synapse.devices(bot.user_id) == before, "the doctor's temporary device is gone"
    bad = good.model_copy(deep=True)
    bad.matrix.password = "wrong"
    bad.access.owners = ["telegram:1"]
    out = Console(file=io.StringIO(), width=200)
    assert await check_platform(bad, "matrix", out) == 2
    assert "login as" in out.file.getvalue()  # type: ignore[attr-defined]
    gone = good.model_copy(deep=True)
    gone.matrix.homeserver = "http://127.0.0.1:9"
    assert await check_platform(gone, "matrix", Console(file=io.StringIO())) == 1
