"""The outbox's retry backoff is capped at a few seconds, so a chat API back from an
outage is used again soon after (it was 15 s: a 60 s outage left messages waiting up
to 15 s more).  The benchmark `benchmarks/bench_telegram_outage.py` shows the effect."""

from __future__ import annotations

import inspect

from bridge.outbox.delivery import RETRY_MAX_S, RetryPolicy
from bridge.outbox.outbox import Outbox


def test_the_backoff_doubles_to_a_three_second_cap_with_jitter() -> None:
    policy = RetryPolicy()
    assert RETRY_MAX_S <= 3.0
    for attempts, base in ((1, 1.0), (2, 2.0), (3, RETRY_MAX_S), (12, RETRY_MAX_S)):
        for _ in range(50):
            assert base * 0.5 <= policy.delay(attempts) <= base


def test_the_daemon_outbox_uses_that_cap() -> None:
    default = inspect.signature(Outbox).parameters["retry_max"].default
    assert default == RETRY_MAX_S
