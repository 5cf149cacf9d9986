"""Which host talks to each chat account: the *gateway*, elected through a lease row
with a fencing epoch (`storage/gateway_repo.py`).

Several daemons may share one database (PostgreSQL); a chat account (one Telegram
bot, one Slack app, one Matrix user) can be served by only one of them — a bot token
polled twice answers 409, and two senders would deliver every outbox row twice.  For
each enabled platform a `Gateway` takes the lease before its adapter starts (alone on
the database: at once), renews it every `RENEW_S` seconds for `LEASE_TTL_S`, and only
while it holds it is the adapter connected, inbound events taken and the outbox
delivered.  A host that is not the gateway tries again every `RETRY_S` seconds, so a
dead gateway is replaced within `LEASE_TTL_S + RETRY_S` seconds plus the adapter's
start (≤ 10 s; about 8.5 s measured).

Fencing: `may_send()` — asked by the outbox right before every platform call — is
true only under an epoch this host acquired and before a deadline on this host's
monotonic clock: the start of the last successful renewal + TTL − `MARGIN_S` (which
also absorbs a little clock skew between hosts).  A gateway that stalls (SIGSTOP, a
long GC, a dead network) therefore stops sending by its own clock before any other
host may take over; when it wakes, its renewal fails (the epoch moved on), it says
so, stops the adapter and goes back to standing by.

The account key is the platform plus a stable id from its config: `telegram:<bot id>`
(the token's number), `slack:<team>-<bot>` (the bot token's numeric fields),
`matrix:<user id>`; the platform name alone if the config has no such id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Final

from adapters.base import ChatAdapter, InboundSink
from adapters.messages import Inbound
from adapters.spec import PlatformConfig
from adapters.tasks import TaskGroup
from bridge.startup import StartupError, start_adapter
from storage.db import Database

log = logging.getLogger(__name__)

LEASE_TTL_S: Final = 8.0
RENEW_S: Final = 2.0
RETRY_S: Final = 1.0  # a standing-by host asks this often (one UPDATE)
MARGIN_S: Final = 1.5  # stop sending this long before the lease could pass to another host
FAILED_START_WAIT_S: Final = 30.0  # a gateway whose adapter cannot start gives way this long


def account_key(platform: str, config: PlatformConfig) -> str:
    """The lease's key for `platform`'s account as configured (see the module doc)."""
    ident = ""
    if platform == "telegram":
        token = str(getattr(config, "token", ""))
        ident = token.split(":", 1)[0] if ":" in token else ""
    elif platform == "slack":
        parts = str(getattr(config, "bot_token", "")).split("-")
        ident = "-".join(parts[1:3]) if len(parts) > 3 and parts[1].isdigit() else ""
    elif platform == "matrix":
        ident = str(getattr(config, "user_id", ""))
    return f"{platform}:{ident}" if ident else platform


class Gateway:
    """The lease on one platform's account, and that platform's adapter with it."""

    def __init__(
        self,
        db: Database,
        adapter: ChatAdapter,
        sink: InboundSink,
        tasks: TaskGroup,
        *,
        account: str,
        host: str,
        now: Callable[[], datetime],
        on_gained: Callable[[str], None],
        ttl: float = LEASE_TTL_S,
        renew_every: float = RENEW_S,
        retry_every: float = RETRY_S,
        margin: float = MARGIN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db, self.adapter, self._sink, self._tasks = db, adapter, sink, tasks
        self.platform, self.account, self.host = adapter.platform, account, host
        self.now, self.clock, self._on_gained = now, clock, on_gained
        self.ttl, self.margin = ttl, margin
        self.renew_every, self.retry_every = renew_every, retry_every
        self.epoch: int | None = None
        self.running = False  # the adapter was started under the current lease
        self._valid_until = 0.0
        self._task: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._cool_until = 0.0  # after a failed start: no new try before this

    def may_send(self) -> bool:
        """This host holds the lease, by its own clock (cheap: no database call)."""
        return self.epoch is not None and self.clock() < self._valid_until

    async def on_inbound(self, event: Inbound) -> None:
        """The adapter's sink: events reaching a host that is no longer the gateway
        (a poll answered while it stalled) are the new gateway's to handle."""
        if not self.may_send():
            log.warning(
                "%s: an inbound event reached this host after it stopped being the gateway;"
                " not handled here (the gateway handles it)",
                self.platform,
            )
            return
        await self._sink(event)

    async def begin(self) -> None:
        """Try for the lease once; if this host got it, start the adapter now (a
        `StartupError` ends the daemon as before); then keep at it in the background."""
        if await self._acquire():
            await start_adapter(self.adapter, self.on_inbound)
            self.running = True
        else:
            row = await asyncio.to_thread(self.db.gateways.holder, self.account)
            who = row.holder if row is not None else "another host"
            log.info(
                "%s: %s is the gateway; this host (%s) stands by", self.platform, who, self.host
            )
        self._task = self._tasks.spawn(self._run(), name=f"gateway-{self.platform}")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every if self.epoch is not None else self.retry_every)
            try:
                if self.epoch is None:
                    if self.clock() >= self._cool_until and await self._acquire():
                        self._start()
                else:
                    await self._renew()
            except Exception:  # a busy or unreachable database: try again next time
                log.exception("%s: the gateway lease could not be checked", self.platform)
                if self.epoch is not None and not self.may_send():
                    await self._lose("its lease ran out while the database was unreachable")

    async def _acquire(self) -> bool:
        began = self.clock()
        epoch = await asyncio.to_thread(
            self.db.gateways.acquire, self.account, self.host, self.now(), self.ttl
        )
        if epoch is None:
            return False
        self.epoch, self._valid_until = epoch, began + self.ttl - self.margin
        await self._record(f"this host ({self.host}) is the gateway, epoch {epoch}")
        return True

    async def _renew(self) -> None:
        assert self.epoch is not None
        began = self.clock()
        ok = await asyncio.to_thread(
            self.db.gateways.renew, self.account, self.host, self.epoch, self.now(), self.ttl
        )
        if ok:
            self._valid_until = began + self.ttl - self.margin
            return
        row = await asyncio.to_thread(self.db.gateways.holder, self.account)
        await self._lose(f"to {row.holder}" if row is not None else "(the lease is gone)")

    def _start(self) -> None:
        """Start the adapter in the background: the lease keeps being renewed meanwhile."""
        self._starting = self._tasks.spawn(
            self._start_adapter(), name=f"gateway-start-{self.platform}"
        )

    async def _start_adapter(self) -> None:
        epoch = self.epoch
        try:
            await start_adapter(self.adapter, self.on_inbound)
        except StartupError as e:
            log.error(
                "%s: %s; giving the gateway up for %g s", self.platform, e, FAILED_START_WAIT_S
            )
            self.epoch, self._valid_until = None, 0.0
            self._cool_until = self.clock() + FAILED_START_WAIT_S
            if epoch is not None:
                await asyncio.to_thread(self.db.gateways.release, self.account, self.host, epoch)
            return
        self.running = True
        self._on_gained(self.platform)

    async def _lose(self, how: str) -> None:
        """Deposed: stop sending at once, disconnect, then say so (the line is the sign
        that this host has let go)."""
        self.epoch, self._valid_until = None, 0.0
        starting, self._starting = self._starting, None
        if starting is not None and not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        if self.running:
            self.running = False
            try:
                await self.adapter.stop()
            except Exception:
                log.exception("stopping %s adapter failed", self.platform)
        await self._record(f"lost the gateway {how}", level=logging.WARNING)

    async def _record(self, what: str, *, level: int = logging.INFO) -> None:
        """One log line and one audit row per change of gateway."""
        log.log(level, "%s: %s", self.platform, what)
        try:
            await asyncio.to_thread(
                self.db.audit.log,
                platform=self.platform,
                user=f"host:{self.host}",
                action="gateway",
                detail=what,
            )
        except Exception:
            log.exception("%s: the audit row for a change of gateway failed", self.platform)

    async def release(self) -> None:
        """A clean stop: give the lease up so another host takes over at once."""
        epoch, self.epoch, self._valid_until = self.epoch, None, 0.0
        if epoch is None:
            return
        try:
            await asyncio.to_thread(self.db.gateways.release, self.account, self.host, epoch)
        except Exception:
            log.exception("%s: releasing the gateway failed; it expires by itself", self.platform)


class Gateways:
    """One `Gateway` per enabled platform, built lazily on `begin` (the composition
    root wires the outbox to `may_send` before the sink exists)."""

    def __init__(
        self, db: Database, tasks: TaskGroup, *, host: str, now: Callable[[], datetime]
    ) -> None:
        self.db, self._tasks, self.host, self.now = db, tasks, host, now
        self.by_platform: dict[str, Gateway] = {}
        self.intake_closed = False  # shutting down: nothing more is taken in

    def may_send(self, platform: str) -> bool:
        gateway = self.by_platform.get(platform)
        return gateway is not None and gateway.may_send()

    def may_receive(self, platform: str) -> bool:
        """The adapter may take (and confirm) platform events: this host is the
        gateway and is not shutting down.  An event left untaken stays with the
        platform, which hands it to the next gateway — or to this host after a
        restart."""
        return not self.intake_closed and self.may_send(platform)

    def close_intake(self) -> None:
        """Stop taking platform events (the first step of a clean stop), while
        the outbox still delivers."""
        self.intake_closed = True

    async def begin(
        self,
        adapter: ChatAdapter,
        config: PlatformConfig,
        sink: InboundSink,
        on_gained: Callable[[str], None],
    ) -> None:
        """Elect (or stand by) for `adapter`'s account and start it if this host won."""
        gateway = Gateway(
            self.db,
            adapter,
            sink,
            self._tasks,
            account=account_key(adapter.platform, config),
            host=self.host,
            now=self.now,
            on_gained=on_gained,
        )
        self.by_platform[adapter.platform] = gateway
        await gateway.begin()

    def running(self, platform: str) -> bool:
        """The platform's adapter was started here (so it is stopped here)."""
        gateway = self.by_platform.get(platform)
        return gateway is None or gateway.running

    async def release(self) -> None:
        await asyncio.gather(*(g.release() for g in self.by_platform.values()))
