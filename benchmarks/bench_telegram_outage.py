"""Telegram after a Bot API outage: how soon the daemon hears the person again, and
how soon what it had to say during the outage reaches the chat.

    python benchmarks/bench_telegram_outage.py            # 60 s outages: 502, then refused
    python benchmarks/bench_telegram_outage.py --quick    # one 60 s outage (502)

The real daemon (`Bridge`, outbox, the PTB adapter) against the fake Bot API, in
process (`support.start_env`).  The API fails for `outage_s` — answering 502 to every
call, or refusing connections — and in the middle of it the person sends ``/help``
(the fake holds the update, as Telegram does) while the bridge has a message of its
own to deliver (an outbox row enqueued then).  Measured from the moment the API is
back: the ``/help`` update reaching the bridge (`update_ms`), the bot's answer to it
visible (`reply_ms`), and the message queued during the outage visible (`queued_ms`).

Both variants run side by side, each with its own fake and bridge, through the same
outage at the same moment.  The baseline is the old behaviour, rebuilt here only:
polling left to PTB's network retry loop (1 s, growing ×1.5 to 30 s: no outage
handler on the bot) and the outbox's retries capped at 15 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import support as S  # noqa: E402

from adapters.messages import Inbound, ThreadRef, UserMessage, text  # noqa: E402
from adapters.telegram.adapter import TelegramAdapter  # noqa: E402
from bridge.outbox.delivery import RetryPolicy  # noqa: E402

OLD_RETRY_MAX_S = 15.0  # the outbox's retry cap before this change
PROFILES: dict[str, dict[str, Any]] = {
    "full": {"outage_s": 60.0, "modes": (502, "refused")},
    "quick": {"outage_s": 60.0, "modes": (502,)},
}
VARIANTS = ("threadline", "baseline")
QUEUED = 6  # chats with a message queued during the outage
OTHER_CHATS = 5001  # their ids


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def use_old_behaviour(env: S.Env) -> None:
    """The baseline: PTB's own retry loop for polling, and 15 s outbox retries."""
    adapter = env.bridge.adapters["telegram"]
    assert isinstance(adapter, TelegramAdapter)
    adapter.app.bot._poll_outage = None  # TolerantBot: no outage handler → PTB's backoff
    old = env.bridge.outbox._policy
    env.bridge.outbox._policy = RetryPolicy(old.initial, OLD_RETRY_MAX_S, old.ephemeral_attempts)


class Probe:
    """One variant: its environment and when things reached the bridge or the chat."""

    def __init__(self, env: S.Env) -> None:
        self.env = env
        self.heard: dict[str, float] = {}  # text of a person's message → reached the bridge
        adapter = env.bridge.adapters["telegram"]
        assert isinstance(adapter, TelegramAdapter)
        receiver = adapter.receiver
        sink = receiver.sink
        assert sink is not None

        async def timed(event: Inbound) -> None:
            if isinstance(event, UserMessage):
                self.heard.setdefault(event.text, time.time())
            await sink(event)

        receiver.sink = timed

    def visible(self, needle: str, since: float) -> float | None:
        """When a sendMessage carrying `needle` was accepted (after `since`)."""
        for c in self.env.tg.api_log:
            if (
                c.method == "sendMessage"
                and c.status == 200
                and c.at >= since
                and needle in str(c.params.get("text", ""))
            ):
                return c.at
        return None


async def outage(model: S.TimedAnthropic, tmp: Path, mode: int | str, outage_s: float) -> Any:
    probes: dict[str, Probe] = {}
    try:
        for name in VARIANTS:
            env = await S.start_env(
                tmp / f"{mode}-{name}", model, naive=False, group=False, overhead=S.Overhead()
            )
            if name == "baseline":
                use_old_behaviour(env)
            for i in range(QUEUED):
                env.tg.add_chat(OTHER_CHATS + i, "private", first_name=f"Other {i}")
            probes[name] = Probe(env)
        for p in probes.values():  # polling works before the outage
            p.env.say("/help")
        for p in probes.values():
            await p.env.tg.wait_until(lambda p=p: p.visible("/sessions", 0), 30)
        polls = {}
        for name, p in probes.items():
            await p.env.tg.set_outage(mode)
            polls[name] = p.env.tg.calls["getUpdates"]
        # Messages of its own, queued in QUEUED chats at steps through the outage
        # (each chat's retries run their own schedule: one sample each).
        marker = f"queued during the outage {mode}"
        step = outage_s / (QUEUED + 1)
        for i in range(QUEUED):
            await asyncio.sleep(step)
            for p in probes.values():
                if i == QUEUED // 2:  # the person writes in the middle of the outage
                    p.heard.clear()
                    p.env.say("/help")
                chat = ThreadRef("telegram", str(OTHER_CHATS + i))
                p.env.bridge.outbox.enqueue(chat, text(f"{marker} #{i}"))
        await asyncio.sleep(step)
        ended = time.time()
        for name, p in probes.items():
            # (a refused connection never reaches the fake: counted only with 502s)
            polls[name] = p.env.tg.calls["getUpdates"] - polls[name]
            await p.env.tg.set_outage(None)
        out: dict[str, Any] = {}
        for name, p in probes.items():
            reply = await p.env.tg.wait_until(lambda p=p: p.visible("/sessions", ended), 60)
            queued = [
                await p.env.tg.wait_until(lambda p=p, i=i: p.visible(f"{marker} #{i}", 0), 60)
                for i in range(QUEUED)
            ]
            heard = p.heard.get("/help")
            out[name] = {
                "update_ms": ms(heard - ended) if heard else None,
                "reply_ms": ms(reply - ended),
                "queued_ms": S.summary([q - ended for q in queued], 1000),
                "getUpdates_during_outage": polls[name] if mode != "refused" else None,
            }
        return out
    finally:
        for p in probes.values():
            await S.stop_env(p.env)


async def run(profile: str) -> dict[str, Any]:
    p = PROFILES[profile]
    model = S.TimedAnthropic()
    await model.start()
    res: dict[str, Any] = {"outage_s": p["outage_s"], "by_mode": {}}
    try:
        with tempfile.TemporaryDirectory(prefix="threadline-outage-") as d:
            for mode in p["modes"]:
                res["by_mode"][str(mode)] = await outage(model, Path(d), mode, p["outage_s"])
    finally:
        await model.stop()
    for name in VARIANTS:
        rows = [m[name] for m in res["by_mode"].values()]
        res[name] = {
            key: S.summary([r[key] / 1000 for r in rows if r[key] is not None], 1000)
            for key in ("update_ms", "reply_ms")
        }
    return res


def report(res: dict[str, Any]) -> None:
    print(f"\nTelegram, after a {res['outage_s']:g} s Bot API outage (ms after it ended)")
    print(
        f"{'mode':<9} {'variant':<11} {'/help heard':>12} {'answer seen':>12} "
        f"{'queued msgs p50 / max':>21} {'polls':>9}"
    )
    for mode, by in res["by_mode"].items():
        for name in VARIANTS:
            r = by[name]
            q = r["queued_ms"]
            print(
                f"{mode:<9} {name:<11} {r['update_ms']!s:>12} {r['reply_ms']!s:>12} "
                f"{q['p50']!s:>9} / {q['max']!s:<9} {r['getUpdates_during_outage']!s:>9}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one outage instead of two")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the outage's own warnings are expected
    res = asyncio.run(run("quick" if args.quick else "full"))
    report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
