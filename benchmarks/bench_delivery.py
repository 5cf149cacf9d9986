"""Issue 12's delivery scenarios: a waiting person goes first, and a new session's first
answer costs no more than a plain reply.  Run by `run.py` (``--only delivery`` runs
just these), each against its baseline in the same run: ``legacy`` is the daemon as it
was before delivery classes and "one message per turn" (`support.LegacyTurnView`, one
class for every row but stream updates) — the same fakes, the same Telegram limits.

- `bench_new_sessions`: `/new PATH PROMPT` typed in the owner's private chat (topics
  on) for `n` sessions at once; from the message to each final answer accepted by the
  fake (the CLI's start-up included, as the person feels it), and the chat's calls
  per new session.  A plain reply in a session already open is measured alongside,
  as the reference a new session should cost no more than.
- `bench_prompt_among_six`: six `/new PATH PROMPT` at once in one private chat; four
  stream ~300-word answers, two first ask to `Write` a file.  Latency: the CLI's
  `can_use_tool` call → the prompt with its buttons accepted; the person presses
  Allow as soon as it shows.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import support as S

from tests.support.fakes.anthropic import Text, ToolUse

CHUNK, DELAY = 40, 0.05  # as run.py: ~800 characters per second
SHORT = "{m} Sure: the tests pass again after the fix to add(), nothing else changed."
REFILL_S = 4.0  # the private chat's burst of 3 at 1/s refills between rounds


def _marker(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


def _final_with(env: S.Env, marker: str, since: float) -> float | None:
    """When the final answer carrying `marker` was accepted by the fake."""
    for c in env.tg.api_log:
        text = str(c.params.get("text", ""))
        if (
            c.status == 200
            and c.method == "sendMessage"
            and c.at >= since
            and marker in text
            and "⏱" in text
        ):
            return c.at
    return None


def _calls(env: S.Env, since: float, until: float) -> int:
    """Calls that count against the chat's budget (sends, edits, deletes, topics)."""
    methods = (S.OUT_METHODS - {"sendMessageDraft"}) | {"createForumTopic"}
    return sum(
        1
        for c in env.tg.api_log
        if c.method in methods and since <= c.at <= until and c.status == 200
    )


async def bench_new_sessions(
    model: S.TimedAnthropic, tmp: Path, legacy: bool, n: int, rounds: int
) -> dict[str, Any]:
    env = await S.start_env(
        tmp, model, naive=False, group=False, overhead=S.Overhead(enabled=False), legacy=legacy
    )
    firsts: list[float] = []
    lasts: list[float] = []
    every: list[float] = []
    per_session: list[float] = []
    plain: list[float] = []
    try:
        [open_one] = await S.open_sessions(env, 1, "plain")
        for r in range(rounds):
            # the reference: a plain reply in a session whose CLI already runs
            m = _marker("R")
            model.on(f"say it {m}", Text(SHORT.format(m=m), chunk=CHUNK, delay=DELAY))
            t0 = time.time()
            env.say(f"say it {m}", open_one.thread_id)
            done = await env.tg.wait_until(lambda m=m, t0=t0: _final_with(env, m, t0), 60)
            plain.append(done - t0)
            await env.bridge.outbox.wait_idle(timeout=30)
            await asyncio.sleep(REFILL_S)
            markers = [_marker("N") for _ in range(n)]
            for m in markers:
                model.on(f"hello {m}", Text(SHORT.format(m=m), chunk=CHUNK, delay=DELAY))
            t0 = time.time()
            for i, m in enumerate(markers):
                cwd = env.root / f"new{r}x{i}"
                cwd.mkdir(parents=True, exist_ok=True)
                env.say(f"/new {cwd} hello {m}")
            finals = [
                await env.tg.wait_until(lambda m=m, t0=t0: _final_with(env, m, t0), 90)
                for m in markers
            ]
            spans = sorted(f - t0 for f in finals)
            firsts.append(spans[0])
            lasts.append(spans[-1])
            every.extend(spans)
            await env.bridge.outbox.wait_idle(timeout=30)
            per_session.append(_calls(env, t0, time.time()) / n)
            for row in env.db.sessions.list():  # their CLIs would slow the next round
                if row.id != open_one.id:
                    await env.bridge.end_agent(row.id)
            await asyncio.sleep(REFILL_S)
    finally:
        await S.stop_env(env)
    return {
        "sessions_at_once": n,
        "rounds": rounds,
        "first_final_s": S.summary(firsts, 1, 2),
        "last_final_s": S.summary(lasts, 1, 2),
        "every_final_s": S.summary(every, 1, 2),
        "chat_calls_per_new_session": round(sum(per_session) / len(per_session), 1),
        "plain_reply_in_open_session_s": S.summary(plain, 1, 2),
    }


async def bench_prompt_among_six(
    model: S.TimedAnthropic, tmp: Path, legacy: bool, rounds: int, words: int = 300
) -> dict[str, Any]:
    lat: list[float] = []
    finals: list[float] = []
    for r in range(rounds):
        env = await S.start_env(
            tmp / f"r{r}",
            model,
            naive=False,
            group=False,
            overhead=S.Overhead(enabled=False),
            legacy=legacy,
        )
        try:
            got_lat, got_finals = await _six_at_once(model, env, words)
        finally:
            await S.stop_env(env)
        lat.extend(got_lat)
        finals.extend(got_finals)
    return {
        "sessions": 6,
        "prompts_per_round": 2,
        "rounds": rounds,
        "prompt_latency_ms": S.summary(lat, 1000),
        "all_finals_s": S.summary(finals, 1, 1),
    }


async def _six_at_once(
    model: S.TimedAnthropic, env: S.Env, words: int
) -> tuple[list[float], list[float]]:
    """One round: six `/new` at once, sessions 1 and 4 ask to write a file."""
    t0 = time.time()
    askers: list[str] = []
    markers: list[str] = []
    for i in range(6):
        cwd = env.root / f"six{i}"
        cwd.mkdir(parents=True, exist_ok=True)
        m = _marker("Q")
        markers.append(m)
        if i in (1, 4):
            askers.append(m)
            model.on(
                f"work {m}",
                ToolUse("Write", {"file_path": str(cwd / "out.txt"), "content": m}),
                Text(f"{m} Wrote out.txt."),
            )
        else:
            model.on(f"work {m}", Text(S.words(words, m), chunk=CHUNK, delay=DELAY))
        env.say(f"/new {cwd} work {m}")

    def session_of(m: str) -> str | None:
        return next(
            (row.id for row in env.db.sessions.list() if row.title.endswith(f"work {m}")), None
        )

    async def allow(m: str) -> float:
        sid = await env.tg.wait_until(lambda: session_of(m), 60)
        asked = await env.tg.wait_until(
            lambda: next((t for s, _, t in S.CAN_USE_TOOL if s == sid), None), 90
        )
        thread = env.bridge.thread_of(sid)
        assert thread is not None and thread.thread_id is not None
        topic = int(thread.thread_id)
        shown = await env.tg.wait_until(lambda: S.prompt_sent(env.tg, env.chat_id, topic, t0), 120)
        msg = await env.tg.wait_for(
            lambda x: "Allow" in " ".join(x.button_labels),
            timeout=10,
            chat_id=env.chat_id,
            thread_id=topic,
        )
        env.tg.press_button(env.chat_id, msg.message_id, msg.callback_data("Allow"), S.OWNER_USER)
        return shown - asked

    lat = list(await asyncio.gather(*(allow(m) for m in askers)))
    finals = []
    for m in markers:
        done = await env.tg.wait_until(lambda m=m: _final_with(env, m, t0), 120)
        finals.append(done - t0)
    await env.bridge.outbox.wait_idle(timeout=30)
    return lat, finals
