"""Machinery for `benchmarks/run.py`: timed fakes, the two bridge variants, and helpers.

Nothing here edits the project's code or its test fakes; the hooks are subclasses and
wrappers that live only in the benchmark process:

- `TimedAnthropic`: the fake model API, recording (wall clock) when it writes the first
  ``text_delta`` of each turn to the socket.  (The fake's stream writer is replaced by a
  subclass that notes the time after writing each text delta.)
- `TimedTelegram`: the fake Bot API, recording when the first request of each method
  arrives (for "start-up → polling").  Every call it answered is in its ``api_log``
  (method, parameters, HTTP status, completion time), which is what the chat shows.
- `BenchBridge`: the real `Bridge`, timing every agent event in `on_agent_event` and
  the moment its outbox row is written.  With ``naive=True`` it is the baseline: a
  `NaiveTurnView` that flushes on every delta (no debounce, no native drafts) and an
  outbox whose rate budget is effectively unlimited, so only the platform's 429s (and
  the `retry_after` pause they force on the chat, which every client must honour) slow
  it down.
- `PermissionGate.can_use_tool` (the SDK callback the CLI's permission request arrives
  on) is wrapped to log when each request arrives.
- With ``legacy=True`` (the delivery scenarios' baseline, `bench_delivery.py`) it is
  the daemon as it was before delivery classes: a `LegacyTurnView` (the status message
  at once, edited to "✅ Done" before the answer, never deleted) and every row but
  stream updates in one class, so the outbox orders them by age.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import math
import os
import secrets
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bridge.turn_router as turn_router  # noqa: E402
import tests.support.fakes.anthropic as fake_anthropic  # noqa: E402
from adapters.base import Capabilities  # noqa: E402
from adapters.messages import ThreadRef  # noqa: E402
from adapters.telegram.adapter import TelegramAdapter  # noqa: E402
from agent.events import AgentEvent, TurnEnded, TurnStarted  # noqa: E402
from agent.permissions import PermissionGate  # noqa: E402
from bridge import render  # noqa: E402
from bridge.app import Bridge  # noqa: E402
from bridge.config import Config  # noqa: E402
from bridge.outbox.ratelimit import RateBudget  # noqa: E402
from bridge.turns import LONG_TURN_S, PREVIEW_CHARS, TurnView  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.models import SessionRow  # noqa: E402
from storage.outbox_pick import DeliveryClass  # noqa: E402
from tests.support.fakes.anthropic import FakeAnthropic  # noqa: E402
from tests.support.fakes.claude_env import claude_env  # noqa: E402
from tests.support.fakes.telegram import ApiCall, FakeTelegram  # noqa: E402
from tests.support.harness import GROUP, OWNER, OWNER_NAME, make_config  # noqa: E402

# The calls that put something in front of the person (and count against Telegram's
# flood limits, except drafts which have their own).
OUT_METHODS = frozenset(
    {
        "sendMessage",
        "sendMessageDraft",
        "editMessageText",
        "editMessageReplyMarkup",
        "editMessageCaption",
        "sendDocument",
        "sendPhoto",
        "deleteMessage",
    }
)
TEXT_METHODS = ("sendMessage", "sendMessageDraft", "editMessageText")
OWNER_USER = {"id": OWNER, "is_bot": False, "first_name": OWNER_NAME}


# --------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------


def pct(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between closest ranks; None if empty."""
    xs = sorted(values)
    if not xs:
        return None
    k = (len(xs) - 1) * q / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(values: Iterable[float], scale: float = 1.0, digits: int = 1) -> dict[str, Any]:
    xs = [v * scale for v in values]
    if not xs:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {
        "n": len(xs),
        "p50": round(pct(xs, 50) or 0.0, digits),
        "p99": round(pct(xs, 99) or 0.0, digits),
        "max": round(max(xs), digits),
    }


# --------------------------------------------------------------------------------------
# the fake model API, timed
# --------------------------------------------------------------------------------------


class _TimedStream(fake_anthropic._Stream):
    """The fake's SSE writer; notes when each text delta has been written."""

    async def delta(self, delta: dict[str, Any]) -> None:
        await super().delta(delta)
        if delta.get("type") == "text_delta":
            fake = self.request.get("bench_fake")
            if isinstance(fake, TimedAnthropic):
                fake.note_token(str(self.request.get("bench_prompt", "")))


# The fake looks its stream writer up by this module-level name on every request.
fake_anthropic._Stream = _TimedStream  # type: ignore[misc]


class TimedAnthropic(FakeAnthropic):
    def __init__(self) -> None:
        super().__init__()
        self.first_token: dict[str, float] = {}  # turn prompt → time.time()
        self.last_token: dict[str, float] = {}
        self.tokens: defaultdict[str, int] = defaultdict(int)  # text deltas per prompt

    def note_token(self, prompt: str) -> None:
        now = time.time()
        self.first_token.setdefault(prompt, now)
        self.last_token[prompt] = now
        self.tokens[prompt] += 1

    async def _messages(self, request: Any, data: dict[str, Any]) -> Any:
        prompt, _ = fake_anthropic.turn_position(data.get("messages") or [])
        request["bench_fake"] = self
        request["bench_prompt"] = prompt
        return await super()._messages(request, data)

    def first_token_of(self, marker: str) -> float | None:
        times = [t for p, t in self.first_token.items() if marker in p]
        return min(times) if times else None

    def last_token_of(self, marker: str) -> float | None:
        times = [t for p, t in self.last_token.items() if marker in p]
        return max(times) if times else None

    def deltas_of(self, marker: str) -> int:
        return sum(n for p, n in self.tokens.items() if marker in p)


# --------------------------------------------------------------------------------------
# the fake Bot API, timed
# --------------------------------------------------------------------------------------


class TimedTelegram(FakeTelegram):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.arrivals: dict[str, float] = {}  # lower-case method → first arrival, time.time()

    async def _handle_api(self, request: Any) -> Any:
        self.arrivals.setdefault(str(request.match_info.get("method", "")).lower(), time.time())
        return await super()._handle_api(request)


def calls_between(
    tg: FakeTelegram, start: float, end: float, chat_id: int | None = None
) -> list[ApiCall]:
    return [
        c
        for c in tg.api_log
        if c.method in OUT_METHODS
        and start <= c.at <= end
        and (chat_id is None or str(c.params.get("chat_id")) == str(chat_id))
    ]


def tally(calls: Iterable[ApiCall]) -> dict[str, Any]:
    """Calls by outcome and by method."""
    out: dict[str, Any] = {"total": 0, "ok": 0, "429": 0, "other_errors": 0, "by_method": {}}
    for c in calls:
        out["total"] += 1
        key = "ok" if c.status == 200 else ("429" if c.status == 429 else "other_errors")
        out[key] += 1
        m = out["by_method"].setdefault(c.method, {"ok": 0, "429": 0, "other_errors": 0})
        m[key] += 1
    return out


def first_visible_call(tg: FakeTelegram, marker: str) -> ApiCall | None:
    """The first call that put text carrying `marker` in front of the person: a draft,
    an edit or a message the fake accepted."""
    for c in tg.api_log:
        if c.status == 200 and c.method in TEXT_METHODS and marker in str(c.params.get("text", "")):
            return c
    return None


def first_visible(tg: FakeTelegram, marker: str) -> float | None:
    """When (the fake's completion time) text carrying `marker` was first visible."""
    call = first_visible_call(tg, marker)
    return call.at if call is not None else None


def _in(c: ApiCall, chat_id: int, thread_id: int) -> bool:
    return str(c.params.get("chat_id")) == str(chat_id) and str(
        c.params.get("message_thread_id", "")
    ) == str(thread_id)


def final_sent(tg: FakeTelegram, chat_id: int, thread_id: int, since: float) -> float | None:
    """When the turn's final message (the one with the "⏱" footer) was accepted."""
    for c in tg.api_log:
        if (
            c.status == 200
            and c.method == "sendMessage"
            and c.at >= since
            and _in(c, chat_id, thread_id)
            and "⏱" in str(c.params.get("text", ""))
        ):
            return c.at
    return None


def prompt_sent(tg: FakeTelegram, chat_id: int, thread_id: int, since: float) -> float | None:
    """When a permission prompt (Allow/Deny buttons) was accepted in this topic."""
    for c in tg.api_log:
        if (
            c.status == 200
            and c.method == "sendMessage"
            and c.at >= since
            and _in(c, chat_id, thread_id)
            and '"p:' in str(c.params.get("reply_markup", ""))
        ):
            return c.at
    return None


# --------------------------------------------------------------------------------------
# permission requests, timed where the CLI's request arrives
# --------------------------------------------------------------------------------------

CAN_USE_TOOL: list[tuple[str, str, float]] = []  # (session id, tool, time.time())
_original_can_use_tool = PermissionGate.can_use_tool


async def _timed_can_use_tool(
    self: PermissionGate, name: str, tool_input: Any, context: Any
) -> Any:
    CAN_USE_TOOL.append((self._session_id, name, time.time()))
    return await _original_can_use_tool(self, name, tool_input, context)


PermissionGate.can_use_tool = _timed_can_use_tool  # type: ignore[method-assign]


# --------------------------------------------------------------------------------------
# the bridge, instrumented; and the naive baseline
# --------------------------------------------------------------------------------------


@dataclass
class Overhead:
    """The bridge's own time per agent event (perf_counter seconds)."""

    handler: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    to_row: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    flush: list[float] = field(default_factory=list)
    enabled: bool = True

    def as_dict(self) -> dict[str, Any]:
        every = [x for xs in self.handler.values() for x in xs]
        rows = [x for xs in self.to_row.values() for x in xs]
        deltas = self.handler.get("TextDelta", [])
        delta_total = sum(deltas) + sum(self.flush)
        return {
            "events": len(every),
            "handler_ms": summary(every, 1000, 3),
            "handler_ms_by_event": {
                k: summary(v, 1000, 3) for k, v in sorted(self.handler.items())
            },
            "event_to_row_ms": summary(rows, 1000, 3),
            "event_to_row_ms_by_event": {
                k: summary(v, 1000, 3) for k, v in sorted(self.to_row.items())
            },
            "flush_ms": summary(self.flush, 1000, 3),
            "flushes": len(self.flush),
            "text_deltas": len(deltas),
            "ms_per_text_delta_incl_flushes": round(delta_total / len(deltas) * 1000, 4)
            if deltas
            else None,
        }


# The agent event being handled: {"t0", "open", "row"}; copied into tasks spawned while
# handling it, where "open" is False by the time they run.
_EVENT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "bench_event", default=None
)


class TimedTurnView(TurnView):
    overhead: Overhead | None = None

    def flush(self) -> None:
        t0 = time.perf_counter()
        super().flush()
        if self.overhead is not None and self.overhead.enabled:
            self.overhead.flush.append(time.perf_counter() - t0)


class NaiveTurnView(TimedTurnView):
    """The baseline's live view: an edit on every delta (no debounce, no drafts)."""

    def __init__(self, **kw: Any) -> None:
        kw["use_draft"] = False
        kw["min_interval"] = 0.0
        super().__init__(**kw)

    def _schedule(self) -> None:
        self.flush()


class LegacyTurnView(TimedTurnView):
    """The turn view before "one message per turn": the status message is sent when
    the turn starts and, at the end, edited to "✅ Done" ahead of the answer."""

    def __init__(self, **kw: Any) -> None:
        kw["status_after"] = 0.0  # the status message at once
        super().__init__(**kw)

    def end(self, ev: TurnEnded) -> None:
        if self._flush_task is not None:
            self._flush_task.cancel()
        self.outbox.supersede(self.stream_key)
        self.outbox.supersede(f"{self.stream_key}:status")
        if self.current:
            self.blocks.append(self.current)
            self.current = ""
        duration = self.clock() - self.started
        answer = (
            "\n\n".join(b for b in self.blocks if b.strip())
            or ev.result
            or ("(stopped)" if ev.interrupted else "(no text)")
        )
        final = render.final_message(
            answer,
            duration_s=duration,
            cost_usd=ev.cost_usd,
            tools=self.tools_used,
            is_error=ev.is_error,
        )
        if duration >= LONG_TURN_S:
            final = dataclasses.replace(final, mention=True)
        if (
            self._status_id is not None
            and not self.use_draft
            and self.outbox.withdraw(self._status_id)
        ):
            self._status_id = None
        if self._status_id is not None:
            label = "⏹ Stopped" if ev.interrupted else ("⚠️ Error" if ev.is_error else "✅ Done")
            status = render.status_message(
                self.tool_lines, label, running=False, stop_data="", max_preview=PREVIEW_CHARS
            )
            self.outbox.enqueue_edit(self.thread, self._status_id, status, priority=0)
        self.outbox.enqueue(self.thread, final, session_id=self.session_id, priority=0)


_BRIDGES: dict[int, BenchBridge] = {}  # id(outbox) → bridge


def _make_view(**kw: Any) -> TurnView:
    owner = _BRIDGES.get(id(kw.get("outbox")))
    cls: type[TurnView] = TimedTurnView
    if owner is not None and owner.naive:
        cls = NaiveTurnView
    elif owner is not None and owner.legacy:
        cls = LegacyTurnView
    view = cls(**kw)
    view.overhead = owner.overhead if owner is not None else None
    if owner is not None:
        owner.views_made += 1
    return view


# `TurnRouter._agent_event` builds its TurnView through this module-level name.
turn_router.TurnView = _make_view  # type: ignore[misc, assignment]


def unlimited(caps: Capabilities) -> Capabilities:
    return dataclasses.replace(
        caps,
        per_chat_rate=1e6,
        per_chat_burst=1_000_000,
        group_per_minute=0,
        global_rate=1e6,
        draft_rate=1e6,
    )


def _one_class(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The outbox's order before delivery classes: stream updates (``priority=1``)
    last, every other row in one class, ordered by age."""

    def wrapper(*args: Any, **kw: Any) -> Any:
        stream = kw.pop("priority", 0) >= 1
        kw["klass"] = DeliveryClass.STREAM if stream else DeliveryClass.NOTICE
        return fn(*args, **kw)

    return wrapper


class BenchBridge(Bridge):
    def __init__(
        self, *args: Any, overhead: Overhead, naive: bool, legacy: bool = False, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self.overhead = overhead
        self.naive = naive
        self.legacy = legacy
        self.turn_ended_at: defaultdict[str, list[float]] = defaultdict(list)  # time.time()
        self.turns_started = 0
        self.views_made = 0
        _BRIDGES[id(self.outbox)] = self
        if legacy:
            for name in ("enqueue", "enqueue_edit", "enqueue_delete"):
                setattr(self.outbox, name, _one_class(getattr(self.outbox, name)))
        for name in ("enqueue", "enqueue_edit", "update_stream"):
            setattr(self.outbox, name, self._timed(getattr(self.outbox, name)))
        if naive:  # no shared budget: only 429s and their retry_after slow it down
            for name, adapter in self.adapters.items():
                self.outbox._budgets[name] = RateBudget(
                    unlimited(adapter.capabilities), is_group=adapter.is_group, clock=time.time
                )

    def _timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kw: Any) -> Any:
            out = fn(*args, **kw)
            cell = _EVENT.get()
            if cell is not None and cell["open"] and cell["row"] is None:
                cell["row"] = time.perf_counter() - cell["t0"]
            return out

        return wrapper

    async def on_agent_event(self, ev: AgentEvent) -> None:
        cell: dict[str, Any] = {"t0": time.perf_counter(), "open": True, "row": None}
        if isinstance(ev, TurnEnded):
            self.turn_ended_at[ev.session_id].append(time.time())
        elif isinstance(ev, TurnStarted):
            self.turns_started += 1
        token = _EVENT.set(cell)
        try:
            await super().on_agent_event(ev)
        finally:
            elapsed = time.perf_counter() - cell["t0"]
            cell["open"] = False
            _EVENT.reset(token)
            if self.overhead.enabled:
                name = type(ev).__name__
                self.overhead.handler[name].append(elapsed)
                if cell["row"] is not None:
                    self.overhead.to_row[name].append(cell["row"])


# --------------------------------------------------------------------------------------
# one bridge + fake Telegram, in process
# --------------------------------------------------------------------------------------


def _mkdirs(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Env:
    tg: TimedTelegram
    model: TimedAnthropic
    bridge: BenchBridge
    db: Database
    config: Config
    root: Path
    chat_id: int
    naive: bool

    def say(self, text: str, thread_id: int | None = None, chat_id: int | None = None) -> None:
        chat = self.chat_id if chat_id is None else chat_id
        self.tg.user_message(chat, OWNER_USER, text, message_thread_id=thread_id)


@dataclass
class Session:
    id: str
    chat_id: int
    thread_id: int
    row: SessionRow


async def start_env(
    tmp: Path,
    model: TimedAnthropic,
    *,
    naive: bool,
    group: bool,
    overhead: Overhead,
    stream_interval: float = 0.8,
    legacy: bool = False,
) -> Env:
    """A fresh fake Telegram (default rate limits), database and bridge.  Threadline
    runs with the daemon's default stream interval (0.8 s), not the tests' 0.3 s."""
    root = _mkdirs(tmp / "code")
    tg = TimedTelegram(has_topics_enabled=True)
    await tg.start()
    chat_id = GROUP if group else OWNER
    if group:
        tg.add_chat(GROUP, "supergroup", is_forum=True, title="Team")
    else:
        tg.add_chat(OWNER, "private", first_name=OWNER_NAME)
    config = make_config(tg=tg, root=root, db_url=f"sqlite:///{tmp}/threadline.db", chat_id=chat_id)
    config.agent.max_concurrent_sessions = 50
    db = Database(config.storage.url)
    db.migrate()
    agent_env = claude_env(tmp / "claude-home", model.base_url)
    adapter = TelegramAdapter(config.telegram, owners_hint=config.access.owners)
    bridge = BenchBridge(
        config,
        db,
        {"telegram": adapter},
        agent_env=agent_env,
        stream_interval=stream_interval,
        overhead=overhead,
        naive=naive,
        legacy=legacy,
    )
    await bridge.start()
    return Env(tg, model, bridge, db, config, root, chat_id, naive)


async def stop_env(env: Env) -> None:
    await env.bridge.stop()
    env.db.close()
    _BRIDGES.pop(id(env.bridge.outbox), None)
    await env.tg.stop()
    if env.bridge.turns_started and not env.bridge.views_made:
        # Without this the baseline would silently be Threadline itself.
        raise RuntimeError(
            "the TurnView hook did not apply: Bridge no longer builds its view through "
            "bridge.turn_router.TurnView; update benchmarks/support.py"
        )


async def open_sessions(
    env: Env, n: int, prefix: str, *, chat_id: int | None = None, warm: int = 3
) -> list[Session]:
    """`n` sessions, each in its own forum topic of the chat (default: the env's), bound directly in
    the database (as `/new` would leave them) so that opening them spends none of the
    chat's rate budget; then their Claude Code CLIs are started (at most `warm` at a
    time) so that CLI start-up does not overlap the measurement."""
    chat = env.chat_id if chat_id is None else chat_id
    sessions: list[Session] = []
    for i in range(n):
        cwd = env.root / f"{prefix}{i}"
        cwd.mkdir(parents=True, exist_ok=True)
        topic = env.tg.add_topic(chat, f"{prefix}{i}")
        sid = f"{prefix[:6]}{i:02d}{secrets.token_hex(2)}"
        row = SessionRow(
            id=sid,
            platform="telegram",
            cwd=str(cwd),
            title=f"{prefix}{i}",
            owner=f"telegram:{OWNER}",
            mode="default",
            model="",
        )
        env.bridge.bind(row, ThreadRef("telegram", str(chat), str(topic)), None, "topic")
        sessions.append(Session(sid, chat, topic, row))
    gate = asyncio.Semaphore(warm)

    async def start(s: Session) -> None:
        async with gate:
            agent = await env.bridge.agent_for(s.row)
            await agent._connected()  # start the CLI now rather than on the first prompt

    await asyncio.gather(*(start(s) for s in sessions))
    return sessions


def words(n: int, marker: str) -> str:
    """A plausible answer of `n` words starting with `marker`, in short paragraphs."""
    vocab = (
        "the test fails because the parser drops a trailing newline when the input ends "
        "inside a quoted string so we keep the buffer and flush it at end of file which "
        "also fixes the off by one in the column count reported for errors"
    ).split()
    out = [marker]
    for i in range(1, n):
        w = vocab[i % len(vocab)]
        out.append(w + (".\n\n" if i % 60 == 59 else ""))
    return " ".join(out).replace("\n\n ", "\n\n")


# --------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (by scanning /proc)."""
    parent: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        parent[int(name)] = int(fields[1])
    out: list[int] = []
    frontier = [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out.extend(kids)
        frontier.extend(kids)
    return out
