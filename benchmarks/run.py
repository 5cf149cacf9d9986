"""Threadline's benchmark suite: one command, every number next to a naive baseline.

    python benchmarks/run.py            # full run, ~8-10 minutes on 2 cores
    python benchmarks/run.py --quick    # fewer turns and sessions, ~2 minutes

The real Claude Code CLI (bundled with claude-agent-sdk) talks to the local fake
Anthropic API and the real python-telegram-bot talks to the local fake Bot API, which
enforces Telegram's flood limits (1 message/s per chat with a burst of 3, 20 per minute
per group, 30/s overall; drafts 5/s).  Threadline is the real daemon code; the baseline
is the same daemon with an edit on every delta (no debounce, no native drafts) and no
shared rate budget (see `support.py`).  Prints a table, writes `benchmarks/results.json`
and, if matplotlib is installed, `benchmarks/latency_429.png`.  What each number means:
`benchmarks/README.md`.  Not part of the pytest suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import secrets
import signal
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_db_calls  # noqa: E402
import bench_delivery  # noqa: E402
import bench_outbox  # noqa: E402
import bench_slack_stream  # noqa: E402
import bench_takeover  # noqa: E402
import bench_telegram_outage  # noqa: E402
import support as S  # noqa: E402
from bare_bot import start_bare_bot, stop_bare_bot  # noqa: E402

from adapters.messages import Rendered, ThreadRef  # noqa: E402
from bridge.app import Bridge  # noqa: E402
from bridge.cli.daemon import build_adapters, open_database  # noqa: E402
from bridge.config import load_config  # noqa: E402
from tests.support.fakes.anthropic import Text, ToolUse  # noqa: E402
from tests.support.fakes.claude_env import claude_env  # noqa: E402

CHUNK = 40  # characters per streamed text delta
DELAY = 0.05  # seconds between deltas: ~800 characters (~130 words) per second
VARIANTS = (("threadline", False), ("naive", True))

PROFILES: dict[str, dict[str, Any]] = {
    "full": {
        "turns": 6,
        "turn_words": 300,
        "think_s": 2.0,
        "long_words": 2000,
        "long_group": True,
        "perm_streams": 4,
        "perm_prompts": 3,
        "perm_group": True,
        "sweep": (1, 2, 5, 10),
        "sweep_words": 300,
        "sweep_samples": 4,
        "sweep_deadline_s": 150.0,
        "memory_sessions": 20,
        "cold_reps": 3,
        "warm_reps": 5,
        "outbox_n": 5000,
        "new_rounds": 3,
        "six_rounds": 3,
    },
    "quick": {
        "turns": 2,
        "turn_words": 300,
        "think_s": 2.0,
        "long_words": 1000,
        "long_group": False,
        "perm_streams": 2,
        "perm_prompts": 2,
        "perm_group": False,
        "sweep": (1, 3),
        "sweep_words": 300,
        "sweep_samples": 1,
        "sweep_deadline_s": 90.0,
        "memory_sessions": 3,
        "cold_reps": 1,
        "warm_reps": 2,
        "outbox_n": 1000,
        "new_rounds": 1,
        "six_rounds": 1,
    },
}


def marker(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 1)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------
# 1. first model token → first visible text, over several turns of one session
# --------------------------------------------------------------------------------------


async def bench_turns(
    model: S.TimedAnthropic, tmp: Path, naive: bool, p: dict[str, Any], ov: S.Overhead
) -> dict[str, Any]:
    """One session in a private chat with topics (the usual personal set-up), several
    turns of ~`turn_words` words, the person "thinking" `think_s` between turns."""
    env = await S.start_env(tmp, model, naive=naive, group=False, overhead=ov)
    try:
        [s] = await S.open_sessions(env, 1, "turn")
        lat: list[float] = []
        lag: list[float] = []
        cli: list[float] = []
        bridge: list[float] = []
        t_start = time.time()
        for _ in range(p["turns"]):
            m = marker("T")
            prompt = f"explain {m}"
            model.on(prompt, Text(S.words(p["turn_words"], m), chunk=CHUNK, delay=DELAY))
            t0 = time.time()
            env.say(prompt, s.thread_id)
            final = await env.tg.wait_until(
                lambda t0=t0: S.final_sent(env.tg, s.chat_id, s.thread_id, t0), 60
            )
            first, seen = model.first_token_of(m), S.first_visible(env.tg, m)
            last = model.last_token_of(m)
            if first is not None and seen is not None:
                lat.append(seen - first)
            ended = env.bridge.turn_ended_at[s.id][-1]
            if last is not None:
                lag.append(final - last)
                cli.append(ended - last)
            bridge.append(final - ended)
            await asyncio.sleep(p["think_s"])
        calls = S.tally(S.calls_between(env.tg, t_start, time.time()))
    finally:
        await S.stop_env(env)
    return {
        "chat": "private, topics",
        "turns": p["turns"],
        "words_per_turn": p["turn_words"],
        "first_visible_ms": S.summary(lat, 1000),
        "last_token_to_final_ms": S.summary(lag, 1000),
        "cli_last_token_to_turn_ended_ms": S.summary(cli, 1000),
        "bridge_turn_ended_to_final_ms": S.summary(bridge, 1000),
        "api_calls_per_turn": round(calls["total"] / p["turns"], 1),
        "429s": calls["429"],
        "calls": calls,
    }


# --------------------------------------------------------------------------------------
# 2. a 2,000-word streamed answer: API calls and 429s
# --------------------------------------------------------------------------------------


def _final_text(env: S.Env, thread_id: int, since_id: int) -> str:
    msgs = [m for m in env.tg.messages(env.chat_id, thread_id) if m.message_id > since_id]
    # the first new message is the turn's status message; the answer follows
    return "".join("".join((m.visible_text or "").split()) for m in msgs[1:])


async def bench_long(
    model: S.TimedAnthropic,
    tmp: Path,
    naive: bool,
    group: bool,
    n_words: int,
    ov: S.Overhead,
) -> dict[str, Any]:
    env = await S.start_env(tmp, model, naive=naive, group=group, overhead=ov)
    try:
        [s] = await S.open_sessions(env, 1, "long")
        m = marker("L")
        answer = S.words(n_words, m)
        prompt = f"write the long answer {m}"
        model.on(prompt, Text(answer, chunk=CHUNK, delay=DELAY))
        before = max((x.message_id for x in env.tg.messages(env.chat_id)), default=0)
        t0 = time.time()
        env.say(prompt, s.thread_id)
        final = await env.tg.wait_until(
            lambda: S.final_sent(env.tg, s.chat_id, s.thread_id, t0), 240
        )
        idle = await env.bridge.outbox.wait_idle(timeout=90)
        t_end = time.time()
        calls = S.tally(S.calls_between(env.tg, t0, t_end))
        first, last = model.first_token_of(m), model.last_token_of(m)
        seen = S.first_visible(env.tg, m)
        exact = "".join(answer.split()) in _final_text(env, s.thread_id, before)
    finally:
        await S.stop_env(env)
    return {
        "chat": "group topic" if group else "private, topics",
        "words": n_words,
        "characters": len(answer),
        "text_deltas": model.deltas_of(m),
        "stream_s": round((last or 0) - (first or 0), 1),
        "api_calls": calls["total"],
        "ok": calls["ok"],
        "429s": calls["429"],
        "other_errors": calls["other_errors"],
        "by_method": calls["by_method"],
        "first_visible_ms": ms(seen - first) if seen and first else None,
        "last_token_to_final_ms": ms(final - last) if last else None,
        "outbox_idle": idle,
        "final_exact": exact,
    }


# --------------------------------------------------------------------------------------
# 3. permission prompt latency while other sessions stream into the same chat
# --------------------------------------------------------------------------------------


async def bench_permission(
    model: S.TimedAnthropic,
    tmp: Path,
    naive: bool,
    group: bool,
    k: int,
    n_prompts: int,
    ov: S.Overhead,
    spacing: float = 3.0,
) -> dict[str, Any]:
    """`k` sessions stream 2,000-word answers into one chat; meanwhile `n_prompts` other
    sessions of the same chat each run a turn whose first step is a `Write` tool call,
    started `spacing` seconds apart (a fixed schedule, the same for both variants).
    Latency: the CLI's can_use_tool call → the prompt with its buttons accepted by the
    fake.  The person presses Allow as soon as it is visible."""
    env = await S.start_env(tmp, model, naive=naive, group=group, overhead=ov)
    try:
        sessions = await S.open_sessions(env, k + n_prompts, "perm")
        streams, askers = sessions[:k], sessions[k:]
        stream_markers = []
        t_start = time.time()
        for s in streams:
            m = marker("S")
            stream_markers.append(m)
            prompt = f"stream the long answer {m}"
            model.on(prompt, Text(S.words(2000, m), chunk=CHUNK, delay=DELAY))
            env.say(prompt, s.thread_id)
        # let every stream get going (its first text visible, or 5 s)
        try:
            await env.tg.wait_until(
                lambda: all(S.first_visible(env.tg, m) for m in stream_markers), 5
            )
        except TimeoutError:
            pass

        async def ask(j: int, asker: S.Session) -> tuple[float, float]:
            await asyncio.sleep(j * spacing)
            m = marker("P")
            target = Path(asker.row.cwd) / "file.txt"
            prompt = f"write a file {m}"
            model.on(
                prompt,
                ToolUse("Write", {"file_path": str(target), "content": f"{m}\n"}),
                Text(f"Wrote {m}."),
            )
            t0 = time.time()
            env.say(prompt, asker.thread_id)
            asked = await env.tg.wait_until(
                lambda: next((t for sid, _, t in S.CAN_USE_TOOL if sid == asker.id), None), 60
            )
            shown = await env.tg.wait_until(
                lambda: S.prompt_sent(env.tg, asker.chat_id, asker.thread_id, t0), 180
            )
            msg = await env.tg.wait_for(
                lambda x: "Allow" in " ".join(x.button_labels),
                timeout=10,
                chat_id=asker.chat_id,
                thread_id=asker.thread_id,
            )
            env.tg.press_button(
                asker.chat_id, msg.message_id, msg.callback_data("Allow"), S.OWNER_USER
            )
            await env.tg.wait_until(lambda: env.bridge.turn_ended_at.get(asker.id), 120)
            return asked, shown

        pairs = await asyncio.gather(*(ask(j, a) for j, a in enumerate(askers)))
        # Counted until the last prompt's turn ended; the streams' tails are not waited for.
        t_end = time.time()
        calls = S.tally(S.calls_between(env.tg, t_start, t_end))
        streaming = [
            sum(
                1
                for sm in stream_markers
                if (model.first_token_of(sm) or t_end) < shown < (model.last_token_of(sm) or 0)
            )
            for _, shown in pairs
        ]
    finally:
        await S.stop_env(env)
    return {
        "chat": "group topics" if group else "private, topics",
        "streaming_sessions": k,
        "prompts": n_prompts,
        "prompt_spacing_s": spacing,
        "streams_running_when_each_prompt_was_shown": streaming,
        "prompt_latency_ms": S.summary([shown - asked for asked, shown in pairs], 1000),
        "window_s": round(t_end - t_start, 1),
        "api_calls": calls["total"],
        "429s": calls["429"],
    }


# --------------------------------------------------------------------------------------
# 4. first visible text and 429s versus concurrent sessions in one group
# --------------------------------------------------------------------------------------


async def bench_sweep_point(
    model: S.TimedAnthropic,
    tmp: Path,
    naive: bool,
    n: int,
    rounds: int,
    n_words: int,
    deadline: float,
    ov: S.Overhead,
) -> dict[str, Any]:
    """`n` sessions in one forum group each get a prompt at the same moment; measured
    until every final answer is visible.  Repeated `rounds` times, each round in a fresh
    group (a fresh 20-per-minute window) so that small N gets more than one sample."""
    env = await S.start_env(tmp, model, naive=naive, group=True, overhead=ov)
    lat: list[float] = []
    unseen = via_final = finals = n_429 = n_calls = 0
    spans: list[float] = []
    complete = True
    try:
        for r in range(rounds):
            chat = S.GROUP - 1 - r
            env.tg.add_chat(chat, "supergroup", is_forum=True, title=f"Team {r}")
            sessions = await S.open_sessions(env, n, f"sw{n}r{r}x", chat_id=chat)
            markers = [marker("W") for _ in sessions]
            for m in markers:
                model.on(f"stream {m}", Text(S.words(n_words, m), chunk=CHUNK, delay=DELAY))
            t0 = time.time()
            for s, m in zip(sessions, markers, strict=True):
                env.say(f"stream {m}", s.thread_id, chat_id=chat)
            try:
                await env.tg.wait_until(
                    lambda t0=t0, sessions=sessions: all(
                        S.final_sent(env.tg, s.chat_id, s.thread_id, t0) for s in sessions
                    ),
                    deadline,
                )
            except TimeoutError:
                complete = False
            spans.append(time.time() - t0)
            await env.bridge.outbox.wait_idle(timeout=30 if complete else 5)
            calls = S.tally(S.calls_between(env.tg, t0, time.time(), chat_id=chat))
            n_429 += calls["429"]
            n_calls += calls["total"]
            for m in markers:
                first, call = model.first_token_of(m), S.first_visible_call(env.tg, m)
                if first is None or call is None:
                    unseen += 1
                    continue
                lat.append(call.at - first)
                if "⏱" in str(call.params.get("text", "")):
                    via_final += 1
            finals += sum(1 for s in sessions if S.final_sent(env.tg, s.chat_id, s.thread_id, t0))
    finally:
        await S.stop_env(env)
    return {
        "sessions": n,
        "rounds": rounds,
        "first_visible_ms": S.summary(lat, 1000),
        "text_never_visible": unseen,
        "first_text_was_the_final_message": via_final,
        "429s_per_round": round(n_429 / rounds, 1),
        "api_calls_per_round": round(n_calls / rounds, 1),
        "finals_delivered": finals,
        "all_finals_s": S.summary(spans, 1, 1),
        "complete": complete,
    }


# --------------------------------------------------------------------------------------
# 5. start-up time and resident memory: the daemon as a real process
# --------------------------------------------------------------------------------------


def write_daemon_config(path: Path, tmp: Path, tg: S.TimedTelegram, owners: list[int]) -> None:
    (tmp / "code").mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""
[storage]
url = "sqlite:///{tmp}/daemon.db"
[agent]
allowed_roots = ["{tmp}/code"]
max_concurrent_sessions = 50
[access]
owners = {json.dumps([f"telegram:{o}" for o in owners])}
[telegram]
enabled = true
token = "{tg.token}"
base_url = "{tg.base_url}"
[daemon]
log_file = "{tmp}/daemon.log"
log_level = "WARNING"
"""
    )


async def wait_exit(proc: asyncio.subprocess.Process, timeout: float = 30) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        return await proc.wait()


async def spawn_until_polling(
    tg: S.TimedTelegram, argv: list[str], env: dict[str, str]
) -> tuple[asyncio.subprocess.Process, float]:
    tg.arrivals.clear()
    t0 = time.time()
    proc = await asyncio.create_subprocess_exec(*argv, cwd=S.ROOT, env=env)
    await tg.wait_until(lambda: "getupdates" in tg.arrivals, 90)
    return proc, tg.arrivals["getupdates"] - t0


def finals_in(tg: S.TimedTelegram) -> int:
    return sum(
        1
        for c in tg.api_log
        if c.status == 200 and c.method == "sendMessage" and "⏱" in str(c.params.get("text", ""))
    )


async def bench_daemon(model: S.TimedAnthropic, tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    owners = [1001 + i for i in range(10)]
    tg = S.TimedTelegram(has_topics_enabled=True)
    await tg.start()
    for o in owners:
        tg.add_chat(o, "private", first_name=f"Owner {o}")
    env = {**os.environ, **claude_env(tmp / "claude-home", model.base_url)}
    env["PYTHONPATH"] = str(S.ROOT)
    out: dict[str, Any] = {}
    try:
        # Baseline: a bare python-telegram-bot polling bot, cold process to first poll.
        bare = [sys.executable, str(HERE / "bare_bot.py"), tg.token, tg.base_url]
        cold_bare: list[float] = []
        bare_rss = None
        for _ in range(p["cold_reps"]):
            proc, dt = await spawn_until_polling(tg, bare, env)
            cold_bare.append(dt)
            await asyncio.sleep(1.0)
            bare_rss = S.rss_kb(proc.pid)
            await wait_exit(proc)
        # Threadline: `threadline run` (python -m bridge.cli.main run), cold, fresh database.
        cold: list[float] = []
        proc = None
        for rep in range(p["cold_reps"]):
            d = tmp / f"daemon{rep}"
            d.mkdir(parents=True)
            cfg = d / "config.toml"
            write_daemon_config(cfg, d, tg, owners)
            argv = [sys.executable, "-m", "bridge.cli", "run", "--config", str(cfg)]
            proc, dt = await spawn_until_polling(tg, argv, env)
            cold.append(dt)
            if rep < p["cold_reps"] - 1:
                await wait_exit(proc)
        assert proc is not None
        root = tmp / f"daemon{p['cold_reps'] - 1}" / "code"
        model.on("say hello", Text("Hello."))
        await asyncio.sleep(2.0)
        rss = {"0": S.rss_kb(proc.pid)}
        children: dict[str, int] = {"0": 0}

        async def open_sessions(count: int, start: int) -> None:
            for i in range(start, start + count):
                (root / f"m{i}").mkdir(parents=True, exist_ok=True)
                owner = owners[i % len(owners)]
                user = {"id": owner, "is_bot": False, "first_name": f"Owner {owner}"}
                tg.user_message(owner, user, f"/new {root}/m{i} say hello")
            await tg.wait_until(lambda: finals_in(tg) >= start + count, 300)
            await asyncio.sleep(2.0)

        for count in (1, p["memory_sessions"]):
            await open_sessions(count - finals_in(tg), finals_in(tg))
            rss[str(count)] = S.rss_kb(proc.pid)
            kids = S.descendants(proc.pid)
            children[str(count)] = sum(S.rss_kb(k) or 0 for k in kids)
        rc = await wait_exit(proc, 60)
        out = {
            "cold_start_to_polling_ms": S.summary(cold, 1000),
            "bare_ptb_cold_start_to_polling_ms": S.summary(cold_bare, 1000),
            "daemon_rss_mb": {k: round(v / 1024, 1) for k, v in rss.items() if v},
            "bare_ptb_rss_mb": round(bare_rss / 1024, 1) if bare_rss else None,
            "claude_cli_children_rss_mb (excluded)": {
                k: round(v / 1024, 1) for k, v in children.items()
            },
            "per_extra_session_mb": round(
                ((rss[str(p["memory_sessions"])] or 0) - (rss["1"] or 0))
                / 1024
                / max(1, p["memory_sessions"] - 1),
                2,
            ),
            "exit_code": rc,
        }
    finally:
        await tg.stop()
    return out


async def bench_startup_inprocess(model: S.TimedAnthropic, tmp: Path, reps: int) -> dict[str, Any]:
    """Config file loaded → database opened and migrated → adapters built → bridge
    started → the first getUpdates reaches the fake.  Imports are warm (this process
    has them), so this is the daemon's own start-up work."""
    tg = S.TimedTelegram(has_topics_enabled=True)
    await tg.start()
    tg.add_chat(1001, "private", first_name="Ada")
    times: list[float] = []
    bare: list[float] = []
    try:
        for rep in range(reps):
            d = tmp / f"warm{rep}"
            d.mkdir(parents=True)
            cfg = d / "config.toml"
            write_daemon_config(cfg, d, tg, [1001])
            tg.arrivals.clear()
            t0 = time.time()
            config = load_config(cfg)
            db = open_database(config)
            bridge = Bridge(
                config,
                db,
                build_adapters(config),
                agent_env=claude_env(d / "home", model.base_url),
            )
            await bridge.start()
            await tg.wait_until(lambda: "getupdates" in tg.arrivals, 30)
            times.append(tg.arrivals["getupdates"] - t0)
            await bridge.stop()
            db.close()
            tg.arrivals.clear()
            t0 = time.time()
            app = await start_bare_bot(tg.token, tg.base_url)
            await tg.wait_until(lambda: "getupdates" in tg.arrivals, 30)
            bare.append(tg.arrivals["getupdates"] - t0)
            await stop_bare_bot(app)
    finally:
        await tg.stop()
    return {
        "config_to_polling_ms": S.summary(times, 1000),
        "bare_ptb_build_to_polling_ms": S.summary(bare, 1000),
    }


# --------------------------------------------------------------------------------------
# 6. outbox throughput (benchmarks/bench_outbox.py), against sending without an outbox
# --------------------------------------------------------------------------------------


async def bench_outbox_all(tmp: Path, n: int) -> dict[str, Any]:
    tp = await bench_outbox.throughput(tmp, n, 10)
    adapter = bench_outbox.BenchAdapter()
    threads = [ThreadRef("bench", f"chat{c}", f"t{t}") for c in range(10) for t in range(2)]
    t0 = time.perf_counter()
    for i in range(n):
        await adapter.send(threads[i % len(threads)], Rendered({"text": f"{i} direct"}))
    direct = n / (time.perf_counter() - t0)
    st = await bench_outbox.stream(tmp, 2000, rate=10.0, burst=3, words_per_s=1000.0)
    return {
        "throughput": tp,
        "direct_send_no_outbox_per_s": round(direct),
        "stream_2000_words_x10_time": st,
    }


# --------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------


async def guarded(
    name: str, results: dict[str, Any], key: str, fn: Callable[[], Awaitable[Any]]
) -> Any:
    log(f"{name} …")
    t0 = time.time()
    try:
        value = await fn()
    except Exception as exc:  # one broken scenario must not lose the others
        traceback.print_exc()
        value = {"error": f"{type(exc).__name__}: {exc}"}
    results[key] = value
    log(f"{name} done in {time.time() - t0:.0f} s")
    return value


SCENARIOS = (
    "turns",
    "long",
    "permission",
    "sweep",
    "delivery",
    "startup",
    "daemon",
    "outbox",
    "slack_stream",
    "telegram_outage",
    "takeover",
    "db_calls",
)


async def run_delivery(
    model: S.TimedAnthropic, tmp: Path, p: dict[str, Any], res: dict[str, Any]
) -> None:
    """Issue 12's scenarios, each with the old behaviour (`legacy`) as its baseline."""
    for name, legacy in (("threadline", False), ("legacy", True)):
        for n in (1, 3):
            await guarded(
                f"{name}: /new PATH PROMPT, {n} at once → final answers",
                res.setdefault(f"new_session_x{n}", {}),
                name,
                lambda name=name, legacy=legacy, n=n: bench_delivery.bench_new_sessions(
                    model, tmp / f"new{n}-{name}", legacy, n, p["new_rounds"]
                ),
            )
        await guarded(
            f"{name}: permission prompts among six new sessions (private chat)",
            res.setdefault("prompt_six_private", {}),
            name,
            lambda name=name, legacy=legacy: bench_delivery.bench_prompt_among_six(
                model, tmp / f"six-{name}", legacy, p["six_rounds"]
            ),
        )


async def run(profile: str, only: frozenset[str] = frozenset(SCENARIOS)) -> dict[str, Any]:
    p = PROFILES[profile]
    started = time.time()
    load_at_start = round(os.getloadavg()[0], 2)
    model = S.TimedAnthropic()
    await model.start()
    res: dict[str, Any] = {"profile": profile, "settings": {**p, "sweep": list(p["sweep"])}}
    res["settings"].update(
        {"chars_per_delta": CHUNK, "seconds_between_deltas": DELAY, "stream_interval_s": 0.8}
    )
    overhead = {name: S.Overhead() for name, _ in VARIANTS}
    try:
        with tempfile.TemporaryDirectory(prefix="threadline-bench-") as d:
            tmp = Path(d)
            for name, naive in VARIANTS if "turns" in only else ():
                await guarded(
                    f"{name}: {p['turns']} turns, first token → first visible text",
                    res.setdefault("turns", {}),
                    name,
                    lambda naive=naive, name=name: bench_turns(
                        model, tmp / f"turns-{name}", naive, p, overhead[name]
                    ),
                )
            groups = ([False, True] if p["long_group"] else [False]) if "long" in only else []
            for group in groups:
                key = "long_group" if group else "long_private"
                for name, naive in VARIANTS:
                    await guarded(
                        f"{name}: {p['long_words']}-word answer ({'group' if group else 'private'})",
                        res.setdefault(key, {}),
                        name,
                        lambda naive=naive, name=name, group=group, key=key: bench_long(
                            model,
                            tmp / f"{key}-{name}",
                            naive,
                            group,
                            p["long_words"],
                            overhead[name],
                        ),
                    )
            # the per-event overhead comes from the single-session runs above
            for o in overhead.values():
                o.enabled = False
            if {"turns", "long"} & only:
                res["bridge_overhead"] = {name: overhead[name].as_dict() for name, _ in VARIANTS}
            pgroups = [False, True] if p["perm_group"] else [False]
            pgroups = pgroups if "permission" in only else []
            for group in pgroups:
                key = "permission_group" if group else "permission_private"
                for name, naive in VARIANTS:
                    await guarded(
                        f"{name}: permission prompts with {p['perm_streams']} streams "
                        f"({'group' if group else 'private'})",
                        res.setdefault(key, {}),
                        name,
                        lambda naive=naive, name=name, group=group, key=key: bench_permission(
                            model,
                            tmp / f"{key}-{name}",
                            naive,
                            group,
                            p["perm_streams"],
                            p["perm_prompts"],
                            overhead[name],
                        ),
                    )
            sweep: dict[str, list[Any]] = {name: [] for name, _ in VARIANTS}
            if "sweep" in only:
                res["sweep"] = sweep
            for n in p["sweep"] if "sweep" in only else ():
                for name, naive in VARIANTS:
                    point: dict[str, Any] = {}
                    await guarded(
                        f"{name}: {n} sessions streaming into one group",
                        point,
                        "v",
                        lambda naive=naive, name=name, n=n: bench_sweep_point(
                            model,
                            tmp / f"sweep{n}-{name}",
                            naive,
                            n,
                            max(1, p["sweep_samples"] // n),
                            p["sweep_words"],
                            p["sweep_deadline_s"],
                            overhead[name],
                        ),
                    )
                    sweep[name].append({"sessions": n, **point["v"]})
            if "delivery" in only:
                await run_delivery(model, tmp / "delivery", p, res)
            if "startup" in only:
                await guarded(
                    "start-up in process (config → polling)",
                    res,
                    "startup",
                    lambda: bench_startup_inprocess(model, tmp / "startup", p["warm_reps"]),
                )
            if "daemon" in only:
                await guarded(
                    f"daemon process: cold start, memory with 1 and {p['memory_sessions']} sessions",
                    res,
                    "daemon",
                    lambda: bench_daemon(model, tmp / "daemon", p),
                )
            if "outbox" in only:
                await guarded(
                    "outbox throughput",
                    res,
                    "outbox",
                    lambda: bench_outbox_all(tmp / "outbox", p["outbox_n"]),
                )
            if "slack_stream" in only:
                await guarded(
                    "Slack: first token → first streamed text (and the old adapter)",
                    res,
                    "slack_stream",
                    lambda: bench_slack_stream.run(profile),
                )
            if "telegram_outage" in only:
                await guarded(
                    "Telegram: after a 60 s Bot API outage (and the old retries)",
                    res,
                    "telegram_outage",
                    lambda: bench_telegram_outage.run(profile),
                )
            if "takeover" in only:
                await guarded(
                    "gateway takeover: kills -9 of real daemons on PostgreSQL (and SIGTERM)",
                    res,
                    "takeover",
                    lambda: bench_takeover.run(profile),
                )
            if "db_calls" in only:
                await guarded(
                    "database calls on the event loop: sync, to_thread, async engine",
                    res,
                    "db_calls",
                    lambda: bench_db_calls.run(profile),
                )
    finally:
        await model.stop()
    res["wall_s"] = round(time.time() - started, 1)
    res["environment"] = environment()
    res["environment"]["loadavg_1m_at_start_and_end"] = [
        load_at_start,
        round(os.getloadavg()[0], 2),
    ]
    return res


def environment() -> dict[str, Any]:
    import claude_agent_sdk
    import telegram

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python-telegram-bot": telegram.__version__,
        "claude-agent-sdk": getattr(claude_agent_sdk, "__version__", "?"),
    }
    try:
        from agent.cli import claude_cli_path, claude_version

        path = claude_cli_path("")
        env["claude-code-cli"] = claude_version(path) if path else None
    except Exception:
        env["claude-code-cli"] = None
    return env


# --------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------


def _get(d: Any, *path: Any) -> Any:
    for k in path:
        if isinstance(d, dict):
            d = d.get(k)
        elif isinstance(d, list) and isinstance(k, int) and k < len(d):
            d = d[k]
        else:
            return None
    return d


def _pp(d: Any, unit: str = "ms") -> str:
    """ "p50 / p99 unit" of a summary dict."""
    if not isinstance(d, dict) or d.get("p50") is None:
        return "—"
    return f"{d['p50']:g} / {d['p99']:g} {unit}"


def _pm(d: Any, unit: str = "ms") -> str:
    """ "p50 / max unit" of a summary dict (few samples: the max, not a p99)."""
    if not isinstance(d, dict) or d.get("p50") is None:
        return "—"
    return f"{d['p50']:g} / {d['max']:g} {unit}"


def _v(x: Any, unit: str = "") -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        x = f"{x:g}"
    return f"{x}{(' ' + unit) if unit else ''}"


def table(res: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []

    def both(label: str, get: Callable[[str], str]) -> None:
        rows.append((label, get("threadline"), get("naive")))

    both(
        "first token → first visible text, p50 / p99 (private chat)",
        lambda v: _pp(_get(res, "turns", v, "first_visible_ms")),
    )
    both(
        "last token → final answer visible, p50 / p99",
        lambda v: _pp(_get(res, "turns", v, "last_token_to_final_ms")),
    )
    both(
        "  of which TurnEnded event → final visible",
        lambda v: _pp(_get(res, "turns", v, "bridge_turn_ended_to_final_ms")),
    )
    both(
        "bridge overhead per agent event, p50 / p99",
        lambda v: _pp(_get(res, "bridge_overhead", v, "handler_ms")),
    )
    both(
        "agent event → outbox row written, p50 / p99",
        lambda v: _pp(_get(res, "bridge_overhead", v, "event_to_row_ms")),
    )
    both(
        "bridge time per streamed delta (incl. flushes)",
        lambda v: _v(_get(res, "bridge_overhead", v, "ms_per_text_delta_incl_flushes"), "ms"),
    )
    for key, where in (("long_private", "private chat"), ("long_group", "group")):
        if key not in res:
            continue
        words = _get(res, key, "threadline", "words") or _get(res, key, "naive", "words")
        both(
            f"{words}-word answer ({where}): API calls / 429s",
            lambda v, key=key: (
                f"{_v(_get(res, key, v, 'api_calls'))} / {_v(_get(res, key, v, '429s'))}"
            ),
        )
        both(
            f"{words}-word answer ({where}): last token → final visible",
            lambda v, key=key: _v(
                None
                if _get(res, key, v, "last_token_to_final_ms") is None
                else round(_get(res, key, v, "last_token_to_final_ms") / 1000, 1),
                "s",
            ),
        )
    for key, where in (("permission_private", "private chat"), ("permission_group", "group")):
        if key not in res:
            continue
        k = _get(res, key, "threadline", "streaming_sessions")
        both(
            f"permission prompt latency, {k} sessions streaming ({where}), p50 / p99",
            lambda v, key=key: _pp(_get(res, key, v, "prompt_latency_ms")),
        )
        both(
            f"  429s during that run ({where})",
            lambda v, key=key: _v(_get(res, key, v, "429s")),
        )
    delivery_rows(res, rows)
    d = res.get("daemon", {})
    rows.append(
        (
            "daemon RSS, 0 / 1 / N sessions (CLIs excluded)",
            " / ".join(f"{v:g}" for v in (d.get("daemon_rss_mb") or {}).values())
            + " MB"
            + f" (N={(res.get('settings') or {}).get('memory_sessions')})",
            f"bare PTB bot: {_v(d.get('bare_ptb_rss_mb'), 'MB')}",
        )
    )
    rows.append(
        (
            "start-up, config load → adapters polling, p50",
            _v(_get(res, "startup", "config_to_polling_ms", "p50"), "ms"),
            f"bare PTB: {_v(_get(res, 'startup', 'bare_ptb_build_to_polling_ms', 'p50'), 'ms')}",
        )
    )
    rows.append(
        (
            "start-up, cold process → adapters polling, p50",
            _v(_get(d, "cold_start_to_polling_ms", "p50"), "ms"),
            f"bare PTB: {_v(_get(d, 'bare_ptb_cold_start_to_polling_ms', 'p50'), 'ms')}",
        )
    )
    sl = res.get("slack_stream", {})
    for key, what in (("new_session", "new session"), ("at_once", "follow-up at once")):
        rows.append(
            (
                f"Slack: first token → first streamed text, {what}, p50 / max",
                _pm(_get(sl, "threadline", key, "first_visible_ms")),
                f"old adapter: {_pm(_get(sl, 'baseline', key, 'first_visible_ms'))}",
            )
        )
    to = res.get("telegram_outage", {})
    for key, what in (("update_ms", "update reaches the bridge"), ("reply_ms", "reply visible")):
        rows.append(
            (
                f"Telegram: 60 s outage ends → {what}, p50 / max",
                _pm(_get(to, "threadline", key)),
                f"old retries: {_pm(_get(to, 'baseline', key))}",
            )
        )
    o = res.get("outbox", {})
    rows.append(
        (
            "outbox: messages persisted / sent per second",
            f"{_v(_get(o, 'throughput', 'persisted_per_s'))} / {_v(_get(o, 'throughput', 'sent_per_s'))}",
            f"direct send, no outbox: {_v(o.get('direct_send_no_outbox_per_s'))}",
        )
    )
    rows.append(
        (
            "outbox: API calls for 2,000 words (x10 time, in-process)",
            _v(_get(o, "stream_2000_words_x10_time", "coalesced_api_calls")),
            f"edit per delta: {_v(_get(o, 'stream_2000_words_x10_time', 'naive_api_calls'))}",
        )
    )
    takeover_rows(res.get("takeover") or {}, rows)
    db_call_rows(res.get("db_calls") or {}, rows)
    return rows


def takeover_rows(t: dict[str, Any], rows: list[tuple[str, str, str]]) -> None:
    """`bench_takeover`: kill -9 of the gateway daemon, a clean stop as the baseline."""

    def pm(sig: str, key: str) -> str:
        s = _get(t, sig, key) or {}
        return "—" if s.get("p50") is None else f"{s['p50']:g} / {s['max']:g} s"

    n = _get(t, "kill9", "takeover_s", "n")
    rows.append(
        (
            f"gateway takeover after kill -9, p50 / max ({n} kills; goal ≤ 10 s)",
            pm("kill9", "takeover_s"),
            f"clean stop (SIGTERM): {pm('sigterm', 'takeover_s')}",
        )
    )
    rows.append(
        (
            "  a /help sent right after it answered, p50 / max",
            pm("kill9", "answered_s"),
            f"clean stop (SIGTERM): {pm('sigterm', 'answered_s')}",
        )
    )


def db_call_rows(d: dict[str, Any], rows: list[tuple[str, str, str]]) -> None:
    """`bench_db_calls`: the outbox pick on PostgreSQL, off the loop vs on it."""
    pick = _get(d, "postgresql", "calls", "outbox.next_for_chat") or {}

    def c(mode: str, key: str) -> str:
        return _v(_get(pick, mode, key), "ms")

    rows.append(
        (
            "PostgreSQL outbox pick: event loop held per call, p95 (to_thread / async engine)",
            f"{c('to_thread', 'loop_held_p95_ms')} / {c('async', 'loop_held_p95_ms')}",
            f"sync on the loop: {c('sync', 'loop_held_p95_ms')}",
        )
    )
    rows.append(
        (
            "PostgreSQL outbox pick: call latency p50 (to_thread / async engine)",
            f"{c('to_thread', 'p50_ms')} / {c('async', 'p50_ms')}",
            f"sync on the loop: {c('sync', 'p50_ms')}",
        )
    )


def delivery_rows(res: dict[str, Any], rows: list[tuple[str, str, str]]) -> None:
    """Issue 12's scenarios: Threadline against the old behaviour (`legacy`)."""

    def both(label: str, get: Callable[[str], str]) -> None:
        rows.append((label, get("threadline"), "old: " + get("legacy")))

    for n in (1, 3):
        key = f"new_session_x{n}"
        if key not in res:
            continue
        both(
            f"/new PATH PROMPT, {n} at once: last final answer, p50 / p99",
            lambda v, key=key: _pp(_get(res, key, v, "last_final_s"), "s"),
        )
        both(
            f"  chat calls per new session ({n} at once)",
            lambda v, key=key: _v(_get(res, key, v, "chat_calls_per_new_session")),
        )
    if "new_session_x1" in res:
        both(
            "  reference: a plain reply in an open session, p50 / p99",
            lambda v: _pp(_get(res, "new_session_x1", v, "plain_reply_in_open_session_s"), "s"),
        )
    if "prompt_six_private" in res:
        both(
            "permission prompt among 6 new sessions (private chat), p50 / p99",
            lambda v: _pp(_get(res, "prompt_six_private", v, "prompt_latency_ms")),
        )
        both(
            "  all six finals, p50 / max",
            lambda v: (
                f"{_v(_get(res, 'prompt_six_private', v, 'all_finals_s', 'p50'))} / "
                f"{_v(_get(res, 'prompt_six_private', v, 'all_finals_s', 'max'), 's')}"
            ),
        )


def print_report(res: dict[str, Any]) -> None:
    # rows of scenarios that did not run (`--only`) have no number at all
    rows = [
        r
        for r in table(res)
        if any(ch.isdigit() for ch in r[1] + r[2]) and not r[1].startswith(" MB")
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows + [("", "Threadline", "")])
    print()
    print(f"{'measure':<{w0}}  {'Threadline':<{w1}}  naive baseline")
    print("-" * (w0 + w1 + 20))
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:<{w1}}  {c}")
    sweep = res.get("sweep") or {}
    if sweep.get("threadline"):
        print()
        print("concurrent sessions in one group: first visible text p50 / p99, 429s, API calls")
        print(f"{'N':>3}  {'Threadline':<34}  naive baseline")
        for tl, nv in zip(sweep["threadline"], sweep.get("naive", []), strict=False):

            def cell(x: dict[str, Any]) -> str:
                if "error" in x:
                    return "error"
                lat = _pp(x.get("first_visible_ms"))
                return (
                    f"{lat}, {x.get('429s_per_round')} × 429, {x.get('api_calls_per_round')} calls"
                )

            print(f"{tl['sessions']:>3}  {cell(tl):<34}  {cell(nv)}")
    print(f"\nwall time {res.get('wall_s')} s")


def draw(res: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    sweep = res.get("sweep") or {}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    styles = {
        "threadline": ("tab:blue", "o", "Threadline"),
        "naive": ("tab:red", "s", "naive: edit per delta, no budget"),
    }
    ticks: set[int] = set()
    for name, points in sweep.items():
        pts = [x for x in points if "error" not in x and x["first_visible_ms"]["n"]]
        if not pts:
            continue
        color, mark, label = styles[name]
        z = 3 if name == "threadline" else 2  # drawn over the baseline where they coincide
        n = [x["sessions"] for x in pts]
        ticks.update(n)
        p50 = [x["first_visible_ms"]["p50"] / 1000 for x in pts]
        p99 = [x["first_visible_ms"]["p99"] / 1000 for x in pts]
        ax1.plot(n, p50, marker=mark, ls="-", color=color, zorder=z, label=f"{label}, p50")
        ax1.plot(
            n, p99, marker=mark, ls=":", color=color, alpha=0.6, zorder=z, label=f"{label}, p99"
        )
        ax2.plot(
            n, [x["429s_per_round"] for x in pts], marker=mark, color=color, zorder=z, label=label
        )
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xticks(sorted(ticks))
        ax.set_xticklabels([str(t) for t in sorted(ticks)])
        ax.minorticks_off()
        ax.set_xlabel("concurrent sessions streaming into one Telegram group")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    ax1.set_yscale("log")
    ax1.set_ylabel("first model token → first visible text (s)")
    ax2.set_ylabel("HTTP 429 answers per turn round")
    fig.suptitle(
        "Real Claude Code CLI + python-telegram-bot against fakes with Telegram's limits "
        "(1 msg/s per chat, 20/min per group)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer turns and sessions (~2 min)")
    parser.add_argument(
        "--out",
        type=Path,
        help="results file (default: results.json; --quick: results-quick.json; "
        "--only: results-partial.json)",
    )
    parser.add_argument(
        "--plot", type=Path, help="the plot (default: latency_429.png; none with --quick)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS,
        help="run only these scenarios (repeatable); default: all",
    )
    parser.add_argument("--log-level", default="ERROR", help="the bridge's log level (stderr)")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    only = frozenset(args.only or SCENARIOS)
    # A quick or partial run never overwrites the tracked full-run outputs.
    partial = args.quick or only != frozenset(SCENARIOS)
    name = "results-quick.json" if args.quick else ("results-partial.json" if partial else "")
    out = args.out or HERE / (name or "results.json")
    plot = args.plot or (None if partial else HERE / "latency_429.png")
    res = asyncio.run(run("quick" if args.quick else "full", only))
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    log(f"wrote {out}")
    if plot is not None and draw(res, plot):
        log(f"wrote {plot}")
    print_report(res)


if __name__ == "__main__":
    main()
