"""Three real `threadline run` processes — laptop, box, vm — on one PostgreSQL behind one
Telegram bot: every host's sessions in one chat, the loss of any host survived.

Each daemon has its own data dir, allowed root, Claude home and log; all talk to the
fake Bot API and the fake model, and run the real Claude Code CLI.  laptop starts first
and is the gateway.  The test plays the person:

1. `new box:app …` and `new vm:app …` → a session on each host, both streaming into the
   chat at once, every answer exact, no 429;
2. a permission prompt of box's session answered by a tap → the command runs on box;
3. kill -9 of the gateway while box streams → another host takes the bot over within
   10 s, box's answer arrives exactly once and exact, nothing doubled;
4. kill -9 of vm → its thread says vm is offline; a prompt sent then waits ("📥"); vm
   back → "vm is back" and the prompt answered with the session's earlier context.

(A deposed gateway that wakes sends nothing: `test_e2e_gateway.py`.)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import Daemon
from tests.support.fakes.anthropic import Computed, FakeAnthropic, Text, ToolUse
from tests.support.fakes.claude_env import claude_env
from tests.support.fakes.telegram import FakeMessage, FakeTelegram
from tests.support.harness import OWNER, OWNER_NAME

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
USER = {"id": OWNER, "is_bot": False, "first_name": OWNER_NAME}
BOX_TEXT = " ".join(f"Box sentence {i} streams from the box host." for i in range(30))
VM_TEXT = " ".join(f"Vm sentence {i} streams from the vm host." for i in range(30))
SLOW_TEXT = " ".join(f"Slow line {i} keeps going while the gateway dies." for i in range(60))


def remembers(body: Mapping[str, Any]) -> Text:
    """Whether the resumed session still has its first turn in context."""
    ok = "stream on vm" in json.dumps(body.get("messages", []))
    return Text("context ok: you asked me to stream on vm" if ok else "context lost")


def in_topic(tg: FakeTelegram, topic: int) -> list[FakeMessage]:
    return tg.messages(OWNER, topic)


def finals(tg: FakeTelegram, topic: int) -> list[FakeMessage]:
    return [m for m in in_topic(tg, topic) if "⏱" in (m.visible_text or "")]


def containing(tg: FakeTelegram, topic: int, needle: str) -> list[FakeMessage]:
    return [m for m in in_topic(tg, topic) if needle in (m.visible_text or "")]


def allow_button(m: FakeMessage) -> bool:
    return any(label.endswith("Allow") for label in m.button_labels)


async def new_topic(tg: FakeTelegram, text: str) -> int:
    before = set(tg.topics(OWNER))
    tg.user_message(OWNER, USER, text)
    found: int = await tg.wait_until(
        lambda: next(iter(set(tg.topics(OWNER)) - before), None), timeout=90
    )
    return found


def gateway_of(daemons: list[Daemon], epoch: int) -> Daemon | None:
    for d in daemons:
        if d.said(f"telegram: this host ({d.name}) is the gateway, epoch {epoch}"):
            return d
    return None


async def test_three_hosts_one_chat_survive_the_loss_of_any_host(
    tmp_path: Path, postgres_url: str
) -> None:
    model = FakeAnthropic()
    await model.start()
    model.on("stream on box", Text(BOX_TEXT, chunk=30, delay=0.02))
    model.on("stream on vm", Text(VM_TEXT, chunk=30, delay=0.02))
    model.on("touch on box", ToolUse("Bash", {"command": "touch marker-box"}), Text("touched it"))
    model.on("slow on box", Text(SLOW_TEXT, chunk=30, delay=0.06))
    model.on("what did I ask on vm", Computed(remembers))
    daemons: list[Daemon] = []
    try:
        async with FakeTelegram(has_topics_enabled=True) as tg:
            tg.add_chat(OWNER, "private", first_name=OWNER_NAME)
            laptop = Daemon("laptop", "127.0.0.1", tmp_path, tg, postgres_url)
            box = Daemon("box", "localhost", tmp_path, tg, postgres_url)
            vm = Daemon("vm", "127.0.0.1", tmp_path, tg, postgres_url)
            daemons += [laptop, box, vm]
            envs = {
                d.name: {
                    **os.environ,
                    **claude_env(d.dir / "claude-home", model.base_url),
                    "THREADLINE_CONFIG": "",
                }
                for d in daemons
            }
            await laptop.start(envs["laptop"])
            await tg.wait_until(lambda: gateway_of(daemons, 1), timeout=60)
            for d in (box, vm):
                await d.start(envs[d.name])
            for d in (box, vm):
                await tg.wait_until(lambda d=d: d.said("laptop is the gateway") or None, timeout=60)

            # 1. a session on box and one on vm, streaming at once
            box_topic = await new_topic(tg, "/new box:app stream on box")
            vm_topic = await new_topic(tg, "/new vm:app stream on vm")
            await tg.wait_until(lambda: finals(tg, box_topic) or None, timeout=90)
            await tg.wait_until(lambda: finals(tg, vm_topic) or None, timeout=90)
            assert BOX_TEXT in (finals(tg, box_topic)[0].visible_text or "")
            assert VM_TEXT in (finals(tg, vm_topic)[0].visible_text or "")
            assert not (laptop.root / "app" / ".threadline").exists()

            # 2. box's permission prompt, answered from the chat: the command runs on box
            tg.user_message(OWNER, USER, "touch on box", message_thread_id=box_topic)
            prompt = await tg.wait_until(
                lambda: next((m for m in in_topic(tg, box_topic) if allow_button(m)), None),
                timeout=60,
            )
            tg.press_button(OWNER, prompt.message_id, prompt.callback_data("Allow"), USER)
            await tg.wait_until(lambda: containing(tg, box_topic, "touched it") or None, timeout=60)
            assert (box.root / "app" / "marker-box").exists()
            assert not (laptop.root / "app" / "marker-box").exists()

            # 3. kill -9 the gateway while box streams
            tg.user_message(OWNER, USER, "slow on box", message_thread_id=box_topic)
            await tg.wait_until(
                lambda: any("slow on box" in json.dumps(r) for r in model.requests) or None,
                timeout=60,
            )
            await laptop.kill9()
            killed = time.monotonic()
            new_gateway = await tg.wait_until(lambda: gateway_of(daemons, 2), timeout=15)
            takeover = time.monotonic() - killed
            print(f"takeover after kill -9 of the gateway: {takeover:.2f} s ({new_gateway.name})")
            assert takeover <= 10.0
            await tg.wait_until(
                lambda: containing(tg, box_topic, "Slow line 59") or None, timeout=60
            )
            slow = containing(tg, box_topic, "Slow line 0 ")
            assert len(slow) == 1, "box's answer arrived exactly once"
            assert SLOW_TEXT in (slow[0].visible_text or ""), "and exact"
            texts = [m.visible_text for m in in_topic(tg, box_topic)]
            assert len(texts) == len(set(texts)), "nothing in box's thread was sent twice"
            ids = [m.message_id for m in finals(tg, box_topic)]
            assert ids == sorted(ids) and slow[0].message_id == ids[-1], "in order"
            await laptop.start(envs["laptop"])  # back, standing by

            # 4. vm dies: its thread is told; a prompt waits for it; vm returns
            await vm.kill9()
            await tg.wait_until(
                lambda: containing(tg, vm_topic, "vm is offline") or None, timeout=60
            )
            tg.user_message(OWNER, USER, "what did I ask on vm", message_thread_id=vm_topic)
            await tg.wait_until(
                lambda: containing(tg, vm_topic, "📥 vm is offline") or None, timeout=30
            )
            await vm.start(envs["vm"])
            await tg.wait_until(lambda: containing(tg, vm_topic, "vm is back") or None, timeout=60)
            answer = await tg.wait_until(
                lambda: containing(tg, vm_topic, "context ") or None, timeout=90
            )
            assert "context ok" in (answer[0].visible_text or ""), "resumed with its context"
            assert len(containing(tg, vm_topic, "vm is offline —")) == 1, "told once"
            assert tg.count_429 == 0
    finally:
        for d in daemons:
            await d.stop()
        await model.stop()
