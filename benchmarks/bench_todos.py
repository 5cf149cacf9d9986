"""The task-list checklist under a chat's rate budget, measured in-process.

A turn updates its task list `--updates` times, one update every `--gap` seconds (a
model ticking tasks off fast: TodoWrite/TaskUpdate calls are cheap for the CLI), in a
chat limited like Telegram's (1 message/s per chat, burst 3) with time scaled ×10 to
keep the run short (10/s).  Three ways of showing it, on the same outbox and limit:

- **checklist** (`bridge/todos.py` `TodoView`): one message, stream edits coalesced
  (priority 1, one stream key), a priority-0 final edit at the end of the turn;
- **edit per update**: the same message, but every update its own edit row;
- **message per update**: a new checklist message every time.

Reported: API calls, 429s, seconds from the last update until the chat shows it, and
whether the final content is exactly the last list.

Run: ``python benchmarks/bench_todos.py [--updates 60] [--gap 0.02]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.messages import ThreadRef  # noqa: E402
from agent.events import ToolFinished, ToolStarted  # noqa: E402
from benchmarks.bench_outbox import BenchAdapter, fresh_db  # noqa: E402
from bridge.outbox.outbox import Outbox  # noqa: E402
from bridge.todos import Todo, TodoView, checklist  # noqa: E402

THREAD = ThreadRef("bench", "dm", None)


def lists(updates: int) -> list[list[Todo]]:
    """`updates` distinct task lists, each a step further (a task starts, then
    completes): `updates / 2` tasks."""
    tasks = max(1, updates // 2)
    out = []
    for n in range(updates):
        step = (n + 1) * tasks * 2 // updates  # 2 steps per task: started, completed
        done, started = divmod(step, 2)
        out.append(
            [
                Todo(
                    f"Task {i}: do part {i} of the job",
                    "completed"
                    if i < done
                    else ("in_progress" if i == done and started else "pending"),
                    f"Doing part {i}",
                )
                for i in range(tasks)
            ]
        )
    return out


def tool(n: int, todos: list[Todo]) -> ToolStarted:
    payload = [
        {"content": t.content, "status": t.status, "activeForm": t.active_form} for t in todos
    ]
    return ToolStarted("s", f"w{n}", "TodoWrite", {"todos": payload})


async def run(tmp: Path, how: str, updates: int, gap: float) -> dict[str, object]:
    db = fresh_db(tmp, how)
    adapter = BenchAdapter(rate=10.0, burst=3)
    outbox = Outbox(db, {"bench": adapter})
    await outbox.start()
    steps = lists(updates)
    view = TodoView(session_id="s", thread=THREAD, outbox=outbox, stream_key="s:1")
    row: int | None = None
    for n, todos in enumerate(steps):
        if how == "checklist":
            view.on_tool(tool(n, todos))
            view.on_tool_done(ToolFinished("s", f"w{n}", "TodoWrite", False, "ok"))
        elif how == "edit per update":
            if row is None:
                row = outbox.enqueue(THREAD, checklist(todos))[0]
            else:
                outbox.enqueue_edit(THREAD, row, checklist(todos))
        else:
            outbox.enqueue(THREAD, checklist(todos))
        await asyncio.sleep(gap)
    last_update = time.perf_counter()
    if how == "checklist":
        view.end(interrupted=False)
    assert await outbox.wait_idle(timeout=120)
    shown_after = time.perf_counter() - last_update
    await outbox.stop()
    db.close()
    final = checklist(steps[-1]).plain
    shown = list(adapter.messages.values())
    return {
        "how": how,
        "api_calls": adapter.calls["send"] + adapter.calls["edit"],
        "messages": adapter.calls["send"],
        "rate_limited_429s": adapter.rate_limited,
        "last_update_shown_after_s": round(shown_after, 2),
        "final_exact": bool(shown) and shown[-1] == final,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=60)
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between updates")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            await run(Path(tmp), how, args.updates, args.gap)
            for how in ("message per update", "edit per update", "checklist")
        ]
    print(f"{args.updates} task-list updates, one every {args.gap * 1000:.0f} ms; "
          "chat limit 10/s, burst 3 (Telegram ×10)")  # fmt: skip
    print(f"{'':20} {'calls':>6} {'msgs':>5} {'429s':>5} {'shown after':>12} {'exact':>6}")
    for r in rows:
        print(
            f"{r['how']:20} {r['api_calls']:>6} {r['messages']:>5} {r['rate_limited_429s']:>5} "
            f"{r['last_update_shown_after_s']:>11}s {r['final_exact']!s:>6}"
        )


if __name__ == "__main__":
    asyncio.run(main())
