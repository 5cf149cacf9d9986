"""This daemon's host: its row in the `hosts` table, kept fresh by a heartbeat, and
whether each host sharing the database is online.

On start `Hosts.start` writes the row (name, allowed roots, pid, version, started
now) and claims the sessions that have no host yet; a background task in the
bridge's `TaskGroup` then stamps the heartbeat every `interval` seconds (`HEARTBEAT_S`)
off the event loop, logging a failed write and trying again next time.  A clean
shutdown marks the row stopped.  A host is *online* while its heartbeat is younger
than `ONLINE_INTERVALS` intervals and it has not stopped — so a host killed or cut
off shows offline within three intervals, one stopped on purpose at once.  After each
heartbeat the `watchers` run (the offline notices of `bridge/host_notices.py`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import metadata
from typing import Final

from adapters.tasks import TaskGroup
from storage.host_repo import HostRepo, as_utc, host_roots
from storage.models import HostRow

log = logging.getLogger(__name__)

HEARTBEAT_S: Final = 5.0
ONLINE_INTERVALS: Final = 3  # heartbeats a host may miss before it counts as offline


@dataclass(frozen=True, slots=True)
class HostStatus:
    """One host as `hosts` and `sessions` show it."""

    name: str
    roots: tuple[str, ...]
    last_heartbeat: datetime
    stopped_at: datetime | None
    online: bool
    this: bool  # the daemon answering


def is_online(row: HostRow, now: datetime, interval: float) -> bool:
    """Not stopped cleanly, and a heartbeat younger than `ONLINE_INTERVALS` intervals."""
    if row.stopped_at is not None:
        return False
    return as_utc(now) - as_utc(row.last_heartbeat) < timedelta(seconds=ONLINE_INTERVALS * interval)


def _version() -> str:
    try:
        return metadata.version("threadline")
    except metadata.PackageNotFoundError:  # a checkout that was never installed
        return ""


class Hosts:
    """This host's row and heartbeat, and every host's status."""

    def __init__(
        self,
        repo: HostRepo,
        tasks: TaskGroup,
        *,
        name: str,
        roots: Sequence[str],
        now: Callable[[], datetime],
        interval: float = HEARTBEAT_S,
    ) -> None:
        self.repo, self._tasks = repo, tasks
        self.name, self.roots = name, tuple(roots)
        self.now, self.interval = now, interval
        self._task: asyncio.Task[None] | None = None
        # Run after every heartbeat (in order; a failure is logged, the beat goes on).
        self.watchers: list[Callable[[], Awaitable[None]]] = []

    def start(self) -> None:
        """Write this host's row (claiming sessions with no host) and start the heartbeat."""
        self._write_row()
        log.info("host %s: started (heartbeat every %gs)", self.name, self.interval)
        self._task = self._tasks.spawn(self._beat(), name=f"host-heartbeat-{self.name}")

    def _write_row(self) -> None:
        self.repo.start(
            name=self.name, roots=self.roots, pid=os.getpid(), version=_version(), at=self.now()
        )

    async def stop(self) -> None:
        """Stop the heartbeat and mark this host stopped (a clean shutdown)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        try:
            self.repo.stopped(name=self.name, at=self.now())
        except Exception:  # shutting down goes on; the host just shows offline later
            log.exception("host %s: recording the shutdown failed", self.name)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                if not await asyncio.to_thread(self.repo.heartbeat, name=self.name, at=self.now()):
                    log.warning("host %s: its row was gone; writing it again", self.name)
                    await asyncio.to_thread(self._write_row)
            except Exception:  # a busy or unreachable database now and then: next time
                log.exception("host %s: heartbeat failed", self.name)
            for watch in self.watchers:
                try:
                    await watch()
                except Exception:
                    log.exception("host %s: a check after the heartbeat failed", self.name)

    def statuses(self) -> list[HostStatus]:
        """Every known host (this one first), online or not as of now."""
        now = self.now()
        out = [
            HostStatus(
                name=row.name,
                roots=tuple(host_roots(row)),
                last_heartbeat=row.last_heartbeat,
                stopped_at=row.stopped_at,
                online=is_online(row, now, self.interval),
                this=row.name == self.name,
            )
            for row in self.repo.list()
        ]
        return sorted(out, key=lambda h: (not h.this, h.name))
