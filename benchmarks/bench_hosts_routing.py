"""The added latency of cross-host routing: a button press arriving on the gateway →
the permission answer reaching the agent, on another host vs on the gateway itself.

Two hosts in one process on one throwaway PostgreSQL (`tests/support/two_hosts.py`):
laptop is the Telegram gateway (real PTB adapter, fake Bot API), box a second bridge
that never connects to Telegram.  For each round a permission request is raised in a
session's broker (`PermissionBroker.ask`, what the CLI's `can_use_tool` leads to), its
prompt is delivered to the fake chat, and the owner's Allow press is handed to the
gateway's sessions router as the adapter hands it (`on_inbound`).  Measured: from that
call to the request's future being resolved (what the CLI is waiting on).

- baseline: the session lives on laptop (the gateway decides the press itself);
- cross-host: the session lives on box — the gateway stores the press in box's inbox,
  box is woken by NOTIFY, claims it (`FOR UPDATE SKIP LOCKED`) and its broker decides.

Rounds alternate between the two so both see the same machine.  Goal: cross-host
p50 ≤ 50 ms.  Run: `.venv/bin/python benchmarks/bench_hosts_routing.py [ROUNDS]`.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.messages import ButtonPress, Markdown, Outbound, Sender, ThreadRef  # noqa: E402
from agent.events import PermissionAsked, PermissionDecision  # noqa: E402
from bridge.app import Bridge  # noqa: E402
from storage.models import SessionRow  # noqa: E402
from storage.types import SessionId  # noqa: E402
from tests.support.harness import OWNER, OWNER_NAME  # noqa: E402
from tests.support.postgres import create_database, start_postgres  # noqa: E402
from tests.support.two_hosts import TwoHosts, two_hosts  # noqa: E402


@contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on loopback; the URL of a fresh database."""
    try:
        server, stop = start_postgres()
    except RuntimeError as e:
        raise SystemExit(str(e)) from None
    try:
        yield create_database(server)
    finally:
        stop()


async def _session(w: TwoHosts, host: str, cwd: Path) -> tuple[SessionRow, ThreadRef]:
    """A session on `host` with a topic of its own (opened through the gateway)."""
    gateway = w.laptop.b
    adapter = gateway.adapters["telegram"]
    thread, _ = await adapter.open_thread(str(OWNER), f"bench {host}", Outbound((Markdown(host),)))
    row = SessionRow(
        id=SessionId(uuid.uuid4().hex[:6]), platform="telegram", cwd=str(cwd), host=host
    )
    gateway.bind(row, thread, None, "topic")
    return row, thread


async def _round(w: TwoHosts, agent_host: Bridge, row: SessionRow, thread: ThreadRef) -> float:
    """One permission asked on `agent_host`, answered by a press on the gateway."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[PermissionDecision] = loop.create_future()
    event = PermissionAsked(row.id, uuid.uuid4().hex, "Bash", {"command": "true"}, future)
    before = {p.request_id for p in agent_host.broker.waiting()}
    await agent_host.broker.ask(event, thread, row.cwd)
    request_id = next(
        p.request_id for p in agent_host.broker.waiting() if p.request_id not in before
    )
    db = w.laptop.b.db
    prompt_row = db.permissions.get(request_id)
    assert prompt_row is not None and prompt_row.prompt_outbox_id is not None
    message_id = await w.laptop.b.outbox.wait_sent(prompt_row.prompt_outbox_id, timeout=30)
    press = ButtonPress(
        thread, Sender("telegram", str(OWNER), OWNER_NAME), message_id, f"p:{request_id}:a"
    )
    started = time.perf_counter()
    await w.laptop.b.on_inbound(press)  # as the gateway's adapter hands it over
    decision = await asyncio.wait_for(future, 30)
    took = time.perf_counter() - started
    assert decision.allow
    return took


def _line(name: str, xs: list[float]) -> str:
    ms = sorted(x * 1000 for x in xs)
    p90 = ms[int(len(ms) * 0.9) - 1]
    return f"{name:<11} n={len(ms):3d}  p50 {statistics.median(ms):7.1f} ms  p90 {p90:7.1f} ms  max {ms[-1]:7.1f} ms"


async def main(rounds: int) -> None:
    with postgres() as url, tempfile.TemporaryDirectory() as tmp:
        async with two_hosts(Path(tmp), url) as w:
            local = await _session(w, "laptop", w.laptop.root / "app")
            remote = await _session(w, "box", w.box.root / "app")
            same: list[float] = []
            cross: list[float] = []
            for _ in range(3):  # warm up both paths (connections, first claims)
                await _round(w, w.laptop.b, *local)
                await _round(w, w.box.b, *remote)
            for _ in range(rounds):
                same.append(await _round(w, w.laptop.b, *local))
                cross.append(await _round(w, w.box.b, *remote))
            print("press on the gateway → permission answer reaching the agent (PostgreSQL)")
            print(_line("same host", same))
            print(_line("cross-host", cross))
            added = statistics.median(cross) - statistics.median(same)
            print(
                f"added by cross-host routing: p50 {added * 1000:.1f} ms (goal: cross-host p50 ≤ 50 ms)"
            )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
