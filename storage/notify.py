"""Wake-ups between hosts: PostgreSQL `LISTEN/NOTIFY`, never the only carrier.

Several daemons sharing one PostgreSQL hand each other work as rows (the outbox, the
inbox).  A row written by one host should be picked up by another at once, not at its
next poll, so a writer also calls `notify` inside the transaction that writes the row
(PostgreSQL delivers the notification at commit, never for a rolled-back row), and
each daemon keeps one `Listener` connection that calls the channel's callbacks.

A notification is only a hint: one can be lost (the listening connection dropped, the
daemon was busy reconnecting), so every consumer also looks on its own now and then,
and the listener calls every callback with ``""`` ("anything may have changed") each
time it (re)connects.  On SQLite there is one daemon per database and writers wake
their own workers in-process: `notify` does nothing and the listener never connects.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Final

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import Session

log = logging.getLogger(__name__)

OUTBOX: Final = "threadline_outbox"  # payload: the chat key of the new rows
INBOX: Final = "threadline_inbox"  # payload: the host the new item is for
RECONNECT_MAX_S: Final = 10.0

Callback = Callable[[str], None]


def notify(session: Session, channel: str, payload: str) -> None:
    """Within `session`'s transaction: wake `channel`'s listeners at commit (PostgreSQL;
    a no-op elsewhere).  Payloads are short keys, never message bodies."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return
    session.exec(
        text("SELECT pg_notify(:channel, :payload)"),
        params={"channel": channel, "payload": payload[:7000]},
    )  # type: ignore[call-overload]


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as libpq takes it (``postgresql://…``, query options kept)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """One `LISTEN` connection for the daemon, dispatching each notification to the
    callbacks registered for its channel (on the event loop; they only wake workers)."""

    def __init__(self, url: str) -> None:
        self.enabled = url.startswith("postgresql")
        self._url = libpq_url(url) if self.enabled else ""
        self._callbacks: defaultdict[str, list[Callback]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def on(self, channel: str, callback: Callback) -> None:
        """Call `callback(payload)` for every notification on `channel` (register
        before `start`)."""
        self._callbacks[channel].append(callback)

    async def start(self) -> None:
        if not self.enabled or self._task is not None or not self._callbacks:
            return
        self._task = asyncio.create_task(self._run(), name="db-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _dispatch(self, channel: str, payload: str) -> None:
        for callback in self._callbacks.get(channel, ()):
            try:
                callback(payload)
            except Exception:
                log.exception("a %s wake-up failed", channel)

    async def _run(self) -> None:
        import psycopg  # the postgres extra; present whenever the URL is PostgreSQL

        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True
                ) as conn:
                    for channel in self._callbacks:
                        await conn.execute(f'LISTEN "{channel}"')
                    self.connected.set()
                    delay = 0.5
                    for channel in list(self._callbacks):  # whatever came while away
                        self._dispatch(channel, "")
                    async for note in conn.notifies():
                        self._dispatch(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the server restarted, the network went: again
                log.warning(
                    "database listener: %s; reconnecting in %.1fs", str(e).strip()[:200], delay
                )
            self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX_S, delay * 2)


__all__ = ["INBOX", "OUTBOX", "Listener", "libpq_url", "notify"]
