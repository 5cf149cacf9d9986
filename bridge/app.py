"""The composition and lifecycle root: builds every collaborator once, starts and stops them.

`Bridge` wires the three seams together and owns nothing else.  From the config, the
database and the adapters it builds, once: the durable outbox (`bridge/outbox/`), the
agent host (`agent/`), the permission broker, access control and pairing, folder trust,
and the two routers —

- the **sessions router** (`bridge/sessions.py`): inbound chat events → commands or
  prompts, per-thread order, the session's agent (`agent_for`), on top of the thread ↔
  session bindings (`bridge/threads.py`);
- the **turn router** (`bridge/turn_router.py`): agent events → the turn's view in its
  thread, the broker, and its subscribers (the terminal attach server);

— and the side doors: the terminal attach server (`bridge/sources/attach.py`), schedules
(`bridge/sources/scheduler.py`, firing through `bridge/sources/prompts.py`) and import
from disk (`bridge/sources/importer.py`).  Each gets the narrow collaborators it uses.

On start it recovers from whatever the previous run left of this host's sessions
(`bridge/recovery.py`): orphaned Claude Code processes are ended, turns that were
running are marked interrupted and their threads told so, pending permission prompts
are expired; undelivered outbox rows are delivered by the gateway.  Then, if other
hosts had told this host's threads it was offline, they are told it is back
(`bridge/host_notices.py`; every live host watches the others after each heartbeat).  Sessions resume lazily: the next prompt in a
thread restarts Claude Code with `resume=<claude session id>`.

This machine's row in the `hosts` table (`bridge/hosts.py`) is written first on start
(claiming sessions that have no host yet), kept fresh by a heartbeat task, and marked
stopped on a clean stop.  Each adapter starts only on the host that holds its chat
account's gateway lease (`bridge/gateway.py`; alone on a database: at once), and the
outbox delivers only there (`may_send`).  One database listener (`listener`,
`storage/notify.py`; PostgreSQL only) carries the other hosts' wake-ups: the outbox's,
and any other consumer's registered on it before `start`.  Chat events for sessions
on other hosts go to them through the database (`bridge/forward.py` → the `inbox`
table → that host's `bridge/inbox.py` worker, woken by that listener), and a host
that is not the gateway has the gateway open its sessions' threads the same way.

The chat commands (`bridge/commands/`) are handed the bridge and use its public
attributes: the collaborators above and the routers' operations (`reply`, `thread_of`,
`session_for`, `agent_for`, `prompt`, `bind`, `forget_thread`, `platform_call`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from adapters.base import ChatAdapter
from adapters.tasks import TaskGroup
from agent.events import AgentEvent
from agent.host import AgentHost
from bridge import inbox_codec
from bridge.access.control import AccessControl
from bridge.access.pairing import Pairing, load_signing_key
from bridge.access.pairing import key_path as pairing_key_path
from bridge.access.pairing import load_owners as load_paired_owners
from bridge.approvals import plan_desk
from bridge.approvals.permissions import PermissionBroker
from bridge.approvals.trust import FolderTrust
from bridge.commands import opening
from bridge.commands import turn as turn_commands
from bridge.commands.dispatch import Commands, menu
from bridge.config import Config
from bridge.forward import Forwarder, decode_open
from bridge.gateway import Gateways
from bridge.host_notices import HostNotices
from bridge.hosts import HEARTBEAT_S, Hosts
from bridge.inbox import Handover, Inbox
from bridge.outbox.outbox import Outbox
from bridge.recovery import CliReaper, Recovery
from bridge.sessions import SessionRouter
from bridge.sources import prompts as sources
from bridge.sources.attach import AttachServer
from bridge.sources.importer import ClaudeSessions, Importer
from bridge.sources.scheduler import Scheduler, TriggerFactory, cron_trigger
from bridge.threads import Threads
from bridge.turn_router import TurnRouter
from bridge.verify_desk import VerificationDesk
from storage.db import Database
from storage.models import utcnow
from storage.notify import INBOX, Listener

log = logging.getLogger(__name__)


class Bridge:
    def __init__(
        self,
        config: Config,
        db: Database,
        adapters: Mapping[str, ChatAdapter],
        *,
        agent_env: Mapping[str, str] | None = None,
        stream_interval: float = 0.8,
        now: Callable[[], datetime] = utcnow,
        schedule_trigger: TriggerFactory = cron_trigger,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.config = config
        self.db = db
        self.adapters = dict(adapters)
        self.now = now
        self.tasks = TaskGroup()
        self.hosts = Hosts(  # this machine's row and heartbeat (`bridge/hosts.py`)
            db.hosts,
            self.tasks,
            name=config.daemon.host,
            roots=[str(Path(r).expanduser()) for r in config.agent.allowed_roots],
            now=now,
            interval=heartbeat_s,
        )
        # Which chat accounts this host serves (`bridge/gateway.py`).
        self.gateways = Gateways(db, self.tasks, host=config.daemon.host, now=now)
        for adapter in self.adapters.values():  # a deposed gateway takes no updates
            set_gate = getattr(adapter, "set_receive_gate", None)
            if callable(set_gate):
                set_gate(functools.partial(self.gateways.may_receive, adapter.platform))
        # Wake-ups from the other hosts on this database (PostgreSQL LISTEN).
        self.listener = Listener(db.url)
        self.outbox = Outbox(
            db,
            self.adapters,
            thread_fallback=lambda t: self.recovery.thread_fallback(t),
            may_send=self.gateways.may_send,
            host=config.daemon.host,
            listener=self.listener,
        )
        self.threads = Threads(db, self.outbox)
        for adapter in self.adapters.values():  # emoji verification answered by the person
            set_hook = getattr(adapter, "set_verification_hook", None)
            if callable(set_hook):
                desk = VerificationDesk(db.sas, adapter.platform, self.outbox, config.access.owners)
                set_hook(desk.watch)
        # Offline / back notices in the threads of a dead host's sessions.
        self.host_notices = HostNotices(
            db, self.threads, host=config.daemon.host, interval=heartbeat_s, now=now
        )
        self.hosts.watchers.append(self.host_notices.watch)
        self.host = AgentHost(
            self.on_agent_event,
            env=agent_env,
            cli_path=config.agent.cli_path or None,
            default_model=config.agent.model,
            default_mode=config.agent.permission_mode,
        )
        self.broker = PermissionBroker(
            db,
            self.outbox,
            self.tasks,
            timeout_s=config.agent.permission_timeout_s,
            switch_mode=plan_desk.host_switch(self.host),
            cli_env=self.host.cli_env,
        )
        self.access = AccessControl(db, config.access.owners)
        self.pairing = Pairing(db, load_signing_key(pairing_key_path(config)), now=now)
        self.claude_sessions = ClaudeSessions(config.agent.allowed_roots, agent_env)
        self.trust = FolderTrust(db, self.host, self.threads, self.outbox, self.access)
        cli = Path(config.agent.cli_path).name if config.agent.cli_path else "claude"
        reaper = CliReaper(config.attach_socket().parent / "claude.pids", marker=cli)
        self.recovery = Recovery(  # only this host's sessions
            db,
            self.threads,
            self.outbox,
            self.broker,
            self.adapters,
            reaper,
            host=config.daemon.host,
        )
        self.turns = TurnRouter(
            db,
            self.adapters,
            self.threads,
            self.outbox,
            self.tasks,
            self.broker,
            reaper,
            stream_interval=stream_interval,
        )
        self.commands = Commands(self)  # uses the attributes below only when called
        # Work other hosts hand this one (`bridge/inbox.py`), woken by the database.
        self.inbox = Inbox(db, self.tasks, host=config.daemon.host, now=now)
        self.listener.on(INBOX, self.inbox.wake)
        self.forward = Forwarder(
            config, db, self.adapters, self.threads, self.inbox, self.hosts, self.gateways
        )
        self.sessions = SessionRouter(
            config.agent,
            db,
            self.adapters,
            self.threads,
            self.host,
            access=self.access,
            broker=self.broker,
            trust=self.trust,
            turns=self.turns,
            tasks=self.tasks,
            commands=self.commands,
            forward=self.forward,
        )
        self.inbox.on("message", functools.partial(self._deliver, "message"))
        self.inbox.on("press", functools.partial(self._deliver, "press"), at_least_once=True)
        self.inbox.on("open_thread", self._open_thread_requested)
        self.importer = Importer(
            config,
            db,
            self.adapters,
            self.threads,
            self.claude_sessions,
            functools.partial(opening.open_session, self),
        )
        self.attach = AttachServer(
            config.attach_socket(),
            db=db,
            tasks=self.tasks,
            router=self.sessions,
            broker=self.broker,
            host=self.host,
            claude_sessions=self.claude_sessions,
            import_session=self.importer.import_session,
            stop_turn=functools.partial(turn_commands.stop_turn, self),
        )
        self.turns.subscribe(self.attach)
        self.scheduler = Scheduler(
            db,
            tz=config.agent.tz(),
            missed=config.agent.schedule_missed,
            run=lambda schedule: sources.run_scheduled(self.sessions, schedule),
            report=lambda schedule, text: sources.schedule_notice(self.threads, schedule, text),
            spawn=lambda coro, name: self.tasks.spawn(coro, name=name),
            trigger_for=schedule_trigger,
            now=now,
            host=config.daemon.host,  # only this host's sessions' schedules
        )
        # The routers' operations the chat commands use, under the names they know.
        self.thread_of = self.threads.thread_of
        self.forget_thread = self.threads.forget_thread
        self.session_for = self.threads.session_for
        self.bind = self.threads.bind
        self.reply = self.threads.reply
        self.platform_call = self.threads.platform_call
        self.agent_for = self.sessions.agent_for
        self.end_agent = self.sessions.end_agent
        self.prompt = self.sessions.prompt
        self.on_inbound = self.sessions.on_inbound

    async def on_agent_event(self, ev: AgentEvent) -> None:
        """The agent host's sink (a method, so a subclass can observe every event)."""
        await self.turns.on_agent_event(ev)

    def _deliver(self, kind: str, raw: str, _sender: str) -> Handover:
        """An inbox chat event → this host's sessions router, as its adapter would."""
        decoded = inbox_codec.decode_event(kind, raw)
        return functools.partial(self.sessions.deliver, decoded.event, decoded.bot)

    def _open_thread_requested(self, raw: str, sender: str) -> Handover:
        """On the gateway: another host asks for its new session's thread."""
        session_id, origin, title = decode_open(raw)
        return lambda: self.tasks.spawn(
            opening.open_requested(self, sender, session_id, origin, title),
            name=f"open-{session_id}",
        )

    async def start(self) -> None:
        self.hosts.start()
        self.recovery.recover()
        await self.host_notices.back()  # after this host's own recovery
        load_paired_owners(
            self.pairing, self.access, self.adapters, self.config.access.owners, self.tasks
        )
        await self.outbox.start()
        for adapter in self.adapters.values():
            adapter.set_commands(menu())
            await self.gateways.begin(
                adapter,
                self.config.platform(adapter.platform),
                self.sessions.on_inbound,
                self.outbox.resume,
            )
        await self.listener.start()
        self.inbox.start()
        await self.attach.start()
        await self.scheduler.start()
        log.info("bridge started with %s", ", ".join(self.adapters) or "no adapters")

    async def stop(self) -> None:
        """Stop taking input, interrupt running turns (their threads are told), give the
        outbox a few seconds to deliver, then disconnect.  Whatever is still undelivered
        stays in the database for the next start."""
        # Platform events not taken from here on stay with the platform (unconfirmed)
        # for the next gateway or the next start, instead of being dropped below.
        self.gateways.close_intake()
        await self.inbox.stop()  # what is not handed over yet stays for the next start
        self.sessions.stopping = True
        await self.scheduler.stop()
        await self.attach.stop()
        for session_id, view in list(self.turns.views.items()):
            self.recovery.mark_interrupted(session_id, view.thread, reason="the daemon is stopping")
        await self.host.close()
        await self.tasks.close()
        await self.hosts.stop()
        if not await self.outbox.wait_idle(timeout=5):
            log.warning("some messages are still undelivered; they are sent on the next start")
        for adapter in self.adapters.values():
            if not self.gateways.running(adapter.platform):
                continue  # another host is the gateway: never started here
            try:
                await adapter.stop()
            except Exception:
                log.exception("stopping %s adapter failed", adapter.platform)
        await self.listener.stop()
        await self.outbox.stop()
        await self.gateways.release()  # another host may take over at once
