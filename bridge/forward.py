"""Chat → the session's host: which host an inbound event is for, and getting it there.

Every chat event reaches the gateway (`bridge/gateway.py`).  After the access check
and placement, the sessions router asks `message_target` / `press_target` which host
it is for: a message, the host of the session bound to its thread; a press, the host
that posted the pressed message (`outbox.host`), else that session's host.  An event
for another host is stored in that host's inbox (`bridge/inbox.py`) — a message's
attachments fetched here first (only owners get this far; within `[agent]
max_file_mb`) and carried as bytes, since that host never connects to the chat — and
the thread is told once per event when that host is offline: the item waits for it.

The other way round: a host that is not its platform's gateway cannot open a thread,
so `open_remote` (`open_session` on such a host) writes the session row and asks the
lease holder to open the thread (an "open_thread" item), then waits until that host
has bound it and marked the session active ("thread_opened" item, or a poll).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Final

from adapters.base import ChatAdapter
from adapters.messages import AttachmentTooLarge, AttachmentUnavailable, ButtonPress, UserMessage
from adapters.messages import ThreadRef as Thread
from bridge import files, render
from bridge.gateway import Gateways, account_key
from bridge.hosts import Hosts, is_online
from bridge.inbox import Handover, Inbox
from bridge.inbox_codec import Fetched, encode_message, encode_press, loads, text, thread_of
from bridge.threads import Threads
from storage.db import Database
from storage.host_repo import as_utc
from storage.models import SessionRow
from storage.outbox_repo import MessageOrigin

if TYPE_CHECKING:
    from bridge.config import Config

log = logging.getLogger(__name__)

OPEN_TIMEOUT_S: Final = 60.0  # how long a host waits for the gateway to open a thread
OPEN_POLL_S: Final = 0.5


class Forwarder:
    def __init__(
        self,
        config: Config,
        db: Database,
        adapters: Mapping[str, ChatAdapter],
        threads: Threads,
        inbox: Inbox,
        hosts: Hosts,
        gateways: Gateways,
    ) -> None:
        self.config, self.db, self.adapters, self.threads = config, db, adapters, threads
        self.inbox, self.hosts, self.gateways = inbox, hosts, gateways
        self.host = hosts.name
        self._opened: dict[str, asyncio.Event] = {}
        inbox.on("thread_opened", self._thread_opened)

    # --- where an event goes ----------------------------------------------------------

    def _elsewhere(self, host: str | None) -> str | None:
        return host if host and host != self.host else None

    def message_target(self, session: SessionRow | None) -> str | None:
        """The other host a message in `session`'s thread is for; None: this one."""
        return self._elsewhere(session.host if session is not None else None)

    def press_target(self, origin: MessageOrigin) -> str | None:
        """The other host a press on the message `origin` describes is for."""
        host = origin.host
        if host is None:  # a message from before hosts: its session's host
            session_id = origin.session_id
            if session_id is None:
                binding = self.db.bindings.by_thread_key(origin.thread_key)
                session_id = binding.session_id if binding is not None else None
            session = self.db.sessions.get(session_id) if session_id else None
            host = session.host if session is not None else None
        return self._elsewhere(host)

    def known_hosts(self) -> list[str]:
        return [row.name for row in self.db.hosts.list()]

    def online(self, host: str) -> bool:
        row = self.db.hosts.get(host)
        return row is not None and is_online(row, self.hosts.now(), self.hosts.interval)

    # --- sending it there -------------------------------------------------------------

    async def forward_message(self, msg: UserMessage, host: str) -> None:
        limit = files.max_bytes(self.config.agent)
        fetched: list[Fetched] = []
        for a in msg.attachments:
            try:
                data = await asyncio.wait_for(a.fetch(limit), files.FETCH_TIMEOUT_S)
                fetched.append(Fetched(a.kind, a.name, a.mime, data))
            except AttachmentTooLarge as e:
                fetched.append(Fetched(a.kind, a.name, a.mime, too_large=(e.limit, e.size)))
            except (AttachmentUnavailable, TimeoutError) as e:
                log.warning("fetching an attachment for %s failed: %s", host, e)
                fetched.append(Fetched(a.kind, a.name, a.mime))
        payload = encode_message(msg, fetched, self._bot(msg.thread.platform))
        await asyncio.to_thread(self.inbox.send, host, "message", payload)
        await self._tell_if_offline(msg.thread, host)

    async def forward_press(self, press: ButtonPress, host: str) -> None:
        payload = encode_press(press, self._bot(press.thread.platform))
        await asyncio.to_thread(self.inbox.send, host, "press", payload)
        await self._tell_if_offline(press.thread, host)

    def _bot(self, platform: str) -> str:
        adapter = self.adapters.get(platform)
        return adapter.username if adapter is not None else ""

    async def _tell_if_offline(self, thread: Thread, host: str) -> None:
        if not await asyncio.to_thread(self.online, host):
            self.threads.reply(
                thread,
                render.notice(f"📥 {host} is offline; this waits until it is back."),
            )

    # --- opening a thread from a host that is not the gateway --------------------------

    def is_gateway(self, platform: str) -> bool:
        """This host holds `platform`'s gateway lease now (it can open threads)."""
        return self.gateways.may_send(platform)

    def gateway_host(self, platform: str, now: datetime) -> str | None:
        """The host holding `platform`'s gateway lease, if it is not expired."""
        lease = self.db.gateways.holder(account_key(platform, self.config.platform(platform)))
        if lease is None or as_utc(lease.expires_at) <= as_utc(now):
            return None
        return lease.holder

    async def open_remote(
        self, row: SessionRow, origin: Thread, title: str
    ) -> tuple[SessionRow, Thread] | None:
        """Write `row` (state "opening", this host) and have the gateway open its thread;
        the row (active) and thread, or None after telling `origin` why not."""
        platform = origin.platform
        gateway = self.gateway_host(platform, self.hosts.now())
        if gateway is None:
            self.threads.reply(
                origin,
                render.notice(
                    f"🚫 No host is connected to {platform} right now, so no thread can be "
                    "opened; the session was not started."
                ),
            )
            return None
        self.db.sessions.add(row)
        opened = self._opened[row.id] = asyncio.Event()
        try:
            self.inbox.send(
                gateway,
                "open_thread",
                {"session_id": row.id, "origin": _thread(origin), "title": title},
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + OPEN_TIMEOUT_S
            while (current := self.db.sessions.get(row.id)) is not None:
                thread = self.threads.thread_of(row.id)
                if current.state == "ended":
                    return None  # the gateway could not open it (and said so)
                if current.state != "opening" and thread is not None:
                    return current, thread
                if loop.time() >= deadline:
                    break
                opened.clear()
                try:
                    await asyncio.wait_for(opened.wait(), OPEN_POLL_S)
                except TimeoutError:
                    pass
        finally:
            self._opened.pop(row.id, None)
        self.db.sessions.update(row.id, state="ended")
        self.threads.reply(
            origin,
            render.notice(
                f"⚠️ {gateway} (the {platform} gateway) did not open a thread for the session "
                f"within {OPEN_TIMEOUT_S:g} s; it was not started. Try again."
            ),
        )
        return None

    def _thread_opened(self, raw: str, _sender: str) -> Handover:
        session_id = text(loads(raw), "session_id", limit=16)
        return lambda: self._opened[session_id].set() if session_id in self._opened else None

    def tell_opened(self, host: str, session_id: str) -> None:
        """On the gateway: `host` may go on with session `session_id` (opened or not)."""
        self.inbox.send(host, "thread_opened", {"session_id": session_id})


def _thread(t: Thread) -> dict[str, str | None]:
    return {"platform": t.platform, "chat_id": t.chat_id, "thread_id": t.thread_id}


def decode_open(raw: str) -> tuple[str, Thread, str]:
    """An "open_thread" item: (session id, origin thread, title)."""
    obj = loads(raw)
    return (
        text(obj, "session_id", limit=16, empty=False),
        thread_of(obj, "origin"),
        text(obj, "title"),
    )


__all__ = ["OPEN_TIMEOUT_S", "Forwarder", "decode_open"]
