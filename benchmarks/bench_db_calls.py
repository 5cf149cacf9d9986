"""How long this codebase's database calls hold up the event loop, on SQLite and on a
real PostgreSQL — and what a thread pool or an async driver changes.

    python benchmarks/bench_db_calls.py           # 400 calls per cell (~1 min)
    python benchmarks/bench_db_calls.py --quick   # 100 calls per cell

The calls are the repositories' own (`storage/`), on a database migrated as the daemon
does it and holding a realistic outbox (20 chats × 100 rows, most sent, a few pending):
`db.outbox.add` (one row), the outbox pick `next_for_chat`, `db.sessions.get`,
`db.audit.log` and the host heartbeat `db.hosts.heartbeat`.  Each is made inside a
running event loop, the modes interleaved call by call (a shared machine's load falls
on each alike), and two things are measured besides each call's wall time: how long
the loop was *held* — every callback the loop runs is timed (`Holds`), and a call
counts its longest — and how late a ticker task sleeping 1 ms at a time woke during
the calls (this also counts the loop thread's waits for the GIL):

- **sync**: called directly in the coroutine (what a synchronous call on the loop
  does); its wall time is the time the loop is blocked;
- **to_thread**: `await asyncio.to_thread(call)` — the loop's default thread pool;
- **async**: the same statement through SQLAlchemy's async engine with psycopg's async
  driver (`create_async_engine("postgresql+psycopg://…")`), the ORM calls through an
  `AsyncSession` as the repositories use a `Session` (PostgreSQL only: the SQLite
  async driver, aiosqlite, is not a dependency and is itself a thread per connection).

Then 8 concurrent callers of `sessions.get` for a fixed time, each mode in turn: calls
per second, the loop's longest hold and the ticker's lateness.  The async engine needs
greenlet (`pip install 'sqlalchemy[asyncio]'`); without it that mode is left out.
The PostgreSQL server is started here (`tests/support/postgres.start_postgres`), on
loopback with fsync off: a network hop to a real server adds its round trip to every
row (sync and async alike) but not to the CPU time the loop spends.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
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

try:  # SQLAlchemy's asyncio layer needs greenlet (`pip install 'sqlalchemy[asyncio]'`)
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
except ImportError as e:
    ASYNC_MISSING: str | None = str(e)
else:
    ASYNC_MISSING = None

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


class Holds:
    """The event loop's own record of being held: every callback it runs (a task's
    step, a timer, a thread's result handed back) is timed, and each duration counts
    for the key set in `mode` when the callback ends (one key per measured call).  The
    longest is how long the loop could do nothing else (e.g. read a chat update)."""

    def __init__(self) -> None:
        self.mode = ""
        self.by_mode: dict[str, list[float]] = {}
        self._orig = asyncio.events.Handle._run

    def __enter__(self) -> Holds:
        orig, holds = self._orig, self

        def timed(handle: asyncio.events.Handle) -> None:
            t0 = time.perf_counter()
            orig(handle)
            holds.by_mode.setdefault(holds.mode, []).append(time.perf_counter() - t0)

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.events.Handle._run = self._orig  # type: ignore[method-assign]


class Ticker:
    """A task that sleeps `TICK_S` at a time and notes each wake-up that came late:
    (when it was due, how late) — the loop was busy with something else meanwhile."""

    def __init__(self) -> None:
        self.late: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None
        self._due = 0.0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._due = loop.time() + TICK_S
            await asyncio.sleep(TICK_S)
            self.late.append((self._due, loop.time() - self._due))

    def worst(self) -> float:
        return max((lag for _, lag in self.late), default=0.0)

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.01)
        self.late.clear()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        now = asyncio.get_running_loop().time()
        if now > self._due:  # the wake-up still owed (a loop held to the very end)
            self.late.append((self._due, now - self._due))
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def cell(times: list[float], lags: list[float], held: list[float]) -> dict[str, Any]:
    """Wall times, the loop's longest hold per call, and the ticker's lateness (ms)."""

    def ms(x: float | None) -> float:
        return round((x or 0.0) * 1000, 3)

    return {
        "n": len(times),
        "p50_ms": ms(S.pct(times, 50)),
        "p95_ms": ms(S.pct(times, 95)),
        "max_ms": ms(max(times)),
        "loop_held_p50_ms": ms(S.pct(held, 50)),
        "loop_held_p95_ms": ms(S.pct(held, 95)),
        "loop_held_max_ms": ms(max(held, default=0.0)),
        "loop_lag_p95_ms": ms(S.pct(lags, 95)),
        "loop_lag_max_ms": ms(max(lags, default=0.0)),
    }


async def measure(modes: dict[str, Callable[[], Awaitable[Any]]], n: int) -> dict[str, Any]:
    """`n` rounds of one call per mode, the modes interleaved so that the load of a
    shared machine falls on each alike, with the ticker running.  Each call's wall
    time; each late wake-up of the ticker counts against the call during which it was
    due (wake-ups due between calls, e.g. the OS's own hiccups, count for none)."""
    loop = asyncio.get_running_loop()
    for fn in modes.values():  # warm the pools and the statement caches
        for _ in range(max(5, n // 20)):
            await fn()
    spans: list[tuple[float, float, str]] = []
    with Holds() as holds:
        async with Ticker() as ticker:
            for i in range(n):
                for mode, fn in modes.items():
                    holds.mode = f"{mode}#{i}"  # each call's own list of callbacks
                    t0 = loop.time()
                    await fn()
                    spans.append((t0, loop.time(), mode))
                    await asyncio.sleep(2 * TICK_S)  # the ticker wakes between calls
        holds.mode = ""
    starts = [a for a, _, _ in spans]
    lags: dict[str, list[float]] = {mode: [] for mode in modes}
    for due, lag in ticker.late:
        i = bisect.bisect_right(starts, due) - 1
        if i >= 0 and due <= spans[i][1]:
            lags[spans[i][2]].append(lag)
    return {
        mode: cell(
            [b - a for a, b, m in spans if m == mode],
            lags[mode],
            [max(holds.by_mode.get(f"{mode}#{i}", [0.0])) for i in range(n)],
        )
        for mode in modes
    }


async def concurrent(fn: Callable[[], Awaitable[Any]], seconds: float) -> dict[str, Any]:
    """`CONCURRENCY` callers for `seconds`: calls per second, the ticker's lateness."""
    done = 0
    stop_at = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await fn()
            done += 1
            await asyncio.sleep(0)  # a synchronous call never yields by itself

    with Holds() as holds:
        holds.mode = "run"
        async with Ticker() as ticker:
            t0 = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
            elapsed = time.perf_counter() - t0
    lags = [lag for _, lag in ticker.late]
    return {
        "calls_per_s": round(done / elapsed),
        "loop_held_max_ms": round(max(holds.by_mode.get("run", [0.0])) * 1000, 3),
        "loop_lag_p95_ms": round((S.pct(lags, 95) or 0) * 1000, 3),
        "loop_lag_max_ms": round(ticker.worst() * 1000, 3),
    }


async def bench_backend(name: str, url: str, p: dict[str, Any]) -> dict[str, Any]:
    db = await asyncio.to_thread(prepare, url)
    calls = sync_calls(db)
    aengine = create_async_engine(url) if name == "postgresql" and not ASYNC_MISSING else None
    acalls = async_calls(aengine) if aengine is not None else {}
    out: dict[str, Any] = {"calls": {}, "concurrent_sessions_get": {}}
    try:
        for call, fn in calls.items():

            async def direct(fn: Callable[[], Any] = fn) -> Any:
                return fn()

            async def threaded(fn: Callable[[], Any] = fn) -> Any:
                return await asyncio.to_thread(fn)

            modes = {"sync": direct, "to_thread": threaded}
            if call in acalls:
                modes["async"] = acalls[call]
            out["calls"][call] = await measure(modes, p["calls"])
        get = calls["sessions.get"]

        async def direct_get() -> Any:
            return get()

        async def threaded_get() -> Any:
            return await asyncio.to_thread(get)

        conc = out["concurrent_sessions_get"]
        conc["sync"] = await concurrent(direct_get, p["concurrent_s"])
        conc["to_thread"] = await concurrent(threaded_get, p["concurrent_s"])
        if aengine is not None:
            conc["async"] = await concurrent(acalls["sessions.get"], p["concurrent_s"])
    finally:
        if aengine is not None:
            await aengine.dispose()
        db.engine.dispose()
    return out


async def run(profile: str = "full") -> dict[str, Any]:
    p = PROFILES[profile]
    res: dict[str, Any] = {"settings": {**p, "outbox_rows": CHATS * ROWS_PER_CHAT}}
    if ASYNC_MISSING:
        print(f"no async engine measured: {ASYNC_MISSING}", flush=True)
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
    print(
        "\nDatabase calls in a running event loop (ms): each call's wall time; per call, the"
        "\nlongest the loop was held by one callback (nothing else could run: 'held'); how"
        "\nlate a 1 ms ticker task woke during the calls (also counts waits for the GIL)"
    )
    head = (
        f"{'backend':<10} {'call':<21} {'mode':<9} {'p50':>6} {'p95':>6} {'max':>6}"
        f" {'held p50':>8} {'held p95':>8} {'held max':>8} {'late p95':>8}"
    )
    print(head)
    print("-" * len(head))
    for backend in ("sqlite", "postgresql"):
        for call, row in res[backend]["calls"].items():
            for mode, c in row.items():
                print(
                    f"{backend:<10} {call:<21} {mode:<9} {c['p50_ms']:>6.2f} {c['p95_ms']:>6.2f} "
                    f"{c['max_ms']:>6.2f} {c['loop_held_p50_ms']:>8.2f} "
                    f"{c['loop_held_p95_ms']:>8.2f} {c['loop_held_max_ms']:>8.2f} "
                    f"{c['loop_lag_p95_ms']:>8.2f}"
                )
    print(
        f"\n{CONCURRENCY} concurrent callers of sessions.get: calls/s; loop held max; "
        "ticker late p95 / max (ms)"
    )
    for backend in ("sqlite", "postgresql"):
        for mode, c in res[backend]["concurrent_sessions_get"].items():
            print(
                f"{backend:<10} {mode:<9} {c['calls_per_s']:>6} /s   {c['loop_held_max_ms']:>7.2f}"
                f"   {c['loop_lag_p95_ms']:>7.2f} / {c['loop_lag_max_ms']:.2f}"
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
