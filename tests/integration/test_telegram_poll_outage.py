"""Long polling through a Bot API outage: the real python-telegram-bot against the fake
Bot API.  While the API fails, the adapter probes again on its own short, capped
schedule (`PollOutage`) instead of PTB's backoff of up to 30 s; a 429's
`retry_after` is still PTB's to honour.  (Mechanisms, not timings: the waits are
recorded through an injected sleep that runs them ten times faster.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from adapters.messages import Inbound, UserMessage
from adapters.telegram.adapter import TelegramAdapter
from adapters.telegram.config import TelegramConfig
from adapters.telegram.receiver import PROBE_FIRST_S, PROBE_JITTER, PROBE_MAX_S, PollOutage
from tests.support.fakes.telegram import FakeTelegram

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning"),
]

OWNER = 42
SPEED = 10.0  # the injected sleep runs each wait this much faster


class Polling:
    def __init__(self, fake: FakeTelegram, adapter: TelegramAdapter) -> None:
        self.fake, self.adapter = fake, adapter
        self.queue: asyncio.Queue[Inbound] = asyncio.Queue()
        self.waits: list[float] = []  # every wait the adapter asked for between polls

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(seconds / SPEED)

    async def next_message(self) -> UserMessage:
        event = await asyncio.wait_for(self.queue.get(), 10)
        assert isinstance(event, UserMessage)
        return event


@pytest.fixture
async def polling() -> AsyncIterator[Polling]:
    fake = await FakeTelegram().start()
    fake.set_rate_limits(enabled=False)
    fake.add_chat(OWNER, "private", first_name="Ada")
    cfg = TelegramConfig(enabled=True, token=fake.token, base_url=fake.base_url)
    adapter = TelegramAdapter(cfg, owners_hint=[f"telegram:{OWNER}"])
    p = Polling(fake, adapter)
    adapter.receiver.outage = PollOutage(adapter.errors.redact, sleep=p.sleep)
    await adapter.start(p.queue.put)
    try:
        yield p
    finally:
        await adapter.stop()
        await fake.stop()


def test_the_probe_schedule_doubles_to_a_two_second_cap_with_jitter() -> None:
    outage = PollOutage(str)
    for failures, base in ((1, PROBE_FIRST_S), (2, 1.0), (3, PROBE_MAX_S), (40, PROBE_MAX_S)):
        outage.failures = failures
        for _ in range(50):
            assert base * (1 - PROBE_JITTER) <= outage.delay() <= base
    assert PROBE_MAX_S <= 2.0


async def test_polling_probes_every_two_seconds_at_most_through_an_outage(
    polling: Polling,
) -> None:
    fake, outage = polling.fake, polling.adapter.receiver.outage
    fake.user_message(OWNER, OWNER, "before")
    assert (await polling.next_message()).text == "before"
    await fake.set_outage(502)
    before = fake.calls["getUpdates"]
    # The person writes during the outage; the API holds it until it is back.
    fake.user_message(OWNER, OWNER, "during")
    await fake.wait_until(lambda: len(polling.waits) >= 8 or None, 20)
    failed = fake.calls["getUpdates"] - before
    await fake.set_outage(None)
    assert (await polling.next_message()).text == "during"
    # Every failed poll waited on the adapter's schedule (PTB's own backoff, 1 s
    # growing to 30 s, never ran): 0.5, 1, then 2 s, each shortened by jitter.
    assert failed >= 8 and abs(len(polling.waits) - failed) <= 1
    assert max(polling.waits) <= PROBE_MAX_S
    assert all(w >= PROBE_MAX_S * (1 - PROBE_JITTER) for w in polling.waits[2:])
    assert outage.failures == 0, "the answered poll ended the outage"
    waits = len(polling.waits)
    fake.user_message(OWNER, OWNER, "after")
    assert (await polling.next_message()).text == "after"
    assert len(polling.waits) == waits, "no waits once the API answers"


async def test_a_429_on_polling_is_left_to_ptb_and_its_retry_after(polling: Polling) -> None:
    fake = polling.fake
    fake.fail_next("getUpdates", 429, retry_after=1)
    fake.user_message(OWNER, OWNER, "after the 429")
    assert (await polling.next_message()).text == "after the 429"
    assert fake.calls["getUpdates"] >= 2
    assert polling.waits == [], "a 429 is not an outage: PTB waited its retry_after"
