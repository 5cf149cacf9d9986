"""One chat's delivery worker: the loop that takes outbox rows to the platform.

A `ChatWorker` owns one chat (`platform:chat_id`) and runs as one task.  Each step
first looks at the chat's rate budget — messages (send/edit/delete) and native
drafts have separate ones — and, if neither has room, sleeps exactly until one has;
then it asks the repository for the next deliverable row among the kinds with room
(so the row it finally sends carries the newest coalesced content).  With nothing
deliverable it sleeps until a row of such a kind arrives, a retry comes due, or the
other budget refills.  Otherwise it takes from the budget, makes the one platform
call and records the outcome at once.  Outcomes map the
adapter errors: `RateLimited` pauses the chat's budget, `TransientError` and
anything unexpected reschedule the row with capped exponential backoff and jitter
(capped at `RETRY_MAX_S`, so a platform back from an outage is used again within ~3 s;
the chat's rate budget still paces the retries),
`PermanentError` fails it, `NotModified` counts as sent, `ThreadGone` is handed to
the outbox (it owns thread fallbacks, which may span chats).  An edit that would
show what its message already shows (the content the last edit put there, the
adapter's attempt id aside: `Rendered.content_digest`) counts as sent without a
call or any budget — on every platform, so no adapter checks it again.

Exactly once, as far as the platform allows: a send row is stamped
`attempted_at` when it is claimed for its first call (`OutboxRepo.claim_next`: the
pick, the claim and the stamp are one transaction, and no other database write comes
before the call) and marked sent as soon as the call returns.  A stamped row met again (the daemon was killed while
the call was under way, or the call timed out) may already be in the chat: the
adapter's `find_sent` looks for it (Telegram: by an identical edit of the message
ids after our newest one) and only if it is not found is the message sent again.
Edits, drafts and deletes are re-applied (an identical edit is "not modified":
success).  Where `find_sent` cannot tell, delivery is at least once.

Fencing: with several hosts on one database only the platform's gateway may call it
(`bridge/gateway.py`).  `may_send` is asked before a row is claimed and again right
before every platform call (the `find_sent` probe included); while it says no the
row stays pending (its claim given back) — the current gateway delivers it — and the
worker waits for new rows or `FENCED_RECHECK_S`.  The claim (`claim`, a token per
pick) keeps other hosts' producers from coalescing into the row while its call is
under way; it is given back when the call was not made or is to be retried.

Database calls: with `offload` (PostgreSQL, a network round trip per statement) the
claim and the records of outcomes run in a worker thread, so the event loop is not
held up; on SQLite they take a few tens of microseconds and run inline
(`benchmarks/bench_hosts_outbox.py` measures both).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from adapters.base import (
    AdapterError,
    ChatAdapter,
    NotModified,
    PermanentError,
    RateLimited,
    ThreadGone,
    TransientError,
)
from adapters.messages import Rendered, ThreadRef
from bridge.outbox.ratelimit import Kind, RateBudget
from storage.outbox_pick import PendingItem
from storage.outbox_repo import OutboxRepo, chat_key_of
from storage.types import OutboxOp, OutboxState

log = logging.getLogger("bridge.outbox")

KINDS: tuple[Kind, ...] = ("message", "draft")
OPS_OF: dict[Kind, tuple[OutboxOp, ...]] = {
    "message": ("send", "edit", "delete", "close"),
    "draft": ("draft",),
}
Settle = Callable[[Sequence[int], OutboxState, str | None], None]
ThreadGoneHandler = Callable[[ThreadRef, PendingItem], Awaitable[None]]
# Retried a few times only: losing one is harmless.
EPHEMERAL_OPS: tuple[OutboxOp, ...] = ("draft", "delete")
EDITS_REMEMBERED = 1000  # messages per chat whose last edited content is remembered
RETRY_MAX_S = 3.0  # the longest wait between retries of a row (it was 15 s)
LOUD_ATTEMPTS = 3  # retries logged as warnings; later ones every 20th, the rest at debug
FENCED_RECHECK_S = 1.0  # how often a worker that may not send looks again
P = ParamSpec("P")
R = TypeVar("R")


def always() -> bool:
    """The `may_send` of a daemon that is the only one (and of tests)."""
    return True


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff for transient failures: `initial` · 2^(n-1), capped at `maximum`,
    times a random factor in [0.5, 1] so that many rows do not retry in lockstep.

    (Not tenacity: its wait strategies want a live `RetryCallState`, while an
    outbox retry is a persisted `not_before` that survives restarts.)"""

    initial: float = 1.0
    maximum: float = RETRY_MAX_S
    ephemeral_attempts: int = 5

    def delay(self, attempts: int) -> float:
        base = min(self.maximum, self.initial * 2.0 ** min(attempts - 1, 32))
        return base * random.uniform(0.5, 1.0)


def draft_id_for(stream_key: str) -> int:
    """A stable, non-zero 31-bit draft id per stream (the same after a restart)."""
    return zlib.crc32(stream_key.encode()) & 0x7FFFFFFF or 1


def describe(exc: BaseException) -> str:
    """An error for logs and `last_error`, without payload text: adapter errors
    carry the platform's short description; anything else only its type and place
    (a database error's message would quote the SQL parameters, i.e. the payload)."""
    if isinstance(exc, AdapterError):
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}" if tb else ""
    return f"{type(exc).__name__}{where}"


def kind_of(op: OutboxOp) -> Kind:
    """Which budget an operation spends."""
    return "draft" if op == "draft" else "message"


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def wait_event(event: asyncio.Event, seconds: float | None) -> None:
    """Until `event` is set or `seconds` pass (None: no limit)."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        pass


class ChatWorker:
    def __init__(
        self,
        platform: str,
        chat_id: str,
        *,
        repo: OutboxRepo,
        adapter: ChatAdapter,
        budget: RateBudget,
        clock: Callable[[], float],
        policy: RetryPolicy,
        settle: Settle,
        thread_gone: ThreadGoneHandler,
        may_send: Callable[[], bool] = always,
        host: str = "",
        offload: bool = False,
    ) -> None:
        self.platform, self.chat_id = platform, chat_id
        self._may_send = may_send  # this host is the platform's gateway (fencing)
        self._host = host[:40]  # named in claims: who is delivering a row
        self._offload = offload
        self.key = chat_key_of(platform, chat_id)
        self.in_flight: int | None = None  # the row whose platform call is under way
        self.delivering = False  # inside a delivery (its call, or a thread fallback after it)
        self._repo, self._adapter, self._budget = repo, adapter, budget
        self._clock, self._policy = clock, policy
        self._settle, self._thread_gone = settle, thread_gone
        self._wake = asyncio.Event()
        self._woken: set[Kind] = set()  # kinds of rows that arrived since the last pick
        self._shown: OrderedDict[int, str] = OrderedDict()  # target row → its content digest
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self, *kinds: Kind) -> None:
        """New or changed rows of these kinds (default: both)."""
        self._woken.update(kinds or KINDS)
        self._wake.set()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"outbox-{self.key}"
            )

    async def stop(self, grace: float) -> None:
        """Cancel at once if idle; a platform call under way gets `grace` seconds to
        return so its outcome is recorded (cancelling it would resend on restart)."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        self._stopping = True
        if self.in_flight is None:
            task.cancel()
        self._wake.set()
        _done, late = await asyncio.wait([task], timeout=grace)
        for t in late:
            t.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database hiccup must not end deliveries
                log.error("outbox worker for %s: %s; retrying in 1 s", self.key, describe(exc))
                await asyncio.sleep(1.0)

    async def _db(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """A repository call: in a thread with `offload` (a PostgreSQL round trip
        would hold the event loop up), inline otherwise."""
        if self._offload:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    async def _step(self) -> None:
        # Sends/edits/deletes and drafts have separate budgets: pick only among the
        # kinds that have room, so drafts don't wait for a spent message budget.
        waits = {kind: self._budget.delay(self.chat_id, kind) for kind in KINDS}
        ready = tuple(kind for kind in KINDS if waits[kind] <= 0)
        if not ready:
            # Not woken by new rows: nothing can go before the budget allows, and by
            # then the pick sees the newest coalesced content and any priority-0 row.
            # (No database query either, however many chats wait on the global budget.)
            await asyncio.sleep(min(waits.values()))
            return
        self._woken.difference_update(ready)
        if not self._may_send():  # not (or no longer) the gateway: rows stay pending
            await self._sleep(ready, FENCED_RECHECK_S)
            return
        now = self._clock()
        ops = [op for kind in ready for op in OPS_OF[kind]]
        claim = f"{self._host}:{secrets.token_hex(6)}"
        item = await self._db(self._repo.claim_next, self.key, to_datetime(now), claim, ops)
        if item is None:
            due = await self._db(self._repo.next_due, self.key, to_datetime(now))
            limits = [waits[kind] for kind in KINDS if kind not in ready]
            if due is not None:
                limits.append(max(0.0, due.timestamp() - now))
            await self._sleep(ready, min(limits, default=None))
            return
        if item.target_id is not None and item.target_state != "sent":
            self._doom(item)
            return
        if item.op == "edit" and self._shows(item) == Rendered(item.payload).content_digest():
            await self._record_sent(item, item.target_message_id)  # nothing would change
            return
        kind = kind_of(item.op)
        taken = self._budget.take(self.chat_id, kind)
        self.delivering = True
        try:
            await self._deliver(item)
        finally:
            self.delivering = False
            self._budget.settle(self.chat_id, kind, taken)

    async def _sleep(self, kinds: tuple[Kind, ...], seconds: float | None) -> None:
        """Until a row of one of `kinds` arrives, or `seconds` pass (None: no limit)."""
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        while self._woken.isdisjoint(kinds) and not self._stopping:
            self._wake.clear()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            await wait_event(self._wake, remaining)

    async def _deliver(self, item: PendingItem) -> None:
        thread = ThreadRef(item.platform, item.chat_id, item.thread_id)
        self.in_flight = item.id
        # Sends are stamped when first claimed: a later attempt first asks whether an
        # earlier one arrived.  (Edits, drafts, deletes and closes are re-applied.)
        stamped = item.op == "send" and item.attempted_at is None
        claim = item.claim or ""
        try:
            message_id = await self._delivered_before(thread, item)
            if message_id is None:
                if not self._may_send():  # deposed while probing: the row stays pending
                    await self._db(self._repo.release, item.id, claim, attempted=stamped)
                    return
                message_id = await self._call(thread, item)
        except NotModified:
            message_id = item.target_message_id
        except RateLimited as exc:
            # refused: it did not arrive (a send's stamp goes with the claim)
            await self._db(self._repo.release, item.id, claim, attempted=stamped)
            self._budget.pause(self.chat_id, exc.retry_after)
            self._warn(item, f"rate limited, chat paused {exc.retry_after:.2f} s")
            self._drop_if_newer(item)
            return
        except ThreadGone:
            self.in_flight = None
            await self._db(self._repo.release, item.id, claim, attempted=stamped)
            if item.op == "close":  # nothing left to close
                await self._record_sent(item, None)
                return
            await self._thread_gone(thread, item)  # moves the row: it did not arrive here
            return
        except PermanentError as exc:
            self._fail(item, describe(exc))
            return
        except Exception as exc:  # TransientError, timeouts, adapter bugs: retry
            if stamped and isinstance(exc, TransientError) and exc.answered:
                self._repo.mark_attempted(item.id, None)  # a 5xx answer: it did not arrive
            self._retry(item, exc)
            return
        finally:
            self.in_flight = None
        # The at-least-once window ends here: the next await records the outcome.
        await self._record_sent(item, message_id)

    async def _record_sent(self, item: PendingItem, message_id: str | None) -> None:
        await self._db(self._repo.mark_sent, item.id, message_id, to_datetime(self._clock()))
        if item.op == "edit" and item.target_id is not None:
            self._shown[item.target_id] = Rendered(item.payload).content_digest()
            self._shown.move_to_end(item.target_id)
            while len(self._shown) > EDITS_REMEMBERED:
                self._shown.popitem(last=False)
        self._settle([item.id], "sent", message_id)

    def _shows(self, item: PendingItem) -> str | None:
        """The content digest of what the target message shows, if an edit put it."""
        return None if item.target_id is None else self._shown.get(item.target_id)

    async def _pace(self) -> None:
        """One more call in this chat (a `find_sent` probe), within the budget."""
        await self._budget.acquire(self.chat_id)

    async def _delivered_before(self, thread: ThreadRef, item: PendingItem) -> str | None:
        """The message id, if an earlier attempt at this send reached the platform."""
        if item.op != "send" or item.attempted_at is None:
            return None
        after, ours = self._repo.our_messages(self.key, item.attempted_at)
        found = await self._adapter.find_sent(
            thread, Rendered(item.payload), after=after, ours=ours, pace=self._pace
        )
        if found is not None:
            log.info("outbox row %d in %s had arrived before as %s", item.id, self.key, found)
        return found

    async def _call(self, thread: ThreadRef, item: PendingItem) -> str | None:
        rendered, target = Rendered(item.payload), item.target_message_id
        if item.op == "send":
            return await self._adapter.send(thread, rendered)
        if item.op == "edit" and target is not None:
            await self._adapter.edit(thread, target, rendered)
            return target
        if item.op == "draft":
            await self._adapter.draft(
                thread, draft_id_for(item.stream_key or str(item.id)), rendered
            )
            return None
        if item.op == "delete" and target is not None:
            await self._adapter.delete(thread, target)
            return target
        if item.op == "close":
            await self._adapter.close_thread(thread)
            return None
        raise PermanentError(f"cannot deliver op {item.op!r}")

    def _retry(self, item: PendingItem, exc: Exception) -> None:
        attempts = item.attempts + 1
        if item.op in EPHEMERAL_OPS and attempts >= self._policy.ephemeral_attempts:
            self._fail(item, f"{describe(exc)}; gave up after {attempts} attempts")
            return
        if self._drop_if_newer(item):
            return
        delay = self._policy.delay(attempts)
        not_before = to_datetime(self._clock() + delay)
        self._repo.reschedule(
            item.id, not_before, describe(exc), count_attempt=True, claim=item.claim
        )
        what = f"{describe(exc)}; attempt {attempts}, retry in {delay:.2f} s"
        if attempts <= LOUD_ATTEMPTS or attempts % 20 == 0:
            self._warn(item, what)
        else:  # a long outage: retries every few seconds would flood the log
            log.debug("outbox row %d (%s) in %s: %s", item.id, item.op, self.key, what)

    def _fail(self, item: PendingItem, error: str) -> None:
        self._repo.mark_failed(item.id, error)
        self._warn(item, f"failed: {error}")
        self._settle([item.id], "failed", None)

    def _doom(self, item: PendingItem) -> None:
        """An edit or delete whose target will never be sent."""
        if item.target_state == "superseded" and self._repo.mark_superseded(
            item.id, claimed=item.claim
        ):
            self._settle([item.id], "superseded", None)
        else:
            self._fail(item, f"target row {item.target_id} not delivered")

    def _drop_if_newer(self, item: PendingItem) -> bool:
        """A failed stream update that a newer one replaces is not retried."""
        if item.stream_key is not None and self._repo.supersede_if_newer(item.id):
            self._settle([item.id], "superseded", None)
            return True
        return False

    def _warn(self, item: PendingItem, what: str) -> None:
        log.warning("outbox row %d (%s) in %s: %s", item.id, item.op, self.key, what)
