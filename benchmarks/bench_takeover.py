"""Gateway takeover time over many kills: two real `threadline run` processes on one
PostgreSQL, one Telegram bot.

    python benchmarks/bench_takeover.py             # 20 kills -9 and 5 clean stops (~5 min)
    python benchmarks/bench_takeover.py --quick     # 3 kills -9 and 1 clean stop (~1 min)
    python benchmarks/bench_takeover.py --kills 10  # any number of kills -9

The set-up is `tests/e2e/test_e2e_gateway.py`'s: a throwaway PostgreSQL started here
(`tests/support/postgres.start_postgres`), the fake Bot API in this process, and two
daemons ("laptop", "box": `tests/support/daemons.Daemon`), each with its own data dir,
reaching the fake under its own host name (127.0.0.1 / localhost) so the fake tells
their calls apart (`FakeTelegram.calls_via`).  The fake Anthropic API runs too, as in
the test, though no turn is run.

One round: the gateway (the daemon polling getUpdates) is stopped, a person sends
``/help`` at once, and two times are taken from the stop — until the other daemon's
first getUpdates arrives at the fake (`takeover`), and until the ``/help`` answer has
been accepted by the fake (`answered`).  Then the stopped daemon is started again and
waited for until it stands by.  Measured for ``kill -9`` (the lease runs out: its TTL
is 8 s) and, as the baseline in the same run, for a clean stop (SIGTERM: the daemon
releases its lease).  The goal is a takeover within 10 s of a kill -9.  In a SIGTERM
round the ``/help`` reaches the stopping daemon while it shuts down: if its last poll
takes it, it is dropped ("ignoring inbound … shutting down") and counted unanswered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import support as S  # noqa: E402

from tests.support.daemons import Daemon  # noqa: E402
from tests.support.fakes.anthropic import FakeAnthropic  # noqa: E402
from tests.support.fakes.claude_env import claude_env  # noqa: E402
from tests.support.fakes.telegram import FakeTelegram  # noqa: E402
from tests.support.harness import OWNER, OWNER_NAME  # noqa: E402
from tests.support.postgres import create_database, start_postgres  # noqa: E402

GOAL_S = 10.0
PROFILES: dict[str, dict[str, int]] = {
    "full": {"kills": 20, "clean_stops": 5},
    "quick": {"kills": 3, "clean_stops": 1},
}
USER = {"id": OWNER, "is_bot": False, "first_name": OWNER_NAME}
HELP_MARK = "/sessions"  # in the /help answer
TAKEOVER_TIMEOUT_S = 30.0  # a takeover later than this is recorded as missing
ANSWER_TIMEOUT_S = 15.0  # after the takeover: a /help not answered by then was lost


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class PollWatch:
    """When each daemon's getUpdates calls arrive at the fake, to the millisecond: the
    fake's `on_api` hook runs right after it counted the call in `calls_via`, so the
    counter that moved names the caller."""

    def __init__(self, tg: FakeTelegram, hosts: list[Daemon]) -> None:
        self.tg, self.hosts = tg, hosts
        self.seen = {h.via: self._count(h) for h in hosts}
        self.first_since: dict[str, float] = {}
        tg.on_api = self._on_api

    def _count(self, host: Daemon) -> int:
        return self.tg.calls_via[(host.via, "getUpdates")]

    def _on_api(self, stage: str, method: str, params: dict[str, Any]) -> None:
        if stage != "received" or method != "getUpdates":
            return
        now = time.monotonic()
        for h in self.hosts:
            n = self._count(h)
            if n != self.seen[h.via]:
                self.seen[h.via] = n
                self.first_since.setdefault(h.via, now)

    def mark(self) -> None:
        """Forget earlier polls: `first_since` fills from now on."""
        self.first_since.clear()


def helps(tg: FakeTelegram) -> int:
    return sum(HELP_MARK in (m.visible_text or "") for m in tg.messages(OWNER))


async def one_round(
    tg: FakeTelegram, watch: PollWatch, gw: Daemon, standby: Daemon, env: dict[str, str], sig: str
) -> dict[str, Any]:
    """Stop the gateway `gw` (kill -9 or SIGTERM), send /help, time the takeover by
    `standby` and the answer; start `gw` again and wait until it stands by."""
    assert gw.proc is not None
    answered_before = helps(tg)
    sent_before = {h.via: tg.calls_via[(h.via, "sendMessage")] for h in (gw, standby)}
    watch.mark()
    t0 = time.monotonic()
    if sig == "kill9":
        gw.proc.kill()
        await gw.proc.wait()
    else:
        gw.proc.send_signal(signal.SIGTERM)
    tg.user_message(OWNER, USER, "/help")
    res: dict[str, Any] = {"stop": sig, "from": gw.name, "takeover_s": None, "answered_s": None}
    try:
        await tg.wait_until(lambda: standby.via in watch.first_since, TAKEOVER_TIMEOUT_S)
        res["takeover_s"] = watch.first_since[standby.via] - t0
        await tg.wait_until(lambda: helps(tg) > answered_before, ANSWER_TIMEOUT_S)
        res["answered_s"] = time.monotonic() - t0
    except TimeoutError:
        what = "no answer to /help" if res["takeover_s"] is not None else "no takeover"
        log(f"  {sig}: {what} (waited {TAKEOVER_TIMEOUT_S:g} + {ANSWER_TIMEOUT_S:g} s at most)")
    res["answered_by"] = [
        h.name for h in (gw, standby) if tg.calls_via[(h.via, "sendMessage")] > sent_before[h.via]
    ]
    await gw.proc.wait()  # a clean stop ends by itself
    stands_by = gw.said(f"{standby.name} is the gateway")
    await gw.start(env)
    await tg.wait_until(lambda: gw.said(f"{standby.name} is the gateway") > stands_by, 90)
    return res


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "min": None, "p50": None, "p95": None, "max": None}
    return {
        "n": len(values),
        "min": round(min(values), 2),
        "p50": round(S.pct(values, 50) or 0.0, 2),
        "p95": round(S.pct(values, 95) or 0.0, 2),
        "max": round(max(values), 2),
    }


async def run(profile: str = "full", kills: int | None = None) -> dict[str, Any]:
    p = dict(PROFILES[profile])
    if kills is not None:
        p["kills"] = kills
    server, stop_pg = await asyncio.to_thread(start_postgres)
    model = FakeAnthropic()
    await model.start()
    hosts: list[Daemon] = []
    rounds: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        db_url = await asyncio.to_thread(create_database, server)
        with tempfile.TemporaryDirectory(prefix="threadline-takeover-") as d:
            tmp = Path(d)
            async with FakeTelegram() as tg:
                tg.add_chat(OWNER, "private", first_name=OWNER_NAME)
                env = {
                    **os.environ,
                    **claude_env(tmp / "home", model.base_url),
                    "THREADLINE_CONFIG": "",
                }
                laptop = Daemon("laptop", "127.0.0.1", tmp, tg, db_url)
                box = Daemon("box", "localhost", tmp, tg, db_url)
                hosts += [laptop, box]
                watch = PollWatch(tg, hosts)
                await laptop.start(env)
                await tg.wait_until(lambda: "127.0.0.1" in watch.first_since, 90)
                await box.start(env)
                await tg.wait_until(lambda: box.said("laptop is the gateway") > 0, 90)
                gw, standby = laptop, box
                # the clean stops first: the kill -9 rounds then run back to back
                plan = ["sigterm"] * p["clean_stops"] + ["kill9"] * p["kills"]
                for i, sig in enumerate(plan, 1):
                    r = await one_round(tg, watch, gw, standby, env, sig)
                    rounds.append(r)
                    log(
                        f"{i}/{len(plan)} {sig:<7} {gw.name:>6} → {standby.name:<6} "
                        f"takeover {fmt(r['takeover_s'])}  /help answered {fmt(r['answered_s'])}"
                    )
                    gw, standby = standby, gw
    finally:
        for h in hosts:
            await h.stop()
        await model.stop()
        await asyncio.to_thread(stop_pg)
    res: dict[str, Any] = {"goal_s": GOAL_S, "settings": p, "rounds": rounds}
    for sig in ("kill9", "sigterm"):
        rs = [r for r in rounds if r["stop"] == sig]
        res[sig] = {
            "takeover_s": stats([r["takeover_s"] for r in rs if r["takeover_s"] is not None]),
            "answered_s": stats([r["answered_s"] for r in rs if r["answered_s"] is not None]),
            "missing": sum(r["answered_s"] is None for r in rs),
            "over_goal": sum((r["takeover_s"] or GOAL_S + 1) > GOAL_S for r in rs),
        }
    res["wall_s"] = round(time.monotonic() - started, 1)
    return res


def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f} s"


def report(res: dict[str, Any]) -> None:
    print("\nGateway takeover, two `threadline run` processes on one PostgreSQL (seconds)")
    print(f"{'stop':<22} {'n':>3}  {'what':<16} {'min':>6} {'p50':>6} {'p95':>6} {'max':>6}")
    labels = {"kill9": "kill -9 (lease expires)", "sigterm": "SIGTERM (baseline)"}
    for sig in ("kill9", "sigterm"):
        for key, what in (("takeover_s", "takeover"), ("answered_s", "/help answered")):
            s = res[sig][key]
            cells = " ".join(f"{'—' if s[k] is None else s[k]:>6}" for k in S_KEYS)
            print(f"{labels[sig]:<22} {s['n']:>3}  {what:<16} {cells}")
    k = res["kill9"]
    print(
        f"goal: takeover ≤ {res['goal_s']:g} s after kill -9 — "
        f"{k['takeover_s']['n'] - k['over_goal']}/{k['takeover_s']['n']} within it; "
        f"/help unanswered: {k['missing']} (kill -9), {res['sigterm']['missing']} (SIGTERM)"
    )
    print(f"wall time {res['wall_s']} s")


S_KEYS = ("min", "p50", "p95", "max")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 kills -9, 1 clean stop")
    parser.add_argument("--kills", type=int, help="kills -9 (default 20; --quick 3)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    res = asyncio.run(run("quick" if args.quick else "full", args.kills))
    report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
