"""Hosts coming and going on one real PostgreSQL: whole `Bridge` objects in one process
(each its own `Database`, data dir and `[daemon] host`), the real Telegram adapter on
the gateway host against the fake Bot API, a short heartbeat and an injected clock.

- A host starting recovers only its own sessions: another live host's running turn
  and pending permission request are left alone.
- A host that dies (its tasks end without a clean stop) is noticed by the live hosts
  after its heartbeat goes stale; exactly one of them tells the threads of its open
  sessions "🔴 laptop is offline …" (the gateway delivers it), and when it starts
  again those threads — and only those — are told "🟢 laptop is back"."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.telegram.adapter import TelegramAdapter
from bridge.app import Bridge
from bridge.config import parse_config
from storage.db import Database, select
from storage.models import OutboxRow, PermissionRequestRow, SessionRow, ThreadBinding, utcnow
from storage.types import RequestId, SessionId, SessionState
from tests.support.fakes.telegram import FakeTelegram
from tests.support.harness import GROUP, config_text

BEAT_S = 0.2  # offline after 0.6 s without a heartbeat


class Clock:
    """The hosts' shared clock: real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset


class Hosts:
    """Bridges for named hosts on one database and one fake Bot API."""

    def __init__(self, tg: FakeTelegram, db_url: str, clock: Clock) -> None:
        self.tg, self.db_url, self.clock = tg, db_url, clock
        self.home = Path(tempfile.mkdtemp(prefix="tl-hosts-"))  # short: a Unix socket lives here
        self.running: list[Bridge] = []

    async def start(self, name: str) -> Bridge:
        here = self.home / name
        (here / "code").mkdir(parents=True, exist_ok=True)
        text = config_text(tg=self.tg, root=here / "code", db_url=self.db_url, chat_id=GROUP)
        config = parse_config(text + f'[daemon]\nhost = "{name}"\ndata_dir = "{here}"\n')
        db = Database(self.db_url)
        db.migrate()
        adapter = TelegramAdapter(config.telegram, owners_hint=config.access.owners)
        bridge = Bridge(config, db, {"telegram": adapter}, now=self.clock, heartbeat_s=BEAT_S)
        await bridge.start()
        self.running.append(bridge)
        return bridge

    async def kill(self, bridge: Bridge) -> None:
        """The host dies: everything it runs ends, nothing is recorded (no clean stop)."""
        self.running.remove(bridge)
        await bridge.scheduler.stop()
        await bridge.attach.stop()
        await bridge.host.close()
        await bridge.tasks.close()
        await bridge.outbox.stop()
        bridge.db.close()

    async def stop_all(self) -> None:
        for bridge in reversed(self.running):
            await bridge.stop()
            bridge.db.close()
        self.running.clear()


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    fake = await FakeTelegram(has_topics_enabled=True).start()
    fake.add_chat(GROUP, "supergroup", is_forum=True, title="Team")
    yield fake
    await fake.stop()


@pytest.fixture
async def hosts(tg: FakeTelegram, postgres_url: str) -> AsyncIterator[Hosts]:
    group = Hosts(tg, postgres_url, Clock())
    yield group
    await group.stop_all()


def add_session(
    db: Database, tg: FakeTelegram, sid: str, host: str, state: SessionState = "active"
) -> int:
    """A session on `host` with its own topic; the topic's id."""
    topic = tg.add_topic(GROUP, f"session {sid}")
    db.sessions.add(
        SessionRow(id=SessionId(sid), platform="telegram", cwd="/srv", host=host, state=state)
    )
    db.bindings.add(
        ThreadBinding(
            session_id=sid,
            platform="telegram",
            chat_id=str(GROUP),
            thread_id=str(topic),
            kind="topic",
            thread_key=f"telegram:{GROUP}:{topic}",
        )
    )
    return topic


def notes(db: Database, session_id: str, needle: str) -> int:
    """Outbox rows (delivered or not) of `session_id` whose message says `needle`."""
    with db.session() as s:
        rows = s.exec(select(OutboxRow).where(OutboxRow.session_id == session_id)).all()
    return sum(needle in row.payload for row in rows)


def texts(tg: FakeTelegram, topic: int) -> list[str]:
    return [m.visible_text or "" for m in tg.messages(GROUP, topic)]


def said(tg: FakeTelegram, topic: int, needle: str) -> int:
    return sum(needle in t for t in texts(tg, topic))


def beats(bridge: Bridge) -> Callable[[], int]:
    """How many heartbeats `bridge` has made since now (a watcher counting them)."""
    seen = [0]

    async def count() -> None:
        seen[0] += 1

    bridge.hosts.watchers.append(count)
    return lambda: seen[0]


async def test_a_starting_host_recovers_only_its_own_sessions(
    hosts: Hosts, tg: FakeTelegram
) -> None:
    box = await hosts.start("box")  # the gateway
    db = box.db
    mine = add_session(db, tg, "lap001", "laptop", state="running")
    theirs = add_session(db, tg, "box001", "box", state="running")
    lap_turn = db.turns.start("lap001", "fix it")
    box_turn = db.turns.start("box001", "build it")
    for rid, sid in (("req-lap", "lap001"), ("req-box", "box001")):
        db.permissions.add(
            PermissionRequestRow(
                id=RequestId(rid), session_id=sid, tool_use_id="t", tool_name="Bash"
            )
        )

    await hosts.start("laptop")  # laptop restarts after a crash while box runs

    await tg.wait_until(lambda: said(tg, mine, "Interrupted"), timeout=15)
    running = {t.id for t in db.turns.running()}
    assert box_turn in running and lap_turn not in running
    assert db.sessions.get("box001").state == "running"  # type: ignore[union-attr]
    assert db.sessions.get("lap001").state == "interrupted"  # type: ignore[union-attr]
    assert db.permissions.get("req-box").state == "pending"  # type: ignore[union-attr]
    assert db.permissions.get("req-lap").state == "expired"  # type: ignore[union-attr]
    assert said(tg, theirs, "Interrupted") == 0


async def test_a_dead_host_is_announced_once_and_its_return_too(
    hosts: Hosts, tg: FakeTelegram
) -> None:
    box = await hosts.start("box")  # the gateway: it delivers every notice
    shed = await hosts.start("shed")  # another live host that may notice first
    laptop = await hosts.start("laptop")
    db = box.db
    told = [add_session(db, tg, "lap001", "laptop"), add_session(db, tg, "lap002", "laptop")]
    ended = add_session(db, tg, "lap003", "laptop", state="ended")
    other = add_session(db, tg, "box001", "box")

    await hosts.kill(laptop)
    hosts.clock.offset += timedelta(seconds=1)  # its last heartbeat is 5 intervals old
    offline = "laptop is offline — this session continues when it is back"
    await tg.wait_until(lambda: all(said(tg, t, offline) for t in told), timeout=15)
    row = db.hosts.get("laptop")
    assert row is not None and row.offline_noted_at is not None
    # Both live hosts keep watching for a few more heartbeats: still one notice each.
    box_beats, shed_beats = beats(box), beats(shed)
    await tg.wait_until(lambda: box_beats() >= 5 and shed_beats() >= 5, timeout=15)
    assert [said(tg, t, offline) for t in told] == [1, 1]
    assert [notes(db, sid, "is offline") for sid in ("lap001", "lap002")] == [1, 1]
    assert said(tg, ended, offline) == 0 and said(tg, other, offline) == 0

    await hosts.start("laptop")
    back = "laptop is back"
    await tg.wait_until(lambda: all(said(tg, t, back) for t in told), timeout=15)
    back_row = db.hosts.get("laptop")
    assert back_row is not None and back_row.offline_noted_at is None
    assert said(tg, ended, back) == 0 and said(tg, other, back) == 0
    for topic in told:  # offline, then back
        lines = [t for t in texts(tg, topic) if offline in t or back in t]
        assert len(lines) == 2 and offline in lines[0] and back in lines[1]


async def test_a_clean_stop_is_announced_too(hosts: Hosts, tg: FakeTelegram) -> None:
    box = await hosts.start("box")
    laptop = await hosts.start("laptop")
    topic = add_session(box.db, tg, "lap001", "laptop")
    hosts.running.remove(laptop)
    await laptop.stop()  # stopped on purpose: offline at once, no staleness to wait for
    laptop.db.close()
    await tg.wait_until(lambda: said(tg, topic, "laptop is offline"), timeout=15)
    again: Any = await hosts.start("laptop")
    assert again.hosts.name == "laptop"
    await tg.wait_until(lambda: said(tg, topic, "laptop is back"), timeout=15)
    assert said(tg, topic, "laptop is offline") == 1


async def test_a_host_cut_off_says_it_is_back_when_its_heartbeat_gets_through(
    hosts: Hosts, tg: FakeTelegram
) -> None:
    """Not dead, only cut off from the database for a while: no restart, so its next
    heartbeat after the cut finds it was noted offline, and it says it is back."""
    box = await hosts.start("box")
    laptop = await hosts.start("laptop")
    topic = add_session(box.db, tg, "lap001", "laptop")
    assert laptop.hosts._task is not None
    laptop.hosts._task.cancel()  # the cut: no heartbeat gets through
    hosts.clock.offset += timedelta(seconds=1)
    await tg.wait_until(lambda: said(tg, topic, "laptop is offline"), timeout=15)
    laptop.hosts._task = laptop.tasks.spawn(laptop.hosts._beat(), name="heartbeat again")
    await tg.wait_until(lambda: said(tg, topic, "laptop is back"), timeout=15)
    assert said(tg, topic, "laptop is offline") == 1 and said(tg, topic, "laptop is back") == 1
