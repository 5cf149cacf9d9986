"""The suite's root conftest: where the tests live, the fixtures every directory shares,
and the one switch for slow tests.

- `unit/`: pure logic, no servers, no subprocesses.
- `integration/`: one real library against one local server (an adapter against its
  fake platform or a real Synapse, the outbox against a fake platform, the database).
- `e2e/`: the whole daemon and/or the real Claude Code CLI against the fake Anthropic API.
- `support/`: harnesses and fakes (`support/fakes/`); nothing there is collected.

The Matrix fixtures (`synapse`, `synapse_default_limits`) live in
`support/conftest_matrix.py`, the PostgreSQL ones (`postgres_server`, `postgres_url`) in
`support/postgres.py`; both are loaded here as plugins so every directory finds them.

Slow tests — those that wait out a real minute or more (an approval given after Telegram's
60 s, a permission prompt answered after 70 s) — carry `@pytest.mark.slow`.  They run by
default (CI runs everything); `THREADLINE_SKIP_SLOW=1` skips them for a quicker local run.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

pytest_plugins = ["tests.support.conftest_matrix", "tests.support.postgres"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("THREADLINE_SKIP_SLOW") != "1":
        return
    skip = pytest.mark.skip(reason="slow (THREADLINE_SKIP_SLOW=1)")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


def _escaped(value: Any) -> Any:
    """`value` with lone surrogates in its strings escaped (containers rebuilt)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_escaped(v) for v in value)
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    return value


@pytest.hookimpl(hookwrapper=True)
def pytest_report_to_serializable(config: pytest.Config, report: pytest.TestReport) -> Any:
    """Hostile input (fuzzing) can put lone surrogates into a report (captured logs,
    hypothesis' statistics); pytest-xdist cannot send such a report to the controller
    and the whole run aborts.  Escape them in the serialised report (the outcome is
    unchanged)."""
    outcome = yield
    data = outcome.get_result()
    if data is not None:
        outcome.force_result(_escaped(data))
