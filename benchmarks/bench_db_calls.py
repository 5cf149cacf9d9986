"""How long this codebase's database calls hold up the event loop, on SQLite and on a
real PostgreSQL — and what a thread pool or an async driver changes.

    python benchmarks/bench_db_calls.py           # 400 calls per cell (~1 min)
    python benchmarks/bench_db_calls.py --quick   # 100 calls per cell

The calls are the repositories' own (`storage/`), on a database migrated as the daemon
does it and holding a realistic outbox (20 chats × 100 rows, most sent, a few pending):
`db.outbox.add` (one row), the outbox pick `next_for_chat`, `db.sessions.get`,
`db.audit.log` and the host heartbeat `db.hosts.heartbeat`.  Each is made, one after the
other, inside a running event loop on which a ticker task sleeps 1 ms at a time and
records how late it wakes (its worst lateness is how long the loop was held up):

- **sync**: called directly in the coroutine (what a synchronous call on the loop
  does); its wall time is the time the loop is blocked;
- **to_thread**: `await asyncio.to_thread(call)` — the loop's default thread pool;
- **async**: the same statement through SQLAlchemy's async engine with psycopg's async
  driver (`create_async_engine("postgresql+psycopg://…")`), the ORM calls through an
  `AsyncSession` as the repositories use a `Session` (PostgreSQL only: the SQLite
  async driver, aiosqlite, is not a dependency and is itself a thread per connection).

Then 8 concurrent callers of `sessions.get` for a fixed time: calls per second through
the thread pool and through the async engine, and the ticker's worst lateness.
The PostgreSQL server is started here (`tests/support/postgres.start_postgres`), on
loopback with fsync off: a network hop to a real server adds its round trip to every
row (sync and async alike) but not to the CPU time the loop spends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import support as S  # noqa: E402
from sqlalchemy import insert, update  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine  # noqa: E402

from storage.db import Database  # noqa: E402
from storage.models import AuditRow, HostRow, OutboxRow, SessionRow  # noqa: E402
from storage.outbox_pick import PICK, DeliveryClass  # noqa: E402
from tests.support.postgres import create_database, start_postgres  # noqa: E402

PROFILES = {
    "full": {"calls": 400, "concurrent_s": 3.0},
    "quick": {"calls": 100, "concurrent_s": 1.5},
}
CHATS, ROWS_PER_CHAT = 20, 100
HOST, SESSION = "bench", "s0000000bench"
CHAT = "telegram:-1000"  # the chat whose outbox is picked
TICK_S = 0.001
CONCURRENCY = 8
OUTBOX = OutboxRow.__table__  # type: ignore[attr-defined]
HOSTS = HostRow.__table__  # type: ignore[attr-defined]


def now() -> datetime:
    return datetime.now(UTC)


def outbox_values(chat: int, i: int, at: datetime) -> dict[str, Any]:
    return {
        "chat_key": f"telegram:-{1000 + chat}",
        "thread_key": f"telegram:-{1000 + chat}:{i % 5}",
        "platform": "telegram",
        "chat_id": str(-(1000 + chat)),
        "thread_id": str(i % 5),
        "session_id": SESSION,
        "op": "send",
        "priority": int(DeliveryClass.FINAL),
        "target_id": None,
        "stream_key": None,
        "state": "pending",
        "attempts": 0,
        "last_error": "",
        "not_before": at,
        "created_at": at,
        "payload": json.dumps({"text": f"message {i} " + "x" * 200}),
    }


def prepare(url: str) -> Database:
    """A migrated database with one session, this host, and a filled outbox."""
    db = Database(url)
    db.migrate()
    db.sessions.add(SessionRow(id=SESSION, platform="telegram", cwd="/tmp", title="bench"))
    db.hosts.start(name=HOST, roots=["/tmp"], pid=1, version="bench", at=now())
    at = now() - timedelta(minutes=5)
    with db.engine.begin() as c:
        for chat in range(CHATS):
            rows = [outbox_values(chat, i, at) for i in range(ROWS_PER_CHAT)]
            for r in rows[: ROWS_PER_CHAT - 5]:  # all but the last five were delivered
                r["state"] = "sent"
            c.execute(insert(OUTBOX), rows)
    return db


def sync_calls(db: Database) -> dict[str, Callable[[], Any]]:
    """The repository calls measured, each a no-argument function."""
    return {
        "outbox.add": lambda: db.outbox.add(
            platform="telegram",
            chat_id="-1019",
            thread_id="9",
            thread_key="telegram:-1019:9",
            op="send",
            payloads=[{"text": "hello " + "x" * 200}],
            priority=int(DeliveryClass.NOTICE),
            not_before=now(),
            session_id=SESSION,
        ),
        "outbox.next_for_chat": lambda: db.outbox.next_for_chat(CHAT, now()),
        "sessions.get": lambda: db.sessions.get(SESSION),
        "audit.log": lambda: db.audit.log(
            platform="telegram", user="telegram:1", action="button", detail="allow"
        ),
        "hosts.heartbeat": lambda: db.hosts.heartbeat(name=HOST, at=now()),
    }


def async_calls(engine: AsyncEngine) -> dict[str, Callable[[], Awaitable[Any]]]:
    """The same statements through the async engine (ORM ones through an AsyncSession)."""

    async def add() -> None:
        async with engine.begin() as c:
            values = outbox_values(19, 9, now())
            values["priority"] = int(DeliveryClass.NOTICE)
            await c.execute(insert(OUTBOX), values)

    async def pick() -> Any:
        async with engine.connect() as c:
            params = {"chat_key": CHAT, "now": now(), "ops": ["send", "edit", "draft", "delete"]}
            return (await c.execute(PICK, params)).mappings().first()

    async def get() -> Any:
        async with AsyncSession(engine) as s:
            return await s.get(SessionRow, SESSION)

    async def audit() -> None:
        async with AsyncSession(engine) as s:
            s.add(AuditRow(platform="telegram", user="telegram:1", action="button", detail="allow"))
            await s.commit()

    async def heartbeat() -> None:
        async with AsyncSession(engine) as s:
            await s.execute(update(HOSTS).where(HOSTS.c.name == HOST).values(last_heartbeat=now()))
            await s.commit()

    return {
        "outbox.add": add,
        "outbox.next_for_chat": pick,
        "sessions.get": get,
        "audit.log": audit,
        "hosts.heartbeat": heartbeat,
    }


class Ticker:
    """A task that sleeps `TICK_S` at a time and keeps how late it wakes up."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(TICK_S)
            self.worst = max(self.worst, loop.time() - before - TICK_S)

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.01)
        self.worst = 0.0
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def cell(times: list[float], worst_lag: float) -> dict[str, Any]:
    return {
        "n": len(times),
        "p50_ms": round((S.pct(times, 50) or 0) * 1000, 3),
        "p95_ms": round((S.pct(times, 95) or 0) * 1000, 3),
        "max_ms": round(max(times) * 1000, 3),
        "loop_lag_max_ms": round(worst_lag * 1000, 3),
    }


async def measure(fn: Callable[[], Awaitable[Any]], n: int) -> dict[str, Any]:
    """`n` calls one after the other with the ticker running; each call's wall time."""
    for _ in range(max(5, n // 20)):  # warm the pool, the statement caches
        await fn()
    times: list[float] = []
    async with Ticker() as ticker:
        for _ in range(n):
            t0 = time.perf_counter()
            await fn()
            times.append(time.perf_counter() - t0)
            await asyncio.sleep(0)  # the ticker may run between calls, as other tasks would
    return cell(times, ticker.worst)


async def concurrent(fn: Callable[[], Awaitable[Any]], seconds: float) -> dict[str, Any]:
    """`CONCURRENCY` callers for `seconds`: calls per second, worst loop lateness."""
    done = 0
    stop_at = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await fn()
            done += 1

    async with Ticker() as ticker:
        t0 = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - t0
    return {"calls_per_s": round(done / elapsed), "loop_lag_max_ms": round(ticker.worst * 1000, 3)}


async def bench_backend(name: str, url: str, p: dict[str, Any]) -> dict[str, Any]:
    db = await asyncio.to_thread(prepare, url)
    calls = sync_calls(db)
    aengine = create_async_engine(url) if name == "postgresql" else None
    acalls = async_calls(aengine) if aengine is not None else {}
    out: dict[str, Any] = {"calls": {}}
    try:
        for call, fn in calls.items():

            async def direct(fn: Callable[[], Any] = fn) -> Any:
                return fn()

            async def threaded(fn: Callable[[], Any] = fn) -> Any:
                return await asyncio.to_thread(fn)

            row = {"sync": await measure(direct, p["calls"])}
            row["to_thread"] = await measure(threaded, p["calls"])
            if call in acalls:
                row["async"] = await measure(acalls[call], p["calls"])
            out["calls"][call] = row
        get = calls["sessions.get"]

        async def threaded_get() -> Any:
            return await asyncio.to_thread(get)

        out["concurrent_sessions_get"] = {
            "to_thread": await concurrent(threaded_get, p["concurrent_s"])
        }
        if aengine is not None:
            out["concurrent_sessions_get"]["async"] = await concurrent(
                acalls["sessions.get"], p["concurrent_s"]
            )
    finally:
        if aengine is not None:
            await aengine.dispose()
        db.engine.dispose()
    return out


async def run(profile: str = "full") -> dict[str, Any]:
    p = PROFILES[profile]
    res: dict[str, Any] = {"settings": {**p, "outbox_rows": CHATS * ROWS_PER_CHAT}}
    server, stop_pg = await asyncio.to_thread(start_postgres)
    try:
        with tempfile.TemporaryDirectory(prefix="threadline-dbcalls-") as d:
            res["sqlite"] = await bench_backend("sqlite", f"sqlite:///{d}/bench.db", p)
        pg_url = await asyncio.to_thread(create_database, server)
        res["postgresql"] = await bench_backend("postgresql", pg_url, p)
    finally:
        await asyncio.to_thread(stop_pg)
    return res


def report(res: dict[str, Any]) -> None:
    print("\nDatabase calls in a running event loop: wall time p50 / p95 ms; loop held up (max ms)")
    head = f"{'backend':<10} {'call':<22} {'mode':<10} {'p50':>8} {'p95':>8} {'max':>8} {'loop lag':>9}"
    print(head)
    print("-" * len(head))
    for backend in ("sqlite", "postgresql"):
        for call, row in res[backend]["calls"].items():
            for mode, c in row.items():
                print(
                    f"{backend:<10} {call:<22} {mode:<10} {c['p50_ms']:>8.3f} {c['p95_ms']:>8.3f} "
                    f"{c['max_ms']:>8.3f} {c['loop_lag_max_ms']:>9.3f}"
                )
    print(f"\n{CONCURRENCY} concurrent callers of sessions.get: calls/s, loop lag max ms")
    for backend in ("sqlite", "postgresql"):
        for mode, c in res[backend]["concurrent_sessions_get"].items():
            print(
                f"{backend:<10} {mode:<10} {c['calls_per_s']:>8} /s {c['loop_lag_max_ms']:>9.3f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 calls per cell")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    res = asyncio.run(run("quick" if args.quick else "full"))
    report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
