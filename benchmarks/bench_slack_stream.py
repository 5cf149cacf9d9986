"""Slack: first model token → first streamed text visible, through the public contract.

    python benchmarks/bench_slack_stream.py            # 4 turns per scenario
    python benchmarks/bench_slack_stream.py --quick    # 2

The whole daemon in process, as in the end-to-end tests (`tests.support.slack_harness`):
the real Claude Code CLI against the fake model API (`support.TimedAnthropic`, which
notes when it writes each turn's first text delta), the bridge and its outbox with the
daemon's stream interval (0.8 s), and the real Slack adapter on slack-bolt / slack_sdk
(Socket Mode) against the fake Slack with Slack's own rate limits (speed 1).  Answers
stream as in `run.py`: ~300 words, 40 characters per delta, one delta every 50 ms.

"Visible" is the completion of the first Web API call that put any of the turn's text
in the thread — ``chat.startStream`` / ``appendStream``, a ``chat.update`` of the
status message or the final ``chat.postMessage`` — matched by the marker each answer
starts with.  Three scenarios: a new session (``!new PATH PROMPT``: the header, the
"started" notice and the status message queue in the channel's ~1 post/s), a
follow-up sent 2 s after the previous answer, and one sent as soon as it appeared.

Baseline, in the same run: the adapter as it was (`OldSlackAdapter`, defined here
only), which dropped a stream preview that arrived before the turn's status message
was posted — the next preview came a stream interval and a draft budget later — and
paced previews at 1 per second per channel, so a follow-up's first text also waited
for the budget the previous turn's last preview had spent.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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

import tests.support.slack_harness as slack_harness  # noqa: E402
from adapters.messages import Rendered, ThreadRef  # noqa: E402
from adapters.slack.adapter import SlackAdapter  # noqa: E402
from tests.support.fakes.anthropic import Text  # noqa: E402
from tests.support.fakes.slack import FakeSlack  # noqa: E402

CHUNK, DELAY, WORDS = 40, 0.05, 300  # as in run.py
STREAM_INTERVAL = 0.8  # the daemon's default
TEXT_METHODS = ("chat.startStream", "chat.appendStream", "chat.update", "chat.postMessage")
PROFILES = {"full": {"turns": 4}, "quick": {"turns": 2}}
VARIANTS = ("threadline", "baseline")
OLD_DRAFT_RATE = 1.0  # adapters.slack.limits.DRAFT_RATE before this change


class OldSlackAdapter(SlackAdapter):
    """The baseline: no native stream before the turn's status message is posted, and
    stream previews paced at 1 per second per channel."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.capabilities = dataclasses.replace(self.capabilities, draft_rate=OLD_DRAFT_RATE)

    async def draft(self, thread: ThreadRef, draft_id: int, msg: Rendered) -> None:
        if not self.turns.falling_back(thread) and thread.key not in self.turns._turns:
            return
        await super().draft(thread, draft_id, msg)


class TimedSlack(FakeSlack):
    """The fake Slack, noting when each Web API call was answered."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.done_at: dict[int, float] = {}  # id(ApiCall) → time.time() answered

    async def _handle_api(self, request: Any) -> Any:
        method = request.match_info["method"]
        resp = await super()._handle_api(request)
        now = time.time()
        for call in reversed(self.calls):
            if call.method == method and id(call) not in self.done_at:
                self.done_at[id(call)] = now
                break
        return resp


def first_visible(slack: TimedSlack, marker: str) -> tuple[str, float] | None:
    """(method, answered at) of the first accepted call showing text with `marker`."""
    for c in slack.calls:
        shown = str(c.params.get("markdown_text") or c.params.get("text") or "")
        if (
            c.method in TEXT_METHODS
            and c.status == 200
            and c.error is None
            and marker in shown
            and f"explain {marker}" not in shown  # the thread's header quotes the prompt
        ):
            return c.method, slack.done_at.get(id(c), c.at)
    return None


async def one_turn(
    h: slack_harness.SlackHarness,
    model: S.TimedAnthropic,
    tag: str,
    thread: str | None,
    path: Path | None = None,
) -> tuple[str, dict[str, Any]]:
    """A turn (a new session's first if `path`); returns its thread and what was seen."""
    m = f"{tag}{time.time_ns() % 10**8}"
    answer = S.words(WORDS, m)
    prompt = f"explain {m}"
    model.on(prompt, Text(answer, chunk=CHUNK, delay=DELAY))
    if path is not None:
        await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        thread, _ = await h.new_session(str(path), prompt)
    else:
        h.say(prompt, thread=thread)
    assert thread is not None
    final = await h.wait_msg(lambda x: "⏱" in x.visible_text and m in x.visible_text, 60, thread)
    first, seen = model.first_token_of(m), first_visible(h.slack, m)  # type: ignore[arg-type]
    exact = " ".join(answer.split()) in " ".join(final.visible_text.split())
    ms = None if first is None or seen is None else round((seen[1] - first) * 1000, 1)
    return thread, {"ms": ms, "via": seen[0] if seen else None, "final_exact": exact}


async def variant(model: S.TimedAnthropic, tmp: Path, old: bool, turns: int) -> dict[str, Any]:
    slack = TimedSlack()
    await slack.start()
    slack_harness.populate(slack)
    # The harness builds its adapter through this module-level name.
    slack_harness.SlackAdapter = OldSlackAdapter if old else SlackAdapter  # type: ignore[misc]
    try:
        h = await slack_harness.start_slack_harness(
            tmp, slack=slack, model=model, stream_interval=STREAM_INTERVAL
        )
    finally:
        slack_harness.SlackAdapter = SlackAdapter  # type: ignore[misc]
    assert isinstance(h.adapter, OldSlackAdapter) == old
    seen: dict[str, list[dict[str, Any]]] = {"new_session": [], "after_2s": [], "at_once": []}
    try:
        thread = ""
        for i in range(turns):
            thread, r = await one_turn(h, model, "N", None, h.root / f"s{i}")
            seen["new_session"].append(r)
        for key, think in (("after_2s", 2.0), ("at_once", 0.0)):
            for _ in range(turns):
                await asyncio.sleep(think)
                thread, r = await one_turn(h, model, "F", thread)
                seen[key].append(r)
        await h.bridge.outbox.wait_idle(timeout=30)
        n429 = h.slack.count_429
    finally:
        await slack_harness.stop_slack_harness(h, keep_fakes=True)
        await slack.stop()
    out: dict[str, Any] = {
        key: {
            "first_visible_ms": S.summary(
                [r["ms"] / 1000 for r in rs if r["ms"] is not None], 1000
            ),
            "first_call": sorted({str(r["via"]) for r in rs}),
        }
        for key, rs in seen.items()
    }
    every = [r for rs in seen.values() for r in rs]
    out["all"] = {
        "first_visible_ms": S.summary([r["ms"] / 1000 for r in every if r["ms"] is not None], 1000)
    }
    out["final_exact"] = all(r["final_exact"] for r in every)
    out["429s"] = n429
    return out


async def run(profile: str) -> dict[str, Any]:
    p = PROFILES[profile]
    model = S.TimedAnthropic()
    await model.start()
    res: dict[str, Any] = {"turns_per_scenario": p["turns"], "stream_interval_s": STREAM_INTERVAL}
    try:
        with tempfile.TemporaryDirectory(prefix="threadline-slack-") as d:
            for name in VARIANTS:
                res[name] = await variant(model, Path(d) / name, name == "baseline", p["turns"])
    finally:
        await model.stop()
    return res


def report(res: dict[str, Any]) -> None:
    print("\nSlack: first model token → first streamed text visible, p50 / max ms")
    print(f"{'scenario':<13} {'Threadline':>20} {'baseline (old)':>20}")
    for key in ("new_session", "after_2s", "at_once", "all"):
        cells = []
        for name in VARIANTS:
            s = res[name][key]["first_visible_ms"]
            cells.append(f"{s['p50']} / {s['max']} (n={s['n']})")
        print(f"{key:<13} {cells[0]:>20} {cells[1]:>20}")
    for name in VARIANTS:
        print(f"{name}: final exact {res[name]['final_exact']}, 429s {res[name]['429s']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 turns per scenario")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    res = asyncio.run(run("quick" if args.quick else "full"))
    report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
