"""End to end on Telegram: `hosts` lists this daemon's host online with its root, a
host whose heartbeat stopped offline, and `sessions` names each session's host once
there is more than one.  The whole bridge with the real Claude Code CLI; the
heartbeat runs every 0.2 s here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from storage.models import SessionRow, utcnow
from storage.types import SessionId
from tests.support.harness import Harness, start_harness, stop_harness

pytestmark = pytest.mark.e2e


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(
        tmp_path,
        telegram_extra='[daemon]\nhost = "laptop"\n',
        bridge_kwargs={"heartbeat_s": 0.2},
    )
    yield harness
    await stop_harness(harness)


async def test_hosts_shows_this_host_online_and_a_silent_one_offline(h: Harness) -> None:
    started = h.db.hosts.get("laptop")
    assert started is not None and started.stopped_at is None
    # The bridge's heartbeat task keeps the row fresh.
    await h.tg.wait_until(
        lambda: h.db.hosts.get("laptop").last_heartbeat > started.last_heartbeat  # type: ignore[union-attr]
    )
    topic, session_id = await h.new_session(str(h.root / "app"))
    await h.wait_text("Ready.", thread_id=topic)
    assert h.db.sessions.get(session_id).host == "laptop"  # type: ignore[union-attr]

    h.say("/hosts")
    mine = await h.wait_text("Hosts (1)")
    assert "laptop · online · heartbeat" in mine.visible_text
    assert "this host · 1 session" in mine.visible_text
    assert f"roots {h.root}" in mine.visible_text

    # One host: `sessions` does not name it.
    h.say("/sessions")
    one = await h.wait_text("Sessions (1)")
    assert "on laptop" not in one.visible_text

    # A second host on the same database, silent for ten minutes, with a session.
    h.db.hosts.start(
        name="box", roots=["/srv/build"], pid=7, version="", at=utcnow() - timedelta(minutes=10)
    )
    h.db.sessions.add(
        SessionRow(
            id=SessionId("b0b0b0"), platform="telegram", cwd="/srv/build", title="ci", host="box"
        )
    )
    h.say("/hosts")
    both = await h.wait_text("Hosts (2)")
    lines = both.visible_text.splitlines()
    assert lines[1].startswith("🟢 laptop · online")  # this host first
    assert "🔴 box · offline · last heartbeat 10 min ago · 1 session · roots /srv/build" in lines[2]

    h.say("/sessions")
    listed = await h.wait_text("Sessions (2)")
    assert "on laptop · " in listed.visible_text
    assert "on box (host offline) · /srv/build" in listed.visible_text


async def test_a_clean_stop_marks_the_host_stopped(tmp_path: Path) -> None:
    harness = await start_harness(tmp_path, bridge_kwargs={"heartbeat_s": 0.2})
    name = harness.config.daemon.host  # the machine's hostname, cleaned
    assert harness.db.hosts.get(name) is not None
    await stop_harness(harness, keep_fakes=True)
    row = harness.db.hosts.get(name)
    assert row is not None and row.stopped_at is not None
    # Started again on the same database (a restart): online, not stopped.
    again = await start_harness(
        tmp_path, tg=harness.tg, model=harness.model, bridge_kwargs={"heartbeat_s": 0.2}
    )
    try:
        again.say("/hosts")
        msg = await again.wait_text("Hosts (1)")
        assert f"{name} · online" in msg.visible_text
    finally:
        await stop_harness(again)
