"""Outbox throughput and stream coalescing, measured in-process.

1. Persist N messages (rendered and stored, one transaction each, as the bridge
   does) and report messages/s persisted; then start the outbox and deliver them to
   an adapter with no rate limit and report messages/s sent — the outbox's own
   overhead (SQLite on a temp file, WAL).
2. Stream a 2,000-word answer word by word into one message under Telegram-like
   limits (1 message/s per chat, burst 3; time scaled ×10 to keep the run short:
   10/s and 1,000 words/s) and count API calls: coalesced stream edits versus a
   naive edit per delta (each delta its own row, delivered with no limit at all).

Run: ``python benchmarks/bench_outbox.py [--n 5000] [--chats 10] [--words 2000]``.
Writes ``benchmarks/results_outbox.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.base import Capabilities, ChatAdapter, InboundSink, RateLimited  # noqa: E402
from adapters.messages import Outbound, Rendered, ThreadRef, text  # noqa: E402
from bridge.outbox.outbox import Outbox  # noqa: E402
from storage.db import Database  # noqa: E402


class BenchAdapter(ChatAdapter):
    """An in-process platform: assigns ids, keeps contents, and (if `rate` is set)
    enforces a strict per-chat token bucket, answering 429 when exceeded."""

    platform = "bench"

    def __init__(self, rate: float | None = None, burst: int = 3) -> None:
        self.capabilities = Capabilities(
            per_chat_rate=1e9 if rate is None else rate,
            per_chat_burst=1_000_000 if rate is None else burst,
            global_rate=1e9 if rate is None else 300.0,
        )
        self._rate, self._burst = rate, burst
        self._tat: dict[str, float] = {}
        self.calls = {"send": 0, "edit": 0}
        self.rate_limited = 0
        self.messages: dict[str, str] = {}

    def _admit(self, chat_id: str) -> None:
        if self._rate is None:
            return
        now, interval = time.time(), 1.0 / self._rate
        tat = self._tat.get(chat_id, now)
        if tat - (self._burst - 1) * interval > now:
            self.rate_limited += 1
            raise RateLimited(tat - (self._burst - 1) * interval - now)
        self._tat[chat_id] = max(tat, now) + interval

    async def send(self, thread: ThreadRef, msg: Rendered) -> str:
        self._admit(thread.chat_id)
        self.calls["send"] += 1
        mid = str(len(self.messages) + 1)
        self.messages[mid] = msg.payload["text"]
        return mid

    async def edit(self, thread: ThreadRef, message_id: str, msg: Rendered) -> None:
        self._admit(thread.chat_id)
        self.calls["edit"] += 1
        self.messages[message_id] = msg.payload["text"]

    def render(self, msg: Outbound) -> list[Rendered]:
        return [Rendered({"text": msg.plain})]

    def render_edit(self, msg: Outbound) -> Rendered:
        return Rendered({"text": msg.plain})

    async def start(self, sink: InboundSink) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def open_thread(
        self, chat_id: str, title: str, header: Outbound, *, prefer_topic: bool = True
    ) -> tuple[ThreadRef, str | None]:
        return ThreadRef(self.platform, chat_id, title), None


def fresh_db(tmp: Path, name: str) -> Database:
    db = Database(f"sqlite:///{tmp}/{name}.db")
    db.migrate()
    return db


async def throughput(tmp: Path, n: int, chats: int) -> dict[str, float]:
    db = fresh_db(tmp, "throughput")
    adapter = BenchAdapter()
    outbox = Outbox(db, {"bench": adapter})
    threads = [ThreadRef("bench", f"chat{c}", f"t{t}") for c in range(chats) for t in range(2)]
    body = (
        "A typical tool line or short answer, about a hundred characters long, with `code` in it. "
        * 1
    )
    started = time.perf_counter()
    for i in range(n):
        outbox.enqueue(threads[i % len(threads)], text(f"{i} {body}"))
    persisted = time.perf_counter() - started
    started = time.perf_counter()
    await outbox.start()
    assert await outbox.wait_idle(timeout=600)
    sent = time.perf_counter() - started
    await outbox.stop()
    assert adapter.calls["send"] == n, adapter.calls
    db.close()
    return {
        "messages": n,
        "chats": chats,
        "threads": len(threads),
        "persisted_per_s": round(n / persisted),
        "sent_per_s": round(n / sent),
        "persist_ms_per_message": round(persisted / n * 1000, 3),
        "send_ms_per_message": round(sent / n * 1000, 3),
    }


async def stream(
    tmp: Path, words: int, rate: float, burst: int, words_per_s: float
) -> dict[str, object]:
    deltas = [f"word{i} " for i in range(words)]
    final = "".join(deltas)
    thread = ThreadRef("bench", "dm", None)

    # Coalesced: every delta is a stream update of one message (one row, rewritten).
    db = fresh_db(tmp, "stream")
    limited = BenchAdapter(rate=rate, burst=burst)
    outbox = Outbox(db, {"bench": limited})
    await outbox.start()
    head = outbox.enqueue(thread, text("…"))[0]
    await outbox.wait_sent(head, timeout=30)
    sends_before = limited.calls["send"]
    so_far = ""
    started = time.perf_counter()
    for delta in deltas:
        so_far += delta
        outbox.enqueue_edit(thread, head, text(so_far), priority=1, stream_key="answer")
        await asyncio.sleep(1.0 / words_per_s)
    produced = time.perf_counter() - started
    assert await outbox.wait_idle(timeout=60)
    settled = time.perf_counter() - started
    await outbox.stop()
    exact = limited.messages[outbox.platform_message_id(head) or ""] == final
    coalesced_calls = limited.calls["edit"] + limited.calls["send"] - sends_before
    db.close()

    # Naive: an edit per delta, each its own row, to a platform with no limit.
    db = fresh_db(tmp, "naive")
    free = BenchAdapter()
    outbox = Outbox(db, {"bench": free})
    await outbox.start()
    head = outbox.enqueue(thread, text("…"))[0]
    so_far = ""
    for delta in deltas:
        so_far += delta
        outbox.enqueue_edit(thread, head, text(so_far), priority=1)
    assert await outbox.wait_idle(timeout=600)
    await outbox.stop()
    db.close()
    naive_calls = free.calls["edit"]
    return {
        "words": words,
        "limits": {
            "per_chat_rate": rate,
            "per_chat_burst": burst,
            "time_scale": "x10 of Telegram's ~1/s",
        },
        "producer_words_per_s_target": words_per_s,
        "producer_words_per_s_achieved": round(words / produced),
        "producer_s": round(produced, 2),
        "delivered_s": round(settled, 2),
        "coalesced_api_calls": coalesced_calls,
        "naive_api_calls": naive_calls,
        "naive_seconds_at_the_same_limit": round(naive_calls / rate, 1),
        "reduction": round(naive_calls / max(1, coalesced_calls), 1),
        "final_content_exact": exact,
        "rate_limited_429s": limited.rate_limited,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="messages for the throughput run")
    parser.add_argument("--chats", type=int, default=10)
    parser.add_argument("--words", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results_outbox.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tp = await throughput(tmp, args.n, args.chats)
        print(
            f"persisted: {tp['persisted_per_s']:>7} messages/s  ({tp['persist_ms_per_message']} ms each)"
        )
        print(
            f"sent:      {tp['sent_per_s']:>7} messages/s  ({tp['send_ms_per_message']} ms each, no rate limit)"
        )
        st = await stream(tmp, args.words, rate=10.0, burst=3, words_per_s=1000.0)
        print(
            f"stream of {st['words']} words: {st['coalesced_api_calls']} API calls coalesced vs "
            f"{st['naive_api_calls']} naive (x{st['reduction']}); final exact: {st['final_content_exact']}; "
            f"429s: {st['rate_limited_429s']}"
        )
    results = {
        "throughput": tp,
        "stream": st,
        "environment": {
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "machine": platform.machine(),
        },
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
