"""Telling a dead host's threads that it is offline, and that it is back.

Several hosts share one database; when one of them is killed, cut off or stopped, its
sessions cannot run until it returns, and the people in their threads should know.
Every live host checks the `hosts` table after each of its heartbeats (`watch`): a
host that is offline (`bridge/hosts.is_online`: stopped, or its heartbeat too old)
and not noted yet is noted by a compare-and-set on its row (`HostRepo.note_offline`),
so exactly one live host — whichever gets there first — tells the threads of that
host's open sessions, once per outage:

    🔴 laptop is offline — this session continues when it is back; messages you send wait for it

When the host starts again it runs its own recovery first, then `back` clears the
note and tells the threads that were told (and only those) — as does a host that was
only cut off, when after its next heartbeat it finds itself noted offline:

    🟢 laptop is back

Both go through the outbox (`Threads.reply`), so the gateway of the chat account
delivers them, whichever host that is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from adapters.messages import ThreadRef
from bridge import render
from bridge.hosts import ONLINE_INTERVALS, is_online
from bridge.threads import Threads
from storage.db import Database
from storage.types import SessionState

log = logging.getLogger(__name__)

# The sessions whose threads are told: all but ended ones (an interrupted session
# resumes on its host's return, so its thread is told too).
TOLD_STATES: tuple[SessionState, ...] = ("opening", "active", "running", "interrupted")


def offline_text(host: str) -> str:
    name = render.md_escape(host)
    return (
        f"🔴 {name} is offline — this session continues when it is back;"
        " messages you send wait for it"
    )


def back_text(host: str) -> str:
    return f"🟢 {render.md_escape(host)} is back"


class HostNotices:
    """This host's part in the offline and back notices (see the module doc)."""

    def __init__(
        self,
        db: Database,
        threads: Threads,
        *,
        host: str,
        interval: float,
        now: Callable[[], datetime],
    ) -> None:
        self.db, self.threads = db, threads
        self.host, self.interval, self.now = host, interval, now

    async def watch(self) -> None:
        """After a heartbeat: note every other host that went offline (once each)."""
        now = self.now()
        for row in await asyncio.to_thread(self.db.hosts.list):
            if row.name == self.host:
                if row.offline_noted_at is not None:
                    await self.back()  # cut off, not dead: the network came back
                continue
            if row.offline_noted_at is None and not is_online(row, now, self.interval):
                await self._note(row.name, now)

    async def _note(self, host: str, now: datetime) -> None:
        sessions = await asyncio.to_thread(self._open_sessions, host)
        stale_before = now - timedelta(seconds=ONLINE_INTERVALS * self.interval)
        noted = await asyncio.to_thread(
            self.db.hosts.note_offline,
            name=host,
            at=now,
            stale_before=stale_before,
            told=[sid for sid, _ in sessions],
        )
        if not noted:
            return  # another host told them, or it came back meanwhile
        log.warning(
            "host %s is offline; telling the threads of its %d open session(s)",
            host,
            len(sessions),
        )
        for session_id, thread in sessions:
            self.threads.reply(thread, render.notice(offline_text(host)), session_id=session_id)

    def _open_sessions(self, host: str) -> list[tuple[str, ThreadRef]]:
        """`host`'s sessions that are not ended, with their threads."""
        out: list[tuple[str, ThreadRef]] = []
        for row in self.db.sessions.list(states=TOLD_STATES):
            if row.host != host:
                continue
            binding = self.db.bindings.for_session(row.id)
            if binding is not None:
                out.append(
                    (row.id, ThreadRef(binding.platform, binding.chat_id, binding.thread_id))
                )
        return out

    async def back(self) -> None:
        """On start, after recovery: if this host was noted offline, say it is back in
        the threads that were told."""
        told = await asyncio.to_thread(self.db.hosts.take_back, self.host)
        if told is None:
            return
        log.info("host %s is back; telling %d thread(s)", self.host, len(told))
        for session_id in told:
            thread = self.threads.thread_of(session_id)
            if thread is not None:
                self.threads.reply(
                    thread, render.notice(back_text(self.host)), session_id=session_id
                )
