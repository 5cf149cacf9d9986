"""Slack's per-channel budget for stream previews leaves room for a new turn's first
text right after the previous turn's last preview: the bridge's debounce (0.8 s) paces
each turn, the workspace tiers are `MethodGuard`'s; at the old 1 preview/s a
follow-up's first text waited up to ~1 s more for the channel's draft budget."""

from __future__ import annotations

from adapters.slack import limits
from bridge.outbox.ratelimit import RateBudget

STREAM_INTERVAL = 0.8  # the daemon's default debounce (bridge.turns.TurnView.min_interval)


def test_a_follow_ups_first_preview_goes_at_once() -> None:
    """The last turn's last preview can come just before its end; the answer shows,
    the person replies at once, and the model's first text is ~0.2 s behind it."""
    now = [100.0]
    budget = RateBudget(limits.CAPABILITIES, clock=lambda: now[0])
    budget.take("C1", "draft")  # the last turn's last preview
    now[0] += 0.2
    assert budget.delay("C1", "draft") == 0.0


def test_previews_stay_within_the_append_tier_per_channel_over_a_minute() -> None:
    rate, burst = limits.METHOD_LIMITS["chat.appendStream"]
    assert rate * 60 + burst <= 100, "Tier 4: ~100 appends per minute per workspace"
    # One turn streams one preview per stream interval: within the workspace guard.
    assert 1 / STREAM_INTERVAL <= rate
