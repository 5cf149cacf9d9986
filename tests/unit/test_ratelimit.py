"""The rate budget against a strict model of the platform, when calls are LATE.

`tests/integration/test_outbox.py` checks the budget when every call reaches the platform within
the budget's margin.  Under load (ten sessions streaming into one group) the event
loop can hold a request for longer than that; `RateBudget.settle()` moves the record
of such a call to the moment it returned.  These properties fail without it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import Capabilities
from bridge.outbox.ratelimit import RateBudget

GROUP = "-100"


def group_budget(now: list[float], limit: int) -> RateBudget:
    caps = Capabilities(
        per_chat_rate=1e6, per_chat_burst=1, group_per_minute=limit, global_rate=1e6
    )
    return RateBudget(caps, is_group=lambda c: c == GROUP, clock=lambda: now[0], margin=0.2)


@settings(max_examples=80, deadline=None)
@given(
    limit=st.integers(1, 20),
    gaps=st.lists(st.floats(0, 5.0), min_size=1, max_size=80),
    lags=st.lists(st.floats(0, 3.0), min_size=80, max_size=80),
)
def test_late_calls_never_overfill_a_platform_sliding_window(
    limit: int, gaps: list[float], lags: list[float]
) -> None:
    """Each call reaches the platform `lag` after it is taken (up to 3 s, far beyond
    the 0.2 s margin) and returns right after; the platform counts arrivals in any
    60 s and must never see more than `limit`."""
    now = [0.0]
    budget = group_budget(now, limit)
    arrivals: list[float] = []
    for gap, lag in zip(gaps, lags, strict=False):
        now[0] += gap
        now[0] += budget.delay(GROUP)
        taken = budget.take(GROUP)
        arrival = now[0] + lag
        in_window = [a for a in arrivals if a > arrival - 60.0]
        assert len(in_window) < limit, "the platform would answer 429"
        arrivals.append(arrival)
        now[0] = arrival + 0.01  # the answer
        budget.settle(GROUP, "message", taken)


@settings(max_examples=80, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1.0, 3.0]),
    burst=st.integers(1, 5),
    gaps=st.lists(st.floats(0, 2.0), min_size=1, max_size=60),
    lags=st.lists(st.floats(0, 2.0), min_size=60, max_size=60),
)
def test_late_calls_never_overdraw_a_platform_bucket(
    rate: float, burst: int, gaps: list[float], lags: list[float]
) -> None:
    now = [0.0]
    budget = RateBudget(
        Capabilities(per_chat_rate=rate, per_chat_burst=burst, global_rate=1e6),
        clock=lambda: now[0],
        margin=0.2,
    )
    tat, interval = float("-inf"), 1.0 / rate
    for gap, lag in zip(gaps, lags, strict=False):
        now[0] += gap
        now[0] += budget.delay("c")
        taken = budget.take("c")
        seen = now[0] + lag  # when the platform counts it (GCRA, strict)
        assert tat - (burst - 1) * interval <= seen + 1e-9, "the platform would answer 429"
        tat = max(tat, seen) + interval
        now[0] = seen
        budget.settle("c", "message", taken)


def test_a_booked_slot_is_settled_too() -> None:
    """`acquire()` books future slots (a topic and its header); settling them when
    the calls return late moves the window's records."""
    now = [0.0]
    budget = group_budget(now, 2)
    first = budget.book(GROUP)
    second = budget.book(GROUP)
    assert first == 0.0 and second < 0.001
    now[0] = 5.0  # both calls took 5 s to come back
    budget.settle(GROUP, "message", first)
    budget.settle(GROUP, "message", second)
    now[0] = 60.5  # a window after the booking, not after the calls
    assert budget.delay(GROUP) == pytest.approx(4.5)


def test_one_token_bucket_paces_the_matrix_homeserver_and_slack_methods() -> None:
    """The Matrix pacer and Slack's per-method guard are the shared bucket: the same
    rate and burst give the same waits on the same clock."""
    from adapters.matrix.limits import RateLimit
    from adapters.matrix.pacing import Pacer
    from adapters.ratelimit import TokenBucket
    from adapters.slack.limits import MethodGuard

    now = [100.0]
    bucket = TokenBucket(0.5, 3)
    pacer = Pacer(RateLimit(0.5, 3), clock=lambda: now[0], margin=0.0)
    guard = MethodGuard({"chat.update": (0.5, 3)}, clock=lambda: now[0])
    for step in (0.0, 0.0, 0.0, 0.0, 1.0, 3.0, 0.5, 10.0):
        now[0] += step
        wait = bucket.delay(now[0])
        assert pacer.delay() == guard.wait("chat.update") == wait
        if wait == 0:
            bucket.take(now[0])
            assert pacer.reserve() == 0.0
            guard.take("chat.update")
    assert guard.wait("users.info") == 0.0, "methods without a limit always fit"
