"""Two real `threadline run` processes on one PostgreSQL, one Telegram bot: exactly one
is the gateway.

Each daemon has its own data dir and `[daemon] host` ("laptop", "box") and reaches
the fake Bot API under its own host name (127.0.0.1 / localhost), so the fake tells
their calls apart (`FakeTelegram.calls_via`).  Only the gateway polls getUpdates;
kill -9 of it → the other polls within 10 s and answers a `/help` sent after the kill
exactly once; a gateway stalled with SIGSTOP past its lease is replaced, and after
SIGCONT it says it lost the gateway and sends nothing; every `/help` is answered
exactly once.  (An update handed to the frozen gateway's stalled long poll is neither
handled nor confirmed by it once deposed — its receive gate — so the next gateway gets
it: `tests/integration/test_telegram_receive_gate.py`.)"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.daemons import Daemon as Host
from tests.support.fakes.anthropic import FakeAnthropic
from tests.support.fakes.claude_env import claude_env
from tests.support.fakes.telegram import FakeTelegram
from tests.support.harness import OWNER, OWNER_NAME

pytestmark = pytest.mark.e2e
USER = {"id": OWNER, "is_bot": False, "first_name": OWNER_NAME}
HELP_MARK = "/sessions"  # in the /help answer


def polls(tg: FakeTelegram, host: Host) -> int:
    return tg.calls_via[(host.via, "getUpdates")]


def sends(tg: FakeTelegram, host: Host) -> int:
    return tg.calls_via[(host.via, "sendMessage")]


def helps(tg: FakeTelegram) -> int:
    return sum(HELP_MARK in (m.visible_text or "") for m in tg.messages(OWNER))


async def test_one_gateway_takes_over_after_kill9_and_a_stalled_one_sends_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    model = FakeAnthropic()
    await model.start()
    hosts: list[Host] = []
    try:
        async with FakeTelegram() as tg:
            tg.add_chat(OWNER, "private", first_name=OWNER_NAME)
            env = {
                **os.environ,
                **claude_env(tmp_path / "home", model.base_url),
                "THREADLINE_CONFIG": "",
            }
            laptop = Host("laptop", "127.0.0.1", tmp_path, tg, postgres_url)
            box = Host("box", "localhost", tmp_path, tg, postgres_url)
            hosts += [laptop, box]

            await laptop.start(env)
            await tg.wait_until(lambda: polls(tg, laptop) > 0 or None, timeout=60)
            assert laptop.said("telegram: this host (laptop) is the gateway, epoch 1") == 1
            await box.start(env)
            await tg.wait_until(lambda: box.said("laptop is the gateway") or None, timeout=60)
            # box stands by: it never polls, laptop answers
            renewed = laptop.said("is the gateway")
            tg.user_message(OWNER, USER, "/help")
            await tg.wait_until(lambda: helps(tg) == 1 or None, timeout=30)
            assert polls(tg, box) == 0 and sends(tg, box) == 0
            assert laptop.said("is the gateway") == renewed, "renewals are not changes"

            # kill -9 the gateway: box takes over within 10 s and answers exactly once
            await laptop.kill9()
            killed = time.monotonic()
            tg.user_message(OWNER, USER, "/help")
            await tg.wait_until(lambda: polls(tg, box) > 0 or None, timeout=15)
            takeover = time.monotonic() - killed
            print(f"takeover after kill -9: {takeover:.2f} s")
            assert takeover <= 10.0
            assert box.said("telegram: this host (box) is the gateway, epoch 2") == 1
            await tg.wait_until(lambda: helps(tg) == 2 or None, timeout=30)
            assert sends(tg, box) == 1

            # laptop comes back and stands by; then box stalls (SIGSTOP) past its lease
            await laptop.start(env)
            await tg.wait_until(lambda: laptop.said("box is the gateway") or None, timeout=60)
            before = polls(tg, laptop)
            box_sent = sends(tg, box)
            box.signal(signal.SIGSTOP)
            stopped = time.monotonic()
            await tg.wait_until(
                lambda: laptop.said("this host (laptop) is the gateway, epoch 3") or None,
                timeout=15,
            )
            await tg.wait_until(lambda: polls(tg, laptop) > before or None, timeout=15)
            print(f"takeover after SIGSTOP: {time.monotonic() - stopped:.2f} s")
            # (An update handed to box's stalled long poll is left unconfirmed by box once
            # it wakes deposed: tests/integration/test_telegram_receive_gate.py.)
            tg.user_message(OWNER, USER, "/help")
            await tg.wait_until(lambda: helps(tg) == 3 or None, timeout=30)
            box.signal(signal.SIGCONT)
            await tg.wait_until(
                lambda: box.said("telegram: lost the gateway to laptop") or None, timeout=15
            )
            # box stands by again: the next /help is laptop's too; box sent nothing since
            # it stalled, and every /help was answered exactly once
            tg.user_message(OWNER, USER, "/help")
            await tg.wait_until(lambda: helps(tg) == 4 or None, timeout=30)
            assert sends(tg, box) == box_sent, "the deposed gateway sent something"
            assert helps(tg) == 4
    finally:
        for host in hosts:
            await host.stop()
        await model.stop()
