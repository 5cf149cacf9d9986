"""The outbox across hosts: throughput and cross-host latency, SQLite as the baseline.

Starts its own throwaway PostgreSQL (`tests/support/postgres.py`, as the tests do) and
measures, in one run:

1. Throughput, rows/s delivered to an in-process sink with no rate limit (`--n` rows
   over `--chats` chats, two threads each), from the first row written until the last
   is delivered, while the rows are being written:
   - SQLite, one host (the baseline: the daemon as it has always run);
   - PostgreSQL, the gateway writing its own rows (one host);
   - PostgreSQL, 1 and 3 producing hosts: each a thread with its own engine and
     `Outbox` (not the gateway) writing its share; the gateway (another `Outbox` with
     the database listener) is woken by NOTIFY.
2. Cross-host latency, enqueue on host B → the platform call on gateway A, one row at
   a time (`--pings`): p50/p95 with NOTIFY, and with the poll only (no listener); the
   baseline is the same on one SQLite host (an in-process wake).
3. A delivery step's database time (the claim, and marking the row sent) on SQLite and
   PostgreSQL, and how long the event loop is held up while 1,000 rows are delivered
   with those calls inline versus in a thread (`offload`): the loop's worst and p99
   lag, measured by a 1 ms ticker.

Run: ``python benchmarks/bench_hosts_outbox.py [--n 3000] [--chats 10] [--pings 60]``
(``--quick``: a smaller run).  Writes ``benchmarks/results_hosts_outbox.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_outbox import BenchAdapter  # noqa: E402

from adapters.messages import Rendered, ThreadRef, text  # noqa: E402
from bridge.outbox.outbox import Outbox  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.notify import Listener  # noqa: E402
from tests.support.postgres import create_database, start_postgres  # noqa: E402

BODY = "A typical tool line or short answer, about a hundred characters long, with `code` in it."


class TimedSink(BenchAdapter):
    """`BenchAdapter` (no rate limit) that notes when each text was sent, and yields
    to the event loop once per call as a network call would."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_at: dict[str, float] = {}
        self.arrived = asyncio.Event()

    async def send(self, thread: ThreadRef, msg: Rendered) -> str:
        await asyncio.sleep(0)
        self.sent_at[msg.payload["text"]] = time.perf_counter()
        self.arrived.set()
        return await super().send(thread, msg)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def threads_of(chats: int) -> list[ThreadRef]:
    return [ThreadRef("bench", f"chat{c}", f"t{t}") for c in range(chats) for t in range(2)]


class Gateway:
    """Host A: the outbox that delivers, with the database listener."""

    def __init__(self, url: str, *, listen: bool = True, poll: float | None = None) -> None:
        self.db = Database(url)
        self.sink = TimedSink()
        self.listener = Listener(url) if listen and not self.db.is_sqlite else None
        self.outbox = Outbox(
            self.db,
            {"bench": self.sink},
            host="a",
            listener=self.listener,
            poll_every=poll,
            prune_every=3600,
        )

    async def __aenter__(self) -> Gateway:
        await self.outbox.start()
        if self.listener is not None:
            await self.listener.start()
            await asyncio.wait_for(self.listener.connected.wait(), 10)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.listener is not None:
            await self.listener.stop()
        await self.outbox.stop()
        self.db.close()

    async def delivered(self, n: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self.sink.calls["send"] < n:
            assert time.monotonic() < deadline, f"{self.sink.calls['send']}/{n} delivered"
            self.sink.arrived.clear()
            await asyncio.wait_for(self.sink.arrived.wait(), timeout)


def producer(url: str, name: str, rows: list[tuple[ThreadRef, str]]) -> None:
    """A host that is not the gateway writes its rows (in a thread of its own)."""
    db = Database(url)
    outbox = Outbox(db, {"bench": BenchAdapter()}, host=name, may_send=lambda _p: False)
    for thread, body in rows:
        outbox.enqueue(thread, text(body))
    db.close()


async def throughput(url: str, n: int, chats: int, hosts: int) -> dict[str, Any]:
    """hosts=0: the gateway writes its own rows (one host)."""
    threads = threads_of(chats)
    rows = [(threads[i % len(threads)], f"{i} {BODY}") for i in range(n)]
    async with Gateway(url) as a:
        began = time.perf_counter()
        if hosts == 0:
            for i, (thread, body) in enumerate(rows):
                a.outbox.enqueue(thread, text(body))
                if i % 10 == 0:
                    await asyncio.sleep(0)  # let the workers deliver meanwhile
        else:
            workers = [
                threading.Thread(target=producer, args=(url, f"p{h}", rows[h::hosts]))
                for h in range(hosts)
            ]
            for w in workers:
                w.start()
            await asyncio.to_thread(lambda: [w.join() for w in workers])
        written = time.perf_counter() - began
        await a.delivered(n)
        elapsed = time.perf_counter() - began
    return {
        "rows": n,
        "producing_hosts": max(hosts, 1),
        "written_per_s": round(n / written),
        "delivered_per_s": round(n / elapsed),
    }


async def latency(url: str, pings: int, *, listen: bool, poll: float | None) -> dict[str, Any]:
    """Enqueue on B (or on A itself for SQLite) → the call on A, one row at a time."""
    thread = ThreadRef("bench", "lat", "t")
    async with Gateway(url, listen=listen, poll=poll) as a:
        one_host = a.db.is_sqlite
        b_db = a.db if one_host else Database(url)
        b = (
            a.outbox
            if one_host  # host B is not the gateway
            else Outbox(b_db, {"bench": BenchAdapter()}, host="b", may_send=lambda _p: False)
        )
        lags: list[float] = []
        for i in range(pings + 1):
            began = time.perf_counter()
            b.enqueue(thread, text(f"ping {i}"))
            while f"ping {i}" not in a.sink.sent_at:
                a.sink.arrived.clear()
                await asyncio.wait_for(a.sink.arrived.wait(), 10)
            if i:  # the first wakes a new worker
                lags.append((a.sink.sent_at[f"ping {i}"] - began) * 1000)
            await asyncio.sleep(0.02)
        if not one_host:
            b_db.close()
    return {
        "pings": pings,
        "p50_ms": round(statistics.median(lags), 2),
        "p95_ms": round(pct(lags, 0.95), 2),
        "max_ms": round(max(lags), 2),
    }


def step_db_ms(url: str, rows: int = 300) -> dict[str, float]:
    """A delivery step's database calls, timed one by one: the claim (pick + claim,
    one transaction) and marking the row sent."""
    db = Database(url)
    thread = ThreadRef("bench", "step", "t")
    for i in range(rows):
        db.outbox.add(
            platform="bench",
            chat_id="step",
            thread_id="t",
            thread_key=thread.key,
            op="send",
            payloads=[{"text": f"{i} {BODY}"}],
            priority=2,
            not_before=datetime.now(UTC),
        )
    trips = []
    for _ in range(rows):  # the floor: one round trip (`SELECT 1`)
        t0 = time.perf_counter()
        db.check()
        trips.append((time.perf_counter() - t0) * 1000)
    claims, marks = [], []
    for _ in range(rows):
        t0 = time.perf_counter()
        item = db.outbox.claim_next("bench:step", datetime.now(UTC), "bench:1")
        t1 = time.perf_counter()
        assert item is not None
        db.outbox.mark_sent(item.id, "1", datetime.now(UTC))
        t2 = time.perf_counter()
        claims.append((t1 - t0) * 1000)
        marks.append((t2 - t1) * 1000)
    db.close()
    return {
        "select_1_p50_ms": round(statistics.median(trips), 3),
        "claim_p50_ms": round(statistics.median(claims), 3),
        "claim_p95_ms": round(pct(claims, 0.95), 3),
        "mark_sent_p50_ms": round(statistics.median(marks), 3),
        "step_p50_ms": round(
            statistics.median(c + m for c, m in zip(claims, marks, strict=True)), 3
        ),
    }


async def loop_lag(url: str, n: int, *, offload: bool, chats: int = 4) -> dict[str, float]:
    """The event loop's lag (a 1 ms ticker) while the outbox delivers `n` rows."""
    db = Database(url)
    sink = TimedSink()
    outbox = Outbox(db, {"bench": sink}, offload=offload, poll_every=None)
    threads = threads_of(chats)
    for i in range(n):
        outbox.enqueue(threads[i % len(threads)], text(f"{i} {BODY}"))
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - t0 - 0.001) * 1000)

    tick = asyncio.create_task(ticker())
    began = time.perf_counter()
    await outbox.start()
    assert await outbox.wait_idle(timeout=600)
    elapsed = time.perf_counter() - began
    done.set()
    await tick
    await outbox.stop()
    db.close()
    return {
        "rows_per_s": round(n / elapsed),
        "loop_lag_p50_ms": round(statistics.median(lags), 3),
        "loop_lag_p99_ms": round(pct(lags, 0.99), 3),
        "loop_lag_max_ms": round(max(lags), 3),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server, stop_server = start_postgres()
    try:
        return await _run(args, server)
    finally:
        stop_server()


async def _run(args: argparse.Namespace, server: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        n = 0

        def sqlite() -> str:
            nonlocal n
            n += 1
            return f"sqlite:///{tmp}/bench{n}.db"

        def fresh(make: Callable[[], str]) -> str:
            url = make()
            Database(url).migrate()
            return url

        async def on_pg(fn: Callable[[str], Any]) -> Any:
            url = create_database(server)  # dropped with the throwaway server
            Database(url).migrate()
            return await fn(url)

        tp: dict[str, Any] = {}
        tp["sqlite_1_host"] = await throughput(fresh(sqlite), args.n, args.chats, 0)
        tp["postgres_1_host"] = await on_pg(lambda u: throughput(u, args.n, args.chats, 0))
        tp["postgres_1_producing_host"] = await on_pg(
            lambda u: throughput(u, args.n, args.chats, 1)
        )
        tp["postgres_3_producing_hosts"] = await on_pg(
            lambda u: throughput(u, args.n, args.chats, 3)
        )
        results["throughput"] = tp
        lat: dict[str, Any] = {}
        lat["sqlite_one_host"] = await latency(fresh(sqlite), args.pings, listen=False, poll=None)
        lat["postgres_cross_host_notify"] = await on_pg(
            lambda u: latency(u, args.pings, listen=True, poll=None)
        )
        lat["postgres_cross_host_poll_only"] = await on_pg(
            lambda u: latency(u, max(10, args.pings // 6), listen=False, poll=2.0)
        )
        results["latency_enqueue_to_call"] = lat
        steps: dict[str, Any] = {"sqlite": step_db_ms(fresh(sqlite))}
        url = create_database(server)
        Database(url).migrate()
        steps["postgres"] = step_db_ms(url)
        results["delivery_step_db"] = steps
        lag: dict[str, Any] = {"sqlite_inline": await loop_lag(fresh(sqlite), 1000, offload=False)}
        lag["postgres_inline"] = await on_pg(lambda u: loop_lag(u, 1000, offload=False))
        lag["postgres_offloaded"] = await on_pg(lambda u: loop_lag(u, 1000, offload=True))
        results["event_loop_lag"] = lag
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="rows per throughput run")
    parser.add_argument("--chats", type=int, default=10)
    parser.add_argument("--pings", type=int, default=60)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("results_hosts_outbox.json")
    )
    args = parser.parse_args()
    if args.quick:
        args.n, args.pings = 600, 20
    logging.basicConfig(level=logging.WARNING)
    results = asyncio.run(run(args))
    print(json.dumps(results, indent=2))
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
